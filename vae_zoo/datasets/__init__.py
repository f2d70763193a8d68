"""Offline image datasets for the VAE zoo (loaders and generators).

>>> from vae_zoo.datasets import load, available
>>> ds = load("mnist", split="train", size=32)      # doctest: +SKIP
>>> ds.images.shape, ds.images.dtype                 # doctest: +SKIP
((4000, 1, 32, 32), dtype('uint8'))

Images are ``uint8`` ``(N, C, H, W)``; indexing a dataset gives ``float32`` tensors in ``[0, 1]``.
See ``docs/datasets.md`` for sources, licences, splits and resize methods.
"""

from ._source import Availability
from .base import ImageDataset
from .errors import ChecksumError, DatasetNotAvailableError
from .registry import DATASETS, NATIVE_SIZE, TEST_FRACTION, available, load, names

__all__ = [
    "DATASETS",
    "NATIVE_SIZE",
    "TEST_FRACTION",
    "Availability",
    "ChecksumError",
    "DatasetNotAvailableError",
    "ImageDataset",
    "available",
    "load",
    "names",
]
