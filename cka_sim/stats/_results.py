"""Result objects of the statistics functions (plain frozen dataclasses, like SciPy's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PermutationTestResult:
    """Outcome of :func:`~cka_sim.stats.permutation_test`.

    Parameters
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

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim.stats import permutation_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((60, 3))
    >>> result = permutation_test(x, x + rng.standard_normal((60, 3)), n_permutations=99, seed=0)
    >>> result.pvalue, result.null_distribution.shape, result.estimator
    (0.01, (99,), 'linear')
    """

    statistic: float
    pvalue: float
    null_distribution: np.ndarray
    estimator: str


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided confidence interval ``[low, high]``.

    Parameters
    ----------
    low : float
        Lower bound.
    high : float
        Upper bound.

    Examples
    --------
    >>> from cka_sim.stats import ConfidenceInterval
    >>> interval = ConfidenceInterval(low=0.25, high=0.5)
    >>> interval.high - interval.low
    0.25
    """

    low: float
    high: float


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Outcome of :func:`~cka_sim.stats.bootstrap_ci`.

    Parameters
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
    interval_method : str, default "bca"
        How the interval was formed: ``"bca"``, ``"percentile"`` or ``"basic"`` as asked, or
        ``"basic-widened"`` where ``"bca"`` was asked but BCa is undefined or excludes the
        estimate (see :func:`~cka_sim.stats.bootstrap_ci`).
    n_redrawn : int, default 0
        Half-samples that left the statistic undefined (a layer or the confounder with all rows
        equal on them) and were replaced by new draws (see :func:`~cka_sim.stats.bootstrap_ci`).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim.stats import bootstrap_ci
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 3))
    >>> result = bootstrap_ci(x, x + rng.standard_normal((100, 3)), n_resamples=200, seed=0)
    >>> result.interval_method, result.bootstrap_distribution.shape
    ('bca', (200,))
    """

    statistic: float
    confidence_interval: ConfidenceInterval
    standard_error: float
    bootstrap_distribution: np.ndarray
    estimator: str
    interval_method: str = "bca"
    n_redrawn: int = 0


def estimator_name(kernel: object, debiased: bool) -> str:
    """``"linear"``, ``"rbf-debiased"``, ``"custom-kernel"``, ...: the kernel (or the measure
    other than CKA, e.g. ``"dcka"``), then the HSIC."""
    base = kernel if isinstance(kernel, str) else "custom-kernel"
    return f"{base}-debiased" if debiased else str(base)
