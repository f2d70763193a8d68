"""On-disk cache of generated image grids as ``.npy`` files, memory-mapped on load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._files import atomic_path


def cached_images(
    path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """Return the ``uint8`` array stored at ``path``, building it with ``fill`` if needed.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npy`` file.
    shape : tuple of int
        Expected array shape; a file with another shape or dtype is rebuilt.
    fill : callable
        ``fill(out)`` writes every row of the writable memory map ``out``.

    Returns
    -------
    numpy.memmap
        A read-only memory map (the data stay on disk until touched).

    Notes
    -----
    The file is written to a temporary name in the same directory and moved into place with
    ``os.replace``, so concurrent or interrupted builds never leave a partial file behind.
    """
    if path.is_file():
        try:
            existing = np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            existing = None
        if existing is not None and existing.shape == shape and existing.dtype == np.uint8:
            return existing
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(out)
        out.flush()
        del out
    return np.load(path, mmap_mode="r")
