"""Where the feature-form products of torch tensors run: NumPy's BLAS for CPU tensors that need no
gradient (while torch uses several threads), torch otherwise; the value is the same either way."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cka_sim import linear_cka  # noqa: E402
from cka_sim._core.backend import gram, namespace, numpy_views  # noqa: E402


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def _data(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(200, 12, generator=g, dtype=dtype), torch.randn(
        200, 7, generator=g, dtype=dtype
    )


def test_plain_cpu_tensors_share_memory_with_their_numpy_views(two_threads):
    x, y = _data()
    views = numpy_views(x, y)
    assert views is not None
    assert np.shares_memory(views[0], x.numpy()) and np.shares_memory(views[1], y.numpy())
    self_views = numpy_views(x, x)
    assert self_views[0] is self_views[1]  # one buffer, so NumPy can take its SYRK path


@pytest.mark.parametrize(
    "case", ["requires_grad", "float16", "mixed dtypes", "one thread"], ids=lambda c: c
)
def test_tensors_that_must_stay_in_torch_do(case, two_threads):
    x, y = _data()
    if case == "requires_grad":
        x.requires_grad_(True)
    elif case == "float16":
        x, y = x.half(), y.half()
    elif case == "mixed dtypes":
        y = y.double()
    else:
        torch.set_num_threads(1)
    assert numpy_views(x, y) is None


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_of_tensors_is_that_of_arrays_on_either_path(debiased, two_threads):
    x, y = _data()
    y = y + 0.5 * x[:, :7] + 10.0
    want = linear_cka(x.double().numpy(), y.double().numpy(), debiased=debiased)
    fast = linear_cka(x, y, debiased=debiased)
    assert fast.dtype == torch.float64 and fast.shape == ()
    xg = x.clone().requires_grad_(True)
    slow = linear_cka(xg, y, debiased=debiased)
    slow.backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
    assert float(fast) == pytest.approx(want, abs=1e-6)
    assert float(slow.detach()) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("rows", [127, 128, 300, 511, 600])  # 64-row blocks, then 128-row
def test_gram_is_the_exactly_symmetric_product(transposed, rows):
    g = torch.Generator().manual_seed(rows)
    a = torch.randn(rows, 40, generator=g) if not transposed else torch.randn(40, rows, generator=g)
    x = a.mT if transposed else a  # (rows, 40) either way; a transposed view is aᵀ
    got = gram(x, namespace(x))
    assert torch.equal(got, got.mT)
    assert torch.allclose(got.double(), x.double() @ x.double().mT, rtol=0, atol=1e-4)


def test_gram_of_a_tensor_needing_a_gradient_is_differentiable():
    x = torch.randn(200, 30, dtype=torch.float64, requires_grad=True)
    gram(x, namespace(x)).sum().backward()
    # d/dx Σ (x xᵀ) = 2 (Σ_j x_j) for every row
    assert torch.allclose(x.grad, 2 * x.detach().sum(0).expand_as(x))
