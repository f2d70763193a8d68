"""Deconfounded CKA (Cui et al. 2022): definition, code paths, invariances, confound, numerics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import ortho_group

from cka_sim import (
    CKAUndefinedWarning,
    cka,
    deconfounded_cka,
    deconfounded_cka_from_grams,
    gram_rbf,
    linear_cka,
)


def reference_dcka(x: np.ndarray, y: np.ndarray, z: np.ndarray, debiased: bool) -> float:
    """The definition written out: OLS of vec(K) on [1, vec(K_z)] over n² entries, CKA of residuals."""
    n = x.shape[0]

    def gram(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(axis=0)
        return a @ a.T

    design = np.column_stack([np.ones(n * n), gram(z).ravel()])

    def residual(k: np.ndarray) -> np.ndarray:
        coef = np.linalg.lstsq(design, k.ravel(), rcond=None)[0]
        return (k.ravel() - design @ coef).reshape(n, n)

    return cka(residual(gram(x)), residual(gram(y)), debiased=debiased)


def _triple(seed: int, n: int, p1: int, p2: int, q: int) -> tuple[np.ndarray, ...]:
    """A confounder and two representations that depend on it and on each other."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, q))
    x = z @ rng.standard_normal((q, p1)) + rng.standard_normal((n, p1))
    y = np.tanh(x @ rng.standard_normal((p1, p2))) + z @ rng.standard_normal((q, p2))
    return x, y + 0.5 * rng.standard_normal((n, p2)), z


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("method", ["features", "gram"])
def test_matches_the_definition(debiased, method):
    x, y, z = _triple(0, 40, 6, 5, 4)
    want = reference_dcka(x, y, z, debiased)
    assert deconfounded_cka(x, y, z, debiased=debiased, method=method) == pytest.approx(
        want, rel=1e-10, abs=1e-12
    )
    assert abs(want - linear_cka(x, y, debiased=debiased)) > 0.05  # the adjustment did something


shapes = st.tuples(st.integers(6, 40), st.integers(1, 12), st.integers(1, 12), st.integers(1, 12))


@given(shape=shapes, seed=st.integers(0, 2**16), debiased=st.booleans())
def test_feature_and_gram_forms_agree(shape, seed, debiased):
    x, y, z = _triple(seed, *shape)
    features = deconfounded_cka(x, y, z, debiased=debiased, method="features")
    gram = deconfounded_cka(x, y, z, debiased=debiased, method="gram")
    from_grams = deconfounded_cka_from_grams(x @ x.T, y @ y.T, z @ z.T, debiased=debiased)
    assert gram == pytest.approx(features, rel=1e-10, abs=1e-10)
    assert from_grams == pytest.approx(features, rel=1e-10, abs=1e-10)


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_self_similarity_is_one(shape, seed):
    x, _, z = _triple(seed, *shape)
    assert deconfounded_cka(x, x, z) == pytest.approx(1.0, rel=1e-10)
    assert deconfounded_cka(x, x, z, debiased=True) == pytest.approx(1.0, rel=1e-10)


def _orthogonal(p: int, seed: int) -> np.ndarray:
    return ortho_group.rvs(p, random_state=seed) if p > 1 else np.array([[-1.0]])


@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    scales=st.tuples(*[st.floats(1e-3, 1e3)] * 3),
    shift=st.floats(-100, 100),
    debiased=st.booleans(),
)
def test_invariant_to_orthogonal_maps_scaling_and_translation_of_x_y_and_z(
    shape, seed, scales, shift, debiased
):
    x, y, z = _triple(seed, *shape)
    want = deconfounded_cka(x, y, z, debiased=debiased)
    moved = [
        s * a @ _orthogonal(a.shape[1], seed + i) + shift
        for i, (s, a) in enumerate(zip(scales, (x, y, z), strict=True))
    ]
    assert deconfounded_cka(*moved, debiased=debiased) == pytest.approx(want, rel=1e-7, abs=1e-9)


def test_functions_of_the_input_plus_noise_are_not_similar_after_deconfounding():
    """Two isometric embeddings of the input plus independent noise: CKA high, dCKA about 0."""
    rng = np.random.default_rng(1)
    n, q = 3000, 8
    z = rng.standard_normal((n, q))
    qx, _ = np.linalg.qr(rng.standard_normal((32, q)))
    qy, _ = np.linalg.qr(rng.standard_normal((16, q)))
    x = z @ qx.T + 0.3 * rng.standard_normal((n, 32))
    y = 3 * z @ qy.T + 0.9 * rng.standard_normal((n, 16))
    assert linear_cka(x, y) > 0.8
    assert abs(deconfounded_cka(x, y, z)) < 0.02
    assert abs(deconfounded_cka(x, y, z, debiased=True)) < 0.02


def test_random_relu_networks_lose_most_of_their_similarity():
    """Two random ReLU networks on the same inputs: high CKA, mostly inherited from the input."""
    rng = np.random.default_rng(2)
    inputs = rng.standard_normal((1500, 32)) @ rng.standard_normal((32, 64))

    def random_net(a: np.ndarray) -> np.ndarray:
        for width in (128, 128):
            a = np.maximum(a @ rng.standard_normal((a.shape[1], width)) / np.sqrt(a.shape[1]), 0)
        return a

    a, b = random_net(inputs), random_net(inputs)
    assert linear_cka(a, b) > 0.4
    assert deconfounded_cka(a, b, inputs) < 0.5 * linear_cka(a, b)


