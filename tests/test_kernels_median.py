"""The RBF median bandwidth when more than half of the row pairs are identical: the computed
median is rounding noise, and NumPy and torch, float32 and float64, all raise the documented
"zero median distance" error; pairs that differ by more than rounding keep a bandwidth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cka_sim import gram_rbf, kernel_cka

torch = pytest.importorskip("torch")

KINDS = [("numpy", "float64"), ("numpy", "float32"), ("torch", "float64"), ("torch", "float32")]


def given(a: np.ndarray, library: str, dtype: str) -> object:
    a = a.astype(dtype)
    return torch.from_numpy(a) if library == "torch" else a


def rows(p: int, equal: int, seed: int, spread: float = 0.0) -> np.ndarray:
    """20 rows with an offset; the first ``equal`` of them one row (times ``1 + spread·noise``)."""
    rng = np.random.default_rng(seed)
    x = 3.0 * rng.standard_normal((20, p)) + 5.0
    x[:equal] = 1.37 * x[0] * (1.0 + spread * rng.standard_normal((equal, p)))
    return x


@pytest.mark.parametrize(("library", "dtype"), KINDS)
@pytest.mark.parametrize("p", [1, 7, 300])
def test_more_than_half_identical_pairs_is_a_zero_median_everywhere(
    library: str, dtype: str, p: int
) -> None:
    x = given(rows(p, 15, p), library, dtype)  # 15² + 5 of the 400 distances are zero
    y = given(np.random.default_rng(1).standard_normal((20, 3)), library, dtype)
    with pytest.raises(ValueError, match="median squared distance .* is zero"):
        kernel_cka(x, y)
    with pytest.raises(ValueError, match="pass sigma= explicitly"):
        gram_rbf(x)
    assert math.isfinite(float(kernel_cka(x, y, sigma=1.0)))


@pytest.mark.parametrize(("library", "dtype"), KINDS)
def test_fewer_identical_pairs_or_real_differences_keep_the_median(
    library: str, dtype: str
) -> None:
    y = given(np.random.default_rng(1).standard_normal((20, 3)), library, dtype)
    # 13² + 7 = 176 of 400 distances zero (the diagonal included: not more than half); and 15
    # rows 1e-3 apart (far above rounding)
    for x in (rows(7, 13, 2), rows(7, 15, 3, spread=1e-3)):
        value = float(kernel_cka(given(x, library, dtype), y))
        assert math.isfinite(value) and 0.0 < value < 1.0
