"""Debiased CKA where a debiased self-HSIC is zero within rounding: one decision on every path.

In exact arithmetic the debiased self-HSIC is ‖U(K)‖², zero when all rows but one are equal;
debiased CKA is then 0/0. The rule (:mod:`cka_sim._core.rounding`): NaN with a
:class:`~cka_sim.CKAUndefinedWarning` when the estimate is at or below ``n ε T``, ``T`` the
summed magnitudes of its three feature-form terms and ``ε`` the products' machine epsilon. The
references here (U-centring, the terms) are written out in float64 and share no code with
``cka_sim``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cka_sim import (
    CKAUndefinedWarning,
    MinibatchCKA,
    StreamingCKA,
    StreamingCKAMatrix,
    cka,
    cka_matrix,
    gram_linear,
    kernel_cka,
    linear_cka,
)

torch = pytest.importorskip("torch")

EPS = {"float32": 2.0**-23, "float64": 2.0**-52}


def ref_ratio(x: np.ndarray) -> float:
    """h / T of the float64 values ``x``: h = ‖U(K)‖² (a sum of squares, accurate), T the sum
    of the three terms' magnitudes, A = ‖M‖², n/(n-2) Σ M_ii², tr(M)²/((n-1)(n-2)), M = HKH."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    c = x - x.mean(axis=0)
    c = c - c.mean(axis=0)
    k = c @ c.T
    kt = k - np.diag(np.diag(k))
    r = kt.sum(axis=1)
    u = kt - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    d = np.diag(k)
    t = (k * k).sum() + n / (n - 2) * (d * d).sum() + d.sum() ** 2 / ((n - 1) * (n - 2))
    return float((u * u).sum() / t)


def ref_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Debiased CKA from U-centred float64 Grams."""

    def ucentre(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        n = a.shape[0]
        c = a - a.mean(axis=0)
        k = c @ c.T
        kt = k - np.diag(np.diag(k))
        r = kt.sum(axis=1)
        u = kt - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
        np.fill_diagonal(u, 0.0)
        return u

    ux, uy = ucentre(x), ucentre(y)
    return float((ux * uy).sum() / math.sqrt((ux * ux).sum() * (uy * uy).sum()))


def as_input(a: np.ndarray, dtype: str, library: str) -> Any:
    a = a.astype(dtype)
    return torch.from_numpy(a.copy()) if library == "torch" else a


def paths(x: Any, y: Any) -> dict[str, Callable[[], Any]]:
    """Every estimator of debiased linear CKA, on one batch (MinibatchCKA: one batch of all)."""
    n = int(x.shape[0])

    def streaming() -> Any:
        acc = StreamingCKA(debiased=True)
        for start in range(0, n, 3):
            acc.update(x[start : start + 3], y[start : start + 3])
        return acc.compute()

    def streaming_matrix() -> Any:
        acc = StreamingCKAMatrix(debiased=True)
        for start in range(0, n, 5):
            acc.update({"x": x[start : start + 5]}, {"y": y[start : start + 5]})
        return acc.compute().values[0, 0]

    return {
        "gram": lambda: linear_cka(x, y, debiased=True, method="gram"),
        "features": lambda: linear_cka(x, y, debiased=True, method="features"),
        "cka": lambda: cka(gram_linear(x), gram_linear(y), debiased=True),
        "kernel_cka": lambda: kernel_cka(x, y, kernel="linear", debiased=True),
        "cka_matrix": lambda: cka_matrix({"x": x}, {"y": y}, debiased=True).values[0, 0],
        "cka_matrix_gram": lambda: cka_matrix(  # wide: the matrix takes the Gram form
            {"x": _wide(x)}, {"y": y}, debiased=True
        ).values[0, 0],
        "streaming": streaming,
        "streaming_matrix": streaming_matrix,
        "minibatch": lambda: (
            MinibatchCKA(debiased=True).update({"x": x}, {"y": y}).compute().values[0, 0]
        ),
    }


def _wide(x: Any) -> Any:
    """``x`` with zero columns appended until it is wider than it is long (the same CKA)."""
    n = int(x.shape[0])
    if isinstance(x, np.ndarray):
        return np.concatenate([x, np.zeros((n, 2 * n), dtype=x.dtype)], axis=1)
    return torch.cat([x, torch.zeros((n, 2 * n), dtype=x.dtype)], dim=1)


def run(compute: Callable[[], Any]) -> tuple[float, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(compute())
    return value, [str(w.message) for w in caught if issubclass(w.category, CKAUndefinedWarning)]


LIBRARIES = [("numpy", "float64"), ("numpy", "float32"), ("torch", "float64"), ("torch", "float32")]


@pytest.mark.parametrize(("library", "dtype"), LIBRARIES)
def test_the_issue_example_is_nan_with_a_warning_on_every_path(library: str, dtype: str) -> None:
    x = np.zeros((8, 1))
    x[0, 0] = 1.0  # one example differs from seven equal ones: the debiased self-HSIC is 0
    y = np.random.default_rng(0).standard_normal((8, 3))
    for name, compute in paths(as_input(x, dtype, library), as_input(y, dtype, library)).items():
        value, undefined = run(compute)
        assert math.isnan(value), (name, value)
        assert undefined and "zero within rounding" in undefined[0], (name, undefined)


def spiked(t: float, dtype: str, seed: int) -> np.ndarray:
    """Eight rows, an offset, one differing row and a second one at ``t``: h / T ≈ 0.9 t²."""
    rng = np.random.default_rng(seed)
    v = 10.0 * rng.standard_normal(3)
    x = np.tile(v, (8, 1))
    x[0] += rng.standard_normal(3)
    x[1] += t * rng.standard_normal(3)
    return x.astype(dtype)


def at_ratio(target: float, dtype: str, seed: int) -> np.ndarray:
    """Data (exact in ``dtype``) whose exact h / T lies within 2 % of ``target``."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        t = math.sqrt(lo * hi) if lo else hi / 2
        x = spiked(t, dtype, seed)
        r = ref_ratio(x)
        if abs(r / target - 1) < 0.02:
            return x
        lo, hi = (t, hi) if r < target else (lo, t)
    raise AssertionError("no data at that ratio")  # pragma: no cover


