"""Layer x layer CKA with a confidence interval and a permutation p-value in every cell."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._core.check import check_choice, check_count
from .._core.measures import Measure, estimator_name
from .._core.prepare import all_rows_equal
from .._core.prepare import unit_scaled as power_of_two_scaled
from .._core.ratio import warn_undefined
from ..result import CKAResult, default_metadata
from ._checks import (
    check_confidence_level,
    check_half_samples,
    check_measure_options,
    check_resamples,
    check_seed,
    common_rows,
    confounder_matrix,
    layer_matrices,
    min_rows,
)
from ._docs import shared_doc
from ._engine import CONSTANT, NOT_POSITIVE, choose_form, represent
from ._intervals import METHODS, intervals, rescaled
from ._measures import MeasureFn, measure_function, permuted_values, subset_values
from ._redraw import defined_half_samples, measure_label, warn_redrawn
from ._resampling import jackknife_groups, permutations
from ._tables import (
    jackknife_table,
    observed_table,
    permutation_pvalues,
    permutation_table,
    resample_table,
)


@shared_doc
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
    resamples (their errors are correlated, as they are in the data) and indices are drawn once
    per layer. Cost: (B_resample + B_perm) x La x Lb numerators, O(n p_a p_b) or O(n²) each.

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
    {level}
    {method}
    seed : None, int or numpy.random.Generator, optional
        Source of the half-samples and permutations; the same seed gives the same result.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        Deconfounded CKA (adjusted for ``confounder``) or the Procrustes similarity instead of
        CKA, recomputed from the data for each replicate of each cell.
    {confounder}

    Returns
    -------
    CKAResult
        With ``ci_low``, ``ci_high`` and ``pvalues`` (per cell, not corrected for the number of
        cells) unless skipped; ``metadata`` holds the settings, ``"interval_fallback_cells"``
        (cells where BCa fell back) and ``"redrawn_resamples"`` (per-cell counts of redrawn
        half-samples, the rule of :func:`~cka_sim.stats.bootstrap_ci`). A cell undefined on
        all the data (a constant layer) is NaN with a ``CKAUndefinedWarning``.

    Raises
    ------
    TypeError
        If ``acts_a`` or ``acts_b`` is not a non-empty mapping, or an activation not numeric.
    ValueError
        If the layers differ in rows or have too few (2; 8 when debiased), no features or NaN or
        infinite values; for a count or level out of range, an unknown choice, or a
        ``confounder`` missing for ``measure="dcka"``, given for another measure or constant.

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
    args = _layerwise_iv(acts_a, acts_b, debiased, n_resamples, n_permutations,
                         confidence_level, method, seed, measure, confounder)  # fmt: skip
    return _result(args, *(_cka_tables(args) if args.fn is None else _measure_tables(args)))


@dataclass(frozen=True)
class _LayerwiseArgs:
    """The validated, normalised arguments of :func:`cka_matrix_with_uncertainty`.

    ``mats_a`` and ``mats_b`` are float64 NumPy (n, p) layers, for CKA scaled by exact powers of
    two unless constant; ``constant`` names the constant layers of each side (CKA only).
    """

    mats_a: dict[str, np.ndarray]
    mats_b: dict[str, np.ndarray]
    constant: dict[str, list[str]]
    z: np.ndarray | None
    n: int
    n_resamples: int
    n_permutations: int
    level: float
    method: str
    debiased: bool
    fn: MeasureFn | None
    estimator: str
    rng: np.random.Generator


def _layerwise_iv(
    acts_a: Any,
    acts_b: Any,
    debiased: bool,
    n_resamples: Any,
    n_permutations: Any,
    confidence_level: Any,
    method: Any,
    seed: Any,
    measure: Any,
    confounder: Any,
) -> _LayerwiseArgs:
    """Every check of :func:`cka_matrix_with_uncertainty`, once and in this order."""
    n_resamples = check_count(n_resamples, "n_resamples", minimum=0)
    n_permutations = check_count(n_permutations, "n_permutations", minimum=0)
    check_resamples(n_resamples, optional=True)
    level = check_confidence_level(confidence_level)
    check_choice(method, "method", METHODS)
    what = "cka_matrix_with_uncertainty"
    measure = check_measure_options(measure, confounder, debiased, "linear", what)
    mats_a, mats_b = layer_matrices(acts_a, "acts_a"), layer_matrices(acts_b, "acts_b")
    n = common_rows(mats_a, mats_b)
    if n < min_rows(debiased):
        raise ValueError(f"the layers have {n} examples; CKA needs at least {min_rows(debiased)}")
    if n_resamples:
        check_half_samples(n, debiased)
    z = confounder_matrix(confounder, n)
    fn = None if measure == "cka" else measure_function(measure, debiased)
    constant: dict[str, list[str]] = {"acts_a": [], "acts_b": []}
    if fn is None:
        constant = {
            side: [name for name, m in mats.items() if all_rows_equal(m, np)]
            for side, mats in (("acts_a", mats_a), ("acts_b", mats_b))
        }
        mats_a = {k: v if k in constant["acts_a"] else _scaled(v) for k, v in mats_a.items()}
        mats_b = {k: v if k in constant["acts_b"] else _scaled(v) for k, v in mats_b.items()}
    estimator = estimator_name(measure, debiased)
    counts = (n_resamples, n_permutations)
    rng = check_seed(seed)
    return _LayerwiseArgs(
        mats_a, mats_b, constant, z, n, *counts, level, method, debiased, fn, estimator, rng
    )


Tables = tuple[
    np.ndarray, "np.ndarray | None", "np.ndarray | None", "np.ndarray | None", Any, Any
]  # values, ci_low, ci_high, pvalues, BCa fallback cells, undefined half-samples skipped


def _cka_tables(args: _LayerwiseArgs) -> Tables:
    """Values, intervals, p-values and BCa fallback cells of linear CKA, from HSIC tables."""
    for side, names in args.constant.items():
        for name in names:
            warn_undefined(f"layer {name!r} of {side}", CONSTANT, 4)
    n, debiased = args.n, args.debiased
    widths = [m.shape[1] for m in [*args.mats_a.values(), *args.mats_b.values()]]
    form = choose_form(n // 2 if args.n_resamples else n, widths, "linear")
    reps_a = [represent(m, form) for m in args.mats_a.values()]
    reps_b = [represent(m, form) for m in args.mats_b.values()]
    observed = observed_table(reps_a, reps_b, debiased=debiased)
    undefined_rows = [i for i, k in enumerate(args.mats_a) if k in args.constant["acts_a"]]
    undefined_cols = [j for j, k in enumerate(args.mats_b) if k in args.constant["acts_b"]]
    observed[undefined_rows, :] = np.nan  # exactly: a constant layer's centred data may
    observed[:, undefined_cols] = np.nan  # not be exactly zero after a float64 mean
    _warn_not_positive(args, observed, undefined_rows, undefined_cols)
    ci_low = ci_high = pvalues = fallback = skipped = None
    if args.n_resamples:
        replicates, skipped = resample_table(
            reps_a, reps_b, observed, args.n_resamples, debiased=debiased, rng=args.rng
        )
        warn_redrawn(skipped, replicates, args.n_resamples, "CKA", stacklevel=4)
        jack = jackknife_table(reps_a, reps_b, debiased=debiased) if args.method == "bca" else None
        ci_low, ci_high, fallback = intervals(
            observed,
            replicates,
            jack,
            method=args.method,
            confidence_level=args.level,
            stacklevel=4,
        )
    if args.n_permutations:
        blocks = permutations(args.rng, n, args.n_permutations)
        null = permutation_table(reps_a, reps_b, blocks, debiased=debiased)
        pvalues = permutation_pvalues(observed, null)
    return observed, ci_low, ci_high, pvalues, fallback, skipped


def _warn_not_positive(
    args: _LayerwiseArgs, observed: np.ndarray, rows: list[int], cols: list[int]
) -> None:
    """Warn for each layer of a NaN cell that no constant layer explains: its self-HSIC on all
    the data is not positive (a debiased self-HSIC at or below zero, e.g. few examples)."""
    unexplained = np.isnan(observed)
    unexplained[rows, :] = False
    unexplained[:, cols] = False
    if not unexplained.any():
        return
    names_a, names_b = list(args.mats_a), list(args.mats_b)
    cells = [f"({names_a[i]!r}, {names_b[j]!r})" for i, j in np.argwhere(unexplained)]
    warn_undefined(f"cell(s) {', '.join(cells)}", NOT_POSITIVE, 5)


def _measure_tables(args: _LayerwiseArgs) -> Tables:
    """Values, intervals and p-values of a measure recomputed per cell on shared resamples."""
    fn, zm, n, rng = args.fn, args.z, args.n, args.rng
    assert fn is not None
    pairs = [(a, b) for a in args.mats_a.values() for b in args.mats_b.values()]
    shape = (len(args.mats_a), len(args.mats_b))
    observed = np.array([fn(a, b, zm) for a, b in pairs]).reshape(shape)
    ci_low = ci_high = pvalues = fallback = skipped = None
    if args.n_resamples:

        def evaluate(blocks: Iterator[np.ndarray]) -> np.ndarray:
            subsets = [rows for block in blocks for rows in block]
            raw = np.stack([subset_values(fn, a, b, zm, subsets) for a, b in pairs])
            return raw.reshape(*shape, len(subsets))

        wanted = ~np.isnan(observed)
        raw, skipped = defined_half_samples(evaluate, rng, n, args.n_resamples, wanted)
        replicates = rescaled(observed, raw, n)
        warn_redrawn(
            skipped,
            replicates,
            args.n_resamples,
            measure_label(False, zm is not None),
            stacklevel=4,
        )
        jack = None
        if args.method == "bca":
            groups = jackknife_groups(n)
            jack = np.stack([subset_values(fn, a, b, zm, groups) for a, b in pairs])
            jack = jack.reshape(*shape, len(groups))
        ci_low, ci_high, fallback = intervals(
            observed,
            replicates,
            jack,
            method=args.method,
            confidence_level=args.level,
            stacklevel=4,
        )
    if args.n_permutations:
        perms = [p for block in permutations(rng, n, args.n_permutations) for p in block]
        null = np.stack([permuted_values(fn, a, b, zm, [perms]) for a, b in pairs])
        pvalues = permutation_pvalues(observed, null.reshape(*shape, args.n_permutations))
    return observed, ci_low, ci_high, pvalues, fallback, skipped


def _result(
    args: _LayerwiseArgs,
    observed: np.ndarray,
    ci_low: np.ndarray | None,
    ci_high: np.ndarray | None,
    pvalues: np.ndarray | None,
    fallback: np.ndarray | None,
    skipped: np.ndarray | None,
) -> CKAResult:
    names_a, names_b = list(args.mats_a), list(args.mats_b)
    fallback_cells = (
        [] if fallback is None else [[names_a[i], names_b[j]] for i, j in np.argwhere(fallback)]
    )
    return CKAResult(
        values=observed,
        row_names=names_a,
        col_names=names_b,
        estimator=args.estimator,
        n_examples=args.n,
        metadata=default_metadata(
            n_resamples=args.n_resamples,
            n_permutations=args.n_permutations,
            confidence_level=args.level,
            interval_method=args.method,
            interval_fallback_cells=fallback_cells,
            resampling="half-sampling without replacement",
            redrawn_resamples=None if skipped is None else skipped.tolist(),
        ),
        ci_low=ci_low,
        ci_high=ci_high,
        pvalues=pvalues,
    )


def _scaled(x: np.ndarray) -> np.ndarray:
    """``x`` times an exact power of two that keeps float64 products in range (CKA unchanged)."""
    return power_of_two_scaled(x, np)[0]
