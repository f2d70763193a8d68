"""Seeded, stratified evaluation sets and the seeds of every model of the study.

Evaluation sets (CKA, label scores, probes, figures) are drawn as seeded samples stratified by
label, never as the first images of a split: splits keep their source's order, so the first
images of dSprites are one shape at one scale, and the first of Animal-Shape half its classes.

:func:`stratified_indices` allocates the sample as evenly as possible over the strata of the
first key (each stratum gets ``floor(n / K)`` or one more, and strata too small to give their
share give all they have, the rest going to the others), then does the same inside each stratum
with the next key, and draws uniformly at random at the last level. dSprites is stratified by
shape x scale, then spread over orientation quarters x position quadrants.

Seeds: every seed of the study is derived from a name with a hash of the whole name
(:func:`derived_seed`): each zoo model's from its (dataset, seed) pair (:func:`init_seed`), so no
two models start from the same weights; the untrained baselines', the scratch models', the
transfers', the evaluation sets', the halves' and the probe sets' from names of their own.
:func:`planned_seeds` lists every seed one configuration uses, by name (all distinct).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from ..datasets import ImageDataset

if TYPE_CHECKING:
    from .config import StudyConfig

__all__ = [
    "derived_seed",
    "eval_seed",
    "halves_seed",
    "init_seed",
    "long_scratch_seed",
    "planned_seeds",
    "probe_seed",
    "random_seed",
    "scratch_seed",
    "strata_keys",
    "stratified_indices",
    "transfer_seed",
]


def derived_seed(text: str) -> int:
    """A stable 31-bit seed from the whole of ``text``.

    The first four bytes of its SHA-256 digest (not Python's salted ``hash``), so every
    character of the name counts and names differing anywhere get unrelated seeds.

    Examples
    --------
    >>> from vae_zoo.study.sampling import derived_seed
    >>> derived_seed("scratch/mnist/0") != derived_seed("scratch/mnist/1")
    True
    """
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def init_seed(dataset: str, seed: int) -> int:
    """Training seed (initialisation, batch order, noise) of the zoo model ``dataset/s{seed}``."""
    return derived_seed(f"zoo/{dataset}/{seed}")


def random_seed(index: int) -> int:
    """Initialisation seed of the ``index``-th untrained baseline model."""
    return derived_seed(f"untrained/{index}")


def scratch_seed(target: str, index: int) -> int:
    """Training seed of the ``index``-th scratch model on ``target``."""
    return derived_seed(f"scratch/{target}/{index}")


def long_scratch_seed(target: str) -> int:
    """Training seed of the scratch run of claim 3's long curves on ``target`` (its own name:
    not one of claim 4's ``scratch_seeds`` scratch models)."""
    return derived_seed(f"scratch-long/{target}")


def transfer_seed(target: str, repeat: int = 0) -> int:
    """Training seed (re-initialised layers, batch order) of every transfer onto ``target``.

    Every recipe and source of one target shares the seed of its ``repeat`` (common random
    numbers: recipes are compared on the same batches); repeats ``1, 2, ...`` measure the seed
    noise of a recipe (the tie band of claim 3).
    """
    return derived_seed(f"transfer/{target}/{repeat}")


def eval_seed(dataset: str) -> int:
    """Seed of the draw of ``dataset``'s evaluation set."""
    return derived_seed(f"eval/{dataset}")


def halves_seed(dataset: str) -> int:
    """Seed of the random halves of ``dataset``'s evaluation set."""
    return derived_seed(f"halves/{dataset}")


def probe_seed(split: str, dataset: str) -> int:
    """Seed of the draw of ``dataset``'s probe set from ``split``."""
    return derived_seed(f"probe/{split}/{dataset}")


def planned_seeds(config: StudyConfig) -> dict[str, int]:
    """Every seed the study with ``config`` uses, by name.

    Parameters
    ----------
    config : StudyConfig

    Returns
    -------
    dict
        ``{name: seed}``; the study needs them all distinct (``tests/test_study_sampling.py``).
    """
    seeds = {f"zoo/{d}/{s}": init_seed(d, s) for d in config.datasets for s in config.seeds}
    seeds.update({f"untrained/{i}": random_seed(i) for i in range(config.random_models)})
    for d in config.datasets:
        seeds.update({f"scratch/{d}/{i}": scratch_seed(d, i) for i in range(config.scratch_seeds)})
        seeds.update(
            {f"transfer/{d}/{r}": transfer_seed(d, r) for r in range(config.tie_repeats + 1)}
        )
        if any(t == d for _, t in config.sweep_pairs):
            seeds[f"scratch-long/{d}"] = long_scratch_seed(d)
        seeds[f"eval/{d}"] = eval_seed(d)
        seeds[f"halves/{d}"] = halves_seed(d)
        seeds.update({f"probe/{split}/{d}": probe_seed(split, d) for split in ("train", "test")})
    return seeds


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