@pytest.mark.parametrize(("library", "dtype"), LIBRARIES)
def test_at_the_bound_just_below_is_nan_and_just_above_is_finite(library: str, dtype: str) -> None:
    bound = 8 * EPS[dtype]  # n ε, relative to T
    y = np.random.default_rng(1).standard_normal((8, 2))
    below, above = at_ratio(0.5 * bound, dtype, 3), at_ratio(2.0 * bound, dtype, 3)
    for name, compute in paths(
        as_input(below, dtype, library), as_input(y, dtype, library)
    ).items():
        value, undefined = run(compute)
        assert math.isnan(value) and undefined, (name, value)
    for name, compute in paths(
        as_input(above, dtype, library), as_input(y, dtype, library)
    ).items():
        value, undefined = run(compute)
        assert math.isfinite(value) and not undefined, (name, value, undefined)


def test_the_rule_is_relative_to_the_dtype_of_the_products() -> None:
    """Data at 1000 times the float64 bound: finite as float64, NaN as float32 products."""
    x = at_ratio(1000 * 8 * EPS["float64"], "float64", 5)
    y = np.random.default_rng(2).standard_normal((8, 2))
    assert math.isfinite(run(lambda: linear_cka(x, y, debiased=True))[0])
    value, undefined = run(
        lambda: cka(gram_linear(x).astype(np.float32), gram_linear(y), debiased=True)
    )
    assert math.isnan(value) and undefined


@st.composite
def data(draw: Any) -> tuple[np.ndarray, np.ndarray, str, str]:
    n = draw(st.integers(4, 12))
    p, q = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    library, dtype = draw(st.sampled_from(LIBRARIES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, p)) + draw(st.sampled_from([0.0, 10.0]))
    y = x[:, :1] @ rng.standard_normal((1, q)) + rng.standard_normal((n, q))
    for a in (x, y):  # all rows but a few equal: zero or tiny debiased self-HSICs
        kind = draw(st.sampled_from(["generic", "generic", "one", "two"]))
        if kind != "generic":
            differ = 1 if kind == "one" else 2
            a[differ:] = a[differ]
            a[differ - 1] *= draw(st.sampled_from([1.0, 1e-3, 1e-6]))
    return x.astype(dtype), y.astype(dtype), library, dtype


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=data())
def test_every_path_takes_the_same_decision_and_value(case: Any) -> None:
    x, y, library, dtype = case
    n, eps = x.shape[0], EPS[dtype]
    ratios = [ref_ratio(a) for a in (x, y)]
    # Within a factor 4 of the bound each path may decide by its own rounding: not asserted.
    if any(0.25 * n * eps < r < 4 * n * eps for r in ratios):
        return
    undefined = any(r <= n * eps for r in ratios)
    outcomes = {
        name: run(f)
        for name, f in paths(as_input(x, dtype, library), as_input(y, dtype, library)).items()
    }
    if undefined:
        assert all(math.isnan(v) and w for v, w in outcomes.values()), outcomes
        return
    expected = ref_debiased_cka(x, y)
    # The values' rounding: about n ε T / h of each self term, halved by the square root.
    tolerance = 1e-9 + 0.5 * n * eps * sum(1.0 / r for r in ratios) + 50 * eps
    for name, (value, warned) in outcomes.items():
        assert not warned, (name, warned)
        assert abs(value - expected) <= tolerance, (name, value, expected)
