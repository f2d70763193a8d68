"""Deterministic, platform-independent train/test splits and subsets.

Orderings come from a SplitMix64 hash of ``(seed, index)`` computed with NumPy ``uint64``
arithmetic, so a split is the same on every machine and NumPy version (unlike a random
generator's stream, which NumPy does not promise to keep).
"""

from __future__ import annotations

import numpy as np

#: Seed of every split in :mod:`vae_zoo.datasets`.
SPLIT_SEED = 0
#: Seed of the ``max_examples`` subsets (different from the split seed on purpose).
SUBSET_SEED = 1

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hash_keys(n: int, seed: int) -> np.ndarray:
    """SplitMix64 hash of ``seed * 2**32 + i`` for ``i`` in ``range(n)``, as ``uint64``."""
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(seed) * np.uint64(1 << 32)
        z = z * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def permutation(n: int, seed: int) -> np.ndarray:
    """A deterministic permutation of ``range(n)`` (argsort of :func:`hash_keys`)."""
    return np.argsort(hash_keys(n, seed), kind="stable")


def train_test_indices(
    n: int,
    test_fraction: float,
    *,
    labels: np.ndarray | None = None,
    seed: int = SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into sorted train and test index arrays.

    Parameters
    ----------
    n : int
        Number of examples.
    test_fraction : float
        Fraction in ``(0, 1)`` that goes to the test split (rounded per class when stratified).
    labels : numpy.ndarray, optional
        Class ids; when given, the split is stratified: each class gives
        ``round(test_fraction * count)`` examples to the test split.
    seed : int
        Hash seed.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted ``int64`` train and test indices; together they are ``range(n)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = permutation(n, seed)
    if labels is None:
        n_test = round(test_fraction * n)
        test = order[:n_test]
    else:
        ordered_labels = np.asarray(labels)[order]
        parts = []
        for value in np.unique(ordered_labels):
            members = order[ordered_labels == value]
            parts.append(members[: round(test_fraction * len(members))])
        test = np.concatenate(parts)
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def subset_indices(n: int, k: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted positions of a deterministic pseudo-random subset of ``k`` out of ``n`` items."""
    if k >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(permutation(n, seed)[:k]).astype(np.int64)
