"""Fuzzer: every public estimator against a float64 reference written from the formulas.

Hypothesis draws shapes, dtypes (float64, float32; NumPy and torch), magnitudes (the data's
largest value at 2**k, k in [-120, 120] for float32 and [-1000, 1000] for float64), large feature
means, constant inputs and NaN/infinity. Every case must end in one of three ways, and only the
one the input calls for:

* the reference value, within the documented tolerance (``docs/estimators.md``);
* NaN with a :class:`~cka_sim.CKAUndefinedWarning` that names the constant argument or layer;
* a ``ValueError`` that names the argument holding NaN or infinity.

The reference shares no code with ``cka_sim``: column means are summed exactly
(``math.fsum``) in two passes, Grams are formed from the centred rows, HSIC is Gretton's
``tr(KHLH)/(n-1)²`` with an explicit ``H`` and Song's HSIC₁ term by term, and RBF distances are
differences of rows. It runs on the input's values converted to float64 and scaled back by
``2**-k`` (exact), so it sees exactly the numbers the library saw. The runs are derandomised
(the same cases on every run) so that CI is reproducible.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
    bootstrap_ci,
    cka,
    cka_matrix,
    cka_matrix_with_uncertainty,
    deconfounded_cka,
    hsic,
    kernel_cka,
    linear_cka,
    permutation_test,
    procrustes_similarity,
)

torch = pytest.importorskip("torch")

# The documented tolerances (docs/estimators.md, "Guarantees"): absolute, on CKA.
TOLERANCE = {"float64": 1e-9, "float32": 1e-5}
MAX_EXPONENT = {"float64": 1000, "float32": 120}

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Cases per test, by cost (the statistics' resamples are the dearest): 10,010 in all,
#: about a minute on two cores.
CASES = {
    "test_linear_cka": 1500,
    "test_kernel_cka": 1000,
    "test_cka_and_hsic_of_grams": 1000,
    "test_cka_matrix": 700,
    "test_procrustes_similarity": 1400,
    "test_deconfounded_cka": 800,
    "test_cka_matrix_other_measures": 450,
    "test_permutation_test": 220,
    "test_bootstrap_ci": 220,
    "test_cka_matrix_with_uncertainty": 220,
    "test_streaming_cka": 500,
    "test_streaming_cka_matrix": 800,
    "test_minibatch_cka": 750,
    "test_streaming_other_measures": 450,
}


def fuzz(test: str) -> settings:
    """The derandomised settings of one fuzz test, with its share of :data:`CASES`."""
    return settings(FUZZ, max_examples=CASES[test])


def test_the_fuzz_run_is_at_least_ten_thousand_cases() -> None:
    tests = {
        name
        for name in globals()
        if name.startswith("test_") and name != "test_the_fuzz_run_is_at_least_ten_thousand_cases"
    }
    assert set(CASES) == tests
    assert sum(CASES.values()) >= 10_000


# --- the reference ------------------------------------------------------------------------------


def ref_centre(a: np.ndarray) -> np.ndarray:
    """Columns minus their means, the means summed exactly (two passes)."""
    n = a.shape[0]
    for _ in range(2):
        a = a - np.array([math.fsum(col) for col in a.T]) / n
    return a


def ref_hsic(k: np.ndarray, l: np.ndarray, unbiased: bool) -> float:
    """Gretton et al.'s biased HSIC, or Song et al.'s HSIC₁ written term by term."""
    n = k.shape[0]
    if not unbiased:
        h = np.eye(n) - np.ones((n, n)) / n
        return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )
    return float(value) / (n * (n - 3))


def ref_debiased_ratio(k: np.ndarray) -> float:
    """h / T of a Gram's debiased self-HSIC: h = n(n-3) HSIC₁(K, K) = ‖U(K)‖² (Székely & Rizzo's
    U-centring written out: a sum of squares, accurate near zero), T the magnitudes of the
    feature-form terms ‖M‖², n/(n-2) Σ M_ii², tr(M)²/((n-1)(n-2)) of M = HKH."""
    n = k.shape[0]
    kt = k - np.diag(np.diag(k))
    r = kt.sum(axis=1)
    u = kt - r[:, None] / (n - 2) - r[None, :] / (n - 2) + r.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    h = np.eye(n) - np.ones((n, n)) / n
    m = h @ k @ h
    d = np.diag(m)
    t = (m * m).sum() + n / (n - 2) * (d * d).sum() + d.sum() ** 2 / ((n - 1) * (n - 2))
    return float((u * u).sum() / t)


def ref_cka(k: np.ndarray, l: np.ndarray, debiased: bool) -> float | None:
    """CKA of two float64 Grams; None where it is undefined (a self-HSIC not positive)."""
    h_xx, h_yy = ref_hsic(k, k, debiased), ref_hsic(l, l, debiased)
    if h_xx <= 0 or h_yy <= 0:
        return None
    return ref_hsic(k, l, debiased) / math.sqrt(h_xx * h_yy)


def ref_linear_gram(a: np.ndarray) -> np.ndarray:
    c = ref_centre(a)
    return c @ c.T


def ref_rbf_gram(a: np.ndarray, threshold: float, sigma: float | None) -> np.ndarray:
    """Kornblith's RBF: sigma² = threshold² x median of all n² squared distances."""
    d = ((a[:, None, :] - a[None, :, :]) ** 2).sum(axis=-1)
    sigma_sq = threshold**2 * np.median(d) if sigma is None else sigma**2
    return np.exp(-d / (2 * sigma_sq))


