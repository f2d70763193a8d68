"""Tests for cka_sim.stats: permutation test, half-sampling intervals, layer-wise uncertainty."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from cka_sim import CKAResult, CKAUndefinedWarning, kernel_cka, linear_cka
from cka_sim._core.backend import namespace
from cka_sim.kernels import centered
from cka_sim.stats import (
    bootstrap_ci,
    cka_matrix_with_uncertainty,
    permutation_test,
)
from cka_sim.stats._engine import Permuted, represent


def _dependent(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p))
    return x, x @ rng.standard_normal((p, 3)) + rng.standard_normal((n, 3))


# --- permutation test -------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("method", ["features", "gram"])
def test_null_distribution_equals_cka_of_permuted_data(debiased: bool, method: str) -> None:
    x, y = _dependent(30, 4, 0)
    res = permutation_test(x, y, n_permutations=5, debiased=debiased, method=method, seed=3)
    perms = np.random.default_rng(3).permuted(np.tile(np.arange(30), (5, 1)), axis=1)
    expected = [linear_cka(x, y[p], debiased=debiased) for p in perms]
    np.testing.assert_allclose(res.null_distribution, expected, rtol=1e-10, atol=1e-12)
    assert res.statistic == pytest.approx(linear_cka(x, y, debiased=debiased), rel=1e-12)


def test_rbf_statistic_matches_kernel_cka() -> None:
    x, y = _dependent(40, 4, 1)
    res = permutation_test(x, y, n_permutations=9, kernel="rbf", threshold=0.5, seed=0)
    assert res.statistic == pytest.approx(kernel_cka(x, y, threshold=0.5), rel=1e-12)


def test_pvalue_formula_counts_ties_and_is_never_zero() -> None:
    x, y = _dependent(50, 4, 2)
    res = permutation_test(x, y, n_permutations=99, seed=0)
    count = np.sum(res.null_distribution >= res.statistic)
    assert res.pvalue == pytest.approx((1 + count) / 100)
    assert res.pvalue == pytest.approx(0.01)  # strong dependence: no permutation reaches it
    # Two distinct rows repeated: every permutation ties with or falls below the statistic, and
    # ties count as exceedances, so p is (1 + #ties) / (1 + B), not a spuriously small number.
    x2 = np.tile([[0.0], [1.0]], (3, 1))
    tied = permutation_test(x2, x2, n_permutations=30, seed=0)
    ties = np.sum(np.isclose(tied.null_distribution, 1.0))
    assert ties > 0 and tied.pvalue == pytest.approx((1 + ties) / 31)


@pytest.mark.parametrize("debiased", [False, True])
def test_pvalues_uniform_under_independence(debiased: bool) -> None:
    rng = np.random.default_rng(12345)
    pvalues = []
    for _ in range(200):
        x, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
        pvalues.append(
            permutation_test(x, y, n_permutations=99, debiased=debiased, seed=rng).pvalue
        )
    pvalues = np.asarray(pvalues)
    # Discrete p-values on the grid k/100: compare with the uniform on (0, 1].
    assert sps.kstest(pvalues, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(pvalues <= 0.05) <= 0.09


def test_pvalues_tiny_under_dependence() -> None:
    rng = np.random.default_rng(7)
    for _ in range(10):
        x = rng.standard_normal((60, 5))
        y = np.tanh(x[:, :2]) + 0.5 * rng.standard_normal((60, 2))
        res = permutation_test(x, y, n_permutations=199, debiased=True, seed=rng)
        assert res.pvalue == pytest.approx(1 / 200)


def test_seed_reproducible_and_different_seeds_differ() -> None:
    x, y = np.random.default_rng(0).standard_normal((2, 25, 3))
    a = permutation_test(x, y, n_permutations=40, seed=11)
    b = permutation_test(x, y, n_permutations=40, seed=11)
    c = permutation_test(x, y, n_permutations=40, seed=12)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert not np.array_equal(a.null_distribution, c.null_distribution)


def test_torch_input_is_converted() -> None:
    torch = pytest.importorskip("torch")
    x, y = _dependent(30, 4, 5)
    res_t = permutation_test(torch.tensor(x), torch.tensor(y), n_permutations=20, seed=1)
    res_n = permutation_test(x, y, n_permutations=20, seed=1)
    assert res_t.statistic == res_n.statistic and res_t.pvalue == res_n.pvalue


def test_constant_input_gives_nan_with_warning() -> None:
    x = np.ones((20, 3))
    y = np.random.default_rng(0).standard_normal((20, 2))
    with pytest.warns(CKAUndefinedWarning, match="for x: all of its features are constant"):
        res = permutation_test(x, y, n_permutations=10)
    assert np.isnan(res.pvalue) and np.isnan(res.statistic)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_permutations": 0}, ValueError, "n_permutations must be at least 1"),
        ({"n_permutations": 2.5}, TypeError, "n_permutations must be an integer"),
        ({"kernel": "cosine"}, ValueError, "unknown kernel 'cosine'"),
        ({"method": "fast"}, ValueError, "unknown method 'fast'"),
        ({"kernel": "rbf", "method": "features"}, ValueError, "needs kernel='linear'"),
        ({"kernel": "rbf", "threshold": -1.0}, ValueError, "threshold must be a positive"),
        ({"seed": "abc"}, TypeError, "seed must be None, an integer"),
    ],
)
def test_permutation_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    x, y = _dependent(20, 3, 0)
    with pytest.raises(error, match=match):
        permutation_test(x, y, **kwargs)


def test_mismatched_rows_named() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        permutation_test(np.zeros((10, 2)), np.zeros((11, 2)))


# --- engine pieces ----------------------------------------------------------------------------


def test_batched_centring_matches_core() -> None:
    from cka_sim import center_gram

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 9, 4))
    grams = a @ a.transpose(0, 2, 1)
    for unbiased in (False, True):
        got = centered(grams, namespace(grams), unbiased=unbiased)
        for g, k in zip(got, grams, strict=True):
            np.testing.assert_allclose(g, center_gram(k, unbiased=unbiased), atol=1e-12)


def test_self_terms_do_not_change_under_permutation() -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((15, 3))
    perm = rng.permutation(15)
    for form in ("features", "gram"):
        for debiased in (False, True):
            a = Permuted(represent(y, form), debiased=debiased).self_term
            b = Permuted(represent(y[perm], form), debiased=debiased).self_term
            assert a == pytest.approx(b, rel=1e-12)


# --- bootstrap intervals ----------------------------------------------------------------------

_D = np.array([2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1])
_S = 1.5


def _population_cka() -> float:
    """Linear CKA of X ~ N(0, diag(d²)), Y = X + s·E: Σd⁴ / sqrt(Σd⁴ · Σ(d² + s²)²)."""
    return float(np.sum(_D**4) / np.sqrt(np.sum(_D**4) * np.sum((_D**2 + _S**2) ** 2)))


def test_population_value_matches_a_large_sample() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, _D.size)) * _D
    y = x + _S * rng.standard_normal(x.shape)
    assert linear_cka(x, y) == pytest.approx(_population_cka(), abs=3e-3)


@pytest.mark.parametrize("method", ["bca", "basic", "percentile"])
def test_debiased_interval_covers_population_at_nominal_rate(method: str) -> None:
    # The ordinary with-replacement bootstrap covers 0.78 (basic) to 0.89 (BCa) here: the
    # duplicated rows bias the debiased replicates upwards. Half-sampling must stay near 0.95.
    rng = np.random.default_rng(2024)
    truth, reps, hits = _population_cka(), 200, 0
    for _ in range(reps):
        x = rng.standard_normal((30, _D.size)) * _D
        y = x + _S * rng.standard_normal(x.shape)
        res = bootstrap_ci(x, y, n_resamples=200, method=method, debiased=True, seed=rng)
        hits += res.confidence_interval.low <= truth <= res.confidence_interval.high
    assert 0.90 <= hits / reps <= 0.995


def test_interval_contains_statistic_and_standard_error_matches_spread() -> None:
    x, y = _dependent(200, 5, 3)
    res = bootstrap_ci(x, y, n_resamples=400, seed=0)
    assert res.confidence_interval.low < res.statistic < res.confidence_interval.high
    assert res.statistic == pytest.approx(linear_cka(x, y), rel=1e-12)
    assert res.standard_error == pytest.approx(np.std(res.bootstrap_distribution, ddof=1))
    assert res.bootstrap_distribution.shape == (400,)
    # The sampling sd of CKA at n=200, estimated from fresh samples, is matched within 40 %.
    rng = np.random.default_rng(99)
    fresh = []
    for _ in range(200):
        xs = rng.standard_normal((200, 5))
        ys = xs @ np.random.default_rng(3).standard_normal((5, 3))
        fresh.append(linear_cka(xs, ys + rng.standard_normal((200, 3))))
    assert 0.6 < res.standard_error / np.std(fresh) < 1.4


def test_wider_level_gives_wider_interval_and_seed_reproduces() -> None:
    x, y = _dependent(60, 4, 4)
    narrow = bootstrap_ci(x, y, n_resamples=300, confidence_level=0.5, seed=1)
    wide = bootstrap_ci(x, y, n_resamples=300, confidence_level=0.99, seed=1)
    again = bootstrap_ci(x, y, n_resamples=300, confidence_level=0.99, seed=1)
    assert wide.confidence_interval.low < narrow.confidence_interval.low
    assert wide.confidence_interval.high > narrow.confidence_interval.high
    np.testing.assert_array_equal(again.bootstrap_distribution, wide.bootstrap_distribution)
    assert again.confidence_interval == wide.confidence_interval


def test_odd_n_uses_rescaled_half_samples() -> None:
    x, y = _dependent(41, 3, 8)
    res = bootstrap_ci(x, y, n_resamples=50, method="percentile", seed=0)
    # Replicates are theta + c (theta_m - theta) with m = 20, c = sqrt(20 / 21).
    raw = (res.bootstrap_distribution - res.statistic) / np.sqrt(20 / 21) + res.statistic
    perms = np.random.default_rng(0).permuted(np.tile(np.arange(41), (16, 1)), axis=1)
    first = np.sort(perms[0, :20])
    assert raw[0] == pytest.approx(linear_cka(x[first], y[first]), rel=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"confidence_level": 1.0}, ValueError, "confidence_level must lie strictly between"),
        ({"confidence_level": 0}, ValueError, "confidence_level must lie strictly between"),
        ({"confidence_level": "high"}, TypeError, "confidence_level must be a number"),
        ({"n_resamples": 1}, ValueError, "n_resamples must be at least 2"),
        ({"method": "student"}, ValueError, "unknown method 'student'"),
    ],
)
def test_bootstrap_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    x, y = _dependent(20, 3, 0)
    with pytest.raises(error, match=match):
        bootstrap_ci(x, y, **kwargs)


def test_too_few_examples_for_debiased_half_samples() -> None:
    x, y = _dependent(7, 2, 0)
    with pytest.raises(ValueError, match="debiased CKA needs at least 4"):
        bootstrap_ci(x, y, debiased=True)


# --- layer-wise -------------------------------------------------------------------------------


def _layers(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((80, 4))
    a = {"a1": h, "a2": np.tanh(h @ rng.standard_normal((4, 6)))}
    b = {"b1": h[:, :2] + 0.3 * rng.standard_normal((80, 2)), "noise": rng.standard_normal((80, 3))}
    return a, b


def test_layerwise_matches_single_pair_functions() -> None:
    a, b = _layers()
    res = cka_matrix_with_uncertainty(a, b, n_resamples=100, n_permutations=49, seed=5)
    assert isinstance(res, CKAResult)
    assert res.row_names == ["a1", "a2"] and res.col_names == ["b1", "noise"]
    for i, ka in enumerate(a):
        for j, kb in enumerate(b):
            assert res.values[i, j] == pytest.approx(linear_cka(a[ka], b[kb]), rel=1e-10, abs=1e-12)
            assert res.ci_low[i, j] <= res.values[i, j] <= res.ci_high[i, j]
    assert res.pvalues[0, 0] == pytest.approx(1 / 50)
    assert res.pvalues[0, 1] > 0.05
    assert res.metadata["n_permutations"] == 49 and res.estimator == "linear"


def test_layerwise_skips_and_reproduces() -> None:
    a, b = _layers(1)
    only_p = cka_matrix_with_uncertainty(a, b, n_resamples=0, n_permutations=20, seed=1)
    assert only_p.ci_low is None and only_p.pvalues is not None
    one = cka_matrix_with_uncertainty(a, b, debiased=True, n_resamples=50, n_permutations=0, seed=2)
    two = cka_matrix_with_uncertainty(a, b, debiased=True, n_resamples=50, n_permutations=0, seed=2)
    assert one.pvalues is None and one.estimator == "linear-debiased"
    np.testing.assert_array_equal(one.ci_low, two.ci_low)


def test_layerwise_cell_interval_equals_bootstrap_ci_with_same_seed() -> None:
    a, b = _layers(2)
    res = cka_matrix_with_uncertainty(
        a, b, n_resamples=120, n_permutations=0, method="percentile", seed=9
    )
    single = bootstrap_ci(a["a2"], b["b1"], n_resamples=120, method="percentile", seed=9)
    assert res.ci_low[1, 0] == pytest.approx(single.confidence_interval.low, rel=1e-10)
    assert res.ci_high[1, 0] == pytest.approx(single.confidence_interval.high, rel=1e-10)


def test_layerwise_bad_inputs() -> None:
    a, b = _layers()
    with pytest.raises(ValueError, match="same number of rows"):
        cka_matrix_with_uncertainty(a, {"short": np.zeros((10, 2))})
    with pytest.raises(TypeError, match="acts_b must be a non-empty mapping"):
        cka_matrix_with_uncertainty(a, [np.zeros((80, 2))])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_resamples must be 0"):
        cka_matrix_with_uncertainty(a, b, n_resamples=1)
    with pytest.raises(ValueError, match="n_permutations must be at least 0"):
        cka_matrix_with_uncertainty(a, b, n_permutations=-1)


def test_bca_falls_back_when_bias_exceeds_spread() -> None:
    # Biased CKA with p >> n: every half-sample (fewer rows, same p) is larger than the estimate,
    # so BCa is undefined; the basic interval, widened to the estimate, is returned and recorded.
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 500)), rng.standard_normal((40, 500))
    with pytest.warns(RuntimeWarning, match="BCa interval is undefined or excludes the estimate"):
        res = bootstrap_ci(x, y, n_resamples=50, seed=0)
    assert np.all(res.bootstrap_distribution > res.statistic)
    assert res.interval_method == "basic-widened"
    basic = bootstrap_ci(x, y, n_resamples=50, seed=0, method="basic").confidence_interval
    assert res.confidence_interval.low == basic.low
    assert basic.high < res.statistic == res.confidence_interval.high
