"""The functional core on torch tensors: same numbers as NumPy, on the tensor's device, autograd."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cka_sim import cka, gram_rbf, hsic, kernel_cka, linear_cka  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(n: int = 80, p1: int = 12, p2: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1))
    y = np.tanh(x @ rng.standard_normal((p1, p2))) + 0.5 * rng.standard_normal((n, p2))
    return x, y


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("method", ["features", "gram"])
def test_torch_matches_numpy(debiased, method):
    x, y = _data()
    expected = linear_cka(x, y, debiased=debiased, method=method)
    got = linear_cka(torch.from_numpy(x), torch.from_numpy(y), debiased=debiased, method=method)
    assert isinstance(got, torch.Tensor) and got.ndim == 0 and got.dtype == torch.float64
    assert float(got) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_torch_kernels_match_numpy(debiased):
    x, y = _data(n=41)  # odd n^2: the median is a single middle value
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for kernel in ("rbf", "linear", "polynomial"):
        expected = kernel_cka(x, y, kernel=kernel, threshold=0.6, debiased=debiased)
        got = kernel_cka(xt, yt, kernel=kernel, threshold=0.6, debiased=debiased)
        assert float(got) == pytest.approx(expected, rel=1e-10)
    k, l = x @ x.T, y @ y.T
    assert float(hsic(torch.from_numpy(k), torch.from_numpy(l), unbiased=debiased)) == (
        pytest.approx(hsic(k, l, unbiased=debiased), rel=1e-12)
    )
    assert float(cka(torch.from_numpy(k), torch.from_numpy(l), debiased=debiased)) == (
        pytest.approx(cka(k, l, debiased=debiased), rel=1e-12)
    )


def test_torch_median_averages_two_middle_values_like_numpy():
    x, _ = _data(n=40)  # n^2 even: torch.median alone would take the lower middle value
    assert np.allclose(gram_rbf(torch.from_numpy(x)).numpy(), gram_rbf(x), atol=1e-14)


def test_torch_float32_with_large_means():
    x, y = _data(n=3000, p1=32, p2=32)
    x32 = torch.from_numpy(x + 1000.0).float()
    y32 = torch.from_numpy(np.maximum(y, 0) + 100.0).float()
    truth = linear_cka(x32.double().numpy(), y32.double().numpy(), debiased=True)
    assert abs(float(linear_cka(x32, y32, debiased=True)) - truth) < 1e-6


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "int64"])
def test_low_precision_and_integer_tensors_are_upcast(dtype):
    x, y = _data()
    xt = torch.from_numpy(np.round(x * 4)).to(getattr(torch, dtype))
    yt = torch.from_numpy(np.round(y * 4)).to(getattr(torch, dtype))
    expected = linear_cka(xt.double().numpy(), yt.double().numpy())
    assert float(linear_cka(xt, yt)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("method", ["features", "gram"])
def test_gradient_matches_finite_differences(debiased, method):
    x, y = _data(n=12, p1=3, p2=4)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.from_numpy(y)
    assert torch.autograd.gradcheck(
        lambda a: linear_cka(a, yt, debiased=debiased, method=method), (xt,)
    )
    assert torch.autograd.gradcheck(
        lambda a: kernel_cka(a, yt, sigma=2.0, debiased=debiased), (xt,)
    )


def test_usable_as_a_training_loss():
    torch.manual_seed(0)
    inputs = torch.randn(256, 6)
    target = torch.tanh(inputs @ torch.randn(6, 4))
    layer = torch.nn.Linear(6, 4)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    start = linear_cka(layer(inputs), target).item()
    for _ in range(100):
        optimizer.zero_grad()
        loss = 1 - linear_cka(layer(inputs), target)
        loss.backward()
        optimizer.step()
    assert linear_cka(layer(inputs), target).item() > start + 0.3


def test_mixing_numpy_and_torch_is_a_type_error():
    x, y = _data()
    with pytest.raises(TypeError, match="both be NumPy arrays or both torch tensors"):
        linear_cka(x, torch.from_numpy(y))


def test_tensors_on_different_devices_are_rejected():
    x, _ = _data()
    with pytest.raises(ValueError, match="x is on cpu but y is on meta"):
        linear_cka(torch.from_numpy(x), torch.empty(80, 9, device="meta"))


@cuda
@pytest.mark.parametrize("debiased", [False, True])
def test_cuda_result_stays_on_device(debiased):
    x, y = _data()
    xt, yt = torch.from_numpy(x).cuda().float(), torch.from_numpy(y).cuda().float()
    got = linear_cka(xt, yt, debiased=debiased)
    assert got.device.type == "cuda"
    assert float(got) == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-6)
    rbf = kernel_cka(xt, yt, debiased=debiased)
    assert rbf.device.type == "cuda"
    assert float(rbf) == pytest.approx(kernel_cka(x, y, debiased=debiased), abs=1e-6)


@pytest.mark.parametrize("size", [10, 11, 64])
def test_torch_median_matches_numpy_with_and_without_ties(size):
    import array_api_compat.torch as xt

    from cka_sim._core.backend import median

    rng = np.random.default_rng(size)
    values = rng.standard_normal(size * size)
    for data in (values, np.round(values * 2) / 2, np.zeros_like(values)):
        assert float(median(torch.from_numpy(data), xt)) == np.median(data)
