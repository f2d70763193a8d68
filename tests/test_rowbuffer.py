"""Small batches of the exact accumulators wait in a block (cka_sim.accumulators.rowbuffer).

The statistics must be those of every batch seen, whenever the state is read, and bad input must
be refused by the update that passed it, not by a later one that happens to fill the block.
"""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import StreamingCKA, StreamingCKAMatrix, linear_cka
from cka_sim.accumulators.rowbuffer import BLOCK_BYTES, BLOCK_ROWS, RowBuffer, block_rows


def _data(n: int = 3000, p1: int = 12, p2: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, p1)) + 5.0
    y = x[:, :p2] @ rng.standard_normal((p2, p2)) + 0.5 * rng.standard_normal((n, p2))
    return x, y


def _count_blocks(acc, monkeypatch) -> list[int]:
    """Rows of every block whose statistics ``acc`` forms from now on."""
    rows: list[int] = []
    absorb = acc._absorb

    def spy(units):
        rows.append(int(units[0].shape[0]))
        absorb(units)

    monkeypatch.setattr(acc, "_absorb", spy)
    return rows


def test_small_batches_are_processed_a_block_at_a_time(monkeypatch):
    x, y = _data(n=2 * BLOCK_ROWS + 300)
    acc = StreamingCKA(debiased=True)
    blocks = _count_blocks(acc, monkeypatch)
    for start in range(0, x.shape[0], 512):
        acc.update(x[start : start + 512], y[start : start + 512])
        assert acc.n_examples == min(start + 512, x.shape[0])  # waiting rows are counted
    assert blocks == [BLOCK_ROWS, BLOCK_ROWS]  # 300 rows still wait
    value = acc.compute()
    assert blocks == [BLOCK_ROWS, BLOCK_ROWS, 300]
    assert value == pytest.approx(linear_cka(x, y, debiased=True), abs=1e-12)


