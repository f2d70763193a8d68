"""Animal-Shape (10,000 images, 28 x 28, 10 animal classes) from the ``animal-shape-mnist==0.39``
wheel.

The wheel stores the images and labels as gzipped NumPy pickles. They are sha256-verified before
anything is unpickled, then unpickled with :class:`~vae_zoo.datasets.safe_pickle.NumpyArrayUnpickler`,
which can only rebuild arrays. The package's own loader (which imports TensorFlow) is never
imported. Author: Sina Mohammadi; licence MIT.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ._files import cache_dir, package_file, read_verified
from ._source import Availability, RawImages
from .errors import DatasetNotAvailableError
from .safe_pickle import load_array

DATA_FILE = "animal_data_version_3.gz"
LABEL_FILE = "animal_label_version_3.gz"
SHA256 = {
    DATA_FILE: "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
    LABEL_FILE: "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
}
FIX = "pip install animal-shape-mnist==0.39   (or: pip install 'cka-sim[zoo]')"
CLASS_NAMES = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)  # fmt: skip


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of one data file: ``<data dir>/animals/`` first, then the installed wheel."""
    local = cache_dir(data_dir) / "animals" / name
    if local.is_file():
        return local
    return package_file("animal_shape_mnist", f"data/Animal Shape/{name}", FIX)


def check(data_dir: str | os.PathLike[str] | None = None) -> Availability:
    """Whether both files are present (checksums are verified when loading)."""
    try:
        return Availability(True, str(locate(DATA_FILE, data_dir).parent))
    except DatasetNotAvailableError as err:
        return Availability(False, str(err))


def read_array(path: Path, sha256: str) -> np.ndarray:
    """Verify ``path``'s sha256, then gunzip and unpickle it with the array-only unpickler."""
    return load_array(gzip.decompress(read_verified(path, sha256)))


def read(data_dir: str | os.PathLike[str] | None = None) -> RawImages:
    """Read the 10,000 images and labels (1,000 per class)."""
    data_path, label_path = locate(DATA_FILE, data_dir), locate(LABEL_FILE, data_dir)
    images = read_array(data_path, SHA256[DATA_FILE])
    labels = read_array(label_path, SHA256[LABEL_FILE])
    if images.shape != (10000, 28, 28) or images.dtype != np.uint8 or labels.shape != (10000,):
        raise ValueError(
            f"Animal-Shape: unexpected arrays {images.dtype} {images.shape}, labels {labels.shape}"
        )
    info = {
        "source": f"{data_path.parent} (animal-shape-mnist 0.39 wheel)",
        "licence": "MIT (Sina Mohammadi, animal-shape-mnist)",
        "sha256": dict(SHA256),
    }
    return RawImages(images[:, None], labels.astype(np.int64), CLASS_NAMES, info)
