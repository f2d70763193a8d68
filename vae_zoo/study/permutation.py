"""Within-target permutation tests, exact where the null can be enumerated.

Claims 3 and 4 ask whether a score ranks the sources of each target the way an outcome does.
Their null hypothesis permutes the outcomes among the sources of each target, independently
across targets, every permutation equally likely; targets keep their own levels. Both
statistics are sums over targets of one contribution each:

- **mean within-target Spearman ρ** (claim 4): ρ̄ = (1/T) Σ_t ρ_t, where ρ_t is the Pearson
  correlation of the within-target ranks; a permutation of target t's outcomes changes ρ_t only.
- **pooled Spearman ρ** (claim 3): the ranks are taken once over all pairs,
  ρ = Σ_i xc_i yc_i / √(Σ xc² Σ yc²) with xc, yc the centred ranks. Permuting y within targets
  keeps the multiset of y's ranks, hence the centring and the denominator, so
  ρ = c Σ_t Σ_i xc_ti yc_{t,π_t(i)} with c fixed: again a sum over targets.

:func:`within_target_pvalue` takes each target's contribution under each of its permutations
and returns the one-sided p-value P(null ≥ observed). When the number of combinations
Π_t n_t! is at most :data:`~vae_zoo.study.criteria.EXACT_LIMIT` the p-value is exact: each
target's contributions form a discrete distribution (values rounded to a relative 1e-9, with
counts), the targets are split in two halves of about equal product, each half is convolved,
and the tail is counted half against half with a sorted cumulative count, so the product of all
targets is never materialised. Otherwise permutations are drawn at random and the p-value
(1 + #{null ≥ observed}) / (1 + draws) carries its standard error √(p(1 − p)/draws).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .criteria import EXACT_LIMIT, MONTE_CARLO_DRAWS

#: Null values at most this far below the observed statistic count as reaching it (ties).
TIE_TOLERANCE = 1e-12
#: Contributions are rounded to this fraction of the largest one before they are merged.
RELATIVE_QUANTUM = 1e-9
#: Groups larger than this are not enumerated (n! rows); their permutations are drawn.
MAX_ENUMERATED = 8
#: Counts are exact integers up to here; larger nulls are never enumerated.
_MAX_EXACT_COUNT = 2**62


@dataclass(frozen=True)
class PermutationTest:
    """The one-sided p-value of a within-target permutation test.

    Attributes
    ----------
    pvalue : float
        P(null ≥ observed): exact, or (1 + #{draws ≥ observed}) / (1 + draws). NaN when the
        statistic is undefined.
    exact : bool
        Whether every combination of within-target permutations was counted.
    combinations : int
        Π_t n_t!, the number of equally likely combinations under the null.
    standard_error : float
        Monte Carlo standard error √(p(1 − p)/draws); 0.0 when exact.
    draws : int
        Random combinations drawn (0 when exact).
    """

    pvalue: float
    exact: bool
    combinations: int
    standard_error: float
    draws: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def undefined(cls, combinations: int) -> PermutationTest:
        """The test of an undefined statistic (a constant side): NaN p-value and error."""
        return cls(float("nan"), False, int(combinations), float("nan"))


def permutations(n: int) -> np.ndarray:
    """Every permutation of ``range(n)``, shape (n!, n), in lexicographic order (identity first)."""
    if not 0 <= n <= MAX_ENUMERATED:
        raise ValueError(f"permutations: n must be in [0, {MAX_ENUMERATED}], got {n}")
    rows = list(itertools.permutations(range(n)))
    return np.array(rows, dtype=np.intp).reshape(len(rows), n)


def _distribution(values: np.ndarray, quantum: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of round(values / quantum) with their counts (int64)."""
    keys = np.rint(values / quantum).astype(np.int64)
    unique, counts = np.unique(keys, return_counts=True)
    return unique, counts.astype(np.int64)


def _convolve(
    dists: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of the sum of independent discrete variables (values, counts)."""
    values, counts = np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64)
    for v, c in dists:
        sums = (values[:, None] + v[None, :]).ravel()
        weights = (counts[:, None] * c[None, :]).ravel()
        values, inverse = np.unique(sums, return_inverse=True)
        counts = np.zeros(len(values), dtype=np.int64)
        np.add.at(counts, inverse.ravel(), weights)
    return values, counts


def _halves(sizes: Sequence[int]) -> tuple[list[int], list[int]]:
    """Split target indices in two groups of about equal product of support sizes."""
    left, right, log_left, log_right = [], [], 0.0, 0.0
    for t in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if log_left <= log_right:
            left.append(t)
            log_left += math.log(max(sizes[t], 1))
        else:
            right.append(t)
            log_right += math.log(max(sizes[t], 1))
    return left, right


def _exact_tail(terms: Sequence[np.ndarray], observed: float) -> float:
    """P(Σ_t term_t ≥ observed − tolerance), every combination counted (meet in the middle)."""
    scale = max(float(np.max(np.abs(t))) for t in terms)
    quantum = RELATIVE_QUANTUM * (scale if scale > 0 else 1.0)
    dists = [_distribution(np.asarray(t, dtype=float), quantum) for t in terms]
    left, right = _halves([len(v) for v, _ in dists])
    a_values, a_counts = _convolve([dists[t] for t in left])
    b_values, b_counts = _convolve([dists[t] for t in right])
    # Each rounded term is within quantum / 2 of its value, so a rounded sum is within
    # T · quantum / 2 of the true sum: widen the tie tolerance by that much.
    slack = TIE_TOLERANCE + 0.5 * len(terms) * quantum
    threshold = (observed - slack) / quantum
    # Count b >= threshold - a for each a: suffix sums of b's counts over its sorted values.
    suffix = np.concatenate([np.cumsum(b_counts[::-1])[::-1], np.zeros(1, dtype=np.int64)])
    first = np.searchsorted(b_values, threshold - a_values, side="left")
    reaching = int(np.sum(a_counts * suffix[first]))
    total = math.prod(len(t) for t in terms)
    return reaching / total


def _check_terms(terms: Sequence[np.ndarray]) -> list[np.ndarray]:
    if len(terms) == 0:
        raise ValueError("within_target_pvalue: no targets (terms is empty)")
    arrays = [np.asarray(t, dtype=float).ravel() for t in terms]
    for i, a in enumerate(arrays):
        if a.size == 0:
            raise ValueError(f"within_target_pvalue: target {i} has no permutations")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"within_target_pvalue: target {i} has non-finite contributions")
    return arrays


def monte_carlo_pvalue(null: np.ndarray, observed: float) -> PermutationTest:
    """p = (1 + #{null ≥ observed − tolerance}) / (1 + draws), with its standard error.

    ``null`` holds the statistic under ``draws`` random combinations of permutations.
    The combination count of the returned test is 0 (unknown here); callers replace it.
    """
    draws = int(null.size)
    pvalue = (1 + int(np.sum(null >= observed - TIE_TOLERANCE))) / (1 + draws)
    error = math.sqrt(pvalue * (1.0 - pvalue) / draws)
    return PermutationTest(float(pvalue), False, 0, error, draws)


def within_target_pvalue(
    terms: Sequence[np.ndarray],
    observed: float,
    *,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = 0,
) -> PermutationTest:
    """One-sided p-value of a statistic that is a sum of independent within-target terms.

    Parameters
    ----------
    terms : sequence of arrays
        ``terms[t][j]``: target t's contribution to the statistic under its j-th
        within-target permutation (all of them, equally likely).
    observed : float
        The statistic on the data.
    exact_limit : int
        Enumerate exactly when Π_t len(terms[t]) is at most this.
    draws : int
        Random combinations otherwise.
    seed : int
        Seed of the random draws.

    Returns
    -------
    PermutationTest
        p = P(Σ_t term_t ≥ observed − 1e-12) under independent uniform choices per target;
        NaN when ``observed`` is not finite.
    """
    arrays = _check_terms(terms)
    combinations = math.prod(a.size for a in arrays)
    if not np.isfinite(observed):
        return PermutationTest.undefined(combinations)
    if combinations <= min(exact_limit, _MAX_EXACT_COUNT):
        return PermutationTest(_exact_tail(arrays, float(observed)), True, combinations, 0.0)
    if draws < 1:
        raise ValueError(f"within_target_pvalue: draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    null = np.zeros(draws)
    for a in arrays:
        null += a[rng.integers(0, a.size, size=draws)]
    result = monte_carlo_pvalue(null, float(observed))
    return PermutationTest(result.pvalue, False, combinations, result.standard_error, result.draws)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    from scipy.stats import rankdata

    return rankdata(values)


def _group_indices(groups: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    """Positions of each group's members, groups in order of first appearance."""
    out: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, []).append(i)
    return {g: np.array(ix, dtype=np.intp) for g, ix in out.items()}


def _as_columns(
    x: Sequence[float], y: Sequence[float], groups: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if not len(xa) == len(ya) == len(groups):
        raise ValueError(
            f"x, y and groups must have one entry per pair: {len(xa)}, {len(ya)}, {len(groups)}"
        )
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite (drop pairs without a value first)")
    return xa, ya


def _cross_terms(
    xc: np.ndarray, yc: np.ndarray, scale: float, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """scale · Σ_i xc_i yc_π(i): under every permutation π when enumerable, else ``draws`` random."""
    if len(xc) <= MAX_ENUMERATED:
        return scale * (yc[permutations(len(xc))] @ xc)
    order = np.argsort(rng.random((draws, len(xc))), axis=1)
    return scale * (yc[order] @ xc)


def _test_from_terms(
    terms: list[np.ndarray],
    sizes: list[int],
    observed: float,
    exact_limit: int,
    draws: int,
    seed: int,
) -> PermutationTest:
    """The p-value from per-group terms; groups too large to enumerate were drawn already."""
    combinations = math.prod(math.factorial(n) for n in sizes)
    if all(n <= MAX_ENUMERATED for n in sizes):
        return within_target_pvalue(
            terms, observed, exact_limit=exact_limit, draws=draws, seed=seed
        )
    # Some group was drawn (draws rows); enumerated ones are drawn from uniformly alongside.
    rng = np.random.default_rng(seed + 1)
    null = np.zeros(draws)
    for t, n in zip(terms, sizes, strict=True):
        null += t if n > MAX_ENUMERATED else t[rng.integers(0, t.size, size=draws)]
    result = monte_carlo_pvalue(null, observed)
    return PermutationTest(result.pvalue, False, combinations, result.standard_error, result.draws)


def _centred_ranks(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centred ranks of x and y (ties averaged) and √(Σ xc² Σ yc²), Spearman's denominator."""
    xc, yc = _ranks(x), _ranks(y)
    xc, yc = xc - xc.mean(), yc - yc.mean()
    return xc, yc, math.sqrt(float(xc @ xc) * float(yc @ yc))


def spearman_by_group(
    x: Sequence[float], y: Sequence[float], groups: Sequence[Hashable]
) -> dict[Hashable, float]:
    """Within-group Spearman ρ of x and y per group (NaN for fewer than 3 or a constant side)."""
    xa, ya = _as_columns(x, y, groups)
    out = {}
    for g, ix in _group_indices(groups).items():
        if len(ix) < 3:
            out[g] = float("nan")
            continue
        xc, yc, denominator = _centred_ranks(xa[ix], ya[ix])
        out[g] = float(xc @ yc) / denominator if denominator > 0 else float("nan")
    return out


def mean_within_spearman_test(
    x: Sequence[float],
    y: Sequence[float],
    groups: Sequence[Hashable],
    *,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = 0,
) -> tuple[float, PermutationTest]:
    """Mean over groups of the within-group Spearman ρ, with its within-group permutation test.

    ρ̄ = (1/T) Σ_t ρ_t over the T groups where ρ_t is defined: groups with fewer than three
    members, or with a constant x or y (ρ_t undefined, and no permutation changes that), are
    left out. Under the null, y is permuted within each group; target t contributes
    ρ_t(π)/T = Σ_i xc_ti yc_{t,π(i)} / (T √(Σ xc_t² Σ yc_t²)) with xc, yc its centred
    within-group ranks. Returns (NaN, NaN test) when no group is left.
    """
    xa, ya = _as_columns(x, y, groups)
    rng = np.random.default_rng(seed)
    kept = []
    for ix in _group_indices(groups).values():
        if len(ix) < 3:
            continue
        xc, yc, denominator = _centred_ranks(xa[ix], ya[ix])
        if denominator > 0:
            kept.append((xc, yc, denominator))
    if not kept:
        return float("nan"), PermutationTest.undefined(0)
    n_groups = len(kept)
    rho = float(sum(float(xc @ yc) / d for xc, yc, d in kept) / n_groups)
    terms = [_cross_terms(xc, yc, 1.0 / (n_groups * d), draws, rng) for xc, yc, d in kept]
    sizes = [len(xc) for xc, _, _ in kept]
    return rho, _test_from_terms(terms, sizes, rho, exact_limit, draws, seed)


def pooled_spearman_test(
    x: Sequence[float],
    y: Sequence[float],
    groups: Sequence[Hashable],
    *,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = 0,
) -> tuple[float, PermutationTest]:
    """Spearman ρ pooled over all pairs, with the within-group permutation test of y.

    ρ = Σ_i xc_i yc_i / √(Σ xc² Σ yc²), xc and yc the ranks over all pairs (ties averaged),
    centred; equal to :func:`scipy.stats.spearmanr`. Permuting y within groups keeps its rank
    multiset, so the null statistic is Σ_t Σ_i xc_ti yc_{t,π_t(i)} / √(Σ xc² Σ yc²). Returns
    (NaN, NaN test) when x or y is constant (or there are fewer than two pairs).
    """
    xa, ya = _as_columns(x, y, groups)
    index = _group_indices(groups)
    combinations = math.prod(math.factorial(len(ix)) for ix in index.values())
    if len(xa) < 2:
        return float("nan"), PermutationTest.undefined(combinations)
    xc, yc, denominator = _centred_ranks(xa, ya)
    if not denominator > 0:
        return float("nan"), PermutationTest.undefined(combinations)
    rho = float(xc @ yc) / denominator
    rng = np.random.default_rng(seed)
    terms = [_cross_terms(xc[ix], yc[ix], 1.0 / denominator, draws, rng) for ix in index.values()]
    sizes = [len(ix) for ix in index.values()]
    return rho, _test_from_terms(terms, sizes, rho, exact_limit, draws, seed)
