"""The ratio stage: CKA from HSIC terms, NaN plus a :class:`~cka_sim.CKAUndefinedWarning` where
it is undefined.

A representation's CKA is undefined when its self-HSIC is zero: biased, only constant features
have it (the prepare stage makes their centred rows exact zeros, so the zero is exact);
debiased, when the estimate lies at or below its rounding bound (:mod:`cka_sim._core.rounding`,
the one rule of every path). No epsilon is added and nothing is clamped. :func:`ratio` serves
one pair, :func:`ratio_matrix` every pair of two lists of layers; both square-root each self
term first, since the product of two self-HSICs can leave the float64 range.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from array_api_compat import is_torch_array

from ..exceptions import CKAUndefinedWarning
from .backend import Array

CONSTANT = "all of its features are constant (zero self-HSIC)"


def warn_undefined(what: str, reason: str, stacklevel: int = 3, *, measure: str = "CKA") -> None:
    """Warn that ``measure`` is undefined for ``what`` (NaN is returned) and why."""
    warnings.warn(
        f"{measure} is undefined for {what}: {reason}; returning NaN",
        CKAUndefinedWarning,
        stacklevel=stacklevel,
    )


def undefined_reason(
    value: float, debiased: bool, n: int, constant: bool, bound: float = 0.0
) -> str | None:
    """Why a self-HSIC makes CKA undefined (``None``: it does not): a constant layer, a zero
    biased self-HSIC (which only a constant layer has), or a debiased one at or below its
    rounding ``bound`` (:func:`~cka_sim._core.rounding.rounding_bound`)."""
    if constant or (value == 0.0 and not debiased):
        return CONSTANT
    if debiased and not value > bound:  # NaN too
        return (
            f"its debiased self-HSIC estimate is zero within rounding ({value:.3g} <= its "
            f"rounding bound {bound:.3g}, n={n}; for example all rows but one are equal); use "
            "more (or more varied) examples, float64 input, or debiased=False"
        )
    return None


def ratio(
    h_xy: Array,
    h_xx: Array,
    h_yy: Array,
    *,
    n: int,
    debiased: bool,
    names: tuple[str, str] = ("x", "y"),
    measure: str = "CKA",
    stacklevel: int = 4,
    constant: tuple[bool, bool] = (False, False),
    bounds: tuple[float, float] = (0.0, 0.0),
) -> Array:
    """``h_xy / sqrt(h_xx h_yy)``, or NaN (of the inputs' type) with a warning naming the
    representation whose self term makes it undefined (``constant``: which of the two the
    prepare stage found constant; ``bounds``: the rounding bounds of the debiased self terms)."""
    for name, value, flat, bound in zip(names, (h_xx, h_yy), constant, bounds, strict=True):
        value = float(value.detach()) if is_torch_array(value) else float(value)
        reason = undefined_reason(value, debiased, n, flat, bound)
        if reason is not None:
            warn_undefined(name, reason, stacklevel, measure=measure)
            return h_xy * float("nan")
    return h_xy / (h_xx**0.5 * h_yy**0.5)


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
    bounds: tuple[Any, Any] | None = None,
) -> np.ndarray:
    """``cross / sqrt(self_a ⊗ self_b)``; NaN rows/columns, each with one warning, where undefined
    (``bounds``: per side, the rounding bounds of the debiased self terms)."""
    cross = np.asarray(cross, dtype=np.float64)
    if bounds is None:
        bounds = (np.zeros(len(names_a)), np.zeros(len(names_b)))
    bad = []
    for side, selfs, names, limits in (
        (side_names[0], self_a, names_a, bounds[0]),
        (side_names[1], self_b, names_b, bounds[1]),
    ):
        undefined = np.zeros(len(names), dtype=bool)
        for i, (value, layer) in enumerate(zip(selfs, names, strict=True)):
            value = float(value)
            limit = float(limits[i])  # zero with a zero bound: no spread at all (constant)
            reason = undefined_reason(value, debiased, n, value == 0.0 == limit, limit)
            if reason is not None:
                undefined[i] = True
                warn_undefined(f"layer {layer!r} of {side}", reason, 4)
        bad.append(undefined)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = cross / np.outer(np.sqrt(np.abs(self_a)), np.sqrt(np.abs(self_b)))
    values[bad[0], :] = np.nan
    values[:, bad[1]] = np.nan
    return values


def layer_matrix(
    selfs: np.ndarray,
    cross: np.ndarray,
    pairs: list[tuple[int, int]],
    la: int,
    lb: int,
    shared: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The La x Lb matrix of cross terms and the self terms of each side, from per-unit self
    terms and per-pair cross terms (pairs ``(i, la + j)``, or ``(i, j)``, i < j, when one
    model is compared with itself: the diagonal is then the self terms)."""
    if shared:
        matrix = np.diag(selfs)
        for k, (i, j) in enumerate(pairs):
            matrix[i, j] = matrix[j, i] = cross[k]
        return matrix, selfs, selfs
    return np.asarray(cross).reshape(la, lb), selfs[:la], selfs[la:]


def side_bounds(bounds: list[float], la: int, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit rounding bounds split as :func:`layer_matrix` splits the self terms."""
    values = np.asarray(bounds, dtype=np.float64)
    return (values, values) if shared else (values[:la], values[la:])
