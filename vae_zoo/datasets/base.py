"""The dataset container shared by every loader and generator in :mod:`vae_zoo.datasets`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ImageDataset:
    """Images with optional class labels and generative factors.

    Parameters
    ----------
    name : str
        Dataset name as given to :func:`vae_zoo.datasets.load` (``"mnist"``, ``"dsprites"``...).
    images : numpy.ndarray
        ``uint8`` array of shape ``(N, C, H, W)`` with values in ``[0, 255]``. Binary datasets
        (dSprites) use 0 and 255. Indexing the dataset returns ``float32`` images in ``[0, 1]``.
    labels : numpy.ndarray, optional
        ``int64`` class ids of shape ``(N,)`` where the dataset has classes.
    factors : numpy.ndarray, optional
        ``(N, k)`` generative factor values (dSprites, Shapes3D-like), named by ``factor_names``.
    factor_names : tuple of str, default ()
        Names of the columns of ``factors``.
    class_names : tuple of str, default ()
        Human-readable class names, indexed by label id (empty when unknown).
    split : {"train", "test"}, default "train"
        Which split the images are.
    info : dict, optional
        Source, licence and processing notes (resize method, checksum verified...).

    Raises
    ------
    ValueError
        If ``images`` is not a 4-dimensional ``uint8`` array, ``labels`` or ``factors`` has a
        different number of rows, or ``factors`` and ``factor_names`` disagree.

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS: indexing follows the ``torch.utils.data.Dataset`` protocol.

    Examples
    --------
    >>> import numpy as np
    >>> from vae_zoo.datasets import ImageDataset
    >>> ds = ImageDataset("toy", np.zeros((3, 1, 8, 8), np.uint8), labels=np.array([0, 1, 1]))
    >>> image, label = ds[1]
    >>> len(ds), ds.channels, ds.size, tuple(image.shape), label
    (3, 1, 8, (1, 8, 8), 1)
    >>> len(ds.subset([0, 2]))
    2
    """

    name: str
    images: np.ndarray
    labels: np.ndarray | None = None
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    split: str = "train"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(
                f"ImageDataset {self.name!r}: images must be a uint8 array of shape (N, C, H, W); "
                f"got {type(images).__name__} {getattr(images, 'dtype', '')} "
                f"{getattr(images, 'shape', '')}"
            )
        n = images.shape[0]
        for attr in ("labels", "factors"):
            value = getattr(self, attr)
            if value is not None and len(value) != n:
                raise ValueError(
                    f"ImageDataset {self.name!r}: {attr} has {len(value)} rows but images has {n}"
                )
        if self.factors is not None and self.factors.shape[1] != len(self.factor_names):
            raise ValueError(
                f"ImageDataset {self.name!r}: factors has {self.factors.shape[1]} columns but "
                f"{len(self.factor_names)} factor_names were given"
            )

    @property
    def channels(self) -> int:
        """Number of image channels (1 for greyscale)."""
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        """Image side length in pixels."""
        return int(self.images.shape[2])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> Any:
        """Return ``(image, label)`` with the image as a float32 torch tensor in ``[0, 1]``.

        The label is ``-1`` for datasets without classes. This makes the object usable as a
        ``torch.utils.data.Dataset``.
        """
        import torch

        image = torch.from_numpy(self.images[index].astype(np.float32) / 255.0)
        label = -1 if self.labels is None else int(self.labels[index])
        return image, label

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """Return a new dataset with the rows ``indices`` (labels and factors follow).

        Parameters
        ----------
        indices : sequence of int or numpy.ndarray
            Rows to keep, in that order.

        Returns
        -------
        ImageDataset
            A dataset with the same name, split, class and factor names.
        """
        idx = np.asarray(indices)
        return ImageDataset(
            name=self.name,
            images=self.images[idx],
            labels=None if self.labels is None else self.labels[idx],
            factors=None if self.factors is None else self.factors[idx],
            factor_names=self.factor_names,
            class_names=self.class_names,
            split=self.split,
            info=dict(self.info),
        )

    def float_images(self) -> np.ndarray:
        """Return all images as ``float32`` in ``[0, 1]``.

        Returns
        -------
        numpy.ndarray, shape (N, C, H, W)
            A new array; ``images / 255``.
        """
        return self.images.astype(np.float32) / np.float32(255.0)