def ref_minibatch(xs: list[np.ndarray], ys: list[np.ndarray], debiased: bool) -> float | None:
    """Nguyen et al.: the HSIC terms averaged over batches, then the ratio."""
    terms = np.zeros(3)
    for x, y in zip(xs, ys, strict=True):
        k, l = x @ x.T, y @ y.T
        terms += [ref_hsic(k, l, debiased), ref_hsic(k, k, debiased), ref_hsic(l, l, debiased)]
    if terms[1] <= 0 or terms[2] <= 0:
        return None
    return float(terms[0] / math.sqrt(terms[1] * terms[2]))


# --- the inputs ---------------------------------------------------------------------------------


@dataclass
class Side:
    """One input: what the library gets, and the float64 values the reference uses."""

    given: Any  # NumPy array or torch tensor, scaled by 2**exponent
    values: np.ndarray  # float64 values of ``given`` times 2**-exponent (exact)
    exponent: int


@dataclass
class Case:
    x: Side
    y: Side
    dtype: str
    library: str
    bad: str | None  # argument holding NaN or infinity
    constant: str | None  # argument whose rows are all equal
    spike: str | None = None  # argument whose rows are all equal but one: debiased self-HSIC 0

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]


def _side(
    base: np.ndarray, exponent: int, dtype: str, library: str, poison: float | None, rng: Any
) -> Side:
    """Scale ``base`` so that its largest magnitude is about 2**exponent, then convert it."""
    top = math.frexp(float(np.max(np.abs(base))))[1]
    exponent = max(-MAX_EXPONENT[dtype], min(MAX_EXPONENT[dtype], exponent)) - top
    scaled = np.ldexp(base, exponent).astype(dtype)
    if poison is not None:
        scaled[rng.integers(scaled.shape[0]), rng.integers(scaled.shape[1])] = poison
    values = np.ldexp(scaled.astype(np.float64), -exponent)
    given = torch.from_numpy(scaled.copy()) if library == "torch" else scaled
    return Side(given, values, exponent)


