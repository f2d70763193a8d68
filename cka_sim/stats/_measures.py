"""The permutation test and half-sample intervals for the measures other than CKA.

Deconfounded CKA re-fits its regression on every index array and the Procrustes similarity needs
the singular values of each cross product, so neither reduces to the reusable HSIC tables of
linear CKA (:mod:`cka_sim.stats._tables`). Each replicate is the measure recomputed from the
rows it selects, by the same function a user calls (:func:`~cka_sim.deconfounded_cka`,
:func:`~cka_sim.procrustes_similarity`): O(B) evaluations, each the cost of one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._core.check import as_matrix
from .._core.measures import check_confounder_given, check_measure
from ..deconfounded import deconfounded_cka
from ..procrustes import procrustes_similarity
from ._checks import to_numpy

MeasureFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], float]


def check_measure_options(
    measure: Any, confounder: Any, debiased: bool, kernel: Any, what: str
) -> str:
    """Validate ``measure`` with its options; the measures other than CKA are linear."""
    measure = check_measure(measure, debiased=debiased)
    check_confounder_given(measure, confounder, what)
    if measure != "cka" and (callable(kernel) or kernel != "linear"):
        raise ValueError(
            f"{what}: measure={measure!r} is linear; drop kernel= (got {kernel!r}) or use "
            "measure='cka'"
        )
    return measure


def confounder_matrix(confounder: Any, n: int) -> np.ndarray:
    """The confounder as a float64 NumPy (n, q) array, checked against the ``n`` examples."""
    z = as_matrix(to_numpy(confounder), "confounder")
    if int(z.shape[0]) != n:
        raise ValueError(
            f"confounder must have one row per example, as x; got {z.shape[0]} rows and {n}"
        )
    return np.asarray(z, dtype=np.float64)


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
