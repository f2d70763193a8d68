"""Layer x layer CKA with a confidence interval and a permutation p-value in every cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from .._core.check import as_matrix, check_choice, check_count
from .._core.measures import Measure, estimator_name
from .._core.prepare import all_rows_equal
from .._core.prepare import unit_scaled as power_of_two_scaled
from .._core.ratio import warn_undefined
from ..result import CKAResult, default_metadata
from ._checks import (
    check_confidence_level,
    check_debiased_rows,
    to_numpy,
)
from ._engine import choose_form, represent
from ._intervals import METHODS, half_sample_scale, intervals
from ._measures import (
    check_measure_options,
    confounder_matrix,
    measure_function,
    permuted_values,
    subset_values,
)
from ._resampling import generator, half_samples, jackknife_groups, permutations
from ._tables import observed_table, permutation_pvalues, permutation_table
from .bootstrap import jackknife_table, resample_table


def cka_matrix_with_uncertainty(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any],
    *,
    debiased: bool = False,
    n_resamples: int = 1000,
    n_permutations: int = 1000,
    confidence_level: float = 0.95,
    method: Literal["bca", "percentile", "basic"] = "bca",
    seed: Any = None,
    measure: Measure = "cka",
    confounder: Any = None,
) -> CKAResult:
    r"""Linear CKA of every pair of layers, with per-cell intervals and p-values.

    ``values`` is the exact linear CKA of each pair (as :func:`cka_sim.cka_matrix`);
    ``ci_low``/``ci_high`` come from :func:`~cka_sim.stats.bootstrap_ci`'s half-sampling and
    ``pvalues`` from :func:`~cka_sim.stats.permutation_test`. One set of half-samples and one set
    of permutations serve every cell, so the cells' uncertainties are computed on the same
    resamples (their errors are correlated, as they are in the data) and the cost of drawing and
    gathering indices is paid once per layer, not once per cell.

    Parameters
    ----------
    acts_a, acts_b : mapping of str to array_like or torch.Tensor, each of shape (n, ...)
        Activations of the same ``n`` examples, one entry per layer (rows: ``acts_a``, columns:
        ``acts_b``). Torch tensors are converted with ``.detach().cpu().numpy()``.
    debiased : bool, default False
        Debiased CKA (unbiased HSIC₁) everywhere; needs ``n >= 8``. Recommended for inference.
    n_resamples : int, default 1000
        Half-samples for the intervals; 0 skips them (``ci_low`` and ``ci_high`` stay None).
    n_permutations : int, default 1000
        Permutations for the p-values; 0 skips them (``pvalues`` stays None).
    confidence_level : float, default 0.95
        Two-sided level of the intervals, strictly between 0 and 1.
    method : {"bca", "percentile", "basic"}, default "bca"
        Interval method, as in :func:`~cka_sim.stats.bootstrap_ci`.
    seed : None, int or numpy.random.Generator, optional
        Source of the half-samples and permutations; the same seed gives the same result.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        Deconfounded CKA (adjusted for ``confounder``) or the Procrustes similarity instead of
        CKA; their replicates are recomputed from the data, cell by cell, on the same
        half-samples and permutations (see :func:`~cka_sim.stats.permutation_test`).
    confounder : array_like or torch.Tensor, shape (n, q, ...), optional
        What ``measure="dcka"`` adjusts for; refused for the other measures.

    Returns
    -------
    CKAResult
        With ``ci_low``, ``ci_high`` and ``pvalues`` filled (unless skipped); the settings are in
        ``metadata``. The p-values are per cell, not corrected for the number of cells.
        ``metadata["interval_fallback_cells"]`` lists the ``[row, column]`` cells where
        ``method="bca"`` fell back to the basic interval widened to contain the estimate (see
        :func:`~cka_sim.stats.bootstrap_ci`). A constant layer gives a NaN row or column (values,
        intervals and p-values) with a :class:`~cka_sim.CKAUndefinedWarning` naming it.

    Raises
    ------
    TypeError
        If the activations are not numeric.
    ValueError
        If the layers differ in rows or have too few (2; 8 when debiased), no features or NaN or
        infinite values; for a count or level out of range, an unknown choice, or a
        ``confounder`` missing for ``measure="dcka"`` or given for another measure.

    Notes
    -----
    Cost: (B_resample + B_perm) x La x Lb numerator evaluations, each O(n p_a p_b) in feature
    form or O(n²) in Gram form (chosen from the layer widths; Gram form keeps one n x n matrix
    per layer in memory).

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Efron (1987), *Better bootstrap confidence intervals*, JASA 82. Shao & Tu
    (1995), *The Jackknife and Bootstrap*, Springer (half-sampling).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim.stats import cka_matrix_with_uncertainty
    >>> rng = np.random.default_rng(0)
    >>> h = rng.standard_normal((100, 4))
    >>> acts = {"one": h, "two": np.tanh(h @ rng.standard_normal((4, 6)))}
    >>> res = cka_matrix_with_uncertainty(acts, acts, n_resamples=200, n_permutations=99, seed=0)
    >>> res.pvalues.shape
    (2, 2)
    """
    n_resamples = check_count(n_resamples, "n_resamples", minimum=0)
    n_permutations = check_count(n_permutations, "n_permutations", minimum=0)
    if n_resamples == 1:
        raise ValueError("n_resamples must be 0 (no intervals) or at least 2; got 1")
    level = check_confidence_level(confidence_level)
    check_choice(method, "method", METHODS)
    what = "cka_matrix_with_uncertainty"
    measure = check_measure_options(measure, confounder, debiased, "linear", what)
    mats_a, mats_b = _layers(acts_a, "acts_a"), _layers(acts_b, "acts_b")
    n = _common_rows(mats_a, mats_b)
    if n < (4 if debiased else 2):
        raise ValueError(f"the layers have {n} examples; CKA needs at least {4 if debiased else 2}")
    if n_resamples:
        check_debiased_rows(n, debiased, n // 2, "half-sampling")
    if measure != "cka":
        zm = None if confounder is None else confounder_matrix(confounder, n)
        tables = _measure_tables(
            measure_function(measure, debiased),
            mats_a,
            mats_b,
            zm,
            (n_resamples, n_permutations),
            method,
            level,
            seed,
        )
        return _result(tables, mats_a, mats_b, estimator_name(measure, debiased), n, method, level)
    constant = {
        side: [name for name, m in mats.items() if all_rows_equal(m, np)]
        for side, mats in (("acts_a", mats_a), ("acts_b", mats_b))
    }
    for side, names in constant.items():
        for name in names:
            warn_undefined(
                f"layer {name!r} of {side}", "all of its features are constant (zero self-HSIC)"
            )
    mats_a = {k: v if k in constant["acts_a"] else _scaled(v) for k, v in mats_a.items()}
    mats_b = {k: v if k in constant["acts_b"] else _scaled(v) for k, v in mats_b.items()}
    widths = [m.shape[1] for m in [*mats_a.values(), *mats_b.values()]]
    form = choose_form(n // 2 if n_resamples else n, widths, "linear")
    reps_a = [represent(m, form) for m in mats_a.values()]
    reps_b = [represent(m, form) for m in mats_b.values()]
    observed = observed_table(reps_a, reps_b, debiased=debiased)
    undefined_rows = [i for i, k in enumerate(mats_a) if k in constant["acts_a"]]
    undefined_cols = [j for j, k in enumerate(mats_b) if k in constant["acts_b"]]
    observed[undefined_rows, :] = np.nan  # exactly: a constant layer's centred data may
    observed[:, undefined_cols] = np.nan  # not be exactly zero after a float64 mean
    rng = generator(seed)
    ci_low = ci_high = pvalues = fallback = None
    if n_resamples:
        replicates = resample_table(
            reps_a, reps_b, observed, n_resamples, debiased=debiased, seed=rng
        )
        jack = jackknife_table(reps_a, reps_b, debiased=debiased) if method == "bca" else None
        ci_low, ci_high, fallback = intervals(
            observed, replicates, jack, method=method, confidence_level=level
        )
    if n_permutations:
        blocks = permutations(rng, n, n_permutations)
        null = permutation_table(reps_a, reps_b, blocks, debiased=debiased)
        pvalues = permutation_pvalues(observed, null)
    tables = (observed, ci_low, ci_high, pvalues, n_resamples, n_permutations, fallback)
    estimator = "linear-debiased" if debiased else "linear"
    return _result(tables, mats_a, mats_b, estimator, n, method, level)


def _result(
    tables: tuple, mats_a: dict, mats_b: dict, estimator: str, n: int, method: str, level: float
) -> CKAResult:
    observed, ci_low, ci_high, pvalues, n_resamples, n_permutations, fallback = tables
    names_a, names_b = list(mats_a), list(mats_b)
    fallback_cells = (
        [] if fallback is None else [[names_a[i], names_b[j]] for i, j in np.argwhere(fallback)]
    )
    return CKAResult(
        values=observed,
        row_names=list(mats_a),
        col_names=list(mats_b),
        estimator=estimator,
        n_examples=n,
        metadata=default_metadata(
            n_resamples=n_resamples,
            n_permutations=n_permutations,
            confidence_level=level,
            interval_method=method,
            interval_fallback_cells=fallback_cells,
            resampling="half-sampling without replacement",
        ),
        ci_low=ci_low,
        ci_high=ci_high,
        pvalues=pvalues,
    )


def _measure_tables(
    fn: Any,
    mats_a: dict[str, np.ndarray],
    mats_b: dict[str, np.ndarray],
    zm: np.ndarray | None,
    counts: tuple[int, int],
    method: str,
    level: float,
    seed: Any,
) -> tuple:
    """Values, intervals and p-values of a measure recomputed per cell on shared resamples."""
    n_resamples, n_permutations = counts
    pairs = [(a, b) for a in mats_a.values() for b in mats_b.values()]
    shape = (len(mats_a), len(mats_b))
    observed = np.array([fn(a, b, zm) for a, b in pairs]).reshape(shape)
    n = next(iter(mats_a.values())).shape[0]
    rng = generator(seed)
    ci_low = ci_high = pvalues = fallback = None
    if n_resamples:
        subsets = [rows for block in half_samples(rng, n, n_resamples) for rows in block]
        raw = np.stack([subset_values(fn, a, b, zm, subsets) for a, b in pairs])
        raw = raw.reshape(*shape, n_resamples)
        replicates = observed[..., None] + half_sample_scale(n) * (raw - observed[..., None])
        jack = None
        if method == "bca":
            groups = jackknife_groups(n)
            jack = np.stack([subset_values(fn, a, b, zm, groups) for a, b in pairs])
            jack = jack.reshape(*shape, len(groups))
        ci_low, ci_high, fallback = intervals(
            observed, replicates, jack, method=method, confidence_level=level
        )
    if n_permutations:
        perms = [p for block in permutations(rng, n, n_permutations) for p in block]
        null = np.stack([permuted_values(fn, a, b, zm, [perms]) for a, b in pairs])
        pvalues = permutation_pvalues(observed, null.reshape(*shape, n_permutations))
    return observed, ci_low, ci_high, pvalues, n_resamples, n_permutations, fallback


def _layers(acts: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError(
            f"{name} must be a non-empty mapping of layer name to activations, e.g. "
            f"{{'conv1': array}}; got {type(acts).__name__}"
        )
    return {
        str(key): np.asarray(as_matrix(to_numpy(value), f"{name}[{key!r}]"), dtype=np.float64)
        for key, value in acts.items()
    }


def _scaled(x: np.ndarray) -> np.ndarray:
    """``x`` times an exact power of two that keeps float64 products in range (CKA unchanged)."""
    return power_of_two_scaled(x, np)[0]


def _common_rows(mats_a: dict[str, np.ndarray], mats_b: dict[str, np.ndarray]) -> int:
    rows = {f"acts_a[{k!r}]": v.shape[0] for k, v in mats_a.items()}
    rows.update({f"acts_b[{k!r}]": v.shape[0] for k, v in mats_b.items()})
    if len(set(rows.values())) != 1:
        listed = ", ".join(f"{k}: {v}" for k, v in rows.items())
        raise ValueError(
            f"every layer must hold the same examples (same number of rows); got {listed}"
        )
    return next(iter(rows.values()))