@st.composite
def cases(
    draw: Any,
    *,
    min_n: int = 2,
    max_n: int = 20,
    libraries: tuple[str, ...] = ("numpy", "torch"),
    float64_limit: int = MAX_EXPONENT["float64"],
    poison: bool = True,
    constants: bool = True,
    max_offset: float = 1e9,
    spikes: bool = True,
) -> Case:
    n = draw(st.integers(min_n, max_n))
    p1, p2 = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    library = draw(st.sampled_from(libraries))
    limit = float64_limit if dtype == "float64" else MAX_EXPONENT[dtype]
    ex, ey = draw(st.integers(-limit, limit)), draw(st.integers(-limit, limit))
    offsets = [0.0, 0.0, 10.0, 1e4] + ([1e9] if dtype == "float64" else [])
    offset = draw(st.sampled_from([o for o in offsets if o <= max_offset]))
    constant = draw(st.sampled_from([None] * 6 + ["x", "y"])) if constants else None
    spike = draw(st.sampled_from([None] * 6 + ["x", "y"])) if spikes and constant is None else None
    bad = draw(st.sampled_from([None] * 6 + ["x", "y"])) if poison else None
    poison_value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, p1)) * rng.uniform(0.2, 3.0, p1)
    y = x[:, :1] @ rng.standard_normal((1, p2)) + rng.standard_normal((n, p2))
    x += offset * rng.uniform(-1, 1, p1)
    y += offset * rng.uniform(-1, 1, p2)
    if constant == "x":
        x = np.broadcast_to(x[:1], x.shape).copy()
    elif constant == "y":
        y = np.broadcast_to(y[:1], y.shape).copy()
    if spike == "x":
        x[1:] = x[1]
    elif spike == "y":
        y[1:] = y[1]
    sides = [
        _side(a, e, dtype, library, poison_value if bad == name else None, rng)
        for a, e, name in ((x, ex, "x"), (y, ey, "y"))
    ]
    if constant is None:  # rounding to float32 may have made a column constant: fine; all rows?
        for name, side in zip(("x", "y"), sides, strict=True):
            if np.all(side.values == side.values[:1]):
                constant = name
    if constant is not None:
        spike = None
    return Case(sides[0], sides[1], dtype, library, bad, constant, spike)


# --- the contract -------------------------------------------------------------------------------


def check(
    case: Case,
    compute: Callable[[], Any],
    reference: Callable[[], float | None],
    *,
    names: tuple[str, str] = ("x", "y"),
    error_names: tuple[str, str] | None = None,
    tolerance: float | None = None,
) -> Any:
    """Run ``compute`` and assert the outcome the case calls for; return the value.

    ``names`` are how warnings name the arguments, ``error_names`` how errors do (default:
    ``names``).
    """
    if case.bad is not None:
        error_names = names if error_names is None else error_names
        name = error_names[0] if case.bad == "x" else error_names[1]
        with pytest.raises(ValueError, match=rf"{re.escape(name)}.*NaN or infinity"):
            compute()
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = compute()
    undefined = [w for w in caught if issubclass(w.category, CKAUndefinedWarning)]
    others = [w for w in caught if not issubclass(w.category, CKAUndefinedWarning)]
    numeric = [str(w.message) for w in others if "overflow" in str(w.message)]
    assert not numeric + [str(w.message) for w in others if "invalid" in str(w.message)]
    value = float(value)
    if case.constant is not None:
        name = names[0] if case.constant == "x" else names[1]
        assert math.isnan(value)
        assert any(name in str(w.message) for w in undefined), [str(w.message) for w in caught]
        return value
    expected = reference()
    if expected is None:  # a debiased self-HSIC that is not positive (tiny n)
        assert math.isnan(value) and undefined
        return value
    assert not undefined, [str(w.message) for w in undefined]
    tol = case.tolerance if tolerance is None else tolerance
    assert abs(value - expected) <= tol, (value, expected)
    return value


# How the multi-layer estimators name a layer in a warning and in an error.
LAYER_NAMES = ("layer 'x' of acts_a", "layer 'y' of acts_b")
KEYS = ("acts_a['x']", "acts_b['y']")


def _accumulator_errors(case: Case, names: tuple[str, str]) -> tuple[str, str]:
    """Torch batches are not scanned for NaN (that would synchronise the device on every batch):
    ``compute()`` finds the non-finite state and says a batch held NaN or infinity."""
    if case.library == "torch":
        return ("a batch given to update()", "a batch given to update()")
    return names


def _ref_linear(case: Case, debiased: bool) -> Callable[[], float | None]:
    """The reference linear CKA; undefined (None) when debiased and a side is a spike, whose
    debiased self-HSIC is exactly zero (its float64 reference is only rounding noise)."""
    if debiased and case.spike is not None:
        return lambda: None
    return lambda: ref_cka(ref_linear_gram(case.x.values), ref_linear_gram(case.y.values), debiased)


# --- functional estimators ----------------------------------------------------------------------


