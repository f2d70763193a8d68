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


def acceleration(jackknife: np.ndarray) -> np.ndarray:
    r"""BCa acceleration :math:`a = \sum d^3 / (6 (\sum d^2)^{3/2})`, :math:`d = \bar\theta_{(\cdot)} - \theta_{(g)}`."""
    d = jackknife.mean(axis=-1, keepdims=True) - jackknife
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(d**3, axis=-1) / (6.0 * np.sum(d**2, axis=-1) ** 1.5)


def intervals(
    observed: np.ndarray,
    replicates: np.ndarray,
    jackknife: np.ndarray | None,
    *,
    method: str,
    confidence_level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds per cell (shape of ``observed``); NaN where undefined."""
    alpha = 1.0 - confidence_level
    low = np.full(observed.shape, np.nan)
    high = np.full(observed.shape, np.nan)
    accel = acceleration(jackknife) if jackknife is not None else None
    for cell in np.ndindex(observed.shape):
        theta, t = observed[cell], replicates[cell]
        if np.isnan(theta) or np.isnan(t).any():
            continue
        if method == "percentile":
            low[cell], high[cell] = np.quantile(t, [alpha / 2, 1 - alpha / 2])
        elif method == "basic":
            q_low, q_high = np.quantile(t, [alpha / 2, 1 - alpha / 2])
            low[cell], high[cell] = 2 * theta - q_high, 2 * theta - q_low
        else:
            assert accel is not None
            a = accel[cell] if np.isfinite(accel[cell]) else 0.0
            below = (np.sum(t < theta) + 0.5 * np.sum(t == theta)) / t.size
            if below in (0.0, 1.0):
                warnings.warn(
                    "all bootstrap replicates lie on one side of the estimate (a bias larger than "
                    "the spread, typical of biased CKA with many features), so the BCa interval is "
                    "undefined and NaN is returned; use debiased=True or method='basic'",
                    RuntimeWarning,
                    stacklevel=4,
                )
                continue
            z0 = ndtri(below)
            z = ndtri(np.array([alpha / 2, 1 - alpha / 2]))
            levels = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
            low[cell], high[cell] = np.quantile(t, levels)
    return low, high
