"""MinibatchCKA against a direct evaluation of the Nguyen, Raghu & Kornblith (2021) formula."""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import CKAResult, CKAUndefinedWarning, MinibatchCKA, StreamingCKA
from cka_sim._core.prepare import PreparedGram


def _hsic1(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC, written out term by term."""
    m = k.shape[0]
    kt = k.copy()
    lt = l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(m)
    trace = np.trace(kt @ lt)
    middle = (one @ kt @ one) * (one @ lt @ one) / ((m - 1) * (m - 2))
    last = 2.0 / (m - 2) * (one @ kt @ lt @ one)
    return (trace + middle - last) / (m * (m - 3))


def _hsic0(k: np.ndarray, l: np.ndarray) -> float:
    m = k.shape[0]
    h = np.eye(m) - np.ones((m, m)) / m
    return np.trace(k @ h @ l @ h) / (m - 1) ** 2


def _reference(batches_a, batches_b, debiased):
    """Plain loops: per batch, per layer pair, raw (uncentred) linear Grams in float64."""
    hsic = _hsic1 if debiased else _hsic0
    la, lb = len(batches_a[0]), len(batches_b[0])
    xy = np.zeros((la, lb))
    xx = np.zeros(la)
    yy = np.zeros(lb)
    for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
        grams_a = [a.reshape(len(a), -1).astype(np.float64) for a in acts_a]
        grams_a = [g @ g.T for g in grams_a]
        grams_b = [b.reshape(len(b), -1).astype(np.float64) for b in acts_b]
        grams_b = [g @ g.T for g in grams_b]
        for i in range(la):
            xx[i] += hsic(grams_a[i], grams_a[i])
            for j in range(lb):
                xy[i, j] += hsic(grams_a[i], grams_b[j])
        for j in range(lb):
            yy[j] += hsic(grams_b[j], grams_b[j])
    return xy / np.sqrt(np.outer(xx, yy))


def _model_batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.standard_normal((10, 12)), rng.standard_normal((12, 3))
    batches_a, batches_b = [], []
    for m in sizes:
        x = rng.standard_normal((m, 10))
        h = np.maximum(x @ w1, 0) + 5  # ReLU-like features with a large mean
        batches_a.append([x.reshape(m, 2, 5), h, np.tanh((h - 5) @ w2 / 10)])
        batches_b.append([h + rng.standard_normal(h.shape), x[:, :4] ** 2])
    return batches_a, batches_b


@pytest.mark.parametrize("debiased", [True, False])
def test_equals_direct_nguyen_formula_ragged(debiased):
    sizes = [16, 9, 30, 5, 12]  # ragged: each batch keeps its own 1/(m(m-3)) factor
    batches_a, batches_b = _model_batches(sizes)
    acc = MinibatchCKA(debiased=debiased)
    for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
        acc.update({"in": acts_a[0], "relu": acts_a[1], "out": acts_a[2]}, acts_b)
    result = acc.compute()
    assert isinstance(result, CKAResult)
    assert result.row_names == ["in", "relu", "out"] and result.col_names == ["0", "1"]
    assert result.estimator == ("minibatch-debiased" if debiased else "minibatch-biased")
    assert result.n_examples == sum(sizes) and acc.n_batches == len(sizes)
    np.testing.assert_allclose(
        result.values, _reference(batches_a, batches_b, debiased), atol=1e-10
    )


def test_float32_with_large_means_matches_float64_reference():
    batches_a, batches_b = _model_batches([64] * 4, seed=2)
    acc = MinibatchCKA()
    for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
        acc.update(
            [(a + 1000).astype(np.float32) for a in acts_a], [b.astype(np.float32) for b in acts_b]
        )
    # HSIC₁ is invariant to centring each batch's features; the reference centres the float32
    # data in float64 first, since raw float64 Grams of data with mean 1000 lose the answer too
    shifted = [
        [(a + 1000).astype(np.float32).astype(np.float64) for a in acts] for acts in batches_a
    ]
    centred = [[a - a.mean(axis=0) for a in acts] for acts in shifted]
    ref = _reference(centred, [[b.astype(np.float32) for b in acts] for acts in batches_b], True)
    np.testing.assert_allclose(acc.compute().values, ref, atol=1e-5)


def test_same_mapping_both_sides_and_differs_from_full_data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((256, 40))
    layers = {"x": x, "relu": np.maximum(x @ rng.standard_normal((40, 40)), 0)}
    acc = MinibatchCKA()
    full = StreamingCKA(debiased=True)
    for s in range(0, 256, 32):
        batch = {k: v[s : s + 32] for k, v in layers.items()}
        acc.update(batch, batch)
        full.update(batch["x"], batch["relu"])
    values = acc.compute().values
    np.testing.assert_allclose(np.diag(values), 1.0, atol=1e-12)
    np.testing.assert_allclose(values, values.T, atol=1e-12)
    # a different estimator from full-data CKA: close, not equal
    assert values[0, 1] != pytest.approx(full.compute(), abs=1e-6)
    assert values[0, 1] == pytest.approx(full.compute(), abs=0.1)


def test_merge_state_dict_and_reset():
    batches_a, batches_b = _model_batches([8, 11, 7, 20], seed=5)
    whole = MinibatchCKA()
    halves = [MinibatchCKA(), MinibatchCKA()]
    for t, (acts_a, acts_b) in enumerate(zip(batches_a, batches_b, strict=True)):
        whole.update(acts_a, acts_b)
        halves[t % 2].update(acts_a, acts_b)
    merged = MinibatchCKA().merge(halves[0]).merge(halves[1])
    np.testing.assert_allclose(merged.compute().values, whole.compute().values, atol=1e-12)
    restored = MinibatchCKA().load_state_dict(merged.state_dict())
    np.testing.assert_allclose(restored.compute().values, whole.compute().values, atol=1e-12)
    assert restored.n_batches == 4
    restored.reset()
    with pytest.raises(ValueError, match="no batch"):
        restored.compute()


def test_errors():
    acc = MinibatchCKA()
    x = np.random.default_rng(0).standard_normal((3, 5))
    with pytest.raises(ValueError, match="batch of 3 example"):
        acc.update([x], [x])
    MinibatchCKA(debiased=False).update([x], [x])  # the biased HSIC needs only 2
    with pytest.raises(ValueError, match="same number of examples"):
        acc.update([np.ones((6, 2))], [np.ones((5, 2))])
    acc.update({"a": np.random.default_rng(1).standard_normal((6, 2))}, [np.ones((6, 2)) * 2])
    with pytest.raises(ValueError, match="names layers"):
        acc.update({"b": np.ones((6, 2))}, [np.ones((6, 2))])
    with pytest.warns(CKAUndefinedWarning, match="layer '0' of acts_b"):
        assert np.isnan(acc.compute().values).all()
    with pytest.raises(ValueError, match="debiased"):
        MinibatchCKA(debiased=True).merge(MinibatchCKA(debiased=False))


def test_torch_no_loop_over_pairs_and_on_device():
    torch = pytest.importorskip("torch")
    batches_a, batches_b = _model_batches([16, 13, 9], seed=7)
    acc = MinibatchCKA()
    for acts_a, acts_b in zip(batches_a, batches_b, strict=True):
        acc.update(
            [torch.tensor(a, dtype=torch.float32) for a in acts_a],
            [torch.tensor(b, dtype=torch.float32) for b in acts_b],
        )
    assert isinstance(acc._cross, torch.Tensor) and acc._cross.dtype == torch.float64
    np.testing.assert_allclose(
        acc.compute().values, _reference(batches_a, batches_b, True), atol=1e-5
    )


# --- float32 batches at any offset (translated by a sampled centre: cka_sim._core.prepare) ---


def _relu_layers(rng, m, offset):
    """float32 layers with the given offset (in units of the spread) and a ReLU output."""
    x = rng.standard_normal((m, 40)).astype(np.float32)
    pre = x @ rng.standard_normal((40, 30)).astype(np.float32)
    return {
        "pre": pre + np.float32(offset) * pre.std(),
        "relu": np.maximum(pre, 0),
    }, {"x": x}


@pytest.mark.parametrize("offset", [0.0, 0.1, 50.0])
def test_float32_batches_small_or_large_offset_match_float64(offset):
    rng = np.random.default_rng(3)
    batches = [_relu_layers(rng, 128, offset) for _ in range(3)]
    acc = MinibatchCKA()
    for a, b in batches:
        acc.update(a, b)
    ref = _reference(
        [[a[k].astype(np.float64) - a[k].mean(axis=0) for k in a] for a, _ in batches],
        [[b["x"].astype(np.float64)] for _, b in batches],
        True,
    )
    np.testing.assert_allclose(acc.compute().values, ref, atol=2e-6)


def test_prepare_keeps_the_gram_not_a_view_of_the_activations():
    rng = np.random.default_rng(4)
    layers, _ = _relu_layers(rng, 64, 0.0)
    acc = MinibatchCKA()
    relu = layers["relu"].copy()
    prepared = acc.prepare(relu, "relu")
    assert isinstance(prepared, PreparedGram) and prepared.gram.shape == (64, 64)
    assert prepared.scale is None  # within the float32 window: nothing to restore
    relu[:] = 0.0  # a later in-place operation on the caller's array
    direct = MinibatchCKA().update({"relu": layers["relu"]}, {"pre": layers["pre"]})
    via = MinibatchCKA().update({"relu": prepared}, {"pre": layers["pre"]})
    np.testing.assert_allclose(via.compute().values, direct.compute().values, atol=1e-12)
    with pytest.raises(TypeError, match="prepared by MinibatchCKA.prepare"):
        StreamingCKA().update(prepared, layers["pre"])
