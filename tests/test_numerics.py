"""The numerical guarantees: any magnitude, exact centring, undefined is explained, bad input refused.

Each test here reproduces a defect found by fuzzing (issue: "No silent wrong answers"). The
hypothesis fuzzer over the whole public API is ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from cka_sim import (
    CKAUndefinedWarning,
    MinibatchCKA,
    StreamingCKA,
    StreamingCKAMatrix,
    bootstrap_ci,
    center_gram,
    cka,
    cka_matrix,
    cka_matrix_with_uncertainty,
    deconfounded_cka,
    gram_linear,
    hsic,
    kernel_cka,
    linear_cka,
    permutation_test,
    procrustes_similarity,
)
from cka_sim.__main__ import main


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    bx = rng.standard_normal((50, 8))
    by = bx @ rng.standard_normal((8, 5)) + rng.standard_normal((50, 5))
    return bx, by


def _exact_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Biased linear CKA in exact rational arithmetic (for small inputs)."""

    def centred_gram(a: np.ndarray) -> list[list[Fraction]]:
        rows = [[Fraction(float(v)) for v in row] for row in a]
        n = len(rows)
        means = [sum(col) / n for col in zip(*rows, strict=True)]
        c = [[v - m for v, m in zip(row, means, strict=True)] for row in rows]
        return [[sum(u * v for u, v in zip(a_, b_, strict=True)) for b_ in c] for a_ in c]

    k, l = centred_gram(x), centred_gram(y)

    def inner(a: list[list[Fraction]], b: list[list[Fraction]]) -> Fraction:
        return sum(
            sum(u * v for u, v in zip(ra, rb, strict=True)) for ra, rb in zip(a, b, strict=True)
        )

    return float(inner(k, l)) / math.sqrt(float(inner(k, k)) * float(inner(l, l)))


# --- magnitude: every estimator, every power of two -------------------------------------------


def _confounder(x: Any) -> np.ndarray:
    """A confounder at the magnitude and dtype of ``x`` (the deconfounded value depends on it)."""
    z = np.random.default_rng(5).standard_normal((x.shape[0], 3))
    return (z * float(np.max(np.abs(x)))).astype(x.dtype)


ESTIMATORS: dict[str, Callable[[Any, Any], float]] = {
    "linear_cka features": lambda x, y: linear_cka(x, y, method="features"),
    "linear_cka gram": lambda x, y: linear_cka(x, y, method="gram"),
    "linear_cka debiased": lambda x, y: linear_cka(x, y, debiased=True),
    "kernel_cka rbf": lambda x, y: kernel_cka(x, y, threshold=0.5),
    "kernel_cka linear debiased": lambda x, y: kernel_cka(x, y, kernel="linear", debiased=True),
    "cka_matrix": lambda x, y: cka_matrix({"x": x}, {"y": y}).values[0, 0],
    "cka_matrix debiased": lambda x, y: cka_matrix([x], [y], debiased=True).values[0, 0],
    "deconfounded_cka": lambda x, y: deconfounded_cka(x, y, _confounder(x)),
    "deconfounded_cka gram": lambda x, y: deconfounded_cka(x, y, _confounder(x), method="gram"),
    "procrustes_similarity": procrustes_similarity,
    "permutation_test": lambda x, y: permutation_test(x, y, n_permutations=9, seed=0).statistic,
    "bootstrap_ci": lambda x, y: bootstrap_ci(x, y, n_resamples=9, seed=0).statistic,
    "cka_matrix_with_uncertainty": lambda x, y: cka_matrix_with_uncertainty(
        {"x": x}, {"y": y}, n_resamples=9, n_permutations=9, seed=0
    ).values[0, 0],
}


def _streaming(x: Any, y: Any) -> float:
    acc = StreamingCKA()
    for start in range(0, x.shape[0], 16):
        acc.update(x[start : start + 16], y[start : start + 16])
    return float(acc.compute())


def _streaming_matrix(x: Any, y: Any) -> float:
    acc = StreamingCKAMatrix(debiased=True)
    for start in range(0, x.shape[0], 16):
        acc.update({"x": x[start : start + 16]}, {"y": y[start : start + 16]})
    return float(acc.compute().values[0, 0])


