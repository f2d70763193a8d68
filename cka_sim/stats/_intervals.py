"""Confidence intervals from half-sample replicates: percentile, basic and BCa."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import ndtr, ndtri

METHODS = ("bca", "percentile", "basic")


def half_sample_scale(n: int) -> float:
    r"""Factor :math:`c = \sqrt{m/(n-m)}` with :math:`m = \lfloor n/2\rfloor`.

    Without replacement the variance of a size-``m`` estimate around the full-sample one is
    :math:`\sigma^2 (1/m - 1/n)`; multiplying the deviations by ``c`` turns it into the
    :math:`\sigma^2/n` of the full-sample estimate (``c = 1`` for even ``n``).
    """
    m = n // 2
    return float(np.sqrt(m / (n - m)))


def rescaled(observed: np.ndarray, raw: np.ndarray, n: int) -> np.ndarray:
    r"""Half-sample replicates :math:`\hat\theta + c\,(\hat\theta_m - \hat\theta)` (..., B) per cell."""
    return observed[..., None] + half_sample_scale(n) * (raw - observed[..., None])


def acceleration(jackknife: np.ndarray) -> np.ndarray:
    r"""BCa acceleration :math:`a = \sum d^3 / (6 (\sum d^2)^{3/2})`, :math:`d = \bar\theta_{(\cdot)} - \theta_{(g)}`.

    Groups on which the statistic is undefined (NaN) are left out of the sums.
    """
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell without defined groups
        d = np.nanmean(jackknife, axis=-1, keepdims=True) - jackknife
        return np.nansum(d**3, axis=-1) / (6.0 * np.nansum(d**2, axis=-1) ** 1.5)


def intervals(
    observed: np.ndarray,
    replicates: np.ndarray,
    jackknife: np.ndarray | None,
    *,
    method: str,
    confidence_level: float,
    stacklevel: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper bounds per cell (shape of ``observed``), and where BCa fell back.

    NaN where the estimate or a replicate is NaN. ``method="bca"`` falls back, per cell, to the
    basic interval widened to contain the estimate wherever BCa is undefined (every replicate on
    one side of the estimate) or excludes the estimate (its bias correction exceeds the
    interval's half-width, so its adjusted levels ask for quantiles beyond the replicates); the
    third array is True in those cells, and a ``RuntimeWarning`` says how many there are
    (``stacklevel`` as in :func:`warnings.warn`, counted from here).
    """
    alpha = 1.0 - confidence_level
    low = np.full(observed.shape, np.nan)
    high = np.full(observed.shape, np.nan)
    fallback = np.zeros(observed.shape, dtype=bool)
    accel = acceleration(jackknife) if jackknife is not None else None
    for cell in np.ndindex(observed.shape):
        theta, t = observed[cell], replicates[cell]
        if np.isnan(theta) or np.isnan(t).any():
            continue
        q_low, q_high = np.quantile(t, [alpha / 2, 1 - alpha / 2])
        if method == "percentile":
            low[cell], high[cell] = q_low, q_high
            continue
        basic = (2 * theta - q_high, 2 * theta - q_low)
        if method == "basic":
            low[cell], high[cell] = basic
            continue
        assert accel is not None
        bca = _bca(theta, t, accel[cell], alpha)
        if bca is not None and bca[0] <= theta <= bca[1]:
            low[cell], high[cell] = bca
        else:
            fallback[cell] = True
            low[cell], high[cell] = min(basic[0], theta), max(basic[1], theta)
    if fallback.any():
        warnings.warn(
            f"the BCa interval is undefined or excludes the estimate in {int(fallback.sum())} "
            "cell(s) (the bias of the half-sample replicates exceeds their spread, typical of "
            "biased CKA with many features); those cells get the basic interval widened to "
            "contain the estimate, as recorded in the result. Prefer debiased=True",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return low, high, fallback


def _bca(theta: float, t: np.ndarray, accel: float, alpha: float) -> tuple[float, float] | None:
    """BCa bounds (Efron, 1987), or None when the bias correction is infinite."""
    a = accel if np.isfinite(accel) else 0.0
    below = (np.sum(t < theta) + 0.5 * np.sum(t == theta)) / t.size
    if below in (0.0, 1.0):
        return None
    z0 = ndtri(below)
    z = ndtri(np.array([alpha / 2, 1 - alpha / 2]))
    levels = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
    lo, hi = np.quantile(t, levels)
    return float(lo), float(hi)
