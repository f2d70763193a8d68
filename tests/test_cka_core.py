"""The functional core: reference values, code-path agreement, invariances, numerics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ortho_group

from cka_sim import (
    CKAUndefinedWarning,
    center_gram,
    cka,
    gram_linear,
    gram_polynomial,
    gram_rbf,
    hsic,
    kernel_cka,
    linear_cka,
)


@pytest.fixture(scope="module")
def kornblith_demo() -> tuple[np.ndarray, np.ndarray]:
    """The data of Kornblith's CKA demo notebook."""
    np.random.seed(1337)  # noqa: NPY002 - the demo's own seeding, to reproduce its numbers
    x = np.random.randn(100, 10)  # noqa: NPY002
    y = np.random.randn(100, 10) + x  # noqa: NPY002
    return x, y


def song_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """HSIC₁ exactly as written by Song et al. (2012), as an independent reference."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    term = np.trace(kt @ lt)
    term += (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    term -= 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return term / (n * (n - 3))


def biased_hsic_reference(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


# --- reference values -------------------------------------------------------------------------


def test_kornblith_reference_values(kornblith_demo):
    x, y = kornblith_demo
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=5e-6)
    assert linear_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=5e-6)
    assert kernel_cka(x, y, kernel="rbf", threshold=0.5) == pytest.approx(0.65483, abs=5e-6)


def test_hsic_matches_textbook_formulas(kornblith_demo):
    x, y = kornblith_demo
    k, l = x @ x.T, np.tanh(y) @ np.tanh(y).T
    assert hsic(k, l) == pytest.approx(biased_hsic_reference(k, l), rel=1e-12)
    assert hsic(k, l, unbiased=True) == pytest.approx(song_unbiased_hsic(k, l), rel=1e-10)


def test_cka_is_hsic_ratio(kornblith_demo):
    x, y = kornblith_demo
    k, l = gram_rbf(x), gram_rbf(y, threshold=2.0)
    for unbiased in (False, True):
        expected = hsic(k, l, unbiased=unbiased) / np.sqrt(
            hsic(k, k, unbiased=unbiased) * hsic(l, l, unbiased=unbiased)
        )
        assert cka(k, l, debiased=unbiased) == pytest.approx(expected, rel=1e-12)


def test_unbiased_center_gram_gives_song_hsic(kornblith_demo):
    x, y = kornblith_demo
    k, l = x @ x.T, y @ y.T
    n = k.shape[0]
    ku, lu = center_gram(k, unbiased=True), center_gram(l, unbiased=True)
    assert np.allclose(np.diag(ku), 0)
    assert np.sum(ku * lu) / (n * (n - 3)) == pytest.approx(song_unbiased_hsic(k, l), rel=1e-10)


def test_center_gram_is_hkh():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((30, 4))
    k = a @ a.T + 5.0
    h = np.eye(30) - 1.0 / 30
    assert np.allclose(center_gram(k), h @ k @ h, atol=1e-12)


def test_gram_linear_is_centred_product():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 6)) + 3.0
    xc = x - x.mean(axis=0)
    assert np.allclose(gram_linear(x), xc @ xc.T, atol=1e-12)


def test_gram_rbf_matches_definition():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((25, 3))
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    expected = np.exp(-d / (2 * 0.7**2 * np.median(d)))
    assert np.allclose(gram_rbf(x, threshold=0.7), expected, atol=1e-12)
    assert np.allclose(gram_rbf(x, sigma=1.3), np.exp(-d / (2 * 1.3**2)), atol=1e-12)


def test_polynomial_kernel_definition():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((15, 4))
    xc = x - x.mean(0)
    assert np.allclose(
        gram_polynomial(x, degree=2, gamma=0.5, coef0=2.0), (0.5 * xc @ xc.T + 2.0) ** 2
    )


def test_callable_kernel_equals_builtin(kornblith_demo):
    x, y = kornblith_demo
    assert kernel_cka(x, y, kernel=gram_linear) == pytest.approx(linear_cka(x, y), rel=1e-12)
    assert kernel_cka(x, y, kernel="linear", debiased=True) == pytest.approx(
        linear_cka(x, y, debiased=True), rel=1e-12
    )


# --- code paths agree --------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(50, 7, 12), (20, 40, 90)])
def test_feature_and_gram_forms_agree(debiased, shape):
    n, p1, p2 = shape
    rng = np.random.default_rng(n + p1)
    x = rng.standard_normal((n, p1))
    y = np.tanh(x @ rng.standard_normal((p1, p2))) + rng.standard_normal((n, p2))
    via_features = linear_cka(x, y, debiased=debiased, method="features")
    via_grams = linear_cka(x, y, debiased=debiased, method="gram")
    via_cka = cka(x @ x.T, y @ y.T, debiased=debiased)
    assert via_features == pytest.approx(via_grams, rel=1e-10)
    assert via_features == pytest.approx(via_cka, rel=1e-9)


def test_flattens_trailing_dimensions():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 3, 4, 2))
    y = rng.standard_normal((40, 5, 5))
    assert linear_cka(x, y) == pytest.approx(linear_cka(x.reshape(40, -1), y.reshape(40, -1)))


def test_integer_and_list_inputs():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 10, size=(30, 4))
    y = rng.integers(0, 10, size=(30, 3))
    expected = linear_cka(x.astype(float), y.astype(float))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-12)
    assert linear_cka(x.tolist(), y.tolist()) == pytest.approx(expected, rel=1e-12)
    assert isinstance(linear_cka(x, y), float)


def test_float16_is_upcast():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 8)).astype(np.float16)
    y = (x.astype(np.float32) @ rng.standard_normal((8, 8))).astype(np.float16)
    exact = linear_cka(x.astype(np.float64), y.astype(np.float64))
    assert linear_cka(x, y) == pytest.approx(exact, abs=1e-6)


# --- numerics: float32 with large feature means -------------------------------------------------


@pytest.mark.parametrize("mean", [0.0, 10.0, 100.0, 1000.0])
@pytest.mark.parametrize("method", ["features", "gram"])
@pytest.mark.parametrize("debiased", [False, True])
def test_float32_large_means_match_float64(mean, method, debiased):
    rng = np.random.default_rng(10)
    base = rng.standard_normal((600, 24))
    x32 = (base + mean).astype(np.float32)
    y32 = (np.maximum(base @ rng.standard_normal((24, 16)), 0) + mean).astype(np.float32)
    truth = linear_cka(x32.astype(np.float64), y32.astype(np.float64), debiased=debiased)
    got = linear_cka(x32, y32, debiased=debiased, method=method)
    assert abs(got - truth) < 1e-6


def test_uncentred_float32_gram_would_fail_but_ours_does_not():
    """The failure mode of libraries that multiply before centring (the motivating example)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((2000, 32)) + 1000.0).astype(np.float32)
    y = (x[:, :16] + 3 * rng.standard_normal((2000, 16)).astype(np.float32)).astype(np.float32)
    truth = linear_cka(x.astype(np.float64), y.astype(np.float64))
    naive_k, naive_l = x @ x.T, y @ y.T  # float32 products of uncentred data
    n = x.shape[0]
    h = np.eye(n, dtype=np.float32) - np.float32(1.0 / n)
    kc, lc = h @ naive_k @ h, h @ naive_l @ h
    naive = float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))
    assert abs(naive - truth) > 0.01  # the naive float32 pipeline is badly wrong here
    assert abs(linear_cka(x, y) - truth) < 1e-6


