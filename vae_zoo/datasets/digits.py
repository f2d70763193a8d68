"""scikit-learn's ``digits`` (1,797 images, 8 x 8, 17 grey levels), shipped inside scikit-learn.

The 0-16 grey levels are mapped to 0-255 by ``round(v * 255 / 16)``. It is the UCI "Optical
Recognition of Handwritten Digits" test set (Alpaydin and Kaynak), CC BY 4.0.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from ._source import Availability, RawImages
from .errors import DatasetNotAvailableError

FIX = "pip install scikit-learn   (or: pip install 'cka-sim[zoo]')"
CLASS_NAMES = tuple(str(d) for d in range(10))


def check(data_dir: str | os.PathLike[str] | None = None) -> Availability:
    """Whether scikit-learn is installed."""
    if importlib.util.find_spec("sklearn") is None:
        return Availability(False, f"scikit-learn is not installed; fix: {FIX}")
    return Availability(True, "scikit-learn (sklearn.datasets.load_digits, bundled file)")


def read(data_dir: str | os.PathLike[str] | None = None) -> RawImages:
    """Load the 1,797 images as ``uint8`` ``(N, 1, 8, 8)``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DatasetNotAvailableError(f"scikit-learn is not installed; fix: {FIX}") from err
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    info = {
        "source": "sklearn.datasets.load_digits (UCI optical digits)",
        "licence": "CC BY 4.0 (UCI ML repository, Alpaydin and Kaynak)",
        "intensity": "round(v * 255 / 16)",
    }
    return RawImages(images, bunch.target.astype(np.int64), CLASS_NAMES, info)
