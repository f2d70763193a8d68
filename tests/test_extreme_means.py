"""float32 activations whose feature means dwarf their spread (1e5, 1e6 times).

A float32 column mean of 20,000 such values is off by far more than the spread; every path must
take its centre as a float64 mean (``cka_sim._core.prepare.centre``, ``translated``) and remove
what that centre missed in float64 (``cka_sim._core.moments``), or its products lose every digit.
"""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import MinibatchCKA, StreamingCKA, linear_cka


@pytest.fixture(scope="module")
def base() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20_000, 16))
    b = a @ rng.standard_normal((16, 16)) / 4 + rng.standard_normal((20_000, 16))
    return a, np.maximum(b, 0)


@pytest.mark.parametrize("mean", [1e5, 1e6])
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_and_streaming_cka(base, mean, debiased):
    x, y = ((v + mean).astype(np.float32) for v in base)
    truth = linear_cka(x.astype(np.float64), y.astype(np.float64), debiased=debiased)
    assert abs(linear_cka(x, y, debiased=debiased) - truth) < 1e-6
    streaming = StreamingCKA(debiased=debiased)
    for start in range(0, len(x), 5000):
        streaming.update(x[start : start + 5000], y[start : start + 5000])
    assert abs(streaming.compute() - truth) < 1e-6


@pytest.mark.parametrize("mean", [1e5, 1e6])
def test_minibatch_cka(base, mean):
    torch = pytest.importorskip("torch")
    x, y = ((v[:4096] + mean).astype(np.float32) for v in base)
    ours, reference = MinibatchCKA(debiased=True), MinibatchCKA(debiased=True)
    for start in range(0, 4096, 1024):
        rows = slice(start, start + 1024)
        ours.update({"x": torch.from_numpy(x[rows])}, {"y": torch.from_numpy(y[rows])})
        exact = [np.asarray(v[rows], dtype=np.float64) for v in (x, y)]
        exact = [torch.from_numpy(v - v.mean(axis=0)) for v in exact]  # centred in float64
        reference.update({"x": exact[0]}, {"y": exact[1]})
    assert abs(ours.compute().values[0, 0] - reference.compute().values[0, 0]) < 1e-6
