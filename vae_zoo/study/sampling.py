"""Seeded, stratified evaluation sets and the seeds of every model of the study.

Evaluation sets (CKA, label scores, probes, figures) are drawn as seeded samples stratified by
label, never as the first images of a split: splits keep their source's order, so the first
images of dSprites are one shape at one scale, and the first of Animal-Shape half its classes.

:func:`stratified_indices` allocates the sample as evenly as possible over the strata of the
first key (each stratum gets ``floor(n / K)`` or one more, and strata too small to give their
share give all they have, the rest going to the others), then does the same inside each stratum
with the next key, and draws uniformly at random at the last level. dSprites is stratified by
shape x scale, then spread over orientation quarters x position quadrants.

Seeds: every model's initialisation seed is derived from its (dataset, seed) pair with a hash
(:func:`init_seed`), so no two models of the zoo start from the same weights; the untrained
baselines draw theirs from another name space (:func:`random_seed`).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..datasets import ImageDataset

__all__ = ["init_seed", "random_seed", "strata_keys", "stratified_indices"]


def _hash_seed(text: str) -> int:
    """A stable 31-bit seed from a string (SHA-256, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def init_seed(dataset: str, seed: int) -> int:
    """Training seed (initialisation, batch order, noise) of the zoo model ``dataset/s{seed}``."""
    return _hash_seed(f"zoo/{dataset}/{seed}")


def random_seed(index: int) -> int:
    """Initialisation seed of the ``index``-th untrained baseline model."""
    return _hash_seed(f"untrained/{index}")


def _allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over strata of the given sizes as evenly as their sizes allow."""
    take = np.zeros(len(sizes), dtype=np.int64)
    left = n
    open_ = np.flatnonzero(sizes > 0)
    while left > 0 and len(open_):
        open_ = open_[np.argsort(take[open_], kind="stable")]  # extras go to the smallest first
        share, extra = divmod(left, len(open_))
        room = sizes[open_] - take[open_]
        add = np.minimum(room, share + (np.arange(len(open_)) < extra))
        take[open_] += add
        left -= int(add.sum())
        open_ = open_[take[open_] < sizes[open_]]
        if add.sum() == 0:
            break
    return take


def stratified_indices(keys: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of ``n`` row indices, balanced over the strata of each key in turn.

    Parameters
    ----------
    keys : numpy.ndarray, shape (N,) or (N, L)
        Integer stratum keys of every candidate; column 0 is balanced first, then column 1
        inside each of its strata, and so on.
    n : int
        Sample size (at most ``N``).
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        ``n`` distinct indices, sorted.
    """
    keys = np.asarray(keys)
    keys = keys[:, None] if keys.ndim == 1 else keys
    if not 0 < n <= len(keys):
        raise ValueError(f"n must be between 1 and the {len(keys)} candidates; got {n}")
    rng = np.random.default_rng(seed)
    return np.sort(_draw(np.arange(len(keys)), keys, n, rng))


def _draw(rows: np.ndarray, keys: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if keys.shape[1] == 0:
        return rng.choice(rows, n, replace=False)
    values, inverse = np.unique(keys[:, 0], return_inverse=True)
    order = rng.permutation(len(values))  # which strata get the odd extra example: at random
    sizes = np.bincount(inverse, minlength=len(values))[order]
    take = _allocate(sizes, n)
    parts = []
    for stratum, k in zip(order, take, strict=True):
        if k:
            inside = inverse == stratum
            parts.append(_draw(rows[inside], keys[inside, 1:], int(k), rng))
    return np.concatenate(parts)


def strata_keys(data: ImageDataset) -> np.ndarray:
    """Stratum keys of a dataset's images: the label, and for dSprites a finer design.

    dSprites: shape x scale (18 strata), then orientation quarter x position quadrant (16 cells).
    Datasets without labels form one stratum.
    """
    n = len(data)
    if data.factors is not None and data.factor_names[:3] == ("shape", "scale", "orientation"):
        f = data.factors
        scale = np.unique(f[:, 1], return_inverse=True)[1]
        primary = np.rint(f[:, 0]).astype(np.int64) * (scale.max() + 1) + scale
        quarter = np.minimum((f[:, 2] / (2 * np.pi) * 4).astype(np.int64), 3)
        quadrant = (f[:, 3] >= 0.5).astype(np.int64) * 2 + (f[:, 4] >= 0.5)
        return np.stack([primary, quarter * 4 + quadrant], axis=1)
    if data.labels is None:
        return np.zeros((n, 1), dtype=np.int64)
    return np.asarray(data.labels, dtype=np.int64)[:, None]
