"""Offline image datasets for the VAE zoo (loaders and generators).

See ``docs/datasets.md``. Public API: :func:`load`, :func:`available`, :class:`ImageDataset`.
"""

from .base import ImageDataset

__all__ = ["ImageDataset"]
