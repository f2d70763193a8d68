"""Large CPU batches of the feature forms are centred block by block inside the moments' pass
(cka_sim._core.moments): the same numbers as the centred copy, to float64 precision, at any
offset, with no copy of the data."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cka_sim._core.moments as moments
import cka_sim._core.prepare as prepare
from cka_sim import deconfounded_cka, linear_cka
from cka_sim._core.prepare import WINDOW, Centred, exponent, scaled


def _small_blocks(mp):
    """Blocks of 64 rows, and any batch of 128 rows or more done by blocks."""
    mp.setattr(moments, "WORKSPACE_BYTES", 1)
    mp.setattr(moments, "MIN_BLOCK_ROWS", 64)
    mp.setattr(moments, "MIN_BLOCKS", 2)


@pytest.fixture
def small_blocks(monkeypatch):
    _small_blocks(monkeypatch)


def _never_blocked(monkeypatch):
    monkeypatch.setattr(moments, "MIN_BLOCKS", 10**12)


def _spy(monkeypatch, name):
    """Count the calls of ``moments.<name>`` from now on (a list that grows by one per call)."""
    calls = []
    original = getattr(moments, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(moments, name, counted)
    return calls


def _passes(monkeypatch):
    """Passes over the data (``_pass``)."""
    return _spy(monkeypatch, "_pass")


def _later_blocks(monkeypatch):
    """Blocks after the first of every pass (``_accumulate``): empty when nothing was blocked."""
    return _spy(monkeypatch, "_accumulate")


def _pair(n, p1, p2, mean=0.0, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1))
    y = np.tanh(x @ rng.standard_normal((p1, p2))) + 0.5 * rng.standard_normal((n, p2))
    return (x + mean).astype(dtype), (y + mean).astype(dtype)


def _truth(x, y, debiased):
    """CKA from exactly centred float64 copies (formed here, never by blocks)."""
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
    blocks = _later_blocks(monkeypatch)
    by_blocks = linear_cka(x, y, debiased=debiased)
    assert len(blocks) == -(-n // 64) - 1, "the batch was not done by 64-row blocks"
    _never_blocked(monkeypatch)
    whole = linear_cka(x, y, debiased=debiased)
    assert len(blocks) == -(-n // 64) - 1  # the second evaluation was one block
    assert by_blocks == pytest.approx(whole, abs=1e-13)
    assert by_blocks == pytest.approx(_truth(x, y, debiased), abs=1e-13)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("mean", [0.0, 10.0, 1e3, 1e5])
def test_float32_blocks_keep_float64_accuracy_at_any_offset(small_blocks, mean, debiased):
    x, y = _pair(2000, 12, 8, mean=mean, dtype=np.float32, seed=1)
    # the float64 truth of the float32 values (their offsets are exact float32 numbers)
    assert linear_cka(x, y, debiased=debiased) == pytest.approx(_truth(x, y, debiased), abs=2e-7)


# The centre is the mean of 1024 rows spread over the layer (prepare.SAMPLE_ROWS): of 20480 rows,
# every 20th.
SAMPLED = 20 * prepare.SAMPLE_ROWS


def test_an_unrepresentative_sample_is_corrected_by_a_second_pass(small_blocks, monkeypatch):
    x, y = _pair(SAMPLED, 6, 4, dtype=np.float32, seed=2)
    x[::20] += 50.0  # every sampled row is offset: the sampled centre is 50 σ off the mean
    passes = _passes(monkeypatch)
    value = linear_cka(x, y)
    assert len(passes) == 2
    assert value == pytest.approx(_truth(x, y, False), abs=2e-7)


def test_a_good_sample_needs_one_pass(small_blocks, monkeypatch):
    x, y = _pair(SAMPLED, 6, 4, mean=100.0, dtype=np.float32, seed=3)
    # the sample misses the mean by about σ/√1024 = 0.03 σ
    sample_mean = x[::20].astype(np.float64).mean(axis=0)
    assert np.abs(sample_mean - x.astype(np.float64).mean(axis=0)).max() > 1e-3
    passes = _passes(monkeypatch)
    value = linear_cka(x, y)
    assert len(passes) == 1
    assert value == pytest.approx(_truth(x, y, False), abs=2e-7)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_value_between_sampled_rows_is_refused(small_blocks, bad):
    x, y = _pair(SAMPLED, 6, 4, seed=4)
    y[333, 2] = bad  # row 333 is not among the sampled rows (a stride of 20)
    with pytest.raises(ValueError, match="y contains NaN or infinity"):
        linear_cka(x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_about_an_offset_centre_are_those_of_the_exact_centre(
    small_blocks, monkeypatch, dtype
):
    # a centre 0.05 spreads off (within RESIDUAL_SHARE: one pass), so every residual term counts
    x, y = _pair(500, 7, 4, mean=20.0, dtype=dtype, seed=9)
    units = []
    for a in (x, y):
        c = a.astype(np.float64).mean(axis=0) + 0.05 * a.astype(np.float64).std(axis=0)
        units.append(Centred(a, c.astype(dtype), False))
    passes, blocks = _passes(monkeypatch), _later_blocks(monkeypatch)
    sums = moments.Moments.of_batch(units, [(0, 1)], True, np)
    assert len(passes) == 1 and len(blocks) == 7  # one pass of 8 blocks
    xc, yc = (a.astype(np.float64) - a.astype(np.float64).mean(axis=0) for a in (x, y))
    assert np.linalg.norm(units[0].centre - x.mean(axis=0)) > 0.01 * np.sqrt(7)  # really offset
    rx, ry = np.sum(xc * xc, axis=1), np.sum(yc * yc, axis=1)
    tol = 1e-4 if dtype == np.float32 else 1e-11  # relative, float32 products
    assert sums.n == 500
    for got, a in zip(sums.mean, (x, y), strict=True):
        assert np.allclose(got, a.astype(np.float64).mean(axis=0), rtol=0, atol=tol)
    for got, want in (
        (sums.R_self[0], rx @ rx),
        (sums.R_self[1], ry @ ry),
        (sums.R_pair[0], rx @ ry),
    ):
        assert got == pytest.approx(want, rel=tol)
    scale = np.sqrt(rx @ rx)  # the size of the third-order sums' terms
    for got, want in (
        (sums.W_self[0], xc.T @ rx),
        (sums.W_self[1], yc.T @ ry),
        (sums.W_uv[0], yc.T @ rx),
        (sums.W_vu[0], xc.T @ ry),
    ):
        assert np.allclose(got, want, rtol=0, atol=tol * scale)
    assert np.allclose(sums.S[0], xc.T @ xc, rtol=tol, atol=tol * 500)
    assert np.allclose(sums.S[1], yc.T @ yc, rtol=tol, atol=tol * 500)
    assert np.allclose(sums.C[0], yc.T @ xc, rtol=tol, atol=tol * 500)


@pytest.mark.parametrize("debiased", [False, True])
def test_deconfounded_by_blocks_matches_the_centred_copy(small_blocks, monkeypatch, debiased):
    x, y = _pair(700, 8, 6, mean=-4.0, seed=5)
    z = x[:, :3] + np.random.default_rng(6).standard_normal((700, 3))
    blocks = _later_blocks(monkeypatch)
    by_blocks = deconfounded_cka(x, y, z, debiased=debiased)
    assert blocks
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
        _small_blocks(mp)
        by_blocks = [linear_cka(x, y, debiased=d, method="features") for d in (False, True)]
    for value, debiased in zip(by_blocks, (False, True), strict=True):
        assert value == pytest.approx(_truth(x, y, debiased), abs=1e-11)


def test_large_inputs_need_no_centred_copy(monkeypatch):
    x, y = _pair(40000, 256, 256, mean=5.0, dtype=np.float32, seed=7)
    blocks = _later_blocks(monkeypatch)
    tracemalloc.start()
    linear_cka(x, y, debiased=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(blocks) == 9  # blocks of 4096 rows at the library's settings
    # a centred copy of each would be 2 x 41 MB; the 8 MiB workspace and its temporaries ~14 MiB
    assert peak < 0.3 * (x.nbytes + y.nbytes), f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("width", "rows"),
    [(16, 2**16 // 128), (50, 256), (100, 400)],
    ids=["workspace", "MIN_BLOCK_ROWS", "ROWS_PER_FEATURE"],
)
def test_blocks_hold_the_workspace_and_a_batch_must_span_several(monkeypatch, width, rows):
    """Blocks of ``WORKSPACE_BYTES`` (but at least ``MIN_BLOCK_ROWS`` rows, and
    ``ROWS_PER_FEATURE`` rows per feature of the widest layer), and only for a batch of
    ``MIN_BLOCKS`` blocks or more: with a 64 KiB workspace, 512 rows of two float32 layers of 16
    features, 256 (the minimum) of 50, 400 of 100."""
    monkeypatch.setattr(moments, "WORKSPACE_BYTES", 2**16)
    assert (moments.MIN_BLOCK_ROWS, moments.ROWS_PER_FEATURE, moments.MIN_BLOCKS) == (256, 4, 4)
    blocks = _later_blocks(monkeypatch)
    x, y = _pair(4 * rows + 100, width, width, dtype=np.float32)
    assert linear_cka(x, y) == pytest.approx(_truth(x, y, False), abs=2e-7)
    assert len(blocks) == 4  # 5 blocks, the last of 100 rows
    del blocks[:]
    linear_cka(x[: 4 * rows - 1], y[: 4 * rows - 1])
    assert not blocks  # one row short of MIN_BLOCKS blocks: one block


@pytest.mark.parametrize("threads", [1, 2])  # 2: NumPy's products on views; 1: torch's own
def test_torch_tensors_by_blocks_come_back_as_float64_tensors(small_blocks, monkeypatch, threads):
    torch = pytest.importorskip("torch")
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, y = _pair(500, 7, 3, mean=2.0, dtype=np.float32, seed=8)
        blocks = _later_blocks(monkeypatch)
        value = linear_cka(torch.from_numpy(x), torch.from_numpy(y), debiased=True)
        assert len(blocks) == 7  # 8 blocks of 64 rows
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float64 and value.ndim == 0
        if threads == 2:  # NumPy's own products: the NumPy value
            assert float(value) == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)
        assert float(value) == pytest.approx(_truth(x, y, True), abs=2e-7)
        del blocks[:]
        xg = torch.from_numpy(x).requires_grad_(True)  # autograd input: the torch path, one block
        grad_value = linear_cka(xg, torch.from_numpy(y))
        grad_value.backward()
        assert not blocks
        assert xg.grad is not None and float(grad_value.detach()) == pytest.approx(
            linear_cka(x, y), abs=1e-6
        )
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_add_outer_in_place_is_the_rank_k_update(order, dtype, rank, lib):
    rng = np.random.default_rng(rank)
    a = np.asarray(rng.standard_normal((6, 4)), dtype=dtype, order=order)
    left, right = (rng.standard_normal((k, rank)).astype(dtype) for k in (6, 4))
    expected = a.astype(np.float64) + left.astype(np.float64) @ right.astype(np.float64).T
    if lib == "torch":
        torch = pytest.importorskip("torch")
        a, left, right = (torch.from_numpy(v) for v in (a, left, right))
    out = moments._add_outer(a, left, right)
    assert out is a
    got = a.numpy() if lib == "torch" else a
    assert np.allclose(got, expected, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


@settings(max_examples=200, deadline=None)
@given(
    power=st.integers(-300, 300),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_scaled_never_leaves_a_magnitude_outside_its_window(power, n, seed, dtype):
    if dtype == np.float32:
        power = power // 6  # within float32's normal range
    x = np.ldexp(np.random.default_rng(seed).standard_normal((n, 3)), power).astype(dtype)
    e = exponent(x, np)
    assert e is not None and 2.0 ** (e - 1) <= np.abs(x).max() < 2.0**e
    out, k = scaled(x, np)
    window = WINDOW[np.dtype(dtype).name]
    if k == 0:
        assert abs(e) <= window and out is x
    else:
        assert abs(e) > window and k == e
        assert 0.5 <= np.abs(out).max() < 1.0
        assert np.array_equal(np.ldexp(out.astype(np.float64), k), x.astype(np.float64))


def test_scaled_leaves_zeros_alone():
    x = np.zeros((5, 2))
    assert exponent(x, np) is None and scaled(x, np)[1] == 0


def test_sample_size_is_the_centres_default():
    # the sampled-rows tests above rely on the centre being the mean of SAMPLE_ROWS rows
    x = np.arange(SAMPLED * 2, dtype=np.float64).reshape(SAMPLED, 2)
    c = prepare.centre(x, np)
    assert np.array_equal(c.centre, x[::20].mean(axis=0))
