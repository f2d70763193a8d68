"""The centred moments of a batch and their merge (``cka_sim._core.moments``) against sums formed
directly.

The batches here are given centres far from their mean (half a spread), which the library's own
sampled centres never are, so that every term of the move to the mean, and of the merge, is large
and a wrong one shows at once.
"""

import numpy as np
import pytest
import torch

import cka_sim._core.moments as moments
from cka_sim._core.backend import namespace
from cka_sim._core.moments import FIELDS, Moments
from cka_sim._core.prepare import Centred

PAIRS = [(0, 1)]


def _lib(a: np.ndarray, lib: str):
    return torch.from_numpy(a) if lib == "torch" else a


def _unit(x: np.ndarray, offset: np.ndarray, lib: str) -> Centred:
    """``x`` with the centre ``mean(x) + offset``: the pass must remove ``offset`` exactly."""
    return Centred(_lib(x, lib), _lib(x.mean(axis=0) + offset, lib), constant=False)


def _batch(rows: list[np.ndarray], offsets: list[np.ndarray], lib: str) -> Moments:
    units = [_unit(x, o, lib) for x, o in zip(rows, offsets, strict=True)]
    return Moments.of_batch(units, PAIRS, debiased=True, xp=namespace(units[0].x))


def _direct(rows: list[np.ndarray], about: list[np.ndarray] | None = None) -> dict[str, list]:
    """Every field summed over the rows taken about ``about`` (default: their exact mean)."""
    if about is None:
        about = [x.mean(axis=0) for x in rows]
    a, b = (x - c for x, c in zip(rows, about, strict=True))
    r, q = (np.sum(c * c, axis=1) for c in (a, b))
    return {
        "S": [a.T @ a, b.T @ b],
        "C": [b.T @ a],
        "R_self": [np.sum(r * r), np.sum(q * q)],
        "W_self": [a.T @ r, b.T @ q],
        "R_pair": [np.sum(r * q)],
        "W_uv": [b.T @ r],
        "W_vu": [a.T @ q],
    }


def _numpy(value):
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _assert_fields(m: Moments, expected: dict[str, list], rtol=1e-10, atol=1e-9):
    assert [f.name for f in m.fields()] == [f.name for f in FIELDS]  # debiased: every field
    for field in FIELDS:
        got_values = getattr(m, field.name)
        assert len(got_values) == len(expected[field.name]), field.name
        for got, want in zip(got_values, expected[field.name], strict=True):
            np.testing.assert_allclose(_numpy(got), want, rtol=rtol, atol=atol, err_msg=field.name)


def _snapshot(m: Moments) -> dict[str, list[np.ndarray]]:
    return {f.name: [_numpy(v).copy() for v in getattr(m, f.name)] for f in m.fields()}


def _two_batches(rng):
    first = [rng.normal(3.0, 1.0, (40, 5)), rng.normal(-2.0, 2.0, (40, 3))]
    second = [rng.normal(4.0, 1.5, (30, 5)), rng.normal(0.0, 1.0, (30, 3))]
    return first, second


@pytest.fixture(params=["repass", "one pass"])
def passes(request, monkeypatch):
    """Either the library's rule (a residual of half a spread is done again about the corrected
    centre) or one pass whatever the residual, so that the move to the mean is exercised with
    its full size."""
    if request.param == "one pass":
        monkeypatch.setattr(moments, "RESIDUAL_SHARE", float("inf"))
    calls = []
    original = moments._pass

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(moments, "_pass", counted)
    return request.param, calls


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_a_batch_about_a_far_centre_has_the_direct_sums(lib, passes):
    mode, calls = passes
    rng = np.random.default_rng(3)
    rows = [rng.normal(5.0, 1.0, (50, 4)), rng.normal(-3.0, 2.0, (50, 6))]
    batch = _batch(rows, [rng.normal(0, 0.5, 4), rng.normal(0, 1.0, 6)], lib)
    assert len(calls) == (1 if mode == "one pass" else 2)
    assert batch.n == 50
    for got, x in zip(batch.mean, rows, strict=True):
        np.testing.assert_allclose(_numpy(got), x.mean(axis=0), rtol=0, atol=1e-13)
    _assert_fields(batch, _direct(rows))