@fuzz("test_linear_cka")
@given(
    case=cases(),
    debiased=st.booleans(),
    method=st.sampled_from(["auto", "features", "gram"]),
)
def test_linear_cka(case: Case, debiased: bool, method: str) -> None:
    if debiased and case.x.values.shape[0] < 4:
        with pytest.raises(ValueError, match="at least 4"):
            linear_cka(case.x.given, case.y.given, debiased=True, method=method)
        return
    check(
        case,
        lambda: linear_cka(case.x.given, case.y.given, debiased=debiased, method=method),
        _ref_linear(case, debiased),
    )


@fuzz("test_kernel_cka")
@given(
    case=cases(min_n=4),
    kernel=st.sampled_from(["rbf", "rbf-sigma", "linear"]),
    debiased=st.booleans(),
)
def test_kernel_cka(case: Case, kernel: str, debiased: bool) -> None:
    def reference() -> float | None:
        if kernel == "linear" or (debiased and case.spike is not None):  # any kernel: U(K) = 0
            return _ref_linear(case, debiased)()
        sigma = None if kernel == "rbf" else 1.0
        try:
            grams = [ref_rbf_gram(s.values, 0.8, sigma) for s in (case.x, case.y)]
        except FloatingPointError:  # pragma: no cover
            return None
        return ref_cka(*grams, debiased)

    def compute() -> Any:
        if kernel == "linear":
            return kernel_cka(case.x.given, case.y.given, kernel="linear", debiased=debiased)
        # An explicit bandwidth is given in the units of the data as passed: 2**exponent.
        sigma = (
            None
            if kernel == "rbf"
            else (math.ldexp(1.0, case.x.exponent), math.ldexp(1.0, case.y.exponent))
        )
        return kernel_cka(case.x.given, case.y.given, threshold=0.8, sigma=sigma, debiased=debiased)

    if kernel == "rbf" and case.bad is None and case.constant is None:
        # More than half of the pairs identical: the median bandwidth is zero, an error.
        d = [((s.values[:, None] - s.values[None]) ** 2).sum(-1) for s in (case.x, case.y)]
        if any(np.median(v) == 0 for v in d):
            with pytest.raises(ValueError, match="median"):
                compute()
            return
    check(case, compute, reference)


@fuzz("test_cka_and_hsic_of_grams")
@given(
    n=st.integers(4, 16),
    ex=st.integers(-1000, 1000),
    ey=st.integers(-1000, 1000),
    seed=st.integers(0, 2**32 - 1),
    unbiased=st.booleans(),
    library=st.sampled_from(["numpy", "torch"]),
)
def test_cka_and_hsic_of_grams(
    n: int, ex: int, ey: int, seed: int, unbiased: bool, library: str
) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 3))
    b = a @ rng.standard_normal((3, 2)) + rng.standard_normal((n, 2))
    k, l = a @ a.T + 1.0, np.exp(-(((b[:, None] - b[None]) ** 2).sum(-1)))
    k, l = (k + k.T) / 2, (l + l.T) / 2
    given = [np.ldexp(k, ex), np.ldexp(l, ey)]
    if library == "torch":
        given = [torch.from_numpy(g) for g in given]
    expected_cka = ref_cka(k, l, unbiased)
    assert expected_cka is not None
    ratios = [ref_debiased_ratio(g) for g in (k, l)] if unbiased else [1.0, 1.0]
    bound = n * np.finfo(np.float64).eps  # the rounding rule (docs/estimators.md)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(cka(*given, debiased=unbiased))
    undefined = [w for w in caught if issubclass(w.category, CKAUndefinedWarning)]
    if min(ratios) <= 0.25 * bound:  # a self-HSIC within rounding of zero: undefined
        assert math.isnan(value) and undefined
    elif min(ratios) >= 4 * bound:
        assert value == pytest.approx(expected_cka, abs=1e-9) and not undefined
    expected = ref_hsic(k, l, unbiased)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(hsic(*given, unbiased=unbiased))
    magnitude = ex + ey + math.frexp(expected)[1]  # HSIC lies in [2**(magnitude-1), 2**magnitude)
    if -1000 < magnitude < 1000:
        assert value == pytest.approx(math.ldexp(expected, ex + ey), rel=1e-9)
    elif magnitude > 1025 or magnitude < -1080:  # beyond float64: inf or 0, and a warning
        assert any("outside the float64 range" in str(w.message) for w in caught)


