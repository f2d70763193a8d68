"""Large CPU inputs of the one-shot feature forms are centred block by block inside the products
(cka_sim._blocked): the same numbers as the centred copy, to float64 precision, at any offset, with
no copy of the data."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cka_sim._blocked as blocked
from cka_sim import deconfounded_cka, linear_cka
from cka_sim._backend import add_outer, max_abs_exponent, within_window


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 64 rows, and any batch of 128 rows or more done by blocks."""
    monkeypatch.setattr(blocked, "WORKSPACE_BYTES", 1)
    monkeypatch.setattr(blocked, "MIN_BLOCK_ROWS", 64)
    monkeypatch.setattr(blocked, "MIN_BLOCKS", 2)


def _never_blocked(monkeypatch):
    monkeypatch.setattr(blocked, "MIN_BLOCKS", 10**12)


def _passes(monkeypatch):
    """Count the passes over the data (a list that grows by one per pass)."""
    calls = []
    original = blocked._block_pass

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(blocked, "_block_pass", counted)
    return calls


def _pair(n, p1, p2, mean=0.0, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1))
    y = np.tanh(x @ rng.standard_normal((p1, p2))) + 0.5 * rng.standard_normal((n, p2))
    return (x + mean).astype(dtype), (y + mean).astype(dtype)


def _truth(x, y, debiased):
    """CKA from exactly centred float64 copies (small enough never to be done by blocks)."""
    x, y = (a.astype(np.float64) for a in (x, y))
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    xc, yc = xc - xc.mean(axis=0), yc - yc.mean(axis=0)
    h = np.sum((yc.T @ xc) ** 2)
    hx, hy = np.sum((xc.T @ xc) ** 2), np.sum((yc.T @ yc) ** 2)
    if not debiased:
        return h / np.sqrt(hx * hy)
    n = x.shape[0]
    rx, ry = np.sum(xc * xc, axis=1), np.sum(yc * yc, axis=1)

    def unbiased(hsic, r, s):
        return hsic - n / (n - 2) * (r @ s) + r.sum() * s.sum() / ((n - 1) * (n - 2))

    return unbiased(h, rx, ry) / np.sqrt(unbiased(hx, rx, rx) * unbiased(hy, ry, ry))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("n", [128, 301, 1000])
def test_blocks_give_the_centred_copys_value_in_float64(small_blocks, monkeypatch, n, debiased):
    x, y = _pair(n, 9, 5, mean=3.0)
    passes = _passes(monkeypatch)
    by_blocks = linear_cka(x, y, debiased=debiased)
    assert passes, "the batch was not done by blocks"
    _never_blocked(monkeypatch)
    assert by_blocks == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-13)
    assert by_blocks == pytest.approx(_truth(x, y, debiased), abs=1e-13)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("mean", [0.0, 10.0, 1e3, 1e5])
def test_float32_blocks_keep_float64_accuracy_at_any_offset(small_blocks, mean, debiased):
    x, y = _pair(2000, 12, 8, mean=mean, dtype=np.float32, seed=1)
    # the float64 truth of the float32 values (their offsets are exact float32 numbers)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(_truth(x, y, debiased), abs=2e-7)


def test_an_unrepresentative_sample_is_corrected_by_a_second_pass(small_blocks, monkeypatch):
    monkeypatch.setattr(blocked, "SAMPLE_ROWS", 32)
    x, y = _pair(640, 6, 4, dtype=np.float32, seed=2)
    x[::20] += 50.0  # every sampled row (a stride of 20) is offset: the sampled centre is far off
    passes = _passes(monkeypatch)
    value = linear_cka(x, y)
    assert len(passes) == 2
    assert value == pytest.approx(_truth(x, y, False), abs=2e-7)


def test_a_good_sample_needs_one_pass(small_blocks, monkeypatch):
    monkeypatch.setattr(blocked, "SAMPLE_ROWS", 320)  # misses the mean by about σ/√320 = 0.06 σ
    x, y = _pair(640, 6, 4, mean=100.0, dtype=np.float32, seed=3)
    passes = _passes(monkeypatch)
    linear_cka(x, y)
    assert len(passes) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_value_between_sampled_rows_is_refused(small_blocks, monkeypatch, bad):
    monkeypatch.setattr(blocked, "SAMPLE_ROWS", 32)
    x, y = _pair(640, 6, 4, seed=4)
    y[333, 2] = bad  # row 333 is not among the sampled rows (a stride of 20)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        linear_cka(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_about_an_offset_centre_are_those_of_the_exact_centre(
    small_blocks, monkeypatch, dtype
):
    # a centre 0.05 spreads off (within the tolerance: one pass), so every residual term counts
    monkeypatch.setattr(
        blocked, "_sample_centre", lambda x: (x.mean(axis=0) + 0.05 * x.std(axis=0)).astype(x.dtype)
    )
    x, y = _pair(500, 7, 4, mean=20.0, dtype=dtype, seed=9)
    passes = _passes(monkeypatch)
    units = [blocked.Deferred(x, "x"), blocked.Deferred(y, "y")]
    sums = blocked.centred_sums(units, [(0, 1)], fourth_order=True)
    assert len(passes) == 1
    centre = x.astype(np.float64).mean(axis=0) + 0.05 * x.std(axis=0)
    assert np.linalg.norm(sums.mean[0] - centre) > 0.01 * np.sqrt(7)  # the offset is really there
    xc, yc = (a.astype(np.float64) - a.astype(np.float64).mean(axis=0) for a in (x, y))
    rx, ry = np.sum(xc * xc, axis=1), np.sum(yc * yc, axis=1)
    tol = 1e-4 if dtype == np.float32 else 1e-11  # relative, float32 products
    assert np.allclose(sums.mean[0], x.astype(np.float64).mean(axis=0), rtol=0, atol=tol)
    for got, want in (
        (sums.R_self[0], rx @ rx),
        (sums.R_self[1], ry @ ry),
        (sums.R_pair[0], rx @ ry),
    ):
        assert got == pytest.approx(want, rel=tol)
    assert np.allclose(sums.S[0], xc.T @ xc, rtol=tol, atol=tol)
    assert np.allclose(sums.C[0], yc.T @ xc, rtol=tol, atol=tol * 50)


