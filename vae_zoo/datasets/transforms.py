"""Resizing and colour conversion of ``uint8`` image stacks of shape ``(N, C, H, W)``.

The methods are exact and documented in ``docs/datasets.md``:

* 28 → 32: pad 2 zero pixels on every side (MNIST-style sets have a black border, so nothing is
  lost or interpolated).
* 8 → 32 or 64, 32 → 64, 28 → 64 (pad to 32 first): integer-factor nearest-neighbour upscaling
  (each pixel becomes a k x k block). It is invertible and keeps binary images binary.
* 64 → 32: 2 x 2 box (area) average, rounded half up — the anti-aliased downscale.
* RGB → grey: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, rounded.
"""

from __future__ import annotations

import numpy as np

#: Luma weights of ITU-R BT.601 (R, G, B).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def pad(images: np.ndarray, border: int) -> np.ndarray:
    """Pad the two spatial axes with ``border`` zero pixels on every side."""
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    return np.pad(images, ((0, 0), (0, 0), (border, border), (border, border)))


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer ``factor`` (each pixel → factor x factor block)."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if factor == 1:
        return images
    return np.repeat(np.repeat(images, factor, axis=2), factor, axis=3)


def downscale2(images: np.ndarray) -> np.ndarray:
    """Halve height and width with a 2 x 2 box average, rounded half up, as ``uint8``."""
    n, c, h, w = images.shape
    if h % 2 or w % 2:
        raise ValueError(f"downscale2 needs even height and width, got {h}x{w}")
    blocks = images.reshape(n, c, h // 2, 2, w // 2, 2).astype(np.uint16)
    return ((blocks.sum(axis=(3, 5)) + 2) // 4).astype(np.uint8)


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square ``uint8`` images to ``size`` x ``size`` with the exact methods above.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` array ``(N, C, S, S)`` with ``S`` in {8, 28, 32, 64}.
    size : int
        Target side length.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array ``(N, C, size, size)``; the input itself when no change is needed.

    Raises
    ------
    ValueError
        For a pair of sizes without an exact method (for example 64 → 28).
    """
    source = images.shape[2]
    if images.shape[3] != source:
        raise ValueError(f"resize expects square images, got {images.shape[2:]}")
    if size == source:
        return images
    if source == 28 and size in (32, 64):
        return upscale(pad(images, 2), size // 32)
    if size % source == 0:
        return upscale(images, size // source)
    if source == 2 * size:
        return downscale2(images)
    raise ValueError(
        f"no exact resize from {source} px to {size} px; this dataset supports "
        f"{supported_sizes(source)}"
    )


def supported_sizes(source: int) -> tuple[int, ...]:
    """Sizes among 28, 32 and 64 that :func:`resize` can produce from ``source`` px images."""
    out = []
    for size in (28, 32, 64):
        ok = (
            size == source
            or (source == 28 and size in (32, 64))
            or size % source == 0
            or source == 2 * size
        )
        if ok:
            out.append(size)
    return tuple(out)


def to_grayscale(images: np.ndarray) -> np.ndarray:
    """Convert ``(N, 3, H, W)`` RGB to ``(N, 1, H, W)`` BT.601 luma; greyscale input is returned."""
    if images.shape[1] == 1:
        return images
    if images.shape[1] != 3:
        raise ValueError(f"to_grayscale expects 1 or 3 channels, got {images.shape[1]}")
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32).reshape(1, 3, 1, 1)
    luma = (images.astype(np.float32) * weights).sum(axis=1, keepdims=True)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)