@fuzz("test_cka_matrix")
@given(case=cases(libraries=("numpy", "torch")), debiased=st.booleans())
def test_cka_matrix(case: Case, debiased: bool) -> None:
    if debiased and case.x.values.shape[0] < 4:
        return

    def compute() -> float:
        res = cka_matrix({"x": case.x.given}, {"y": case.y.given}, debiased=debiased)
        return float(res.values[0, 0])

    check(case, compute, _ref_linear(case, debiased), names=LAYER_NAMES, error_names=KEYS)


def ref_procrustes(case: Case) -> float:
    """Ding et al.'s similarity: the nuclear norm of the centred cross product over the norms."""
    xc, yc = ref_centre(case.x.values), ref_centre(case.y.values)
    nuclear = np.linalg.svd(xc.T @ yc, compute_uv=False).sum()
    return float(nuclear / (np.linalg.norm(xc) * np.linalg.norm(yc)))


def ref_dcka(case: Case, z: Side, debiased: bool) -> float | None:
    """Cui et al.: each centred Gram regressed on the confounder's, then CKA of the residuals."""
    n = case.x.values.shape[0]
    k, l, kz = (ref_linear_gram(s.values) for s in (case.x, case.y, z))
    h = np.eye(n) - np.ones((n, n)) / n
    kz_c = h @ kz @ h
    residuals = [g - np.sum(g * kz_c) / np.sum(kz_c * kz_c) * kz for g in (k, l)]
    return ref_cka(*residuals, debiased)


def confounder_of(case: Case, ez: int, q: int) -> Side:
    n = case.x.values.shape[0]
    z = np.random.default_rng(n + q).standard_normal((n, q))
    return _side(z, ez, case.dtype, case.library, None, np.random.default_rng(0))


@fuzz("test_procrustes_similarity")
@given(case=cases())
def test_procrustes_similarity(case: Case) -> None:
    check(
        case,
        lambda: procrustes_similarity(case.x.given, case.y.given),
        lambda: ref_procrustes(case),
    )


@fuzz("test_deconfounded_cka")
@given(
    case=cases(min_n=6, spikes=False),
    debiased=st.booleans(),
    method=st.sampled_from(["features", "gram"]),
    ez=st.integers(-100, 100),
    q=st.integers(1, 3),
)
def test_deconfounded_cka(case: Case, debiased: bool, method: str, ez: int, q: int) -> None:
    zs = confounder_of(case, ez, q)

    def reference() -> float | None:
        return ref_dcka(case, zs, debiased)

    def compute() -> Any:
        return deconfounded_cka(
            case.x.given, case.y.given, zs.given, debiased=debiased, method=method
        )

    check(case, compute, reference)


@fuzz("test_cka_matrix_other_measures")
@given(
    case=cases(min_n=6),
    measure=st.sampled_from(["procrustes", "dcka", "dcka-debiased"]),
    ez=st.integers(-100, 100),
    q=st.integers(1, 3),
)
def test_cka_matrix_other_measures(case: Case, measure: str, ez: int, q: int) -> None:
    """cka_matrix(measure=...) rescales like the one-shot functions: any float64 magnitude."""
    debiased = measure == "dcka-debiased"
    zs = confounder_of(case, ez, q)
    if measure != "procrustes" and case.spike is not None:
        case.spike = None  # a spike's residual is not special: regenerate no reference for it
        return

    def compute() -> float:
        kind = "procrustes" if measure == "procrustes" else "dcka"
        res = cka_matrix(
            {"x": case.x.given},
            {"y": case.y.given},
            measure=kind,
            debiased=debiased,
            confounder=None if kind == "procrustes" else zs.given,
        )
        return float(res.values[0, 0])

    def reference() -> float | None:
        return ref_procrustes(case) if measure == "procrustes" else ref_dcka(case, zs, debiased)

    errors = _accumulator_errors(case, KEYS)
    check(case, compute, reference, names=LAYER_NAMES, error_names=errors)


# --- statistics ---------------------------------------------------------------------------------


