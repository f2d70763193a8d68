"""`cka_matrix`: exact full-data linear CKA for every layer pair of in-memory activations."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import (
    Array,
    center_columns,
    frobenius_sq,
    is_torch,
    namespace,
    power_of_two_scaled,
    to_float64,
)
from ._batch import all_rows_equal
from ._layers import as_layers, ratio_matrix, to_numpy
from ._measures import Measure, check_confounder_given, check_measure
from ._validation import as_matrix
from .hsic import debiased_feature_hsic, gram_inner
from .kernels import centered
from .result import CKAResult, default_metadata
from .streaming import StreamingCKAMatrix


class _Layer:
    """One validated, centred layer with its lazily computed Gram and self-HSIC."""

    def __init__(self, x: Array, xp: Any, debiased: bool) -> None:
        self.xp = xp
        self.debiased = debiased
        self.n, self.p = int(x.shape[0]), int(x.shape[1])
        self.constant = all_rows_equal(x, xp)
        self.xc = center_columns(power_of_two_scaled(x, xp)[0], xp)
        self.gram: Array | None = None
        if debiased:
            self.r = xp.sum(self.xc * self.xc, axis=1, dtype=xp.float64)
            self.s = xp.sum(self.r)

    def centred_gram(self) -> Array:
        """The (U-)centred float64 Gram, computed once."""
        if self.gram is None:
            xp = self.xp
            k = to_float64(self.xc @ xp.matrix_transpose(self.xc), xp)
            self.gram = centered(k, xp, unbiased=self.debiased)
        return self.gram

    def gram_cost(self) -> int:
        return 0 if self.gram is not None else self.n * self.n * self.p


def _pair_hsic(a: _Layer, b: _Layer) -> Array:
    """HSIC of two layers (up to a factor common to all pairs), by the cheaper form."""
    xp, n = a.xp, a.n
    feature_cost = n * a.p * b.p
    gram_cost = n * n + a.gram_cost() + b.gram_cost()
    if gram_cost < feature_cost:
        return gram_inner(a.centred_gram(), b.centred_gram(), xp)
    xa, xb = a.xc, b.xc
    if xa.dtype != xb.dtype:
        common = xp.result_type(xa, xb)
        xa, xb = xp.astype(xa, common), xp.astype(xb, common)
    h = frobenius_sq(xp.matrix_transpose(xb) @ xa, xp)
    if a.debiased:
        h = debiased_feature_hsic(h, xp.sum(a.r * b.r), a.s, b.s, n)
    return h


def cka_matrix(
    acts_a: Any,
    acts_b: Any,
    *,
    debiased: bool = False,
    measure: Measure = "cka",
    confounder: Any = None,
) -> CKAResult:
    r"""Exact linear CKA (or another measure) between every layer of ``acts_a`` and of ``acts_b``.

    Each entry equals :func:`~cka_sim.linear_cka` of that pair (``debiased`` as given), but each
    layer is validated and centred once, each self-HSIC is computed once, and each pair uses the
    cheaper of the feature form (:math:`\lVert \bar Y^\top \bar X\rVert_F^2`, O(n p q)) and the
    Gram form (inner product of the centred Grams, O(n²) once both Grams exist; a Gram costs
    O(n² p) once per layer). Pass the same mapping as both arguments to compare a model's layers
    with each other: then only the pairs i < j are computed.

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
    shared = acts_a is acts_b
    layers_a = as_layers(acts_a, "acts_a")
    layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
    min_rows = 4 if debiased else 2
    raw = []
    for side, layers in (("acts_a", layers_a), ("acts_b", [] if shared else layers_b)):
        for name, value in layers:
            raw.append(as_matrix(value, f"{side}[{name!r}]", min_rows=min_rows))
    rows = {int(x.shape[0]) for x in raw}
    if len(rows) != 1:
        raise ValueError(
            f"every layer must hold the same examples (rows); got row counts {sorted(rows)}"
        )
    if len({is_torch(x) for x in raw}) != 1:
        raise TypeError("mix of NumPy arrays and torch tensors; use one kind")
    xp = namespace(*raw)
    n = rows.pop()
    units = [_Layer(x, xp, debiased) for x in raw]
    la = len(layers_a)
    ua = units[:la]
    ub = ua if shared else units[la:]
    self_terms = [_pair_hsic(u, u) if not u.constant else xp.sum(u.xc[:1, :1]) * 0.0 for u in units]
    cross = np.empty((la, len(ub)))
    pending = []
    for i, a in enumerate(ua):
        for j, b in enumerate(ub):
            if shared and j < i:
                continue
            if shared and j == i:
                pending.append((i, j, self_terms[i]))
            elif a.constant or b.constant:
                pending.append((i, j, self_terms[0] * 0.0))
            else:
                pending.append((i, j, _pair_hsic(a, b)))
    values_flat = to_numpy(xp.stack([h for _, _, h in pending]))
    for (i, j, _), value in zip(pending, values_flat, strict=True):
        cross[i, j] = value
        if shared:
            cross[j, i] = value
    selfs = to_numpy(xp.stack(self_terms))
    self_a = selfs[:la]
    self_b = self_a if shared else selfs[la:]
    values = ratio_matrix(
        cross,
        self_a,
        self_b,
        [name for name, _ in layers_a],
        [name for name, _ in layers_b],
        debiased=debiased,
        n=n,
    )
    return CKAResult(
        values=values,
        row_names=[name for name, _ in layers_a],
        col_names=[name for name, _ in layers_b],
        estimator="linear-debiased" if debiased else "linear",
        n_examples=n,
        metadata=default_metadata(dtype=str(raw[0].dtype)),
    )


def _from_accumulator(
    acts_a: Any, acts_b: Any, debiased: bool, measure: str, confounder: Any
) -> CKAResult:
    """The measure as one batch of :class:`~cka_sim.StreamingCKAMatrix` (the same code)."""
    min_rows = 4 if debiased else 2
    for side, acts in (("acts_a", acts_a), ("acts_b", acts_b)):
        for name, value in as_layers(acts, side):
            as_matrix(value, f"{side}[{name!r}]", min_rows=min_rows, check_values=False)
    accumulator = StreamingCKAMatrix(debiased, measure=measure)
    result = accumulator.update(acts_a, acts_b, confounder).compute()
    result.metadata = default_metadata(measure=measure)
    return result