def _minibatch(x: Any, y: Any) -> float:
    acc = MinibatchCKA()
    for start in range(0, x.shape[0] - 9, 10):
        acc.update({"x": x[start : start + 10]}, {"y": y[start : start + 10]})
    return float(acc.compute().values[0, 0])


ACCUMULATORS = {"StreamingCKA": _streaming, "StreamingCKAMatrix": _streaming_matrix}
ACCUMULATORS["MinibatchCKA"] = _minibatch

# float32: the largest magnitude at 2**k, k in [-120, 120]; float64: k in [-1000, 1000].
SCALES = {
    "float32": [-120, -75, -40, 0, 40, 63, 120],
    "float64": [-1000, -500, -260, 0, 260, 500, 1000],
}
TOLERANCE = {"float32": 1e-5, "float64": 1e-9}


def _scaled(a: np.ndarray, k: int, dtype: str) -> np.ndarray:
    top = math.frexp(float(np.max(np.abs(a))))[1]
    return np.ldexp(a, k - top).astype(dtype)


def _check_scale_invariance(estimate: Callable[[Any, Any], float], pair: Any, dtype: str) -> None:
    bx, by = pair
    x0, y0 = bx.astype(dtype), by.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow, underflow or "constant" warning
        reference = estimate(x0.astype(np.float64), y0.astype(np.float64))
        for k in SCALES[dtype]:
            value = estimate(_scaled(x0, k, dtype), _scaled(y0, -k, dtype))
            assert abs(value - reference) <= TOLERANCE[dtype], (k, value, reference)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimators_do_not_depend_on_the_magnitude(name, dtype, pair) -> None:
    _check_scale_invariance(ESTIMATORS[name], pair, dtype)


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(ACCUMULATORS))
def test_accumulators_do_not_depend_on_the_magnitude(name, library, pair) -> None:
    # float32: every magnitude. float64: within 2**±200, where their float64 statistics (up to
    # fourth powers) fit; beyond it a ValueError names the batch and the power of two to apply.
    convert = _torch_convert if library == "torch" else (lambda a: a)
    _check_scale_invariance(
        lambda x, y: ACCUMULATORS[name](convert(x), convert(y)), pair, "float32"
    )
    bx, by = pair
    for k in (-190, -120, 0, 120, 190):  # the largest magnitude of the data (batches: below)
        value = ACCUMULATORS[name](convert(_scaled(bx, k, "float64")), convert(by))
        assert value == pytest.approx(ACCUMULATORS[name](bx, by), abs=1e-9)
    message = r"has values of magnitude about 2\*\*"
    for k in (-1000, -260, 260, 1000):
        with pytest.raises(ValueError, match=message):
            ACCUMULATORS[name](convert(_scaled(bx, k, "float64")), convert(by))
        with pytest.raises(ValueError, match=message):
            ACCUMULATORS[name](convert(bx), convert(_scaled(by, k, "float64")))


def _torch_convert(a: np.ndarray) -> Any:
    torch = pytest.importorskip("torch")
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("method", ["features", "gram"])
@pytest.mark.parametrize("scale", [1e-23, 1e-25, 1e19])
def test_float32_examples_of_the_issue(pair, scale, method) -> None:
    bx, by = pair
    truth = linear_cka(bx.astype(np.float32).astype(np.float64), by.astype(np.float32))
    assert truth == pytest.approx(0.594, abs=1e-3)
    x = (bx * scale).astype(np.float32)
    assert linear_cka(x, by.astype(np.float32), method=method) == pytest.approx(truth, abs=1e-5)


@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_float64_examples_of_the_issue(pair, scale) -> None:
    bx, by = pair
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert linear_cka(bx * scale, by) == pytest.approx(linear_cka(bx, by), abs=1e-12)
        debiased = linear_cka(bx * scale, by, debiased=True)
        assert debiased == pytest.approx(linear_cka(bx, by, debiased=True), abs=1e-12)


