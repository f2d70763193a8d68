"""JAX and array-api-strict arrays go through every estimator and give the NumPy values.

These libraries are read through a NumPy copy (``cka_sim._core.check.to_host``): the values must
equal those of the same data as NumPy arrays, to 1e-12 in float64, and a JAX tracer (inside
``jax.jit`` or ``jax.grad``) is refused with a message that says tracing is not supported. CuPy
takes the same path (``.get()``) but needs a GPU, so it is not tested here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cka_sim
from cka_sim._core.backend import other_library

jax = pytest.importorskip("jax", reason="JAX not installed (pip install 'cka-sim[arrays-test]')")
jax.config.update("jax_enable_x64", True)  # float64 JAX arrays, as the 1e-12 comparison needs
jnp = jax.numpy
xps = pytest.importorskip(
    "array_api_strict", reason="array-api-strict not installed (pip install 'cka-sim[arrays-test]')"
)

LIBRARIES = {"jax": jnp.asarray, "array_api_strict": xps.asarray}
TOL = 1e-12


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 6)) + 3.0
    return {
        "x": x,
        "y": x[:, :4] @ rng.standard_normal((4, 5)) + rng.standard_normal((40, 5)),
        "z": rng.standard_normal((40, 3)),
    }


def _measures(d: dict[str, np.ndarray]) -> dict[str, object]:
    """Each estimator as a function of (x, y, z) arrays of one library."""
    return {
        "linear": lambda x, y, z: cka_sim.linear_cka(x, y),
        "linear-debiased-features": lambda x, y, z: cka_sim.linear_cka(
            x, y, debiased=True, method="features"
        ),
        "linear-gram": lambda x, y, z: cka_sim.linear_cka(x, y, method="gram"),
        "rbf": lambda x, y, z: cka_sim.kernel_cka(x, y, threshold=0.5),
        "rbf-debiased": lambda x, y, z: cka_sim.kernel_cka(x, y, debiased=True),
        "cka-grams": lambda x, y, z: cka_sim.cka(cka_sim.gram_linear(x), cka_sim.gram_rbf(y)),
        "hsic": lambda x, y, z: cka_sim.hsic(cka_sim.gram_linear(x), cka_sim.gram_linear(y)),
        "hsic-unbiased": lambda x, y, z: cka_sim.hsic(
            cka_sim.gram_linear(x), cka_sim.gram_linear(y), unbiased=True
        ),
        "procrustes": lambda x, y, z: cka_sim.procrustes_similarity(x, y),
        "procrustes-distance": lambda x, y, z: cka_sim.procrustes_distance(x, y),
        "dcka": lambda x, y, z: cka_sim.deconfounded_cka(x, y, z),
        "dcka-debiased": lambda x, y, z: cka_sim.deconfounded_cka(x, y, z, debiased=True),
    }


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("measure", list(_measures({})))
def test_estimators_give_the_numpy_value(data, library, measure) -> None:
    fn = _measures(data)[measure]
    convert = LIBRARIES[library]
    expected = fn(data["x"], data["y"], data["z"])
    got = fn(*(convert(data[k]) for k in "xyz"))
    assert isinstance(got, float)
    assert abs(got - expected) <= TOL
    assert 0.0 < abs(expected)  # a value that would catch an all-zero input, not 0 == 0


@pytest.mark.parametrize("library", LIBRARIES)
def test_linear_cka_float64_to_1e12_on_random_shapes(library) -> None:
    convert = LIBRARIES[library]

    @settings(max_examples=20, deadline=None)
    @given(
        n=st.integers(4, 30),
        p=st.integers(1, 12),
        q=st.integers(1, 12),
        seed=st.integers(0, 2**16),
        offset=st.sampled_from([0.0, 10.0, -1e3]),
    )
    def check(n: int, p: int, q: int, seed: int, offset: float) -> None:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, p)) + offset
        y = rng.standard_normal((n, q)) + x[:, :1]
        for debiased in (False, True):
            expected = cka_sim.linear_cka(x, y, debiased=debiased)
            got = cka_sim.linear_cka(convert(x), convert(y), debiased=debiased)
            assert abs(got - expected) <= TOL

    check()


@pytest.mark.parametrize("library", LIBRARIES)
def test_accumulators_and_matrix_give_the_numpy_values(data, library) -> None:
    convert = LIBRARIES[library]
    x, y = data["x"], data["y"]
    streaming = cka_sim.StreamingCKA(debiased=True)
    for rows in (slice(0, 15), slice(15, 40)):
        streaming.update(convert(x[rows]), convert(y[rows]))
    assert abs(streaming.compute() - cka_sim.linear_cka(x, y, debiased=True)) <= TOL

    def minibatch(conv) -> np.ndarray:
        acc = cka_sim.MinibatchCKA()
        for rows in (slice(0, 20), slice(20, 40)):
            acc.update({"x": conv(x[rows])}, {"y": conv(y[rows]), "x": conv(x[rows])})
        return acc.compute().values

    assert np.allclose(minibatch(convert), minibatch(np.asarray), rtol=0, atol=TOL)
    matrix = cka_sim.StreamingCKAMatrix()
    for rows in (slice(0, 15), slice(15, 40)):
        matrix.update({"x": convert(x[rows])}, {"y": convert(y[rows])})
    assert abs(matrix.compute().values[0, 0] - cka_sim.linear_cka(x, y)) <= TOL
    layers = {"x": x, "y": y}
    expected = cka_sim.cka_matrix(layers, layers).values
    got = cka_sim.cka_matrix({k: convert(v) for k, v in layers.items()}, layers).values
    assert np.allclose(got, expected, rtol=0, atol=TOL)
    assert abs(expected[0, 1] - cka_sim.linear_cka(x, y)) <= TOL


def test_float32_and_bfloat16_jax_arrays_are_read_as_their_values(data) -> None:
    x, y = data["x"].astype(np.float32), data["y"].astype(np.float32)
    assert cka_sim.linear_cka(jnp.asarray(x), jnp.asarray(y)) == cka_sim.linear_cka(x, y)
    half = jnp.asarray(data["x"], dtype=jnp.bfloat16)
    exact = np.asarray(half).astype(np.float32)  # bfloat16 values are float32 values
    assert cka_sim.linear_cka(half, jnp.asarray(y)) == cka_sim.linear_cka(exact, y)


def test_permutation_test_reads_jax_arrays(data) -> None:
    x, y = data["x"], data["y"]
    got = cka_sim.permutation_test(jnp.asarray(x), jnp.asarray(y), n_permutations=19, seed=0)
    expected = cka_sim.permutation_test(x, y, n_permutations=19, seed=0)
    assert got.pvalue == expected.pvalue
    assert abs(got.statistic - expected.statistic) <= TOL


@pytest.mark.parametrize("transform", ["jit", "grad", "vmap"])
def test_jax_tracers_are_refused_with_a_message_about_tracing(data, transform) -> None:
    y = jnp.asarray(data["y"])

    def f(a):
        return cka_sim.linear_cka(a, y[: a.shape[0]])

    x = jnp.asarray(data["x"])
    traced = {
        "jit": jax.jit(f),
        "grad": jax.grad(f),
        "vmap": jax.vmap(f),
    }[transform]
    arg = jnp.stack([x, x]) if transform == "vmap" else x
    with pytest.raises(TypeError, match=r"x is a JAX tracer.*does not support"):
        traced(arg)


def test_a_jax_array_with_a_torch_tensor_is_refused_by_both_names(data) -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"jaxlib\S*ArrayImpl and torch\.Tensor"):
        cka_sim.linear_cka(jnp.asarray(data["x"]), torch.as_tensor(data["y"]))


def test_other_library_names_the_library_and_nothing_else(data) -> None:
    assert other_library(jnp.asarray(data["x"])) == "jax"
    assert other_library(xps.asarray(data["x"])) == "array_api_strict"
    assert other_library(data["x"]) is None
    assert other_library([[1.0, 2.0]]) is None


def test_an_unconvertible_object_names_what_is_supported() -> None:
    with pytest.raises(TypeError, match=r"torch tensors .*JAX, CuPy and array-api-strict"):
        cka_sim.linear_cka([[1.0, 2.0], [3.0]], [[1.0], [2.0]])


def test_an_array_on_another_device_is_refused_by_name(data) -> None:
    other = xps.Device("device1")
    x, y = (xps.asarray(data[k], device=other) for k in "xy")
    with pytest.raises(TypeError, match=r"x \(array_api_strict array\) could not be copied.*CPU"):
        cka_sim.linear_cka(x, y)


def test_bootstrap_reads_array_api_strict_arrays(data) -> None:
    x, y = data["x"], data["y"]
    got = cka_sim.bootstrap_ci(xps.asarray(x), xps.asarray(y), n_resamples=30, seed=0)
    expected = cka_sim.bootstrap_ci(x, y, n_resamples=30, seed=0)
    assert abs(got.confidence_interval.low - expected.confidence_interval.low) <= TOL
    assert abs(got.confidence_interval.high - expected.confidence_interval.high) <= TOL
