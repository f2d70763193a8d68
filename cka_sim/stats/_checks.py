"""Argument checks and input preparation shared by the statistics functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import is_torch
from .._validation import check_kernel_name, check_pair, check_positive

KERNELS = ("linear", "rbf")


def to_numpy(value: Any) -> Any:
    """Torch tensors become NumPy arrays (``.detach().cpu().numpy()``); others pass through."""
    if is_torch(value):
        return value.detach().cpu().numpy()
    return value


def activations_pair(x: Any, y: Any, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two activation matrices and return them as float64 NumPy (n, p) arrays."""
    xm, ym, _ = check_pair(to_numpy(x), to_numpy(y), min_rows=min_rows)
    return np.asarray(xm, dtype=np.float64), np.asarray(ym, dtype=np.float64)


def check_confidence_level(value: Any) -> float:
    """A confidence level strictly between 0 and 1."""
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"confidence_level must be a number in (0, 1); got {value!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(
            f"confidence_level must lie strictly between 0 and 1 (e.g. 0.95); got {value!r}"
        )
    return level


def check_kernel(
    kernel: str | Callable[[np.ndarray], Any], threshold: float, sigma: float | None
) -> None:
    """Accept ``"linear"``, ``"rbf"`` (with a positive threshold or sigma) or a callable."""
    check_kernel_name(kernel, KERNELS)
    if callable(kernel):
        return
    check_positive(threshold, "threshold")
    check_positive(sigma, "sigma")


def check_debiased_rows(n: int, debiased: bool, rows_needed: int, what: str) -> None:
    """Raise when ``n`` examples are too few for ``what`` (``rows_needed`` per evaluation)."""
    minimum = 4 if debiased else 2
    if rows_needed < minimum:
        raise ValueError(
            f"{what} with n={n} examples leaves {rows_needed} per evaluation; "
            f"{'debiased' if debiased else 'biased'} CKA needs at least {minimum}. "
            "Use more examples."
        )
