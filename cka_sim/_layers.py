"""Helpers shared by the multi-layer estimators: layer lists, host copies, the CKA ratio matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._backend import Array, is_torch
from ._validation import warn_undefined


def as_layers(acts: Any, name: str) -> list[tuple[str, Any]]:
    """``(layer name, activations)`` pairs of a Mapping (its order) or a Sequence ("0", "1", ...)."""
    if isinstance(acts, Mapping):
        layers = [(str(key), value) for key, value in acts.items()]
    elif isinstance(acts, Sequence) and not isinstance(acts, (str, bytes)):
        layers = [(str(i), value) for i, value in enumerate(acts)]
    else:
        raise TypeError(
            f"{name} must be a mapping {{layer name: activations}} or a sequence of activations; "
            f"got {type(acts).__name__}. For a single layer pass {{'layer': {name}}} or [{name}]."
        )
    if not layers:
        raise ValueError(f"{name} holds no layers")
    names = [layer for layer, _ in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"{name} has repeated layer names: {names}")
    return layers


def check_names(expected: list[str], got: list[str], what: str) -> None:
    """Raise when a later batch names different layers from the first one."""
    if expected != got:
        raise ValueError(
            f"{what} names layers {got}, but earlier batches named {expected}; every batch must "
            "give the same layers in the same order"
        )


def to_numpy(a: Array) -> np.ndarray:
    """A float64 NumPy copy of ``a`` (one device-to-host transfer for torch)."""
    if is_torch(a):
        return a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=np.float64)


def ratio_matrix(
    cross: np.ndarray,
    self_a: np.ndarray,
    self_b: np.ndarray,
    names_a: list[str],
    names_b: list[str],
    *,
    debiased: bool,
    n: int,
    side_names: tuple[str, str] = ("acts_a", "acts_b"),
) -> np.ndarray:
    """``cross / sqrt(self_a ⊗ self_b)``; NaN rows/columns, each with one warning, where undefined.

    A layer is undefined when its self-HSIC is zero (constant features) or, debiased, not
    positive. No epsilon is added and nothing is clamped.
    """
    cross = np.asarray(cross, dtype=np.float64)
    bad = []
    for side, selfs, names in ((side_names[0], self_a, names_a), (side_names[1], self_b, names_b)):
        undefined = np.zeros(len(names), dtype=bool)
        for i, (value, layer) in enumerate(zip(selfs, names, strict=True)):
            if value == 0.0:
                reason = "all of its features are constant (zero self-HSIC)"
            elif debiased and value < 0.0:
                reason = (
                    f"its debiased self-HSIC estimate is not positive ({value:.3g}, n={n}); use "
                    "more examples or debiased=False"
                )
            else:
                continue
            undefined[i] = True
            warn_undefined(f"layer {layer!r} of {side}", reason, 4)
        bad.append(undefined)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the square roots first: the product of two self-HSICs can leave the float64 range
        values = cross / np.outer(np.sqrt(np.abs(self_a)), np.sqrt(np.abs(self_b)))
    values[bad[0], :] = np.nan
    values[:, bad[1]] = np.nan
    return values