# --- invariances and properties (hypothesis) -----------------------------------------------------

shapes = st.tuples(st.integers(6, 40), st.integers(1, 12), st.integers(1, 12))


def _pair(seed: int, n: int, p1: int, p2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1))
    y = x @ rng.standard_normal((p1, p2)) + rng.standard_normal((n, p2))
    return x, y


@given(shape=shapes, seed=st.integers(0, 2**16), debiased=st.booleans())
def test_orthogonal_transform_invariance(shape, seed, debiased):
    x, y = _pair(seed, *shape)
    q = ortho_group.rvs(x.shape[1], random_state=seed) if x.shape[1] > 1 else np.array([[-1.0]])
    assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(
        linear_cka(x, y, debiased=debiased), rel=1e-8, abs=1e-10
    )


@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
    debiased=st.booleans(),
)
def test_isotropic_scaling_and_translation_invariance(shape, seed, scale, shift, debiased):
    x, y = _pair(seed, *shape)
    assert linear_cka(scale * x + shift, y, debiased=debiased) == pytest.approx(
        linear_cka(x, y, debiased=debiased), rel=1e-8, abs=1e-10
    )


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_feature_permutation_invariance_and_symmetry(shape, seed):
    x, y = _pair(seed, *shape)
    perm = np.random.default_rng(seed).permutation(x.shape[1])
    value = linear_cka(x, y)
    assert linear_cka(x[:, perm], y) == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert linear_cka(y, x) == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert kernel_cka(y, x) == pytest.approx(kernel_cka(x, y), rel=1e-10, abs=1e-12)
    assert 0.0 <= value <= 1.0 + 1e-12


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_self_similarity_is_one(shape, seed):
    x, _ = _pair(seed, *shape)
    assert linear_cka(x, x) == pytest.approx(1.0, rel=1e-12)
    assert linear_cka(x, x, debiased=True) == pytest.approx(1.0, rel=1e-10)
    assert kernel_cka(x, x, threshold=0.8) == pytest.approx(1.0, rel=1e-12)


def test_debiased_near_zero_for_independent_data_with_many_features():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((60, 5000))
    y = rng.standard_normal((60, 5000))
    assert linear_cka(x, y) > 0.9  # biased CKA is fooled by p >> n
    assert abs(linear_cka(x, y, debiased=True)) < 0.05


def test_debiased_returned_as_is_even_if_negative():
    rng = np.random.default_rng(13)
    values = [
        linear_cka(rng.standard_normal((8, 3)), rng.standard_normal((8, 3)), debiased=True)
        for _ in range(20)
    ]
    assert min(values) < 0  # no clamping at 0


# --- undefined cases ---------------------------------------------------------------------------


def test_constant_features_give_nan_with_warning_naming_argument():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((20, 3))
    constant = np.full((20, 4), 0.1)
    with pytest.warns(CKAUndefinedWarning, match="y: all of its features are constant"):
        assert np.isnan(linear_cka(x, constant))
    with pytest.warns(CKAUndefinedWarning, match="x: all of its features are constant"):
        assert np.isnan(kernel_cka(constant, x, debiased=True))
    with pytest.warns(CKAUndefinedWarning, match="gram_y"):
        assert np.isnan(cka(x @ x.T, np.ones((20, 20)) * 7.3))


def test_zero_debiased_self_hsic_is_nan_with_warning():
    # HSIC₁(K, K) is the squared norm of the U-centred Gram: never negative, but exactly zero for
    # this non-constant layer of four examples, so debiased CKA is undefined there.
    x = np.array([[1.0], [0.0], [0.0], [0.0]])
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    assert hsic(gram_linear(x), gram_linear(x), unbiased=True) == pytest.approx(0.0, abs=1e-15)
    assert np.isfinite(linear_cka(x, y))  # the biased estimator is defined
    with pytest.warns(CKAUndefinedWarning, match="x: its debiased self-HSIC estimate"):
        assert np.isnan(linear_cka(x, y, debiased=True))