@fuzz("test_permutation_test")
@given(case=cases(min_n=8, max_n=24, libraries=("numpy",)), debiased=st.booleans())
def test_permutation_test(case: Case, debiased: bool) -> None:
    def compute() -> float:
        res = permutation_test(case.x.given, case.y.given, n_permutations=19, seed=0, **opts)
        if not math.isnan(res.statistic):
            # The null distribution is that of the data at unit scale (the same permutations).
            unit = permutation_test(case.x.values, case.y.values, n_permutations=19, seed=0, **opts)
            np.testing.assert_allclose(res.null_distribution, unit.null_distribution, atol=1e-9)
            assert res.pvalue == unit.pvalue
        return res.statistic

    opts = {"debiased": debiased}
    check(case, compute, _ref_linear(case, debiased))


@fuzz("test_bootstrap_ci")  # spikes=False: its own engine does not apply the rounding rule yet
@given(case=cases(min_n=8, max_n=24, libraries=("numpy",), spikes=False), debiased=st.booleans())
def test_bootstrap_ci(case: Case, debiased: bool) -> None:
    def compute() -> float:
        res = bootstrap_ci(case.x.given, case.y.given, n_resamples=30, seed=0, debiased=debiased)
        if not math.isnan(res.statistic):
            low, high = res.confidence_interval.low, res.confidence_interval.high
            assert math.isfinite(low) and math.isfinite(high)
            assert low <= res.statistic <= high  # the default (BCa, or its recorded fallback)
            assert res.interval_method in ("bca", "basic-widened")
        return res.statistic

    check(case, compute, _ref_linear(case, debiased))


@fuzz(
    "test_cka_matrix_with_uncertainty"
)  # spikes=False: its own statistics engine does not apply the rounding rule yet
@given(case=cases(min_n=8, max_n=24, libraries=("numpy",), spikes=False), debiased=st.booleans())
def test_cka_matrix_with_uncertainty(case: Case, debiased: bool) -> None:
    def compute() -> float:
        res = cka_matrix_with_uncertainty(
            {"x": case.x.given},
            {"y": case.y.given},
            debiased=debiased,
            n_resamples=20,
            n_permutations=19,
            seed=0,
        )
        if math.isnan(res.values[0, 0]):
            assert res.pvalues is not None and res.ci_low is not None
            assert math.isnan(res.pvalues[0, 0]) and math.isnan(res.ci_low[0, 0])
        return float(res.values[0, 0])

    check(case, compute, _ref_linear(case, debiased), names=LAYER_NAMES, error_names=KEYS)


# --- accumulators -------------------------------------------------------------------------------


# float64 batches beyond 2**±200 are refused by the accumulators (docs/estimators.md).
ACCUMULATOR_LIMIT = 200
# The exact accumulators merge batch means: the rounding of a mean (ε|μ|) limits their float64
# accuracy to about 0.1 ε |μ| / spread, within 1e-9 up to feature means 1e4 times the spread.
MERGED_MEANS = 1e4


def refused_batch(case: Case, rows: list[slice]) -> bool:
    """True when a float64 batch's largest magnitude lies beyond 2**±ACCUMULATOR_LIMIT."""
    if case.dtype != "float64":
        return False
    for side in (case.x, case.y):
        given = np.asarray(side.given)
        for r in rows:
            top = float(np.max(np.abs(given[r])))
            if top > 0 and abs(math.frexp(top)[1]) > ACCUMULATOR_LIMIT:
                return True
    return False


def _batches(n: int, sizes: list[int]) -> list[slice]:
    out, start = [], 0
    for size in sizes:
        if start >= n:
            break
        out.append(slice(start, min(n, start + size)))
        start += size
    if start < n:
        out.append(slice(start, n))
    return out


@fuzz("test_streaming_cka")
@given(
    case=cases(float64_limit=ACCUMULATOR_LIMIT + 60, max_offset=MERGED_MEANS),
    debiased=st.booleans(),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
)
def test_streaming_cka(case: Case, debiased: bool, sizes: list[int]) -> None:
    if debiased and case.x.values.shape[0] < 4:
        return

    def compute() -> Any:
        acc = StreamingCKA(debiased=debiased)
        for rows in _batches(case.x.values.shape[0], sizes):
            acc.update(case.x.given[rows], case.y.given[rows])
        return acc.compute()

    if refused_batch(case, _batches(case.x.values.shape[0], sizes)):
        with pytest.raises(ValueError, match=r"_batch (has values of magnitude|contains NaN)"):
            compute()
        return
    errors = _accumulator_errors(case, ("x_batch", "y_batch"))
    check(case, compute, _ref_linear(case, debiased), error_names=errors)


