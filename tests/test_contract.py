"""Contract test of cka_sim's public behaviour, pinned before the core is rewritten.

Everything here goes through the public API only, and every value is checked against an
independent float64 oracle written below in plain NumPy (it shares no code with ``cka_sim``).
The cases are one table of named regimes (:data:`CASES`): small and large ``n`` (single-block
and multi-block inputs of the blocked CPU feature form), float32 and float64, feature means from
0 to 1e6 times the spread, NumPy and torch CPU. The tests over that table cover:

* accuracy of every estimator against the oracle, biased and debiased;
* agreement of the code paths with each other in float64 (one-shot, Gram, streaming, matrix);
* streaming: batches of 1 row, 2 rows and ragged sizes, merges in several orders;
* invariance under exact scaling by powers of two (one-shot functions);
* the accumulators' magnitude rule (float32 promoted, float64 beyond 2**±200 refused);
* undefined CKA (constant input: NaN with ``CKAUndefinedWarning`` on every path);
* torch: output type and device, autograd against finite differences;
* memory of the feature form on large float32 input;
* Kornblith's reference values.

Tolerances are absolute, on CKA. The comment next to each gives the worst error measured on the
cka_sim of the commit before this file's (2-core CPU, OpenBLAS, default and 1 thread), over these
cases and over scans of seeds, n and feature means made while choosing them.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings
import zlib
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import numpy as np
import pytest

from cka_sim import (
    CKAUndefinedWarning,
    StreamingCKA,
    StreamingCKAMatrix,
    cka,
    cka_matrix,
    gram_linear,
    kernel_cka,
    linear_cka,
)

# --------------------------------------------------------------------------------------------
# Tolerances
# --------------------------------------------------------------------------------------------

#: float64 input against the oracle, every estimator and path. Measured worst: 4.7e-11 (StreamingCKA
#: merging a one-row accumulator at feature means 1e6, n = 37); one-shot paths 6e-12.
TOL_FLOAT64 = 1e-10
EPS64 = float(np.finfo(np.float64).eps)
#: float32 input against the float64 oracle of the same (float32) values, for feature means up to
#: 1e4 times the spread. Measured worst: 3.2e-7 (n = 3000, mean 5.6e3); 2.4e-7 at n = 70000.
TOL_FLOAT32 = 1e-6
#: float32 input, feature means above 1e4 and up to 1e6 times the spread. Measured worst: 1.9e-6
#: at means of about 4e4 (one-shot and streaming alike, independent of n from 2000 to 140000: the
#: float32 products of the centred data themselves round so; a plain float32 ``x̄ᵀx̄`` gives 2.3e-6).
#: Beyond 2**16 the accumulators compute float32 batches in float64 (then exact to 1e-15), the
#: one-shot functions do not; at 1e6 the data are so coarsely quantised that the products are
#: nearly exact (1e-8).
TOL_FLOAT32_LARGE_MEAN = 5e-6
#: Code paths against each other, float64 input, feature means up to 1e4 times the spread.
#: Measured worst: 1.2e-13.
TOL_PATHS = 1e-12
#: Beyond means of 1e4, what the paths may add per unit of mean (times ε): the one-shot paths
#: (Gram against features, cka_matrix) differ by up to 1.4e-12 at 1e6 (0.006 ε m), pinned at
#: 0.1 ε m; merged accumulators (the mean shift of a merge, documented as about 0.1 ε m) by up to
#: 1.4e-11 from linear_cka and 4.7e-11 from the oracle at 1e6 with a one-row chunk, pinned at
#: 0.5 ε m (1.1e-10 at 1e6).
PATH_PER_MEAN = {"one-shot": 0.1 * EPS64, "merged": 0.5 * EPS64}
#: Exact power-of-two scaling: float64 and float32 input. Measured: 0 (bit-identical results).
TOL_SCALE = {"float64": 1e-12, "float32": 1e-6}


def tolerance(case: Case) -> float:
    if case.dtype == "float64":
        return TOL_FLOAT64
    return TOL_FLOAT32 if case.mean <= 1e4 else TOL_FLOAT32_LARGE_MEAN


# --------------------------------------------------------------------------------------------
# The oracle: plain float64 NumPy, no code shared with cka_sim
# --------------------------------------------------------------------------------------------


def oracle_centre(x: np.ndarray) -> np.ndarray:
    """Column-centred float64 copy of ``x`` (converted to float64 first).

    The mean is exact (``math.fsum``) for small inputs and the corrected two-pass mean for large
    ones; then the residual mean of the centred data is removed once more.
    """
    x = np.array(x, dtype=np.float64)
    n = x.shape[0]
    if x.size <= 200_000:
        mean = np.array([math.fsum(col) for col in x.T]) / n
    else:
        mean = x.mean(axis=0)
    xc = x - mean
    xc -= xc.mean(axis=0)
    return xc


def oracle_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    """tr(K H L H) / (n-1)^2 with an explicit centring matrix H."""
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def oracle_u_centre(k: np.ndarray) -> np.ndarray:
    """U-centring (Székely & Rizzo 2014) of a Gram, with its diagonal set to zero first."""
    n = k.shape[0]
    k = np.array(k, dtype=np.float64)
    np.fill_diagonal(k, 0.0)
    rows = k.sum(axis=1) / (n - 2)
    total = k.sum() / ((n - 1) * (n - 2))
    u = k - rows[:, None] - rows[None, :] + total
    np.fill_diagonal(u, 0.0)
    return u


def oracle_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """HSIC₁ of Song et al. (2012) as the inner product of U-centred Grams / (n(n-3))."""
    n = k.shape[0]
    return float(np.sum(oracle_u_centre(k) * oracle_u_centre(l))) / (n * (n - 3))


def oracle_hsic_song(k: np.ndarray, l: np.ndarray) -> float:
    """HSIC₁ of Song et al. (2012), term by term (to cross-check the U-centred form)."""
    n = k.shape[0]
    kt, lt = np.array(k, dtype=np.float64), np.array(l, dtype=np.float64)
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(value) / (n * (n - 3))


def oracle_cka_grams(k: np.ndarray, l: np.ndarray, debiased: bool) -> float:
    """CKA of two Grams (float64), biased tr(KHLH) or U-centred HSIC₁."""
    hsic = oracle_hsic_unbiased if debiased else oracle_hsic_biased
    return hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))


def oracle_linear_gram(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """Linear CKA through the n x n Grams of the centred data (small n)."""
    xc, yc = oracle_centre(x), oracle_centre(y)
    return oracle_cka_grams(xc @ xc.T, yc @ yc.T, debiased)


def _feature_hsic(a: np.ndarray, b: np.ndarray, debiased: bool) -> float:
    """Feature-form HSIC of centred a, b (up to a common factor)."""
    value = float(np.sum((b.T @ a) ** 2))
    if debiased:
        n = a.shape[0]
        ra, rb = np.sum(a * a, axis=1), np.sum(b * b, axis=1)
        value += -n / (n - 2) * float(ra @ rb) + float(ra.sum() * rb.sum()) / ((n - 1) * (n - 2))
    return value


def oracle_linear_features(
    x: np.ndarray, y: np.ndarray, debiased: bool, centre: bool = True
) -> float:
    """Linear CKA in feature form (any n); ``centre=False`` only for the oracle's self-test."""
    xc, yc = (oracle_centre(x), oracle_centre(y)) if centre else (np.float64(x), np.float64(y))
    h_xy = _feature_hsic(xc, yc, debiased)
    return h_xy / math.sqrt(_feature_hsic(xc, xc, debiased) * _feature_hsic(yc, yc, debiased))


