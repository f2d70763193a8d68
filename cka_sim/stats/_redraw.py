"""The redraw rule: half-samples on which the statistic is undefined are replaced by new ones.

A half-sample can leave CKA (or dCKA, or the Procrustes similarity) undefined although the full
data do not: when most rows of a layer are equal (dead units) some subsets hold only equal rows,
and when the confounder of ``measure="dcka"`` varies on few examples some subsets see it
constant. Such a half-sample carries no replicate of the statistic. The rule, per cell of a
layer x layer table (one cell for :func:`~cka_sim.stats.bootstrap_ci`):

1. draw the ``B`` half-samples asked for (the same draws as when nothing is undefined);
2. while a cell whose full-data value is defined has fewer than ``B`` defined replicates, draw
   more half-samples from the same generator, at most ``MAX_DRAWS x B`` in all;
3. each cell keeps its first ``B`` defined replicates, in the order drawn; a cell still short of
   ``B`` after the cap gets no interval (NaN), with a warning.

The number of undefined draws each cell skipped is returned, recorded in the result and
reported by a ``RuntimeWarning``. The kept replicates are conditioned on half-samples where the
statistic is defined, which is what an interval for a defined statistic can use; when that share
is small the warning says so, and the interval describes the examples that vary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ._resampling import BLOCK, half_samples

MAX_DRAWS = 10  # at most MAX_DRAWS x B half-samples per call

Evaluate = Callable[[Iterator[np.ndarray]], np.ndarray]


def defined_half_samples(
    evaluate: Evaluate,
    rng: np.random.Generator,
    n: int,
    count: int,
    wanted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw half-sample values (..., B) under the redraw rule, and the undefined draws per cell.

    ``evaluate(blocks)`` maps blocks (b, n // 2) of row indices to the values (..., b) of every
    cell, NaN where undefined; ``wanted`` (...,) marks the cells whose full-data value is
    defined (the others are NaN throughout and draw nothing more). A wanted cell short of ``B``
    defined values after ``MAX_DRAWS x B`` draws holds NaN.
    """
    chunks = [evaluate(half_samples(rng, n, count))]
    drawn = count
    while True:
        values = np.concatenate(chunks, axis=-1)
        have = np.where(wanted, np.sum(~np.isnan(values), axis=-1), count)
        worst = int(have.min()) if have.size else count
        if worst >= count or drawn >= MAX_DRAWS * count:
            break
        # draw about as many as the worst cell's rate of defined draws says it needs
        need = math.ceil((count - worst) * drawn / max(worst, 1))
        extra = min(max(need, BLOCK), MAX_DRAWS * count - drawn)
        chunks.append(evaluate(half_samples(rng, n, extra)))
        drawn += extra
    kept = np.full((*values.shape[:-1], count), np.nan)
    skipped = np.zeros(values.shape[:-1], dtype=int)
    for cell in np.ndindex(values.shape[:-1]):
        if not wanted[cell]:
            continue
        series = values[cell]
        ok = np.flatnonzero(~np.isnan(series))
        if ok.size >= count:
            kept[cell] = series[ok[:count]]
            skipped[cell] = int(ok[count - 1]) + 1 - count  # undefined draws before the last kept
        else:
            kept[cell][: ok.size] = series[ok]
            skipped[cell] = series.size - ok.size
    return kept, skipped


def measure_label(cka: bool, confounded: bool) -> str:
    """How the warnings name the statistic: CKA, deconfounded CKA or the Procrustes similarity."""
    if cka:
        return "CKA"
    return "deconfounded CKA" if confounded else "the Procrustes similarity"


def warn_redrawn(
    skipped: np.ndarray, kept: np.ndarray, count: int, what: str, stacklevel: int
) -> None:
    """A ``RuntimeWarning`` when half-samples were redrawn, and when some cells stay short."""
    total = int(skipped.sum())
    if total == 0:
        return
    short = int(np.sum(np.isnan(kept).any(axis=-1) & (skipped > 0)))
    message = (
        f"{total} half-sample(s) left {what} undefined (on their rows a layer or the confounder "
        "has all rows equal, e.g. dead units, or a debiased self-HSIC is not positive) and were "
        "redrawn; the count is recorded in the result"
    )
    if short:
        message += (
            f". In {short} cell(s) fewer than {count} of {MAX_DRAWS * count} half-samples were "
            "defined: no interval there (NaN); use more examples that vary"
        )
    warnings.warn(message, RuntimeWarning, stacklevel=stacklevel)