def test_torch_input_of_any_magnitude_keeps_its_gradient(pair) -> None:
    torch = pytest.importorskip("torch")
    bx, by = pair
    x = torch.tensor(bx * 1e-30, dtype=torch.float32, requires_grad=True)
    value = linear_cka(x, torch.tensor(by, dtype=torch.float32))
    value.backward()
    assert float(value) == pytest.approx(linear_cka(bx, by), abs=1e-5)
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().max()) > 0


def test_hsic_scales_back_and_says_when_the_value_leaves_float64(pair) -> None:
    bx, by = pair
    k, l = gram_linear(bx), gram_linear(by)
    assert hsic(k * 2.0**600, l * 2.0**-590) == pytest.approx(hsic(k, l) * 2.0**10, rel=1e-12)
    with pytest.warns(RuntimeWarning, match="outside the float64 range"):
        assert math.isinf(hsic(k * 1e200, l * 1e200))


def test_cli_prints_the_value_at_1e150_and_refuses_undefined(tmp_path, pair, capsys) -> None:
    bx, by = pair
    np.save(tmp_path / "x.npy", bx * 1e150)
    np.save(tmp_path / "y.npy", by)
    np.save(tmp_path / "c.npy", np.full((50, 3), 0.1))
    assert main([str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--debiased"]) == 0
    expected = linear_cka(bx, by, debiased=True)
    assert f"= {expected:.4f}" in capsys.readouterr().out
    assert main([str(tmp_path / "c.npy"), str(tmp_path / "y.npy")]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower()
    assert "undefined for x" in captured.err and "constant" in captured.err


# --- exact centring in float64 -----------------------------------------------------------------


def test_float64_feature_form_is_exact_at_mean_1e9_spread_1e5(pair) -> None:
    bx, by = pair
    x = 1e9 + 1e-5 * bx[:20, :3]
    y = by[:20, :2]
    exact = _exact_linear_cka(x, y)
    assert linear_cka(x, y, method="features") == pytest.approx(exact, abs=1e-10)
    assert linear_cka(x, y, method="gram") == pytest.approx(exact, abs=1e-10)
    assert cka_matrix([x], [y]).values[0, 0] == pytest.approx(exact, abs=1e-10)


# --- undefined is explained ---------------------------------------------------------------------


def test_cka_matrix_with_uncertainty_warns_for_a_constant_layer_by_name() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((40, 2))
    acts_a = {"dead": np.full((40, 3), 0.1), "alive": y + rng.standard_normal((40, 2))}
    with pytest.warns(CKAUndefinedWarning, match="layer 'dead' of acts_a.*constant"):
        res = cka_matrix_with_uncertainty(acts_a, {"y": y}, n_resamples=20, n_permutations=19)
    assert np.isnan(res.values[0, 0]) and np.isfinite(res.values[1, 0])
    assert (
        np.isnan(res.pvalues[0, 0]) and np.isnan(res.ci_low[0, 0]) and np.isnan(res.ci_high[0, 0])
    )


@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("debiased", [False, True])
def test_accumulators_warn_for_a_constant_float64_layer(library, debiased) -> None:
    x = np.full((100, 3), 0.1)
    y = np.random.default_rng(0).standard_normal((100, 2))
    if library == "torch":
        torch = pytest.importorskip("torch")
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    with pytest.warns(CKAUndefinedWarning, match="constant"):
        assert math.isnan(float(StreamingCKA(debiased=debiased).update(x, y).compute()))
    with pytest.warns(CKAUndefinedWarning, match="constant"):
        acc = StreamingCKAMatrix(debiased=debiased).update({"x": x}, {"y": y})
        assert math.isnan(acc.compute().values[0, 0])
    with pytest.warns(CKAUndefinedWarning, match="constant"):
        acc = MinibatchCKA(debiased=debiased).update({"x": x[:15]}, {"y": y[:15]})
        assert math.isnan(acc.compute().values[0, 0])


# --- the default bootstrap interval -------------------------------------------------------------


def test_default_bootstrap_interval_is_finite_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 20))
    y = x + rng.standard_normal((100, 20))  # population linear CKA 0.5
    for seed in range(3):
        with pytest.warns(RuntimeWarning, match="basic interval widened"):
            res = bootstrap_ci(x, y, seed=seed)
        low, high = res.confidence_interval.low, res.confidence_interval.high
        assert np.isfinite([low, high]).all() and low <= res.statistic <= high
        assert res.interval_method == "basic-widened"
        assert low < 0.5 < high


def test_bca_is_kept_where_it_is_defined_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 3))
    y = x @ rng.standard_normal((3, 3)) + rng.standard_normal((200, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = bootstrap_ci(x, y, n_resamples=300, debiased=True, seed=0)
    assert res.interval_method == "bca"
    assert res.confidence_interval.low < res.statistic < res.confidence_interval.high


def test_default_interval_covers_the_population_value() -> None:
    # Biased CKA, n = 40, p = 8 (population CKA known in closed form): the default interval
    # covers it about 88 % of the time (BCa; the basic interval 87 %, percentile 80 %).
    d = np.array([2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1])
    s = 1.5
    truth = float(np.sum(d**4) / np.sqrt(np.sum(d**4) * np.sum((d**2 + s**2) ** 2)))
    rng = np.random.default_rng(7)
    hits, contains, reps = 0, 0, 150
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(reps):
            x = rng.standard_normal((40, d.size)) * d
            y = x + s * rng.standard_normal(x.shape)
            res = bootstrap_ci(x, y, n_resamples=200, seed=rng)
            low, high = res.confidence_interval.low, res.confidence_interval.high
            hits += low <= truth <= high
            contains += low <= res.statistic <= high
    assert contains == reps
    assert 0.8 <= hits / reps <= 1.0


@pytest.mark.parametrize("seed", range(4))
def test_fallback_contains_the_basic_interval(seed) -> None:
    # Where BCa falls back, the interval is the basic one widened: it covers the population
    # value whenever the basic interval does (at n = 100, p = 20 both cover about 60 % of the
    # time: biased CKA's bias is not first order there; debiased=True covers 96 %).
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((100, 20))
    y = x + rng.standard_normal((100, 20))
    with pytest.warns(RuntimeWarning, match="basic interval widened"):
        default = bootstrap_ci(x, y, n_resamples=200, seed=seed)
    basic = bootstrap_ci(x, y, n_resamples=200, seed=seed, method="basic")
    assert default.interval_method == "basic-widened" and basic.interval_method == "basic"
    assert default.confidence_interval.low == basic.confidence_interval.low
    assert default.confidence_interval.high == max(
        basic.confidence_interval.high, default.statistic
    )


def test_layerwise_records_the_cells_that_fell_back() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 20))
    acts = {"x": x, "y": x + rng.standard_normal((100, 20))}
    with pytest.warns(RuntimeWarning, match="basic interval widened"):
        res = cka_matrix_with_uncertainty(acts, {"y": acts["y"]}, n_permutations=0, seed=0)
    assert ["x", "y"] in res.metadata["interval_fallback_cells"]
    assert np.all(res.ci_low <= res.values) and np.all(res.values <= res.ci_high)