def oracle_linear(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    if x.shape[0] <= 600:
        return oracle_linear_gram(x, y, debiased)
    return oracle_linear_features(x, y, debiased)


def oracle_rbf_gram(
    x: np.ndarray, threshold: float = 1.0, sigma: float | None = None
) -> np.ndarray:
    """RBF Gram, Kornblith's convention: sigma² = threshold² · median of the full n x n squared
    distance matrix (zero diagonal included), distances from explicit row differences."""
    xc = oracle_centre(x)
    d = np.sum((xc[:, None, :] - xc[None, :, :]) ** 2, axis=-1)
    sigma2 = threshold**2 * float(np.median(d)) if sigma is None else sigma**2
    return np.exp(-d / (2.0 * sigma2))


def oracle_rbf(x: np.ndarray, y: np.ndarray, debiased: bool, threshold: float = 1.0) -> float:
    return oracle_cka_grams(oracle_rbf_gram(x, threshold), oracle_rbf_gram(y, threshold), debiased)


# --------------------------------------------------------------------------------------------
# The regimes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One regime: n examples, p1 and p2 features, dtype, feature mean (times the unit spread)
    and array library. Two float32 layers of 64 features (or float64 of 32) span 4 blocks of
    16,384 rows at n >= 65,536: ``n = 70000`` is multi-block, ``n = 20000`` single-block."""

    name: str
    n: int
    p1: int
    p2: int
    dtype: str
    mean: float
    lib: str = "numpy"

    @property
    def small(self) -> bool:
        return self.n <= 600


CASES = [
    Case("n5-f64", 5, 3, 2, "float64", 0.0),
    Case("n5-f32-mean1e3", 5, 3, 4, "float32", 1e3),
    Case("n37-f32", 37, 6, 5, "float32", 0.0),
    Case("n37-f64-mean1e6", 37, 6, 5, "float64", 1e6),
    Case("n37-f32-mean1e6", 37, 6, 5, "float32", 1e6),
    Case("n500-f64", 500, 16, 8, "float64", 0.0),
    Case("n500-f32-mean10", 500, 40, 30, "float32", 10.0),
    Case("n500-f32-mean1e6", 500, 16, 8, "float32", 1e6),
    Case("n2000-f32-mean4e4", 2000, 64, 64, "float32", 4e4),  # float32's worst regime
    Case("n20000-f32-mean1e3-single-block", 20_000, 64, 64, "float32", 1e3),
    Case("n70000-f32-multi-block", 70_000, 64, 64, "float32", 0.0),
    Case("n70000-f32-mean1e6-multi-block", 70_000, 64, 64, "float32", 1e6),
    Case("n70000-f64-mean1e6-multi-block", 70_000, 32, 32, "float64", 1e6),
    Case("torch-n37-f64-mean1e3", 37, 6, 5, "float64", 1e3, "torch"),
    Case("torch-n500-f32-mean1e6", 500, 16, 8, "float32", 1e6, "torch"),
    Case("torch-n70000-f32-mean1e4-multi-block", 70_000, 64, 64, "float32", 1e4, "torch"),
]
SMALL = [c for c in CASES if c.small]


def by_name(cases: list[Case]) -> dict:
    return {"argvalues": cases, "ids": [c.name for c in cases]}


@cache
def raw_data(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """NumPy data of the case in its dtype: y depends on x; per-feature offsets of ``mean``."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    x = rng.standard_normal((case.n, case.p1))
    y = x @ (rng.standard_normal((case.p1, case.p2)) / math.sqrt(case.p1))
    y += rng.standard_normal((case.n, case.p2))
    if case.mean:
        x += case.mean * rng.uniform(0.5, 1.5, case.p1)
        y += case.mean * rng.uniform(0.5, 1.5, case.p2)
    x, y = x.astype(case.dtype), y.astype(case.dtype)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def as_lib(a: np.ndarray, lib: str):
    if lib == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(np.array(a))
    return a


def data(case: Case):
    x, y = raw_data(case)
    return as_lib(x, case.lib), as_lib(y, case.lib)


@cache
def expected(case: Case, debiased: bool) -> float:
    x, y = raw_data(case)
    return oracle_linear(x, y, debiased)


def value(v, lib: str = "numpy") -> float:
    """The float of a result, checking its type: a Python float for NumPy input, a 0-dim float64
    tensor on the CPU for torch input."""
    if lib == "torch":
        import torch

        assert isinstance(v, torch.Tensor)
        assert v.dim() == 0 and v.dtype == torch.float64 and v.device.type == "cpu"
        return float(v)
    assert isinstance(v, float)
    return v


def ragged_sizes(n: int) -> list[int]:
    """Batch sizes cycling through 1, 7, 2, 300, ... (small ones wait in the row buffer, large
    ones go straight in), truncated to n rows."""
    cycle = [1, 7, 2, 300, 3, 4099, 1, 16_384, 9, 20_000] if n > 600 else [1, 7, 2, 300, 3, 64]
    sizes, total, i = [], 0, 0
    while total < n:
        s = min(cycle[i % len(cycle)], n - total)
        sizes.append(s)
        total += s
        i += 1
    return sizes


def split_sizes(n: int, split: str) -> list[int]:
    if split == "rows-of-1":
        return [1] * n
    if split == "rows-of-2":
        return [2] * (n // 2) + [1] * (n % 2)
    return ragged_sizes(n)


def stream(acc, x, y, sizes):
    start = 0
    for s in sizes:
        acc.update(x[start : start + s], y[start : start + s])
        start += s
    assert start == x.shape[0]
    return acc


def chunk_bounds(n: int) -> list[tuple[int, int]]:
    """Four contiguous chunks, one of a single row."""
    cuts = [0, max(1, n // 7), n // 2, n - 1, n]
    return list(pairwise(cuts))


def merged(x, y, debiased: bool, order: str) -> float:
    """StreamingCKA of four chunks (each fed ragged batches) merged in the given order."""

    def acc(i):
        lo, hi = chunk_bounds(x.shape[0])[i]
        return stream(StreamingCKA(debiased), x[lo:hi], y[lo:hi], ragged_sizes(hi - lo))

    if order == "left":
        out = acc(0).merge(acc(1)).merge(acc(2)).merge(acc(3))
    elif order == "right":
        out = acc(0).merge(acc(1).merge(acc(2).merge(acc(3))))
    elif order == "tree":
        out = acc(0).merge(acc(1)).merge(acc(2).merge(acc(3)))
    elif order == "shuffled":
        out = acc(2).merge(acc(0)).merge(acc(3)).merge(acc(1))
    elif order == "into-empty":
        out = StreamingCKA(debiased).merge(acc(3)).merge(acc(1)).merge(StreamingCKA(debiased))
        out.merge(acc(0)).merge(acc(2))
    else:
        raise AssertionError(order)
    assert out.n_examples == x.shape[0]
    return out.compute()


MERGE_ORDERS = ["left", "right", "tree", "shuffled", "into-empty"]

# --------------------------------------------------------------------------------------------
# The oracle itself
# --------------------------------------------------------------------------------------------


def test_reference_values_kornblith_demo():
    np.random.seed(1337)  # noqa: NPY002 - the demo's own seeding, to reproduce its numbers
    x = np.random.randn(100, 10)  # noqa: NPY002
    y = np.random.randn(100, 10) + x  # noqa: NPY002
    assert abs(oracle_linear(x, y, False) - 0.55761) < 5e-6
    assert abs(oracle_linear(x, y, True) - 0.51346) < 5e-6
    assert abs(oracle_rbf(x, y, False, threshold=0.5) - 0.65483) < 5e-6
    assert abs(linear_cka(x, y) - 0.55761) < 5e-6
    assert abs(linear_cka(x, y, debiased=True) - 0.51346) < 5e-6
    assert abs(kernel_cka(x, y, kernel="rbf", threshold=0.5) - 0.65483) < 5e-6
    for debiased in (False, True):  # and to the oracle's precision
        assert abs(linear_cka(x, y, debiased=debiased) - oracle_linear(x, y, debiased)) < 1e-12
        got = kernel_cka(x, y, threshold=0.5, debiased=debiased)
        assert abs(got - oracle_rbf(x, y, debiased, threshold=0.5)) < TOL_FLOAT64


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("case", **by_name([c for c in SMALL if c.lib == "numpy"]))
def test_oracle_gram_and_feature_forms_agree(case, debiased):
    x, y = raw_data(case)
    gram = oracle_linear_gram(x, y, debiased)
    assert abs(gram - oracle_linear_features(x, y, debiased)) < 1e-12
    xc = oracle_centre(x)
    k, l = xc @ xc.T, oracle_centre(y) @ oracle_centre(y).T
    assert (
        abs(oracle_hsic_unbiased(k, l) - oracle_hsic_song(k, l))
        <= 1e-12 * abs(oracle_hsic_song(k, k) * oracle_hsic_song(l, l)) ** 0.5 * case.n
    )


def test_oracle_is_sensitive_to_centring():
    """Skipping the centring changes the answer of a large-mean case by far more than any
    tolerance, so the accuracy tests can tell centred from uncentred estimators."""
    case = next(c for c in CASES if c.name == "n500-f32-mean1e6")
    x, y = raw_data(case)
    for debiased in (False, True):
        centred = oracle_linear_features(x, y, debiased)
        assert abs(centred - expected(case, debiased)) < 1e-12
        uncentred = oracle_linear_features(x, y, debiased, centre=False)
        assert abs(uncentred - centred) > 1e3 * TOL_FLOAT32_LARGE_MEAN
    assert abs(expected(case, False) - expected(case, True)) > 1e3 * TOL_FLOAT32_LARGE_MEAN


# --------------------------------------------------------------------------------------------
# Accuracy against the oracle
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(CASES))
def test_linear_cka_matches_oracle(case, debiased):
    x, y = data(case)
    want, tol = expected(case, debiased), tolerance(case)
    methods = ["auto", "features", "gram"] if case.small else ["auto", "features"]
    for method in methods:
        got = value(linear_cka(x, y, debiased=debiased, method=method), case.lib)
        assert abs(got - want) < tol, method
    got = cka_matrix({"x": x}, {"y": y}, debiased=debiased).values[0, 0]
    assert abs(got - want) < tol
    if case.small:
        got = value(cka(gram_linear(x), gram_linear(y), debiased=debiased), case.lib)
        assert abs(got - want) < tol
        got = value(kernel_cka(x, y, kernel="linear", debiased=debiased), case.lib)
        assert abs(got - want) < tol
        want_rbf = oracle_rbf(*raw_data(case), debiased)
        got = value(kernel_cka(x, y, kernel="rbf", debiased=debiased), case.lib)
        assert abs(got - want_rbf) < tol


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(CASES))
def test_cka_matrix_layers_match_oracle(case, debiased):
    x, y = data(case)
    xn, yn = raw_data(case)
    half = case.p1 // 2 + 1
    acts_a = {"x": x, "x_head": x[:, :half]}
    acts_b = {"y": y, "x": x}
    result = cka_matrix(acts_a, acts_b, debiased=debiased)
    assert result.row_names == ["x", "x_head"] and result.col_names == ["y", "x"]
    assert result.values.shape == (2, 2)
    tol = tolerance(case)
    want = [
        [expected(case, debiased), 1.0],
        [oracle_linear(xn[:, :half], yn, debiased), oracle_linear(xn[:, :half], xn, debiased)],
    ]
    np.testing.assert_allclose(result.values, want, rtol=0, atol=tol)


@pytest.mark.parametrize("split", ["rows-of-1", "rows-of-2", "ragged"])
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(CASES))
def test_streaming_splits_match_oracle(case, debiased, split):
    if split != "ragged" and not case.small:
        pytest.skip("one-row batches of a large case: covered by the small cases")
    x, y = data(case)
    acc = stream(StreamingCKA(debiased), x, y, split_sizes(case.n, split))
    assert acc.n_examples == case.n
    got = value(acc.compute(), case.lib)
    assert abs(got - expected(case, debiased)) < tolerance(case)


@pytest.mark.parametrize("order", MERGE_ORDERS)
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(CASES))
def test_streaming_merges_match_oracle(case, debiased, order):
    if not case.small and order != "shuffled":
        pytest.skip("one merge order is enough for a large case")
    x, y = data(case)
    got = value(merged(x, y, debiased, order), case.lib)
    assert abs(got - expected(case, debiased)) < tolerance(case)


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(CASES))
def test_streaming_matrix_matches_oracle(case, debiased):
    x, y = data(case)
    xn, yn = raw_data(case)
    half = case.p1 // 2 + 1
    sizes = ragged_sizes(case.n)
    acc = StreamingCKAMatrix(debiased)
    shared = StreamingCKAMatrix(debiased)
    start = 0
    for s in sizes:
        rows = slice(start, start + s)
        acc.update({"x": x[rows], "x_head": x[rows, :half]}, {"y": y[rows]})
        if case.small:
            layers = {"x": x[rows], "y": y[rows]}
            shared.update(layers, layers)  # one mapping as both: a model against itself
        start += s
    result = acc.compute()
    assert result.row_names == ["x", "x_head"] and result.col_names == ["y"]
    assert result.n_examples == case.n
    tol = tolerance(case)
    want = [[expected(case, debiased)], [oracle_linear(xn[:, :half], yn, debiased)]]
    np.testing.assert_allclose(result.values, want, rtol=0, atol=tol)
    if not case.small:
        return  # the shared layout is pinned by the small cases
    both = shared.compute()
    e = expected(case, debiased)
    np.testing.assert_allclose(both.values, [[1.0, e], [e, 1.0]], rtol=0, atol=tol)


