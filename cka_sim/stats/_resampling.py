"""Random index arrays: permutations and half-samples, drawn in fixed-size blocks.

Drawing in blocks of a fixed size makes the indices depend only on the seed and the counts,
never on the batch sizes that memory limits choose later.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 16


def permutations(rng: np.random.Generator, n: int, count: int) -> Iterator[np.ndarray]:
    """Blocks (b, n) of uniform random permutations of ``range(n)``, ``count`` rows in all."""
    done = 0
    while done < count:
        b = min(BLOCK, count - done)
        yield rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1)
        done += b


def half_samples(rng: np.random.Generator, n: int, count: int) -> Iterator[np.ndarray]:
    """Blocks (b, n // 2) of subsets of ``range(n)`` drawn without replacement."""
    for block in permutations(rng, n, count):
        yield np.sort(block[:, : n // 2], axis=1)


def jackknife_groups(n: int, max_groups: int = 50) -> list[np.ndarray]:
    """Leave-one-out index arrays, or leave-group-out with ``max_groups`` interleaved groups."""
    groups = min(n, max_groups)
    every = np.arange(n)
    return [every[every % groups != g] for g in range(groups)]


def split(block: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Rows of ``block`` in chunks of at most ``size``."""
    for start in range(0, block.shape[0], size):
        yield block[start : start + size]