# --- inputs without values are refused by name --------------------------------------------------


def _masked(pair: Any) -> tuple[np.ndarray, np.ndarray]:
    bx, by = pair
    x = np.ma.masked_array(bx.copy(), mask=np.zeros_like(bx, dtype=bool))
    x[3, 1] = np.ma.masked
    return x, by


def _masked_gram(a: np.ndarray) -> np.ndarray:
    k = np.ma.masked_array(a.data @ a.data.T, mask=np.zeros((a.shape[0],) * 2, dtype=bool))
    k[3, 3] = np.ma.masked
    return k


MASKED_CALLS: dict[str, Callable[[Any, Any], Any]] = {
    "linear_cka": linear_cka,
    "kernel_cka": kernel_cka,
    "cka": lambda x, y: cka(_masked_gram(x), y @ y.T),
    "hsic": lambda x, y: hsic(y @ y.T, _masked_gram(x)),
    "center_gram": lambda x, y: center_gram(_masked_gram(x)),
    "gram_linear": lambda x, y: gram_linear(x),
    "cka_matrix": lambda x, y: cka_matrix([x], [y]),
    "StreamingCKA": lambda x, y: StreamingCKA().update(x, y),
    "StreamingCKAMatrix": lambda x, y: StreamingCKAMatrix().update([x], [y]),
    "MinibatchCKA": lambda x, y: MinibatchCKA().update([x], [y]),
    "deconfounded_cka": lambda x, y: deconfounded_cka(x, y, _confounder(x)),
    "deconfounded_cka gram": lambda x, y: deconfounded_cka(x, y, _confounder(x), method="gram"),
    "procrustes_similarity": procrustes_similarity,
    "permutation_test": lambda x, y: permutation_test(x, y, n_permutations=9),
    "bootstrap_ci": lambda x, y: bootstrap_ci(x, y, n_resamples=9),
    "cka_matrix_with_uncertainty": lambda x, y: cka_matrix_with_uncertainty({"x": x}, {"y": y}),
}