def test_a_large_batch_goes_straight_through_after_the_waiting_rows(monkeypatch):
    x, y = _data(n=BLOCK_ROWS + 100)
    acc = StreamingCKA()
    blocks = _count_blocks(acc, monkeypatch)
    acc.update(x[:100], y[:100])
    acc.update(x[100:], y[100:])  # 4096 rows: more than half a block
    assert blocks == [100, BLOCK_ROWS]
    assert acc.compute() == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_waiting_rows_are_copies_not_views_of_the_callers_arrays():
    x, y = _data(n=600)
    acc = StreamingCKA()
    bx, by = x[:300].copy(), y[:300].copy()
    acc.update(bx, by)
    bx[:] = 0.0  # a caller reusing its batch buffer
    by[:] = 1.0
    acc.update(x[300:], y[300:])
    assert acc.compute() == pytest.approx(linear_cka(x, y), abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_every_reading_of_the_state_includes_the_waiting_rows(debiased):
    x, y = _data(n=700)
    truth = linear_cka(x, y, debiased=debiased)
    first, second = StreamingCKA(debiased), StreamingCKA(debiased)
    first.update(x[:300], y[:300])
    second.update(x[300:], y[300:])
    # merge: both sides' waiting rows
    assert StreamingCKA(debiased).merge(first).merge(second).compute() == pytest.approx(
        truth, abs=1e-12
    )
    # state_dict
    again = StreamingCKA(debiased).update(x[:350], y[:350]).update(x[350:], y[350:])
    state = again.state_dict()
    assert int(state["n"]) == 700
    assert StreamingCKA(debiased).load_state_dict(state).compute() == pytest.approx(
        truth, abs=1e-12
    )


def test_loading_a_state_drops_the_rows_waiting_before():
    x, y = _data(n=400)
    saved = StreamingCKA().update(x[:200], y[:200]).state_dict()
    acc = StreamingCKA().update(x[200:], y[200:])
    acc.load_state_dict(saved)
    assert acc.n_examples == 200
    assert acc.compute() == pytest.approx(linear_cka(x[:200], y[:200]), abs=1e-12)
    acc.reset()
    assert acc.n_examples == 0


def test_a_change_of_dtype_between_batches_starts_a_new_block(monkeypatch):
    x, y = _data(n=900)
    acc = StreamingCKA()
    blocks = _count_blocks(acc, monkeypatch)
    acc.update(x[:300].astype(np.float32), y[:300].astype(np.float32))
    acc.update(x[300:600], y[300:600])  # float64: the float32 rows go first
    acc.update(x[600:], y[600:])
    assert blocks == [300]
    x32 = np.concatenate([x[:300].astype(np.float32).astype(float), x[300:]])
    y32 = np.concatenate([y[:300].astype(np.float32).astype(float), y[300:]])
    assert acc.compute() == pytest.approx(linear_cka(x32, y32), abs=1e-6)  # float32 products
    assert blocks == [300, 600]


def test_bad_batches_are_refused_by_the_update_that_passes_them():
    x, y = _data(n=40)
    acc = StreamingCKA().update(x[:20], y[:20])
    with pytest.raises(ValueError, match="earlier batches had"):
        acc.update(x[20:], y[20:, :3])
    with pytest.raises(ValueError, match=r"x_batch \* 2.0\*\*"):
        acc.update(x[20:] * 2.0**300, y[20:])
    with pytest.raises(ValueError, match="x_batch contains NaN or infinity"):
        bad = x[20:].copy()
        bad[0, 0] = np.nan
        acc.update(bad, y[20:])
    assert acc.n_examples == 20  # nothing of the refused batches was kept
    assert acc.compute() == pytest.approx(linear_cka(x[:20], y[:20]), abs=1e-12)


def test_torch_rows_wait_on_their_device_and_other_kinds_are_refused_at_once():
    torch = pytest.importorskip("torch")
    x, y = _data(n=64)
    acc = StreamingCKA().update(torch.from_numpy(x[:32]), torch.from_numpy(y[:32]))
    assert acc._m is None and acc.n_examples == 32  # waiting, as tensors
    assert isinstance(acc._pending.held, torch.Tensor)
    with pytest.raises(TypeError, match="one kind"):
        acc.update(x[32:], y[32:])
    acc.update(torch.from_numpy(x[32:]), torch.from_numpy(y[32:]))
    assert float(acc.compute()) == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_matrix_layout_is_checked_while_rows_wait():
    rng = np.random.default_rng(1)
    a = {"conv": rng.standard_normal((60, 9)), "fc": rng.standard_normal((60, 4))}
    b = {"out": rng.standard_normal((60, 3))}
    acc = StreamingCKAMatrix(debiased=True)
    acc.update({k: v[:30] for k, v in a.items()}, {k: v[:30] for k, v in b.items()})
    assert acc._m is None  # the first batch waits, its layer names are known already
    with pytest.raises(ValueError, match="acts_a"):
        acc.update({"fc": a["fc"][30:], "conv": a["conv"][30:]}, {"out": b["out"][30:]})
    acc.update({k: v[30:] for k, v in a.items()}, {k: v[30:] for k, v in b.items()})
    result = acc.compute()
    assert result.row_names == ["conv", "fc"] and result.n_examples == 60
    expected = [[linear_cka(a[i], b["out"], debiased=True)] for i in ("conv", "fc")]
    np.testing.assert_allclose(result.values, expected, atol=1e-12)


def test_blocks_of_wide_layers_hold_fewer_rows():
    assert block_rows([256, 256], 4) == BLOCK_ROWS
    wide = [50_000, 50_000]
    assert block_rows(wide, 4) == BLOCK_BYTES // (100_000 * 4) < BLOCK_ROWS
    assert block_rows([10**9], 8) == 1


def test_a_yielded_block_is_never_overwritten_by_later_batches():
    buffer = RowBuffer()
    rng = np.random.default_rng(2)
    first = [rng.standard_normal((BLOCK_ROWS // 2, 3))]
    kept = []
    for batch in (first, [rng.standard_normal((BLOCK_ROWS // 2, 3))]):
        kept += list(buffer.blocks(batch))
    assert len(kept) == 1 and kept[0][0].shape == (BLOCK_ROWS, 3)
    snapshot = kept[0][0].copy()
    for _ in range(3):
        list(buffer.blocks([rng.standard_normal((BLOCK_ROWS // 2, 3))]))
    np.testing.assert_array_equal(kept[0][0], snapshot)