@pytest.mark.parametrize("debiased", [False, True])
def test_deconfounded_by_blocks_matches_the_centred_copy(small_blocks, monkeypatch, debiased):
    x, y = _pair(700, 8, 6, mean=-4.0, seed=5)
    z = x[:, :3] + np.random.default_rng(6).standard_normal((700, 3))
    passes = _passes(monkeypatch)
    by_blocks = deconfounded_cka(x, y, z, debiased=debiased)
    assert passes
    _never_blocked(monkeypatch)
    assert by_blocks == pytest.approx(deconfounded_cka(x, y, z, debiased=debiased), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(130, 400),
    p1=st.integers(1, 12),
    p2=st.integers(1, 12),
    offset=st.sampled_from([0.0, 1.0, -250.0]),
    seed=st.integers(0, 2**16),
)
def test_blocks_agree_with_the_centred_copy_for_any_shape(n, p1, p2, offset, seed):
    x, y = _pair(n, p1, p2, mean=offset, seed=seed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blocked, "WORKSPACE_BYTES", 1)
        mp.setattr(blocked, "MIN_BLOCK_ROWS", 64)
        mp.setattr(blocked, "MIN_BLOCKS", 2)
        by_blocks = [linear_cka(x, y, debiased=d) for d in (False, True)]
    for value, debiased in zip(by_blocks, (False, True), strict=True):
        assert value == pytest.approx(_truth(x, y, debiased), abs=1e-11)


def test_large_inputs_need_no_centred_copy():
    x, y = _pair(40000, 256, 256, mean=5.0, dtype=np.float32, seed=7)
    assert blocked.deferrable([x, y]) is not None  # done by blocks at the library's settings
    tracemalloc.start()
    linear_cka(x, y, debiased=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # a centred copy of each would be 2 x 41 MB; the workspace and the (p, p) products are ~10 MB
    assert peak < 0.3 * (x.nbytes + y.nbytes), f"peak {peak / 2**20:.1f} MiB"


def test_what_is_left_to_the_centred_copy():
    x, y = _pair(400, 5, 5)
    assert blocked.deferrable([x, y]) is None  # too few rows for several blocks
    big_x, big_y = _pair(70000, 64, 64, dtype=np.float32)
    assert blocked.deferrable([big_x, big_y]) is not None
    assert blocked.deferrable([big_x, big_y.astype(np.float64)]) is None  # two dtypes
    assert blocked.deferrable([big_x.astype(np.float16), big_y.astype(np.float16)]) is None


def test_torch_tensors_by_blocks_come_back_as_float64_tensors(small_blocks):
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x, y = _pair(500, 7, 3, mean=2.0, dtype=np.float32, seed=8)
        value = linear_cka(torch.from_numpy(x), torch.from_numpy(y), debiased=True)
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64 and value.ndim == 0
        assert float(value) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
        xg = torch.from_numpy(x).requires_grad_(True)  # autograd input: the torch path
        grad_value = linear_cka(xg, torch.from_numpy(y))
        grad_value.backward()
        assert xg.grad is not None and float(grad_value.detach()) == pytest.approx(
            linear_cka(x, y), abs=1e-6
        )
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("p", [1, 63, 64, 65, 200])
def test_the_upper_triangle_is_mirrored_exactly(p):
    rng = np.random.default_rng(p)
    full = rng.standard_normal((p, p)).astype(np.float32)
    full = full + full.T
    upper = np.asfortranarray(np.triu(full))
    assert np.array_equal(blocked._symmetric64(upper), full.astype(np.float64))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rank", [1, 2])
def test_add_outer_in_place_is_the_rank_k_update(order, dtype, rank):
    rng = np.random.default_rng(rank)
    a = np.asarray(rng.standard_normal((6, 4)), dtype=dtype, order=order)
    left, right = (rng.standard_normal((k, rank)).astype(dtype) for k in (6, 4))
    expected = a.astype(np.float64) - 3.0 * left.astype(np.float64) @ right.astype(np.float64).T
    out = add_outer(a, left, right, -3.0)
    assert out is a
    assert np.allclose(a, expected, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    exponent=st.integers(-40, 40),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_within_window_never_admits_a_magnitude_outside_it(exponent, n, seed, dtype):
    x = np.ldexp(np.random.default_rng(seed).standard_normal((n, 3)), exponent).astype(dtype)
    e = max_abs_exponent(x, np)
    for window in (4, 16):
        if within_window(x, window):
            assert e is not None and abs(e) <= window