@pytest.mark.parametrize("reuse_other", [True, False])
@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_merge_of_batches_about_far_centres_equals_the_direct_sums(lib, reuse_other, passes):
    rng = np.random.default_rng(7)
    first, second = _two_batches(rng)
    # centres about half the spread off: every correction term is large
    state = _batch(first, [rng.normal(0, 0.5, 5), rng.normal(0, 1.0, 3)], lib)
    fresh = _batch(second, [rng.normal(0, 0.7, 5), rng.normal(0, 0.5, 3)], lib)
    before = _snapshot(state), _snapshot(fresh)
    merged = state.combined(fresh, state.namespace(), reuse_other=reuse_other)
    whole = [np.vstack([f, s]) for f, s in zip(first, second, strict=True)]
    assert merged.n == 70
    for got, x in zip(merged.mean, whole, strict=True):
        np.testing.assert_allclose(_numpy(got), x.mean(axis=0), rtol=0, atol=1e-13)
    _assert_fields(merged, _direct(whole))
    # the state merged into is never modified; the fresh batch only when its arrays are reused
    _assert_fields(state, before[0], rtol=0, atol=0)
    if not reuse_other:
        _assert_fields(fresh, before[1], rtol=0, atol=0)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_merge_with_an_empty_state_is_the_other_state(lib):
    rng = np.random.default_rng(2)
    batch = _batch([rng.normal(size=(10, 2)), rng.normal(size=(10, 3))], [0.1, -0.2], lib)
    empty = Moments.zeros([2, 3], PAIRS, True, batch.namespace(), batch.device())
    assert empty.combined(batch, batch.namespace()) is batch
    assert batch.combined(empty, batch.namespace()) is batch


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_recentred_gives_the_sums_about_the_new_point(lib):
    rng = np.random.default_rng(11)
    rows = [rng.normal(2.0, 1.0, (60, 5)), rng.normal(-1.0, 3.0, (60, 3))]
    batch = _batch(rows, [rng.normal(0, 0.3, 5), rng.normal(0, 0.3, 3)], lib)
    original = _snapshot(batch)
    points = [x.mean(axis=0) + rng.normal(0, 2.0, x.shape[1]) for x in rows]
    moved = batch.recentred([_lib(c, lib) for c in points], batch.namespace())
    assert moved.n == 60
    for got, c in zip(moved.mean, points, strict=True):
        np.testing.assert_array_equal(_numpy(got), c)
    _assert_fields(moved, _direct(rows, points))
    _assert_fields(batch, original, rtol=0, atol=0)  # the original is not modified
    same = batch.recentred(batch.mean, batch.namespace())  # about its own mean: unchanged
    _assert_fields(same, original, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_sums_recentred_on_the_shared_mean_add_up_to_the_merge(lib):
    """What an all-reduce does: each part moved to the global mean, then the sums added."""
    rng = np.random.default_rng(13)
    first, second = _two_batches(rng)
    parts = [
        _batch(first, [rng.normal(0, 0.5, 5), rng.normal(0, 1.0, 3)], lib),
        _batch(second, [rng.normal(0, 0.7, 5), rng.normal(0, 0.5, 3)], lib),
    ]
    whole = [np.vstack([f, s]) for f, s in zip(first, second, strict=True)]
    shared = [_lib(x.mean(axis=0), lib) for x in whole]
    moved = [part.recentred(shared, part.namespace()) for part in parts]
    added = {
        name: [a + b for a, b in zip(va, vb, strict=True)]
        for (name, va), (_, vb) in zip(moved[0].sum_fields(), moved[1].sum_fields(), strict=True)
    }
    added = {name: [_numpy(v) for v in values] for name, values in added.items()}
    _assert_fields(parts[0].combined(parts[1], parts[0].namespace()), added, rtol=1e-11)
    direct = _direct(whole)
    for name, values in added.items():
        for got, want in zip(values, direct[name], strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_a_residual_beyond_the_share_is_removed_by_a_second_pass(lib, monkeypatch):
    calls = []
    original = moments._pass

    def counted(units, centres, *args, **kwargs):
        calls.append([_numpy(c).copy() for c in centres])
        return original(units, centres, *args, **kwargs)

    monkeypatch.setattr(moments, "_pass", counted)
    rng = np.random.default_rng(5)
    rows = [rng.normal(10.0, 1.0, (200, 4)), rng.normal(0.0, 1.0, (200, 3))]
    spread = [x.std(axis=0) for x in rows]
    # unit 0 off by 0.2 spreads (n‖δ‖² is 4 % of tr S̃, over RESIDUAL_SHARE = 1 %); unit 1 by
    # 0.05 spreads (0.25 %, within it)
    assert moments.RESIDUAL_SHARE == 0.01
    batch = _batch(rows, [0.2 * spread[0], 0.05 * spread[1]], lib)
    assert len(calls) == 2
    # the second pass runs about the corrected centre of unit 0, the same centre of unit 1
    np.testing.assert_allclose(calls[1][0], rows[0].mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(calls[1][1], calls[0][1])
    _assert_fields(batch, _direct(rows))
    del calls[:]
    _batch(rows, [0.05 * spread[0], 0.05 * spread[1]], lib)
    assert len(calls) == 1  # both within the share: one pass
