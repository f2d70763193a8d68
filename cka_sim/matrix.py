"""`cka_matrix`: exact full-data linear CKA for every layer pair of in-memory activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core.backend import Array, namespace, to_float64, to_numpy, to_scalar
from ._core.check import as_matrix, check_layer_sets
from ._core.measures import Measure, check_confounder_given, check_measure
from ._core.moments import Moments
from ._core.prepare import Centred, prepare_one_shot, scaled
from ._core.ratio import layer_matrix, ratio_matrix, side_bounds
from ._core.rounding import epsilon, gram_magnitude, rounding_bound
from .accumulators import StreamingCKAMatrix
from .hsic import gram_inner
from .kernels import centered
from .result import CKAResult, default_metadata


def cka_matrix(
    acts_a: Any,
    acts_b: Any,
    *,
    debiased: bool = False,
    measure: Measure = "cka",
    confounder: Any = None,
) -> CKAResult:
    r"""Exact linear CKA (or another measure) between every layer of ``acts_a`` and of ``acts_b``.

    Each entry equals :func:`~cka_sim.linear_cka` of that pair (``debiased`` as given); each layer
    is validated and centred once, all by the feature form (the moments of one batch, O(n p q)
    per pair) or, when that costs more flops, the Gram form (O(n² p) per layer). The same mapping
    as both arguments compares a model's layers with each other (only pairs i < j are computed).

    Parameters
    ----------
    acts_a, acts_b : Mapping[str, array] or Sequence[array]
        Activations (n, ...) of the same n examples, one entry per layer (a sequence is named
        "0", "1", ...). NumPy arrays or torch tensors (one kind, one device).
    debiased : bool, default False
        Use the unbiased HSIC₁ (needs n >= 4).
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        ``"dcka"``: deconfounded CKA (:func:`~cka_sim.deconfounded_cka`) adjusted for
        ``confounder``; ``"procrustes"``: the Procrustes similarity
        (:func:`~cka_sim.procrustes_similarity`). Both are computed from the feature-form
        statistics of one batch of :class:`~cka_sim.StreamingCKAMatrix` (memory grows with the
        squared widths, p_i x p_j per pair).
    confounder : array_like or torch.Tensor, shape (n, q, ...), optional
        What ``measure="dcka"`` adjusts for (typically the flattened inputs); refused otherwise.

    Returns
    -------
    CKAResult
        ``values[i, j]`` = the measure of (acts_a[i], acts_b[j]); rows and columns in the order
        given; estimator ``"linear"``, ``"deconfounded"`` or ``"procrustes"`` (``-debiased``
        appended when debiased). A constant layer gives a NaN row or column with a
        :class:`~cka_sim.CKAUndefinedWarning` naming it.

    Raises
    ------
    TypeError
        If the activations are not numeric, or mix libraries or devices.
    ValueError
        If the layers differ in rows, a layer has fewer than 2 rows (4 when debiased), no
        features or non-finite values, ``measure`` is unknown, or ``confounder`` is missing for
        ``measure="dcka"`` or given for another measure.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import cka_matrix
    >>> rng = np.random.default_rng(0)
    >>> h1 = rng.standard_normal((200, 16))
    >>> acts = {"h1": h1, "h2": np.tanh(h1 @ rng.standard_normal((16, 8)))}
    >>> cka_matrix(acts, acts).values.shape
    (2, 2)
    """
    measure = check_measure(measure, debiased=debiased)
    check_confounder_given(measure, confounder, "cka_matrix")
    if measure != "cka":
        return _from_accumulator(acts_a, acts_b, debiased, measure, confounder)
    layers_a, layers_b, raw, shared = check_layer_sets(
        acts_a, acts_b, min_rows=4 if debiased else 2
    )
    names_a, names_b = [name for name, _ in layers_a], [name for name, _ in layers_b]
    n = int(raw[0].shape[0])
    return CKAResult(
        values=_linear_values(raw, names_a, names_b, shared, debiased),
        row_names=names_a,
        col_names=names_b,
        estimator="linear-debiased" if debiased else "linear",
        n_examples=n,
        metadata=default_metadata(dtype=str(raw[0].dtype)),
    )


def _linear_values(
    raw: list[Array], names_a: list[str], names_b: list[str], shared: bool, debiased: bool
) -> np.ndarray:
    """The La x Lb linear CKA values of validated layers (``raw``: those of ``acts_a``, then
    those of ``acts_b`` unless ``shared``), by the feature form (the moments of one batch) or,
    when layers are wide next to the examples, the Gram form, whichever costs fewer flops."""
    xp, n, la, lb = namespace(*raw), int(raw[0].shape[0]), len(names_a), len(names_b)
    units = prepare_one_shot(raw, xp)
    if shared:
        pairs = [(i, j) for i in range(la) for j in range(i + 1, la)]
    else:
        pairs = [(i, la + j) for i in range(la) for j in range(lb)]
    widths = [int(x.shape[1]) for x in raw]
    feature_cost = sum(w * w for w in widths) + sum(widths[u] * widths[v] for u, v in pairs)
    if feature_cost <= n * (sum(widths) + len(pairs)):
        moments = Moments.of_batch(units, pairs, debiased, xp)
        (selfs, cross), bounds = moments.hsic_terms(), moments.self_bounds()
    else:
        selfs, cross, bounds = _gram_terms(units, pairs, debiased, xp)
    cross_np = to_numpy(xp.stack(cross)) if cross else np.zeros(0)
    matrix, self_a, self_b = layer_matrix(
        to_numpy(xp.stack(selfs)), cross_np, pairs, la, lb, shared
    )
    return ratio_matrix(
        matrix,
        self_a,
        self_b,
        names_a,
        names_b,
        debiased=debiased,
        n=n,
        bounds=side_bounds(bounds, la, shared),
    )


def _gram_terms(
    units: list[Centred], pairs: list[tuple[int, int]], debiased: bool, xp: Any
) -> tuple[list[Array], list[Array], list[float]]:
    """HSIC terms in Gram form (layers wider than the examples are many): the inner products of
    the (U-)centred float64 Grams of the rows about their centres, and the rounding bounds of
    the debiased self terms (:mod:`cka_sim._core.rounding`; zeros when biased)."""
    t, grams, bounds = xp.matrix_transpose, [], []
    n = int(units[0].x.shape[0])
    for u in units:
        a = u.x - u.centre
        g = centered(to_float64(a @ t(a), xp), xp, unbiased=False, overwrite=True)
        if debiased:
            magnitude = to_scalar(gram_magnitude(g, xp))
            bounds.append(rounding_bound(magnitude, n, epsilon(u.x.dtype)))
            g = centered(g, xp, unbiased=True, overwrite=True)
        else:
            bounds.append(0.0)
        grams.append(g)
    selfs = [gram_inner(g, g, xp) for g in grams]
    return selfs, [gram_inner(grams[u], grams[v], xp) for u, v in pairs], bounds


def _from_accumulator(
    acts_a: Any, acts_b: Any, debiased: bool, measure: str, confounder: Any
) -> CKAResult:
    """The measure as one batch of :class:`~cka_sim.StreamingCKAMatrix` (the same code), each
    layer (and the confounder) first scaled by its own power of two when outside its window
    (:func:`~cka_sim._core.prepare.scaled`: every measure is invariant to it), as the one-shot
    functions do; the accumulator, which cannot rescale a batch, would refuse it."""
    layers_a, layers_b, raw, shared = check_layer_sets(
        acts_a, acts_b, min_rows=4 if debiased else 2, check_values=False
    )
    xp = namespace(*raw)
    in_range = [scaled(x, xp)[0] for x in raw]
    acts_a = {name: x for (name, _), x in zip(layers_a, in_range, strict=False)}
    acts_b = (
        acts_a
        if shared
        else {name: x for (name, _), x in zip(layers_b, in_range[len(layers_a) :], strict=True)}
    )
    if confounder is not None:
        confounder = confounder.detach() if hasattr(confounder, "detach") else confounder
        z = as_matrix(confounder, "confounder", min_rows=1, check_values=False)
        confounder = scaled(z, namespace(z))[0]
    accumulator = StreamingCKAMatrix(debiased, measure=measure)
    result = accumulator.update(acts_a, acts_b, confounder).compute()
    result.metadata = default_metadata(measure=measure)
    return result
