"""Every accumulator's ``state_dict`` round-trips through ``torch.save`` / ``torch.load`` with its
defaults (``weights_only=True``) and through ``np.savez`` / ``np.load`` (no pickle), for NumPy-
and torch-fed accumulators alike, and the restored accumulator goes on in the data's library."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cka_sim import CKAResult, MinibatchCKA, StreamingCKA, StreamingCKAMatrix

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(0)
X = RNG.standard_normal((48, 5)) + 3.0
Y = X[:, :2] @ RNG.standard_normal((2, 4)) + RNG.standard_normal((48, 4))
Z = X[:, :3] + RNG.standard_normal((48, 3))


def make(kind: str) -> tuple[Any, Any]:
    """A fresh accumulator and how one batch of rows is fed to it."""
    if kind == "streaming":
        return StreamingCKA(debiased=True), lambda acc, x, y, z: acc.update(x, y)
    if kind == "streaming-dcka":
        return StreamingCKA(measure="dcka"), lambda acc, x, y, z: acc.update(x, y, z)
    if kind == "matrix":
        return StreamingCKAMatrix(debiased=True), lambda acc, x, y, z: acc.update(
            {"x": x, "z": z}, {"y": y}
        )
    return MinibatchCKA(), lambda acc, x, y, z: acc.update({"x": x}, {"y": y})


def value(result: Any) -> np.ndarray:
    out = result.values if isinstance(result, CKAResult) else float(result)
    return np.asarray(out, dtype=np.float64).ravel()


def save_load(state: dict[str, Any], how: str, path: Path) -> dict[str, Any]:
    if how == "torch":
        torch.save(state, path)
        return torch.load(path)  # the defaults: weights_only=True
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("kind", ["streaming", "streaming-dcka", "matrix", "minibatch"])
@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("how", ["torch", "numpy"])
def test_state_round_trips_and_the_accumulator_goes_on(
    kind: str, library: str, how: str, tmp_path: Path
) -> None:
    data = [X, Y, Z] if library == "numpy" else [torch.from_numpy(a) for a in (X, Y, Z)]
    first, feed = make(kind)
    for lo in (0, 16):
        feed(first, *(a[lo : lo + 16] for a in data))
    restored, _ = make(kind)
    restored.load_state_dict(
        save_load(first.state_dict(), how, tmp_path / f"state.{'pt' if how == 'torch' else 'npz'}")
    )
    assert restored.n_examples == first.n_examples == 32
    for acc in (first, restored):
        feed(acc, *(a[32:] for a in data))
        result = acc.compute()
        if kind.startswith("streaming"):  # the restored state is in the data's library
            assert torch.is_tensor(result) == (library == "torch"), type(result)
    np.testing.assert_allclose(value(restored.compute()), value(first.compute()), atol=1e-12)
    assert all(math.isfinite(v) for v in value(first.compute()))
