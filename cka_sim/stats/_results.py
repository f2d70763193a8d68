"""Result objects of the statistics functions (plain frozen dataclasses, like SciPy's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PermutationTestResult:
    """Outcome of :func:`~cka_sim.stats.permutation_test`.

    Attributes
    ----------
    statistic : float
        CKA of the data as given.
    pvalue : float
        :math:`(1 + \\#\\{\\text{null} \\ge \\text{statistic}\\}) / (1 + B)`; never 0.
    null_distribution : numpy.ndarray, shape (B,)
        CKA after each of the ``B`` random permutations of the examples of ``y``.
    estimator : str
        Which CKA was tested, named as ``CKAResult.estimator`` names it: ``"linear"``,
        ``"linear-debiased"``, ``"rbf"``, ``"rbf-debiased"``, ``"custom-kernel"``, ...
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    estimator: str


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided confidence interval ``[low, high]``."""

    low: float
    high: float


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Outcome of :func:`~cka_sim.stats.bootstrap_ci`.

    Attributes
    ----------
    statistic : float
        CKA of the full data.
    confidence_interval : ConfidenceInterval
        The interval, with ``.low`` and ``.high``.
    standard_error : float
        Standard deviation of ``bootstrap_distribution``.
    bootstrap_distribution : numpy.ndarray, shape (B,)
        The rescaled half-sample replicates
        :math:`\\hat\\theta + c\\,(\\hat\\theta^*_m - \\hat\\theta)`, which mimic the sampling
        distribution of the full-data estimate (see :func:`~cka_sim.stats.bootstrap_ci`).
    estimator : str
        Which CKA the interval is for, named as in :class:`PermutationTestResult`.
    interval_method : str
        How the interval was formed: ``"bca"``, ``"percentile"`` or ``"basic"`` as asked, or
        ``"basic-widened"`` where ``"bca"`` was asked but BCa is undefined or excludes the
        estimate (see :func:`~cka_sim.stats.bootstrap_ci`).
    """

    statistic: float
    confidence_interval: ConfidenceInterval
    standard_error: float
    bootstrap_distribution: np.ndarray
    estimator: str
    interval_method: str = "bca"


def estimator_name(kernel: object, debiased: bool) -> str:
    """``"linear"``, ``"rbf-debiased"``, ``"custom-kernel"``, ...: the kernel (or the measure
    other than CKA, e.g. ``"dcka"``), then the HSIC."""
    base = kernel if isinstance(kernel, str) else "custom-kernel"
    return f"{base}-debiased" if debiased else str(base)
