"""The orthogonal Procrustes similarity and distance: references, invariances, numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

from cka_sim import CKAUndefinedWarning, procrustes_distance, procrustes_similarity


def _pair(seed: int, n: int, p1: int, p2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1)) + 5.0
    y = x @ rng.standard_normal((p1, p2)) + rng.standard_normal((n, p2))
    return x, y


def _unit_centred(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    return a / np.linalg.norm(a)


def direct_svd_similarity(x: np.ndarray, y: np.ndarray) -> float:
    """Nuclear norm of the normalised cross product, by a full SVD of the (p1, p2) matrix."""
    return float(np.linalg.svd(_unit_centred(x).T @ _unit_centred(y), compute_uv=False).sum())


def scipy_squared_distance(x: np.ndarray, y: np.ndarray) -> float:
    """min over orthogonal R of ||A R - B||², with scipy's solver; the narrower side zero-padded."""
    a, b = _unit_centred(x), _unit_centred(y)
    width = max(a.shape[1], b.shape[1])
    a = np.hstack([a, np.zeros((a.shape[0], width - a.shape[1]))])
    b = np.hstack([b, np.zeros((b.shape[0], width - b.shape[1]))])
    rotation, _ = orthogonal_procrustes(a, b)
    return float(np.linalg.norm(a @ rotation - b) ** 2)


# p up to 60 with n down to 5: both the feature path and the QR reduction (p > n) are exercised.
shapes = st.tuples(st.integers(5, 40), st.integers(1, 60), st.integers(1, 60))


@given(shape=shapes, seed=st.integers(0, 2**16))
def test_matches_scipy_orthogonal_procrustes_and_a_direct_svd(shape, seed):
    x, y = _pair(seed, *shape)
    assert procrustes_similarity(x, y) == pytest.approx(
        direct_svd_similarity(x, y), rel=1e-10, abs=1e-12
    )
    assert procrustes_distance(x, y) == pytest.approx(
        scipy_squared_distance(x, y), rel=1e-8, abs=1e-10
    )


def test_wide_inputs_take_the_qr_path_and_agree():
    x, y = _pair(0, 30, 200, 150)
    assert procrustes_similarity(x, y) == pytest.approx(direct_svd_similarity(x, y), rel=1e-12)
    assert procrustes_similarity(x, y[:, :7]) == pytest.approx(
        direct_svd_similarity(x, y[:, :7]), rel=1e-12
    )


@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
)
def test_invariant_to_orthogonal_maps_isotropic_scaling_and_translation(shape, seed, scale, shift):
    x, y = _pair(seed, *shape)
    q = ortho_group.rvs(x.shape[1], random_state=seed) if x.shape[1] > 1 else np.array([[-1.0]])
    value = procrustes_similarity(x, y)
    assert procrustes_similarity(scale * x @ q + shift, y) == pytest.approx(
        value, rel=1e-9, abs=1e-11
    )
    assert procrustes_similarity(x, scale * y - shift) == pytest.approx(value, rel=1e-9, abs=1e-11)
    assert procrustes_similarity(y, x) == pytest.approx(value, rel=1e-10, abs=1e-12)
    assert 0.0 <= value <= 1.0 + 1e-12


def test_identical_up_to_rotation_and_scale_is_distance_zero():
    x, _ = _pair(1, 200, 12, 1)
    q = ortho_group.rvs(12, random_state=1)
    assert procrustes_similarity(x, 0.5 * x @ q - 3) == pytest.approx(1.0, rel=1e-12)
    assert procrustes_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert procrustes_distance(x, x, angular=True) == pytest.approx(0.0, abs=1e-6)


def test_angular_form_is_arccos_and_a_metric():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((100, 6))
    a, b, c = (base @ rng.standard_normal((6, 8)) + rng.standard_normal((100, 8)) for _ in "abc")
    d_ab = procrustes_distance(a, b, angular=True)
    assert d_ab == pytest.approx(math.acos(procrustes_similarity(a, b)), rel=1e-12)
    assert procrustes_distance(a, b) == pytest.approx(2 - 2 * procrustes_similarity(a, b))
    assert 0 < d_ab < math.pi / 2
    d_bc = procrustes_distance(b, c, angular=True)
    d_ac = procrustes_distance(a, c, angular=True)
    assert d_ac <= d_ab + d_bc and d_ab <= d_ac + d_bc and d_bc <= d_ab + d_ac


@pytest.mark.parametrize("mean", [0.0, 10.0, 1000.0])
@pytest.mark.parametrize("shape", [(600, 24, 16), (40, 100, 80)])
def test_float32_large_means_match_float64(mean, shape):
    x, y = _pair(3, *shape)
    x32, y32 = (x + mean).astype(np.float32), (np.maximum(y, 0) + mean).astype(np.float32)
    truth = procrustes_similarity(x32.astype(np.float64), y32.astype(np.float64))
    assert abs(procrustes_similarity(x32, y32) - truth) < 1e-6


def test_constant_input_gives_nan_with_warning():
    x, y = _pair(4, 20, 3, 2)
    with pytest.warns(CKAUndefinedWarning, match="Procrustes is undefined for y: all of its"):
        assert np.isnan(procrustes_distance(x, np.full_like(y, 0.25)))


def test_torch_matches_numpy_and_is_differentiable():
    torch = pytest.importorskip("torch")
    x, y = _pair(5, 50, 8, 5)
    xt = torch.tensor(x, requires_grad=True)
    got = procrustes_distance(xt, torch.tensor(y), angular=True)
    assert isinstance(got, torch.Tensor) and got.ndim == 0 and got.dtype == torch.float64
    assert float(got.detach()) == pytest.approx(procrustes_distance(x, y, angular=True), rel=1e-10)
    got.backward()
    assert xt.grad is not None and bool(torch.isfinite(xt.grad).all())
