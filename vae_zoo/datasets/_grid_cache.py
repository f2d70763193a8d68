"""On-disk cache of generated image grids as ``.npy`` files, memory-mapped on load.

Each cache file ``NAME.npy`` has a checksum file ``NAME.npy.sha256`` beside it, in the format of
``sha256sum`` (so ``sha256sum -c`` checks it too), written when the file is built. A file is
used only when it loads with the expected shape and dtype and its SHA-256 matches; otherwise
(empty, truncated, overwritten, or without a checksum) it is built again. The check reads the
whole file at every load, a small part of what rendering it costs (docs/datasets.md, "Cache").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..storage import atomic_path, atomic_write, sha256_file


def cached_images(
    path: Path, shape: tuple[int, ...], fill: Callable[[np.ndarray], None]
) -> np.ndarray:
    """Return the ``uint8`` array stored at ``path``, building it with ``fill`` if needed.

    Parameters
    ----------
    path : pathlib.Path
        The ``.npy`` file.
    shape : tuple of int
        Expected array shape; a file with another shape or dtype, or whose SHA-256 differs from
        the one recorded when it was built, is rebuilt.
    fill : callable
        ``fill(out)`` writes every row of the writable memory map ``out``.

    Returns
    -------
    numpy.memmap
        A read-only memory map (the data stay on disk until touched).

    Notes
    -----
    The file is written to a temporary name in the same directory and moved into place with
    ``os.replace``, so concurrent or interrupted builds never leave a partial file behind. New
    files get the usual permissions (``0o666`` minus the umask), so a shared cache stays
    readable.
    """
    existing = _load_verified(path, shape)
    if existing is not None:
        return existing
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        fill(out)
        out.flush()
        del out
        digest = sha256_file(tmp)
    line = f"{digest}  {path.name}\n".encode()
    atomic_write(_checksum_path(path), lambda handle: handle.write(line))
    return np.load(path, mmap_mode="r")


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_verified(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The memory map of ``path`` when it is intact, else None (it is then rebuilt)."""
    try:
        existing = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError):  # missing, empty, truncated or garbled header
        return None
    if existing.shape != shape or existing.dtype != np.uint8:
        return None
    try:
        recorded = _checksum_path(path).read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return existing if sha256_file(path) == recorded else None