@fuzz("test_streaming_cka_matrix")
@given(
    case=cases(float64_limit=ACCUMULATOR_LIMIT + 60, max_offset=MERGED_MEANS),
    debiased=st.booleans(),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
)
def test_streaming_cka_matrix(case: Case, debiased: bool, sizes: list[int]) -> None:
    if debiased and case.x.values.shape[0] < 4:
        return

    def compute() -> float:
        acc = StreamingCKAMatrix(debiased=debiased)
        for rows in _batches(case.x.values.shape[0], sizes):
            acc.update({"x": case.x.given[rows]}, {"y": case.y.given[rows]})
        return float(acc.compute().values[0, 0])

    if refused_batch(case, _batches(case.x.values.shape[0], sizes)):
        with pytest.raises(
            ValueError, match=r"acts_.\['.'\] (has values of magnitude|contains NaN)"
        ):
            compute()
        return
    errors = _accumulator_errors(case, KEYS)
    check(case, compute, _ref_linear(case, debiased), names=LAYER_NAMES, error_names=errors)


@fuzz("test_minibatch_cka")
@given(
    case=cases(min_n=8, float64_limit=ACCUMULATOR_LIMIT + 60),
    debiased=st.booleans(),
    size=st.integers(4, 8),
)
def test_minibatch_cka(case: Case, debiased: bool, size: int) -> None:
    n = case.x.values.shape[0]
    starts = list(range(0, n - size + 1, size))  # the remainder joins the last batch: ragged
    rows = [slice(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True)]

    def compute() -> float:
        acc = MinibatchCKA(debiased=debiased)
        for r in rows:
            acc.update({"x": case.x.given[r]}, {"y": case.y.given[r]})
        return float(acc.compute().values[0, 0])

    def reference() -> float | None:
        if debiased and case.spike is not None:  # every batch a spike or constant: U(K) = 0
            return None
        xs = [ref_centre(case.x.values[r]) for r in rows]
        ys = [ref_centre(case.y.values[r]) for r in rows]
        return ref_minibatch(xs, ys, debiased)

    if refused_batch(case, rows):
        with pytest.raises(
            ValueError, match=r"acts_.\['.'\] (has values of magnitude|contains NaN)"
        ):
            compute()
        return
    if case.constant is None and case.bad is None:  # constant in every batch: undefined too
        for name, side in (("x", case.x), ("y", case.y)):
            if all(np.all(side.values[r] == side.values[r][:1]) for r in rows):
                case.constant = name
    errors = _accumulator_errors(case, KEYS)
    check(case, compute, reference, names=LAYER_NAMES, error_names=errors)


@fuzz("test_streaming_other_measures")
@given(
    case=cases(float64_limit=ACCUMULATOR_LIMIT + 60, max_offset=MERGED_MEANS, min_n=6),
    measure=st.sampled_from(["procrustes", "dcka", "dcka-debiased"]),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    q=st.integers(1, 3),
)
def test_streaming_other_measures(case: Case, measure: str, sizes: list[int], q: int) -> None:
    debiased = measure == "dcka-debiased"
    kind = "procrustes" if measure == "procrustes" else "dcka"
    if kind == "dcka" and case.spike is not None:
        return
    zs = confounder_of(case, 0, q)
    batches = _batches(case.x.values.shape[0], sizes)

    def compute() -> Any:
        acc = StreamingCKA(debiased=debiased, measure=kind)
        for rows in batches:
            z = None if kind == "procrustes" else zs.given[rows]
            acc.update(case.x.given[rows], case.y.given[rows], z)
        return acc.compute()

    def reference() -> float | None:
        return ref_procrustes(case) if kind == "procrustes" else ref_dcka(case, zs, debiased)

    if refused_batch(case, batches):
        with pytest.raises(ValueError, match=r"_batch (has values of magnitude|contains NaN)"):
            compute()
        return
    errors = _accumulator_errors(case, ("x_batch", "y_batch"))
    check(case, compute, reference, error_names=errors)