# --------------------------------------------------------------------------------------------
# Code paths agree with each other (float64)
# --------------------------------------------------------------------------------------------


PATH_CASES = [c for c in CASES if c.small or c.dtype == "float64" or c.n == 20_000]


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("case", **by_name(PATH_CASES))
def test_code_paths_agree_in_float64(case, debiased):
    x, y = (as_lib(a.astype(np.float64), case.lib) for a in raw_data(case))
    ref = value(linear_cka(x, y, debiased=debiased), case.lib)
    others = {
        "features": linear_cka(x, y, debiased=debiased, method="features"),
        "cka_matrix": cka_matrix({"x": x}, {"y": y}, debiased=debiased).values[0, 0],
        "ragged": stream(StreamingCKA(debiased), x, y, ragged_sizes(case.n)).compute(),
        "merged": merged(x, y, debiased, "tree"),
    }
    if case.small:
        others |= {
            "gram": linear_cka(x, y, debiased=debiased, method="gram"),
            "cka": cka(gram_linear(x), gram_linear(y), debiased=debiased),
            "kernel_linear": kernel_cka(x, y, kernel="linear", debiased=debiased),
            "rows-of-1": stream(StreamingCKA(debiased), x, y, [1] * case.n).compute(),
            "rows-of-2": stream(
                StreamingCKA(debiased), x, y, split_sizes(case.n, "rows-of-2")
            ).compute(),
        }
    for name, got in others.items():
        tol = TOL_PATHS
        if case.mean > 1e4:
            per_mean = PATH_PER_MEAN["merged" if name == "merged" else "one-shot"]
            tol += per_mean * case.mean
        assert abs(float(got) - ref) < tol, name
    assert abs(ref - oracle_linear(*(a.astype(np.float64) for a in raw_data(case)), debiased)) < (
        TOL_FLOAT64
    )


