"""Within-target permutation tests (vae_zoo.study.permutation): the exact p-value equals
brute-force enumeration, Monte Carlo agrees with it within its standard error, the pooled ρ is
scipy's, and planted associations give small p-values (reversed ones p near 1)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from vae_zoo.study.permutation import (
    PermutationTest,
    mean_within_spearman_test,
    permutations,
    pooled_spearman_test,
    spearman_by_group,
    within_target_pvalue,
)


def _brute_force(terms, observed):
    """P(sum >= observed - 1e-12) by listing every combination."""
    hits = sum(
        sum(combo) >= observed - 1e-12 for combo in itertools.product(*[list(t) for t in terms])
    )
    return hits / math.prod(len(t) for t in terms)


def _groups_of(sizes):
    return [g for g, n in enumerate(sizes) for _ in range(n)]


def _brute_pooled(x, y, groups):
    """Pooled scipy ρ under every within-group permutation of y (brute force)."""
    index = [np.flatnonzero(np.array(groups) == g) for g in dict.fromkeys(groups)]
    observed = spearmanr(x, y).statistic
    hits = total = 0
    for perms in itertools.product(*[list(itertools.permutations(ix)) for ix in index]):
        yp = np.array(y, dtype=float).copy()
        for ix, p in zip(index, perms, strict=True):
            yp[ix] = np.asarray(y, dtype=float)[list(p)]
        hits += spearmanr(x, yp).statistic >= observed - 1e-12
        total += 1
    return hits / total


def _brute_mean_within(x, y, groups):
    index = [np.flatnonzero(np.array(groups) == g) for g in dict.fromkeys(groups)]
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def stat(yy):
        return np.mean([spearmanr(x[ix], yy[ix]).statistic for ix in index])

    observed = stat(y)
    hits = total = 0
    for perms in itertools.product(*[list(itertools.permutations(ix)) for ix in index]):
        yp = y.copy()
        for ix, p in zip(index, perms, strict=True):
            yp[ix] = y[list(p)]
        hits += stat(yp) >= observed - 1e-12
        total += 1
    return observed, hits / total


def test_permutations_lists_every_ordering_once_identity_first():
    p = permutations(4)
    assert p.shape == (24, 4)
    assert len({tuple(r) for r in p}) == 24
    assert np.all(np.sort(p, axis=1) == np.arange(4))
    assert list(p[0]) == [0, 1, 2, 3]
    assert permutations(0).shape == (1, 0)
    with pytest.raises(ValueError, match="n must be"):
        permutations(-1)


def test_exact_pvalue_equals_enumeration_on_three_targets_of_four():
    rng = np.random.default_rng(0)
    terms = [rng.normal(size=24) for _ in range(3)]
    observed = float(sum(t[0] for t in terms))
    result = within_target_pvalue(terms, observed)
    assert result.exact and result.combinations == 24**3
    assert result.standard_error == 0.0
    assert result.pvalue == pytest.approx(_brute_force(terms, observed), abs=1e-15)


def test_exact_pvalue_counts_ties_of_discrete_terms():
    """Integer-valued terms tie often: ties with the observed value count as reaching it."""
    terms = [np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0]), np.array([3.0, 1.0])]
    for observed in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        assert within_target_pvalue(terms, observed).pvalue == pytest.approx(
            _brute_force(terms, observed)
        )
    assert within_target_pvalue(terms, 0.0).pvalue == 1.0
    assert within_target_pvalue(terms, 6.0 + 1e-6).pvalue == 0.0
    assert within_target_pvalue(terms, 6.0).pvalue == pytest.approx(1 / 24)


def test_exact_pvalue_merges_float_noise_between_equal_values():
    """Sums equal up to rounding (0.1 + 0.2 vs 0.3) are one value of the null."""
    terms = [np.array([0.1, 0.0]), np.array([0.2, 0.0]), np.array([0.0, 0.3])]
    # sums: 0.3 (0.1+0.2+0), 0.6, 0.1, 0.4, 0.2, 0.5, 0, 0.3: two reach 0.3 + float noise
    result = within_target_pvalue(terms, 0.1 + 0.2)
    assert result.pvalue == pytest.approx(5 / 8)


def test_exact_pvalue_never_builds_the_full_product():
    """Five targets of 24 (24**5 ≈ 8e6 combinations): the convolution stays small and exact."""
    rng = np.random.default_rng(1)
    terms = [rng.integers(-5, 6, size=24).astype(float) / 10 for _ in range(5)]
    observed = 1.2
    result = within_target_pvalue(terms, observed)
    assert result.exact and result.combinations == 24**5
    # The sum of independent integer variables: direct convolution of their count vectors.
    dist = np.array([1.0])
    for t in terms:
        counts = np.bincount((np.rint(t * 10) + 5).astype(int), minlength=11)
        dist = np.convolve(dist, counts)
    support = np.arange(len(dist)) - 25
    expected = dist[support >= 12].sum() / dist.sum()
    assert result.pvalue == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_monte_carlo_agrees_with_exact_within_its_standard_error():
    rng = np.random.default_rng(2)
    terms = [rng.normal(size=24) for _ in range(4)]
    observed = float(sum(t[3] for t in terms))
    exact = within_target_pvalue(terms, observed)
    mc = within_target_pvalue(terms, observed, exact_limit=10, draws=20_000, seed=3)
    assert exact.exact and not mc.exact
    assert mc.draws == 20_000 and mc.combinations == 24**4
    assert mc.standard_error == pytest.approx(math.sqrt(mc.pvalue * (1 - mc.pvalue) / 20_000))
    assert abs(mc.pvalue - exact.pvalue) < 4 * mc.standard_error + 1e-4


def test_within_target_pvalue_refuses_bad_input():
    with pytest.raises(ValueError, match="no targets"):
        within_target_pvalue([], 0.0)
    with pytest.raises(ValueError, match="target 1 has no permutations"):
        within_target_pvalue([np.ones(2), np.array([])], 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        within_target_pvalue([np.array([0.0, np.nan])], 0.0)
    undefined = within_target_pvalue([np.ones(2)], float("nan"))
    assert math.isnan(undefined.pvalue) and not undefined.exact


def test_to_dict_has_every_field():
    d = PermutationTest(0.5, True, 24, 0.0).to_dict()
    assert d == {
        "pvalue": 0.5,
        "exact": True,
        "combinations": 24,
        "standard_error": 0.0,
        "draws": 0,
    }


def test_pooled_rho_is_scipys_and_its_pvalue_equals_enumeration_with_unequal_groups():
    rng = np.random.default_rng(4)
    sizes = (3, 4, 2, 1)
    groups = _groups_of(sizes)
    x = rng.integers(0, 4, size=len(groups)).astype(float)  # depths: many ties
    y = rng.integers(0, 4, size=len(groups)).astype(float)
    rho, test = pooled_spearman_test(x, y, groups)
    assert rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert test.exact and test.combinations == 6 * 24 * 2 * 1
    assert test.pvalue == pytest.approx(_brute_pooled(x, y, groups), abs=1e-12)


def test_mean_within_rho_and_pvalue_equal_enumeration_with_unequal_groups():
    rng = np.random.default_rng(5)
    groups = _groups_of((3, 4, 4))
    x, y = rng.normal(size=len(groups)), rng.normal(size=len(groups))
    rho, test = mean_within_spearman_test(x, y, groups)
    expected_rho, expected_p = _brute_mean_within(x, y, groups)
    assert rho == pytest.approx(expected_rho, abs=1e-12)
    assert test.exact and test.combinations == 6 * 24 * 24
    assert test.pvalue == pytest.approx(expected_p, abs=1e-12)


def test_mean_within_leaves_out_small_and_constant_groups():
    x = [0.0, 1.0, 2.0, 0.0, 1.0, 5.0, 5.0, 5.0, 1.0, 2.0]
    y = [0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 0.0, 1.0]
    groups = ["a", "a", "a", "b", "b", "c", "c", "c", "d", "d"]
    # b and d have two members, c has a constant x: only a is left, with ρ = 1 (p = 1/6).
    rho, test = mean_within_spearman_test(x, y, groups)
    assert rho == pytest.approx(1.0)
    assert test.combinations == 6 and test.pvalue == pytest.approx(1 / 6)
    by_group = spearman_by_group(x, y, groups)
    assert by_group["a"] == pytest.approx(1.0)
    assert all(math.isnan(by_group[g]) for g in "bcd")
    nan_rho, nan_test = mean_within_spearman_test(x[3:5], y[3:5], groups[3:5])
    assert math.isnan(nan_rho) and math.isnan(nan_test.pvalue)


def test_pooled_is_undefined_when_a_side_is_constant():
    rho, test = pooled_spearman_test([1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0], [0, 0, 1, 1])
    assert math.isnan(rho) and math.isnan(test.pvalue) and test.combinations == 4


def test_planted_association_gives_a_small_p_and_a_reversed_one_a_p_near_one():
    rng = np.random.default_rng(6)
    groups = _groups_of((4, 4, 4, 4, 4))
    x = rng.normal(size=20)
    offsets = np.repeat(rng.normal(scale=5.0, size=5), 4)  # each target its own level
    for test_fn in (mean_within_spearman_test, pooled_spearman_test):
        rho, up = test_fn(x, offsets + x + 0.01 * rng.normal(size=20), groups)
        # The pooled ρ itself mixes the targets' levels (here it is below 0), but its null keeps
        # each target's y: the within-target order is what the p-value judges.
        assert rho > 0.9 if test_fn is mean_within_spearman_test else rho < 0.5
        assert up.exact and up.pvalue < 0.001
        _, down = test_fn(x, offsets - x, groups)
        assert down.pvalue > 0.99


def test_large_groups_are_drawn_not_enumerated():
    """A group of 10 (10! orderings) is drawn at random; the p-value still tracks the truth."""
    rng = np.random.default_rng(7)
    groups = _groups_of((10, 4))
    x = rng.normal(size=14)
    rho, test = mean_within_spearman_test(x, x + 0.01 * rng.normal(size=14), groups, draws=5000)
    assert rho > 0.9 and not test.exact and test.draws == 5000
    assert test.combinations == math.factorial(10) * 24
    assert test.pvalue < 0.01 and test.standard_error > 0
    _, null = pooled_spearman_test(x, rng.normal(size=14), groups, draws=5000)
    assert 0.0 < null.pvalue < 1.0


def test_inputs_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="one entry per pair"):
        pooled_spearman_test([1.0, 2.0], [1.0], [0, 0])
    with pytest.raises(ValueError, match="finite"):
        mean_within_spearman_test([1.0, np.nan, 2.0], [1.0, 2.0, 3.0], [0, 0, 0])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.lists(st.integers(-3, 3), min_size=1, max_size=6), min_size=1, max_size=4),
    st.integers(-8, 8),
)
def test_exact_pvalue_matches_enumeration_for_any_integer_terms(terms, observed):
    arrays = [np.array(t, dtype=float) / 4 for t in terms]
    result = within_target_pvalue(arrays, observed / 4)
    assert result.exact
    assert result.pvalue == pytest.approx(_brute_force(arrays, observed / 4), abs=1e-15)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 10_000))
def test_pooled_pvalue_matches_enumeration_for_any_group_sizes(sizes, seed):
    rng = np.random.default_rng(seed)
    groups = _groups_of(sizes)
    x = rng.integers(0, 3, size=len(groups)).astype(float)
    y = rng.normal(size=len(groups))
    rho, test = pooled_spearman_test(x, y, groups)
    if np.ptp(x) == 0 or len(groups) < 2:
        assert math.isnan(rho)
        return
    assert rho == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert test.pvalue == pytest.approx(_brute_pooled(x, y, groups), abs=1e-12)
    assert 0.0 < test.pvalue <= 1.0
