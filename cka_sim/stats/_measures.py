"""The permutation test and half-sample intervals for the measures other than CKA.

Deconfounded CKA re-fits its regression on every index array and the Procrustes similarity needs
the singular values of each cross product, so neither reduces to the reusable HSIC tables of
linear CKA (:mod:`cka_sim.stats._tables`). Each replicate is the measure recomputed from the
rows it selects, by the same function a user calls (:func:`~cka_sim.deconfounded_cka`,
:func:`~cka_sim.procrustes_similarity`): O(B) evaluations, each the cost of one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from .._core.prepare import all_rows_equal
from ..deconfounded import deconfounded_cka
from ..procrustes import procrustes_similarity

MeasureFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


def measure_function(measure: str, debiased: bool) -> MeasureFn:
    """``f(x, y, z)``: the measure of NumPy rows (``z`` only for ``"dcka"``)."""
    if measure == "dcka":
        return lambda x, y, z: float(deconfounded_cka(x, y, z, debiased=debiased))
    return lambda x, y, z: float(procrustes_similarity(x, y))


def permuted_values(
    fn: MeasureFn, x: np.ndarray, y: np.ndarray, z: np.ndarray | None, blocks: Iterable
) -> np.ndarray:
    """The measure with the rows of ``y`` permuted (``x`` and the confounder stay paired)."""
    return np.array([fn(x, y[perm], z) for block in blocks for perm in block])


def subset_values(
    fn: MeasureFn, x: np.ndarray, y: np.ndarray, z: np.ndarray | None, subsets: Iterable
) -> np.ndarray:
    """The measure on each subset of rows (of ``x``, ``y`` and the confounder together).

    NaN, without calling ``fn`` (which would warn, or raise for a constant confounder), on a
    subset where ``x``, ``y`` or the confounder has all rows equal: the measure is undefined
    there (see :mod:`~cka_sim.stats._redraw`).
    """
    return np.array([_subset_value(fn, x, y, z, rows) for rows in subsets], dtype=np.float64)


def _subset_value(
    fn: MeasureFn, x: np.ndarray, y: np.ndarray, z: np.ndarray | None, rows: np.ndarray
) -> float:
    parts = [x[rows], y[rows], None if z is None else z[rows]]
    if any(part is not None and all_rows_equal(part, np) for part in parts):
        return float("nan")
    return fn(*parts)