# --------------------------------------------------------------------------------------------
# Invariance under exact power-of-two scaling (one-shot functions)
# --------------------------------------------------------------------------------------------

SCALE_POWER = {"float32": 100, "float64": 500}
SCALINGS = {"x-up": (1, 0), "both-down": (-1, -1), "x-up-y-down": (1, -1)}


def scaled(a: np.ndarray, power: int) -> np.ndarray:
    """``a * 2**power`` in a's dtype, checked exact (finite, nonzero, no subnormal rounding)."""
    if power == 0:
        return a
    out = np.ldexp(a, power)
    assert out.dtype == a.dtype
    assert np.all(np.isfinite(out)) and np.count_nonzero(out) == np.count_nonzero(a)
    assert np.array_equal(np.ldexp(out, -power), a)  # the scaling is exact
    return out


@pytest.mark.parametrize("scaling", list(SCALINGS))
@pytest.mark.parametrize("case", **by_name(CASES))
def test_power_of_two_scaling_leaves_cka_unchanged(case, scaling):
    if not case.small and (scaling != "x-up-y-down" or case.lib == "torch"):
        pytest.skip("one scaling of the NumPy cases is enough for a large case")
    xn, yn = raw_data(case)
    k = SCALE_POWER[case.dtype]
    sx, sy = SCALINGS[scaling]
    xs, ys = as_lib(scaled(xn, sx * k), case.lib), as_lib(scaled(yn, sy * k), case.lib)
    x, y = data(case)
    tol = TOL_SCALE[case.dtype]
    for debiased in (False, True):
        calls = {
            "linear_cka": lambda a, b, d=debiased: linear_cka(a, b, debiased=d),
            "cka_matrix": lambda a, b, d=debiased: cka_matrix(
                {"a": a}, {"b": b}, debiased=d
            ).values[0, 0],
        }
        if case.small:
            calls |= {
                "linear_cka-gram": lambda a, b, d=debiased: linear_cka(
                    a, b, debiased=d, method="gram"
                ),
                "kernel_cka-rbf": lambda a, b, d=debiased: kernel_cka(a, b, debiased=d),
                "kernel_cka-linear": lambda a, b, d=debiased: kernel_cka(
                    a, b, kernel="linear", debiased=d
                ),
            }
        for name, call in calls.items():
            got, ref = float(call(xs, ys)), float(call(x, y))
            assert math.isfinite(got) and abs(got - ref) < tol, (name, debiased)


