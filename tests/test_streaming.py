"""StreamingCKA / StreamingCKAMatrix: exact agreement with the in-memory estimators."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cka_sim import (
    CKAUndefinedWarning,
    MinibatchCKA,
    StreamingCKA,
    StreamingCKAMatrix,
    cka_matrix,
    linear_cka,
)


def _data(n: int = 97, p1: int = 6, p2: int = 4, seed: int = 0, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1)) * rng.uniform(0.5, 3, p1) + offset
    y = x[:, :p2] @ rng.standard_normal((p2, p2)) * 0.5 + rng.standard_normal((n, p2)) - offset
    return x, y


def _feed(acc, x, y, cuts):
    for a, b in itertools.pairwise(cuts):
        acc.update(x[a:b], y[a:b])
    return acc


def _cuts(n, sizes):
    cuts = [0]
    for s in sizes:
        if cuts[-1] + s >= n:
            break
        cuts.append(cuts[-1] + s)
    return [*cuts, n]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=0, max_size=12),
    debiased=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_equals_in_memory_for_any_split(sizes, debiased, seed):
    x, y = _data(seed=seed, offset=5.0)
    acc = _feed(StreamingCKA(debiased=debiased), x, y, _cuts(len(x), sizes))
    assert acc.n_examples == len(x)
    assert acc.compute() == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("size", [1, 2])
def test_batches_of_one_and_two(size, debiased):
    x, y = _data(n=41)
    acc = _feed(StreamingCKA(debiased), x, y, [*range(0, 41, size), 41])
    assert acc.compute() == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("mean", [100.0, 1000.0])
def test_float32_large_means(mean, debiased):
    x, y = _data(n=3000, p1=40, p2=30, seed=3)
    x32 = (x + mean).astype(np.float32)
    y32 = (y - mean).astype(np.float32)
    acc = _feed(StreamingCKA(debiased), x32, y32, _cuts(3000, [1, 2, 500, 37, 999, 256] * 3))
    truth = linear_cka(x32.astype(np.float64), y32.astype(np.float64), debiased=debiased)
    assert abs(acc.compute() - truth) < 1e-6


@pytest.mark.parametrize("debiased", [False, True])
def test_merge_equals_one_accumulator_and_is_associative(debiased):
    x, y = _data(n=120, seed=5, offset=3.0)
    parts = [(0, 7), (7, 50), (50, 51), (51, 120)]
    accs = [StreamingCKA(debiased).update(x[a:b], y[a:b]) for a, b in parts]
    truth = linear_cka(x, y, debiased=debiased)

    def clone(acc):
        return StreamingCKA(debiased).load_state_dict(acc.state_dict())

    left = clone(accs[0]).merge(clone(accs[1])).merge(clone(accs[2])).merge(clone(accs[3]))
    right = clone(accs[0]).merge(clone(accs[1]).merge(clone(accs[2]).merge(clone(accs[3]))))
    assert left.compute() == pytest.approx(truth, abs=1e-12)
    assert right.compute() == pytest.approx(truth, abs=1e-12)
    for key, value in left.state_dict().items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(value, right.state_dict()[key], rtol=1e-10, atol=1e-9)
    # merging an empty accumulator changes nothing, both ways
    assert clone(left).merge(StreamingCKA(debiased)).compute() == pytest.approx(truth, abs=1e-12)
    assert StreamingCKA(debiased).merge(clone(left)).compute() == pytest.approx(truth, abs=1e-12)


def test_state_dict_round_trip_and_continue(tmp_path):
    x, y = _data(n=80)
    acc = StreamingCKA(debiased=True).update(x[:40], y[:40])
    path = tmp_path / "state.npz"
    np.savez(path, **acc.state_dict())
    with np.load(path, allow_pickle=False) as data:
        loaded = StreamingCKA(debiased=True).load_state_dict({k: data[k] for k in data.files})
    loaded.update(x[40:], y[40:])
    assert loaded.n_examples == 80
    assert loaded.compute() == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
    with pytest.raises(ValueError, match="debiased"):
        StreamingCKA(debiased=False).load_state_dict(acc.state_dict())


def test_reset_and_repr():
    x, y = _data()
    acc = StreamingCKA().update(x, y)
    assert "n_examples=97" in repr(acc)
    acc.reset()
    assert acc.n_examples == 0
    with pytest.raises(ValueError, match="seen 0 example"):
        acc.compute()


def test_errors():
    x, y = _data()
    acc = StreamingCKA()
    with pytest.raises(ValueError, match="same number of rows"):
        acc.update(x[:5], y[:6])
    acc.update(x[:5], y[:5])
    with pytest.raises(ValueError, match="features"):
        acc.update(x[:5, :3], y[:5])
    bad = x[5:10].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        acc.update(bad, y[5:10])
    deb = StreamingCKA(debiased=True).update(x[:3], y[:3])
    with pytest.raises(ValueError, match="at least 4"):
        deb.compute()
    with pytest.raises(ValueError, match="debiased"):
        StreamingCKA().merge(StreamingCKA(debiased=True))
    with pytest.raises(TypeError):
        StreamingCKA().merge(MinibatchCKA())


def test_constant_features_give_nan_with_warning():
    _, y = _data()
    acc = StreamingCKA().update(np.full((30, 3), 7.0, dtype=np.float32), y[:30])
    with pytest.warns(CKAUndefinedWarning, match="x"):
        assert np.isnan(acc.compute())


def test_torch_tensors_stay_on_device():
    torch = pytest.importorskip("torch")
    x, y = _data(n=64, offset=50.0)
    acc = StreamingCKA(debiased=True)
    for a in range(0, 64, 10):
        acc.update(
            torch.tensor(x[a : a + 10], dtype=torch.float32, requires_grad=True),
            torch.tensor(y[a : a + 10], dtype=torch.float32),
        )
    out = acc.compute()
    assert isinstance(out, torch.Tensor) and out.ndim == 0 and out.dtype == torch.float64
    assert float(out) == pytest.approx(
        linear_cka(
            x.astype(np.float32).astype(float), y.astype(np.float32).astype(float), debiased=True
        ),
        abs=1e-6,
    )
    assert all(isinstance(v, torch.Tensor) for k, v in acc.state_dict().items() if "." in k)
    with pytest.raises(TypeError, match="one kind"):
        acc.update(x[:4], y[:4])
    nan = torch.tensor(x[:8])
    nan[0, 0] = float("inf")
    acc2 = StreamingCKA().update(nan, torch.tensor(y[:8]))
    with pytest.raises(ValueError, match="NaN or infinity"):
        acc2.compute()


def test_half_precision_and_int_inputs():
    torch = pytest.importorskip("torch")
    x, y = _data(n=50)
    acc = StreamingCKA().update(torch.tensor(x).to(torch.bfloat16), torch.tensor(y).half())
    ref = linear_cka(
        torch.tensor(x).to(torch.bfloat16).float().numpy(), torch.tensor(y).half().float().numpy()
    )
    assert float(acc.compute()) == pytest.approx(ref, abs=1e-6)
    xi = np.arange(60).reshape(20, 3) % 7
    assert StreamingCKA().update(xi, y[:20]).compute() == pytest.approx(linear_cka(xi, y[:20]))


# -- StreamingCKAMatrix ------------------------------------------------------------------------


def _layers(n=150, seed=1):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 8))
    a = {
        "conv": (base @ rng.standard_normal((8, 12)) + 10).reshape(n, 3, 4),
        "fc": np.tanh(base[:, :5]) * 3,
        "out": base[:, :2] ** 2 - 4,
    }
    b = {"z": base @ rng.standard_normal((8, 6)) + rng.standard_normal((n, 6)), "h": base + 100}
    return a, b


@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_equals_pairwise_linear_cka(debiased):
    a, b = _layers()
    acc = StreamingCKAMatrix(debiased=debiased)
    for lo, hi in zip([0, 1, 3, 60, 61], [1, 3, 60, 61, 150], strict=True):
        acc.update({k: v[lo:hi] for k, v in a.items()}, [v[lo:hi] for v in b.values()])
    result = acc.compute()
    assert result.row_names == ["conv", "fc", "out"] and result.col_names == ["0", "1"]
    assert result.estimator == ("linear-debiased" if debiased else "linear")
    assert result.n_examples == 150
    truth = [[linear_cka(a[i], bj, debiased=debiased) for bj in b.values()] for i in a]
    np.testing.assert_allclose(result.values, truth, atol=1e-10)
    np.testing.assert_allclose(
        cka_matrix(a, list(b.values()), debiased=debiased).values, truth, atol=1e-10
    )


@pytest.mark.parametrize("debiased", [False, True])
def test_matrix_shared_mapping_and_merge(debiased):
    a, _ = _layers(n=90)
    names = list(a)
    first, second = StreamingCKAMatrix(debiased), StreamingCKAMatrix(debiased)
    for acc, (lo, hi) in ((first, (0, 40)), (second, (40, 90))):
        for s in range(lo, hi, 13):
            batch = {k: v[s : min(s + 13, hi)] for k, v in a.items()}
            acc.update(batch, batch)
    merged = StreamingCKAMatrix(debiased).merge(first).merge(second)
    result = merged.compute()
    truth = [[linear_cka(a[i], a[j], debiased=debiased) for j in names] for i in names]
    np.testing.assert_allclose(result.values, truth, atol=1e-10)
    assert result.row_names == result.col_names == names
    # shared mode keeps only i < j cross terms
    assert len(merged._m.pairs) == 3 and len(merged._m.S) == 3
    restored = StreamingCKAMatrix(debiased).load_state_dict(merged.state_dict())
    np.testing.assert_allclose(restored.compute().values, truth, atol=1e-10)


def test_matrix_memory_estimate_and_budget():
    widths_a, widths_b = [100, 20], [50]
    state = 100**2 + 20**2 + 50**2 + 120 * 50 + 170
    # the state (twice: a batch's statistics beside it) and the block of waiting rows, 4096 x 170
    block = 4096 * 170 * 8
    assert StreamingCKAMatrix.estimate_memory(widths_a, widths_b) == 2 * 8 * state + block
    shared = StreamingCKAMatrix.estimate_memory([10, 20], shared=True)
    assert shared == 2 * 8 * (100 + 400 + 200 + 30) + 4096 * 30 * 8
    rng = np.random.default_rng(0)
    acc = StreamingCKAMatrix(memory_budget_bytes=10_000)
    with pytest.raises(MemoryError, match=r"MinibatchCKA") as err:
        acc.update({"wide": rng.standard_normal((8, 100))}, {"w": rng.standard_normal((8, 50))})
    assert f"{StreamingCKAMatrix.estimate_memory([100], [50]):,}" in str(err.value)
    small = StreamingCKAMatrix(memory_budget_bytes=10**6)
    small.update({"a": rng.standard_normal((8, 10))}, {"b": rng.standard_normal((8, 5))})


def test_matrix_errors_and_constant_layer():
    a, b = _layers(n=30)
    acc = StreamingCKAMatrix()
    acc.update(a, b)
    with pytest.raises(ValueError, match="names layers"):
        acc.update({"other": a["fc"]}, b)
    with pytest.raises(ValueError, match="same number of rows"):
        acc.update({"conv": a["conv"], "fc": a["fc"][:5], "out": a["out"]}, b)
    with pytest.raises(TypeError, match="mapping"):
        acc.update(a["fc"], b)
    const = StreamingCKAMatrix().update({"dead": np.zeros((30, 4)), "fc": a["fc"]}, b)
    with pytest.warns(CKAUndefinedWarning, match="'dead'"):
        result = const.compute()
    assert np.isnan(result.values[0]).all() and np.isfinite(result.values[1]).all()


def test_matrix_torch():
    torch = pytest.importorskip("torch")
    a, b = _layers(n=64)
    acc = StreamingCKAMatrix(debiased=True)
    for s in range(0, 64, 16):
        acc.update(
            {k: torch.tensor(v[s : s + 16]) for k, v in a.items()},
            {k: torch.tensor(v[s : s + 16]) for k, v in b.items()},
        )
    truth = [[linear_cka(a[i], b[j], debiased=True) for j in b] for i in a]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(acc.compute().values, truth, atol=1e-10)


def test_prepared_batches_give_the_same_statistics():
    x, y = _data(n=60)
    plain, prepared = StreamingCKA(debiased=True), StreamingCKA(debiased=True)
    for s in range(0, 60, 25):
        plain.update(x[s : s + 25], y[s : s + 25])
        prepared.update(prepared.prepare(x[s : s + 25]), y[s : s + 25])
    assert prepared.n_examples == 60
    assert prepared.compute() == pytest.approx(plain.compute(), abs=1e-14)
    with pytest.raises(ValueError, match="same number of rows"):
        prepared.update(prepared.prepare(x[:5]), y[:6])