@pytest.mark.parametrize("debiased", [False, True])
def test_independent_confounder_leaves_cka_unchanged_at_large_n(debiased):
    rng = np.random.default_rng(3)
    n = 20000
    x = rng.standard_normal((n, 10))
    y = x @ rng.standard_normal((10, 6)) + rng.standard_normal((n, 6))
    z = rng.standard_normal((n, 12))
    plain = linear_cka(x, y, debiased=debiased)
    assert deconfounded_cka(x, y, z, debiased=debiased) == pytest.approx(plain, abs=2e-3)


@pytest.mark.parametrize("mean", [0.0, 10.0, 1000.0])
@pytest.mark.parametrize("method", ["features", "gram"])
@pytest.mark.parametrize("debiased", [False, True])
def test_float32_large_means_match_float64(mean, method, debiased):
    x, y, z = _triple(4, 600, 24, 16, 12)
    x32, y32, z32 = ((a + mean).astype(np.float32) for a in (x, y, z))
    truth = deconfounded_cka(*(a.astype(np.float64) for a in (x32, y32, z32)), debiased=debiased)
    got = deconfounded_cka(x32, y32, z32, debiased=debiased, method=method)
    assert abs(got - truth) < 1e-6


def test_gram_form_takes_any_kernel_and_ignores_centring():
    x, y, z = _triple(5, 50, 6, 5, 4)
    kz = gram_rbf(z)
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    value = deconfounded_cka_from_grams(x @ x.T, y @ y.T, kz)
    assert deconfounded_cka_from_grams(h @ x @ x.T @ h, y @ y.T, h @ kz @ h) == pytest.approx(
        value, rel=1e-10, abs=1e-12
    )
    assert abs(value - deconfounded_cka(x, y, z)) > 1e-3  # the RBF confounder is another model


def test_constant_representation_gives_nan_with_warning():
    x, y, z = _triple(6, 30, 3, 4, 5)
    with pytest.warns(CKAUndefinedWarning, match="for x: all of its features are constant"):
        assert np.isnan(deconfounded_cka(np.ones_like(x), y, z))
    with pytest.warns(CKAUndefinedWarning, match="gram_y: its centred Gram matrix is zero"):
        ones = np.ones((30, 30))
        assert np.isnan(deconfounded_cka_from_grams(x @ x.T, ones, z @ z.T))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_representation_explained_by_the_confounder_gives_nan_with_warning(dtype):
    x, _, z = (a.astype(dtype) for a in _triple(7, 30, 3, 4, 5))
    y = (-3 * z @ _orthogonal(5, 7)).astype(dtype)
    with pytest.warns(CKAUndefinedWarning, match="deconfounded CKA is undefined for y: its Gram"):
        assert np.isnan(deconfounded_cka(x, y, z))


def test_constant_confounder_is_an_error():
    x, y, _ = _triple(8, 30, 3, 4, 5)
    with pytest.raises(ValueError, match="confounder is constant"):
        deconfounded_cka(x, y, np.full((30, 2), 7.0))
    with pytest.raises(ValueError, match="gram_confounder is constant"):
        deconfounded_cka_from_grams(x @ x.T, y @ y.T, np.full((30, 30), 2.0))


def test_torch_matches_numpy_and_is_differentiable():
    torch = pytest.importorskip("torch")
    x, y, z = _triple(9, 40, 6, 5, 4)
    for debiased in (False, True):
        xt = torch.tensor(x, requires_grad=True)
        got = deconfounded_cka(xt, torch.tensor(y), torch.tensor(z), debiased=debiased)
        assert isinstance(got, torch.Tensor) and got.ndim == 0 and got.dtype == torch.float64
        assert float(got.detach()) == pytest.approx(
            deconfounded_cka(x, y, z, debiased=debiased), rel=1e-10, abs=1e-12
        )
        got.backward()
        assert xt.grad is not None and bool(torch.isfinite(xt.grad).all())
    with pytest.raises(TypeError, match="x and confounder must both be NumPy arrays or both"):
        deconfounded_cka(torch.tensor(x), torch.tensor(y), z)


def test_a_confounder_full_of_infinity_is_reported_as_not_finite_on_every_path() -> None:
    """Every row of an all-inf confounder is equal, but it is not finite: that is what to say."""
    from cka_sim import StreamingCKA, StreamingCKAMatrix, cka_matrix

    rng = np.random.default_rng(4)
    x = rng.standard_normal((30, 4))
    y = x @ rng.standard_normal((4, 3)) + rng.standard_normal((30, 3))
    z = np.full((30, 2), np.inf)
    calls = [
        lambda: deconfounded_cka(x, y, z),
        lambda: deconfounded_cka(x, y, z, method="gram"),
        lambda: StreamingCKA(measure="dcka").update(x, y, z),
        lambda: StreamingCKAMatrix(measure="dcka").update({"x": x}, {"y": y}, z),
        lambda: cka_matrix({"x": x}, {"y": y}, measure="dcka", confounder=z),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"confounder contains NaN or infinity") as info:
            call()
        assert "constant" not in str(info.value)