@pytest.mark.parametrize("power", [-300, 300])
@pytest.mark.parametrize("case", **by_name([c for c in SMALL if c.dtype == "float64"]))
def test_power_of_two_scaling_of_grams(case, power):
    x, y = data(case)
    kx, ly = np.asarray(gram_linear(x)), np.asarray(gram_linear(y))
    for debiased in (False, True):
        ref = float(cka(gram_linear(x), gram_linear(y), debiased=debiased))
        got = float(cka(as_lib(scaled(kx, power), case.lib), gram_linear(y), debiased=debiased))
        assert abs(got - ref) < TOL_SCALE["float64"]
        got = float(cka(gram_linear(x), as_lib(scaled(ly, -power), case.lib), debiased=debiased))
        assert abs(got - ref) < TOL_SCALE["float64"]


# --------------------------------------------------------------------------------------------
# The accumulators' magnitude rule
# --------------------------------------------------------------------------------------------

ACC_CASES = [c for c in CASES if c.name in ("n500-f32-mean10", "n37-f32", "n500-f64")]
ACC_CASES += [c for c in CASES if c.name == "torch-n500-f32-mean1e6"]


@pytest.mark.parametrize("power", [40, -40, 14, -18], ids=lambda p: f"2**{p}")
@pytest.mark.parametrize("case", **by_name([c for c in ACC_CASES if c.dtype == "float32"]))
def test_accumulators_take_float32_of_any_magnitude(case, power):
    """float32 batches beyond 2**±16 are computed in float64; 2**14 and 2**-18 on unit-spread
    data straddle the window (some batches inside it, some outside) and must still merge."""
    xn, yn = raw_data(case)
    x, y = as_lib(scaled(xn, power), case.lib), as_lib(yn, case.lib)
    sizes = ragged_sizes(case.n)
    for debiased in (False, True):
        want = expected(case, debiased)
        got = value(stream(StreamingCKA(debiased), x, y, sizes).compute(), case.lib)
        assert abs(got - want) < tolerance(case)
        got = value(stream(StreamingCKA(debiased), y, x, [1] * case.n).compute(), case.lib)
        assert abs(got - want) < tolerance(case)
        acc = StreamingCKAMatrix(debiased)
        start = 0
        for s in sizes:
            acc.update({"x": x[start : start + s]}, {"y": y[start : start + s]})
            start += s
        assert abs(acc.compute().values[0, 0] - want) < tolerance(case)


