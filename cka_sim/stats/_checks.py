"""Argument checks and input preparation shared by the statistics functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._core.backend import is_torch
from .._core.check import check_kernel_name, check_pair, check_positive
from .._core.prepare import all_rows_equal
from .._core.prepare import unit_scaled as power_of_two_scaled
from .._core.ratio import warn_undefined

KERNELS = ("linear", "rbf")


def to_numpy(value: Any) -> Any:
    """Torch tensors become NumPy arrays (``.detach().cpu().numpy()``); others pass through.

    bfloat16, which NumPy lacks, is converted to float32 first (exactly); meta tensors pass
    through, for the validation to refuse them by name.
    """
    if is_torch(value) and value.device.type != "meta":
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


def activations_pair(x: Any, y: Any, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two activation matrices and return them as float64 NumPy (n, p) arrays."""
    xm, ym, _ = check_pair(to_numpy(x), to_numpy(y), min_rows=min_rows)
    return np.asarray(xm, dtype=np.float64), np.asarray(ym, dtype=np.float64)


def scaled_for_kernel(
    x: np.ndarray, kernel: str | Callable[[np.ndarray], Any], sigma: float | None
) -> tuple[np.ndarray, float | None]:
    """``x`` scaled by an exact power of two (see ``power_of_two_scaled``), and ``sigma`` with it.

    Linear and RBF CKA do not change (an explicit RBF ``sigma`` is scaled by the same power of
    two), while float64 inputs of magnitude 1e±150 no longer overflow or underflow in the
    products. A callable kernel gets ``x`` as given: its scale may matter to it.
    """
    if callable(kernel):
        return x, sigma
    scaled, e = power_of_two_scaled(x, np)
    return scaled, None if sigma is None else float(np.ldexp(sigma, -e))


def constant_argument(arrays: dict[str, np.ndarray]) -> str | None:
    """The name of the first array whose rows are all equal, with a warning; None if none is.

    The test is exact (row equality), so rounding can neither hide nor invent a constant layer.
    """
    for name, x in arrays.items():
        if all_rows_equal(x, np):
            warn_undefined(name, "all of its features are constant (zero self-HSIC)", 4)
            return name
    return None


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
