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
    """The measure on each subset of rows (of ``x``, ``y`` and the confounder together)."""
    return np.array([fn(x[rows], y[rows], None if z is None else z[rows]) for rows in subsets])