@pytest.mark.parametrize("power", [150, -150])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_accumulators_take_float64_within_2_pow_200(lib, power):
    case = next(c for c in CASES if c.name == "n500-f64")
    xn, yn = raw_data(case)
    x, y = as_lib(scaled(xn, power), lib), as_lib(scaled(yn, -power), lib)
    for debiased in (False, True):
        got = value(stream(StreamingCKA(debiased), x, y, ragged_sizes(case.n)).compute(), lib)
        assert abs(got - expected(case, debiased)) < TOL_FLOAT64


@pytest.mark.parametrize("power", [250, -250])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_accumulators_refuse_float64_beyond_2_pow_200(lib, power):
    case = next(c for c in CASES if c.name == "n500-f64")
    xn, yn = raw_data(case)
    x, y = as_lib(xn, lib), as_lib(yn, lib)
    big = as_lib(scaled(xn, power), lib)
    words = r"(?s){}.*magnitude.*power of two"
    acc = StreamingCKA().update(x[:10], y[:10])
    with pytest.raises(ValueError, match=words.format("x_batch")):
        acc.update(big[10:20], y[10:20])
    with pytest.raises(ValueError, match=words.format("y_batch")):
        acc.update(y[10:20], big[10:20])
    assert acc.n_examples == 10  # the refused batches left the state as it was
    acc.update(x[10:], y[10:])
    assert abs(acc.compute() - expected(case, False)) < TOL_FLOAT64
    with pytest.raises(ValueError, match=words.format(r"acts_a\['deep'\]")):
        StreamingCKAMatrix().update({"ok": x[:10], "deep": big[:10]}, {"y": y[:10]})
    with pytest.raises(ValueError, match=words.format(r"acts_b\['deep'\]")):
        StreamingCKAMatrix(debiased=True).update({"x": x[:10]}, {"deep": big[:10]})
    # the one-shot functions take any magnitude
    assert abs(float(linear_cka(big, y)) - expected(case, False)) < TOL_FLOAT64