@pytest.mark.parametrize("name", list(MASKED_CALLS))
def test_masked_arrays_are_refused_with_a_clear_message(name, pair) -> None:
    x, y = _masked(pair)
    with pytest.raises(TypeError, match=r"^\S+ is a NumPy masked array.*filled"):
        MASKED_CALLS[name](x, y)


def test_meta_tensors_are_refused_by_name() -> None:
    torch = pytest.importorskip("torch")
    x = torch.empty((20, 3), device="meta")
    y = torch.empty((20, 3), device="meta")
    for call in (linear_cka, kernel_cka, lambda a, b: cka_matrix([a], [b])):
        with pytest.raises(ValueError, match="'meta' device"):
            call(x, y)
    with pytest.raises(ValueError, match="x is a tensor on the 'meta' device"):
        permutation_test(x, y)


def test_statistics_accept_bfloat16_as_linear_cka_does(pair) -> None:
    torch = pytest.importorskip("torch")
    bx, by = pair
    x = torch.tensor(bx, dtype=torch.bfloat16)
    y = torch.tensor(by, dtype=torch.bfloat16)
    expected = linear_cka(x, y)
    assert permutation_test(x, y, n_permutations=9, seed=0).statistic == pytest.approx(
        float(expected), abs=1e-6
    )
    assert bootstrap_ci(x, y, n_resamples=9, seed=0).statistic == pytest.approx(
        float(expected), abs=1e-6
    )
    res = cka_matrix_with_uncertainty({"x": x}, {"y": y}, n_resamples=9, n_permutations=9)
    assert res.values[0, 0] == pytest.approx(float(expected), abs=1e-6)


def test_minibatch_refuses_numpy_and_torch_mixed_by_name() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((16, 3))
    with pytest.raises(TypeError, match="acts_a holds NumPy arrays but acts_b holds torch tensors"):
        MinibatchCKA().update({"a": x}, {"b": torch.from_numpy(x)})
    with pytest.raises(TypeError, match="acts_a holds torch tensors but acts_b holds NumPy arrays"):
        MinibatchCKA().update([torch.from_numpy(x)], [x])


def test_compare_models_names_a_layer_whose_output_is_not_a_batch() -> None:
    torch = pytest.importorskip("torch")
    from cka_sim.torch import compare_models

    class Scalar(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x: Any) -> Any:
            return self.linear(x).sum()  # a 0-dim output

    loader = [torch.randn(8, 3) for _ in range(2)]
    for estimator in ("minibatch", "exact"):
        with pytest.raises(ValueError, match=r"layer '': its output is a scalar .* no batch dim"):
            compare_models(
                Scalar(),
                Scalar(),
                loader,
                layers_a=[""],
                layers_b=["linear"],
                estimator=estimator,
                progress=False,
            )


def test_streaming_single_batch_is_exact_at_mean_1e9_spread_1e5(pair) -> None:
    bx, by = pair
    x, y = 1e9 + 1e-5 * bx[:20, :3], by[:20, :2]
    exact = _exact_linear_cka(x, y)
    assert float(StreamingCKA().update(x, y).compute()) == pytest.approx(exact, abs=1e-10)
    acc = StreamingCKAMatrix().update({"x": x}, {"y": y})
    assert acc.compute().values[0, 0] == pytest.approx(exact, abs=1e-10)
