"""``load`` and ``available``: one entry point for every dataset in :mod:`vae_zoo.datasets`.

Splits (deterministic, see :mod:`~vae_zoo.datasets.splits`):

* ``fashion_mnist``: the canonical 60,000 / 10,000 files.
* ``mnist`` (5,000), ``animals`` (10,000), ``digits`` (1,797): stratified, 20 % of every class to
  ``test`` (hash seed 0): 4,000 / 1,000, 8,000 / 2,000, 1,438 / 359.
* ``dsprites`` (737,280), ``shapes3d`` (480,000): 10 % to ``test`` (hash seed 0): 663,552 / 73,728
  and 432,000 / 48,000.

Indices inside a split are sorted, so images keep the source's order. ``max_examples=k`` keeps a
deterministic pseudo-random subset of ``k`` images of the split (hash seed 1), in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from . import animals, digits, dsprites, fashion_mnist, mnist, shapes3d
from ._files import cache_dir
from ._grid_cache import cached_images
from ._source import Availability, RawImages
from .base import ImageDataset
from .splits import SPLIT_SEED, subset_indices, train_test_indices
from .transforms import resize, supported_sizes, to_grayscale

#: Every dataset name accepted by :func:`load`.
DATASETS = ("dsprites", "mnist", "fashion_mnist", "animals", "shapes3d", "digits")
SPLITS = ("train", "test")
SIZES = (28, 32, 64)
#: Fraction of each dataset without an official split that goes to ``test``.
TEST_FRACTION = {"mnist": 0.2, "animals": 0.2, "digits": 0.2, "dsprites": 0.1, "shapes3d": 0.1}
#: Native side length of each source, in pixels.
NATIVE_SIZE = {
    "dsprites": 64, "mnist": 28, "fashion_mnist": 28, "animals": 28, "shapes3d": 64, "digits": 8,
}  # fmt: skip
#: Version tag of the generators, part of the cache file names (bump when rendering changes).
GENERATOR_VERSION = {"dsprites": "v1", "shapes3d": "v1"}

PathLike = str | os.PathLike[str]

_READERS: dict[str, Callable[[PathLike | None], RawImages]] = {
    "mnist": mnist.read,
    "animals": animals.read,
    "digits": digits.read,
}
_CHECKS: dict[str, Callable[[PathLike | None], Availability]] = {
    "mnist": mnist.check,
    "fashion_mnist": fashion_mnist.check,
    "animals": animals.check,
    "digits": digits.check,
}
_GENERATORS: dict[str, ModuleType] = {"dsprites": dsprites, "shapes3d": shapes3d}


def names() -> tuple[str, ...]:
    """Return the names accepted by :func:`load`, in a fixed order.

    Returns
    -------
    tuple of str
        :data:`DATASETS`.

    Examples
    --------
    >>> from vae_zoo.datasets import names
    >>> "mnist" in names()
    True
    """
    return DATASETS


def _validate(name: str, split: str, size: int, max_examples: int | None) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if size not in SIZES or size not in supported_sizes(NATIVE_SIZE[name]):
        raise ValueError(
            f"{name}: size {size!r} is not supported; use one of "
            f"{supported_sizes(NATIVE_SIZE[name])} (native {NATIVE_SIZE[name]} px)"
        )
    if max_examples is not None and (int(max_examples) != max_examples or max_examples < 1):
        raise ValueError(f"max_examples must be a positive integer or None, got {max_examples!r}")


def load(
    name: str,
    *,
    split: str = "train",
    size: int = 64,
    data_dir: PathLike | None = None,
    grayscale: bool = False,
    max_examples: int | None = None,
    cache: bool = True,
) -> ImageDataset:
    """Load one split of a dataset as ``uint8`` images ``(N, C, size, size)``.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``"dsprites"``, ``"mnist"``, ``"fashion_mnist"``, ``"animals"``,
        ``"shapes3d"``, ``"digits"``.
    split : {"train", "test"}, default "train"
        Which split (see the module docstring for how each dataset is split).
    size : {28, 32, 64}, default 64
        Side length. 28 px sources: 32 = 2-pixel zero padding, 64 = padding then 2 x
        nearest-neighbour upscaling. 64 px sources: 32 = 2 x 2 box average (28 is not offered).
        ``digits`` (8 px): 32 and 64 by nearest-neighbour upscaling.
    data_dir : path-like, optional
        Directory for user-supplied files and the generator cache; default ``$VAE_ZOO_DATA`` or
        ``~/.cache/vae_zoo``.
    grayscale : bool, default False
        Convert RGB (``shapes3d``) to one channel with BT.601 luma; no effect on greyscale sets.
    max_examples : int, optional
        Keep a deterministic pseudo-random subset of at most this many images of the split. For
        the generators only these images are rendered (no cache is built), which is fast.
    cache : bool, default True
        Generators only: store the full split as a memory-mapped ``.npy`` file in the cache
        directory (built on first use) instead of rendering it in memory.

    Returns
    -------
    ImageDataset
        ``images`` is ``uint8`` (a read-only memory map for cached generated sets); ``labels``
        are class ids (the shape id for ``dsprites`` and ``shapes3d``); ``factors`` hold the
        generative factor values of the generated sets.

    Raises
    ------
    ValueError
        Unknown name, split or size.
    DatasetNotAvailableError
        The source files are missing; the message gives the command that fixes it.
    ChecksumError
        A source file does not match its pinned sha256.

    References
    ----------
    Matthey, Higgins, Hassabis & Lerchner (2017), *dSprites: Disentanglement testing Sprites
    dataset*. LeCun, Bottou, Bengio & Haffner (1998), *Gradient-based learning applied to
    document recognition*, Proc. IEEE (MNIST). Xiao, Rasul & Vollgraf (2017), *Fashion-MNIST*,
    arXiv:1708.07747. Burgess & Kim (2018), *3D Shapes Dataset*. The sources, licences and
    splits are in the datasets guide.

    Examples
    --------
    >>> from vae_zoo.datasets import load
    >>> ds = load("dsprites", split="test", size=32, max_examples=8)  # generated, no download
    >>> ds.images.shape, ds.images.dtype, ds.factor_names[:2]
    ((8, 1, 32, 32), dtype('uint8'), ('shape', 'scale'))
    """
    _validate(name, split, size, max_examples)
    if name in _GENERATORS:
        return _load_generated(name, split, size, data_dir, grayscale, max_examples, cache)
    raw, indices, split_note = _read_split(name, split, data_dir)
    if max_examples is not None and max_examples < len(indices):
        indices = indices[subset_indices(len(indices), int(max_examples))]
    return _to_dataset(name, split, size, grayscale, raw, indices, split_note)


def _read_split(
    name: str, split: str, data_dir: PathLike | None
) -> tuple[RawImages, np.ndarray, str]:
    """Read a file-backed dataset: its images, the indices of ``split`` and how it was split."""
    if name == "fashion_mnist":
        raw = fashion_mnist.read(split, data_dir)
        return raw, np.arange(len(raw.images)), "canonical train/test files"
    raw = _READERS[name](data_dir)
    train, test = train_test_indices(
        len(raw.images), TEST_FRACTION[name], labels=raw.labels, seed=SPLIT_SEED
    )
    split_note = f"stratified {round(100 * TEST_FRACTION[name])} % test, hash seed {SPLIT_SEED}"
    return raw, train if split == "train" else test, split_note


def _to_dataset(
    name: str,
    split: str,
    size: int,
    grayscale: bool,
    raw: RawImages,
    indices: np.ndarray,
    split_note: str,
) -> ImageDataset:
    """The images ``indices`` of ``raw``, resized (and made greyscale), as an ImageDataset."""
    images = raw.images if len(indices) == len(raw.images) else raw.images[indices]
    images = to_grayscale(resize(images, size)) if grayscale else resize(images, size)
    info: dict[str, Any] = dict(raw.info)
    info.update(split=split_note, resize=_resize_note(NATIVE_SIZE[name], size))
    return ImageDataset(
        name=name,
        images=np.ascontiguousarray(images),
        labels=raw.labels[indices],
        class_names=raw.class_names,
        split=split,
        info=info,
    )


def _resize_note(native: int, size: int) -> str:
    if native == size:
        return "none (native size)"
    if native == 28:
        return "zero-pad 2 px" + ("" if size == 32 else ", then 2x nearest-neighbour")
    if native > size:
        return f"{native // size}x{native // size} box average"
    return f"{size // native}x nearest-neighbour"


def _load_generated(
    name: str,
    split: str,
    size: int,
    data_dir: PathLike | None,
    grayscale: bool,
    max_examples: int | None,
    cache: bool,
) -> ImageDataset:
    module = _GENERATORS[name]
    train, test = train_test_indices(module.N_IMAGES, TEST_FRACTION[name], seed=SPLIT_SEED)
    indices = train if split == "train" else test
    native_channels = 1 if name == "dsprites" else 3
    channels = 1 if grayscale else native_channels
    gray = grayscale and native_channels == 3

    def fill(out: np.ndarray, chunk: int = 8192) -> None:
        for start in range(0, len(indices), chunk):
            part = indices[start : start + chunk]
            if gray:
                out[start : start + len(part)] = to_grayscale(module.render(part, size))
            else:
                module.render_into(out[start : start + len(part)], part)

    subset = max_examples is not None and max_examples < len(indices)
    if subset:
        indices = indices[subset_indices(len(indices), int(max_examples))]
    shape = (len(indices), channels, size, size)
    info: dict[str, Any] = {
        "source": f"generated by vae_zoo.datasets.{name} ({GENERATOR_VERSION[name]})",
        "split": f"{round(100 * TEST_FRACTION[name])} % test, hash seed {SPLIT_SEED}",
        "resize": _resize_note(64, size),
        "grid_indices": indices,
    }
    if cache and not subset:
        tag = "-gray" if gray else ""
        path = (
            cache_dir(data_dir)
            / name
            / f"{name}-{GENERATOR_VERSION[name]}-{size}px{tag}-{split}.npy"
        )
        images = cached_images(path, shape, fill)
        info["cache"] = str(path)
    else:
        images = np.empty(shape, dtype=np.uint8)
        fill(images)
    factors = module.factor_values(indices)
    shape_column = module.FACTOR_NAMES.index("shape")
    return ImageDataset(
        name=name,
        images=images,
        labels=factors[:, shape_column].astype(np.int64),
        factors=factors,
        factor_names=module.FACTOR_NAMES,
        class_names=module.SHAPES,
        split=split,
        info=info,
    )


def available(data_dir: PathLike | None = None) -> dict[str, Availability]:
    """Tell which datasets load on this machine, and how to get the others.

    Parameters
    ----------
    data_dir : path-like, optional
        Where to look besides the default places, as in :func:`load`.

    Returns
    -------
    dict
        ``name -> Availability(ok, detail)``: for loadable sets, where the data come from; for
        the others, why not and the command that fixes it. Files are only looked for here;
        checksums are verified by :func:`load`.

    References
    ----------
    Matthey, Higgins, Hassabis & Lerchner (2017), *dSprites: Disentanglement testing Sprites
    dataset*. LeCun, Bottou, Bengio & Haffner (1998), *Gradient-based learning applied to
    document recognition*, Proc. IEEE (MNIST). Xiao, Rasul & Vollgraf (2017), *Fashion-MNIST*,
    arXiv:1708.07747. Burgess & Kim (2018), *3D Shapes Dataset*. The sources, licences and
    splits are in the datasets guide.

    Examples
    --------
    >>> from vae_zoo.datasets import available
    >>> status = available()
    >>> status["dsprites"].ok  # generated, so always available
    True
    """
    result = {}
    for name in DATASETS:
        if name in _GENERATORS:
            folder = cache_dir(data_dir) / name
            built = sorted(p.name for p in folder.glob("*.npy")) if folder.is_dir() else []
            note = f"cached: {', '.join(built)}" if built else "no cache yet (built on first load)"
            result[name] = Availability(True, f"generated offline; {note} in {folder}")
        else:
            result[name] = _CHECKS[name](data_dir)
    return result