# --------------------------------------------------------------------------------------------
# Undefined: constant input
# --------------------------------------------------------------------------------------------


def undefined_paths(x, y, debiased):
    """Every path, as (name, call returning the CKA of (x, y) as a float)."""
    d = debiased
    sizes = ragged_sizes(x.shape[0])

    def matrix_stream():
        acc = StreamingCKAMatrix(d)
        start = 0
        for s in sizes:
            acc.update({"a": x[start : start + s]}, {"b": y[start : start + s]})
            start += s
        return acc.compute().values[0, 0]

    return {
        "linear_cka-features": lambda: linear_cka(x, y, debiased=d, method="features"),
        "linear_cka-gram": lambda: linear_cka(x, y, debiased=d, method="gram"),
        "cka": lambda: cka(gram_linear(x), gram_linear(y), debiased=d),
        "kernel_cka-rbf": lambda: kernel_cka(x, y, debiased=d),
        "kernel_cka-rbf-sigma": lambda: kernel_cka(x, y, sigma=1.0, debiased=d),
        "kernel_cka-linear": lambda: kernel_cka(x, y, kernel="linear", debiased=d),
        "cka_matrix": lambda: cka_matrix({"a": x}, {"b": y}, debiased=d).values[0, 0],
        "StreamingCKA": lambda: stream(StreamingCKA(d), x, y, sizes).compute(),
        "StreamingCKA-merged": lambda: merged(x, y, d, "tree"),
        "StreamingCKAMatrix": matrix_stream,
    }


@pytest.mark.parametrize("constant", ["x", "y"])
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize(
    "case", **by_name([c for c in CASES if c.name in ("n37-f32-mean1e6", "torch-n37-f64-mean1e3")])
)
def test_constant_input_is_undefined_everywhere(case, debiased, constant):
    xn, yn = raw_data(case)
    row = (xn if constant == "x" else yn)[3]
    flat = np.tile(row, (case.n, 1))  # every row equal, feature means up to 1e6
    x, y = data(case)
    x, y = (as_lib(flat, case.lib), y) if constant == "x" else (x, as_lib(flat, case.lib))
    for name, call in undefined_paths(x, y, debiased).items():
        with pytest.warns(CKAUndefinedWarning, match="undefined"):
            got = float(call())
        assert math.isnan(got), name
    # the matrix keeps the other cells
    with pytest.warns(CKAUndefinedWarning, match=r"'dead'"):
        layers = {"dead": as_lib(flat, case.lib), "alive": data(case)[0]}
        result = cka_matrix(layers, {"y": data(case)[1]}, debiased=debiased)
    assert math.isnan(result.values[0, 0])
    assert abs(result.values[1, 0] - expected(case, debiased)) < tolerance(case)


def test_undefined_warning_names_the_argument():
    x = np.full((20, 3), 7.25)
    y = np.random.default_rng(1).standard_normal((20, 2))
    with pytest.warns(CKAUndefinedWarning, match=r"undefined for x\b"):
        assert math.isnan(linear_cka(x, y))
    with pytest.warns(CKAUndefinedWarning, match=r"undefined for y\b"):
        assert math.isnan(linear_cka(y, x))
    with pytest.warns(CKAUndefinedWarning, match=r"undefined for gram_x\b"):
        assert math.isnan(cka(gram_linear(x), gram_linear(y)))
    with pytest.warns(CKAUndefinedWarning, match=r"undefined for x\b"):
        assert math.isnan(StreamingCKA().update(x, y).compute())


def test_rbf_zero_median_bandwidth_asks_for_sigma():
    """Not constant, but most rows equal: the median bandwidth is zero, an error (not NaN)."""
    x = np.zeros((20, 3))
    x[:3] = np.arange(9.0).reshape(3, 3)
    y = np.random.default_rng(2).standard_normal((20, 2))
    with pytest.raises(ValueError, match=r"(?s)\bx\b.*median.*sigma="):
        kernel_cka(x, y)
    want = oracle_cka_grams(oracle_rbf_gram(x, sigma=1.5), oracle_rbf_gram(y, sigma=1.5), False)
    assert abs(kernel_cka(x, y, sigma=1.5) - want) < TOL_FLOAT64


def test_non_constant_one_row_batches_are_not_undefined():
    """Each one-row batch is constant on its own; the layer is not."""
    x, y = raw_data(next(c for c in CASES if c.name == "n37-f32-mean1e6"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CKAUndefinedWarning)
        assert math.isfinite(stream(StreamingCKA(True), x, y, [1] * x.shape[0]).compute())


# --------------------------------------------------------------------------------------------
# torch: autograd
# --------------------------------------------------------------------------------------------


def finite_difference(f, a: np.ndarray, h: float = 1e-5) -> np.ndarray:
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        up, down = a.copy(), a.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2 * h)
    return grad


GRAD_CALLS = {
    "linear_cka-features": (
        lambda a, b, d: linear_cka(a, b, debiased=d, method="features"),
        lambda a, b, d: oracle_linear_features(a, b, d),
    ),
    "linear_cka-gram": (
        lambda a, b, d: linear_cka(a, b, debiased=d, method="gram"),
        lambda a, b, d: oracle_linear_gram(a, b, d),
    ),
    "kernel_cka-rbf": (
        lambda a, b, d: kernel_cka(a, b, debiased=d),
        lambda a, b, d: oracle_rbf(a, b, d),
    ),
    "kernel_cka-rbf-0.5": (
        lambda a, b, d: kernel_cka(a, b, threshold=0.5, debiased=d),
        lambda a, b, d: oracle_rbf(a, b, d, threshold=0.5),
    ),
}


@pytest.mark.parametrize("mean", [0.0, 10.0])
@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("path", list(GRAD_CALLS))
def test_autograd_matches_finite_differences(path, debiased, mean):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    xn = rng.standard_normal((9, 3)) + mean
    yn = xn @ rng.standard_normal((3, 4)) + rng.standard_normal((9, 4)) + mean
    call, oracle = GRAD_CALLS[path]
    x = torch.tensor(xn, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(yn, dtype=torch.float64, requires_grad=True)
    out = call(x, y, debiased)
    assert out.dim() == 0 and out.dtype == torch.float64 and out.requires_grad
    assert abs(float(out.detach()) - oracle(xn, yn, debiased)) < TOL_FLOAT64
    out.backward()
    gx = finite_difference(lambda a: oracle(a, yn, debiased), xn)
    gy = finite_difference(lambda b: oracle(xn, b, debiased), yn)
    assert np.abs(gx).max() > 1e-3 and np.abs(gy).max() > 1e-3  # the check can fail
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=0, atol=1e-7)
    np.testing.assert_allclose(y.grad.numpy(), gy, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Memory of the feature form
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
def test_feature_form_memory_on_large_float32(debiased):
    rng = np.random.default_rng(3)
    n, p = 200_000, 64
    x = rng.standard_normal((n, p), dtype=np.float32)
    x += np.float32(100.0)
    y = rng.standard_normal((n, p), dtype=np.float32)
    y += x
    inputs = x.nbytes + y.nbytes  # about 100 MiB
    tracemalloc.start()
    try:
        got = linear_cka(x, y, debiased=debiased, method="features")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # measured: 0.08x (biased) and 0.13x (debiased) of the inputs' bytes
    assert peak < 0.3 * inputs, peak / inputs
    assert 0.4 < got < 0.6  # CKA of (x, x + noise) with unit spreads: about 1/2
