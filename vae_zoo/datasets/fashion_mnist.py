"""Fashion-MNIST (70,000 images: 60,000 train, 10,000 test) from IDX files.

Search order for the four ``*-idx?-ubyte[.gz]`` files: ``<data dir>/fashion_mnist/`` (``data_dir``,
``$VAE_ZOO_DATA`` or ``~/.cache/vae_zoo``), then the Debian/Ubuntu package path
``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``). Every file is
checked against pinned sha256 sums of the decompressed IDX payload (so any gzip of the canonical
data is accepted) before it is used. Fashion-MNIST: Zalando Research (Xiao, Rasul and Vollgraf
2017), MIT licence.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ._files import cache_dir, sha256_bytes
from ._source import Availability, RawImages
from .errors import ChecksumError, DatasetNotAvailableError
from .idx import parse_idx

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: sha256 of the decompressed IDX payloads.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
CLASS_NAMES = (
    "T-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)  # fmt: skip


def fix_message(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The commands that make Fashion-MNIST available."""
    return (
        "on Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist; "
        f"elsewhere: copy the four Fashion-MNIST IDX files ({', '.join(SHA256)}, optionally .gz) "
        f"into {cache_dir(data_dir) / 'fashion_mnist'}"
    )


def search_dirs(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, ...]:
    """Directories searched, in order."""
    return (cache_dir(data_dir) / "fashion_mnist", SYSTEM_DIR)


def locate(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """First existing ``name`` or ``name.gz`` in :func:`search_dirs`."""
    for directory in search_dirs(data_dir):
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                return candidate
    raise DatasetNotAvailableError(
        f"Fashion-MNIST file {name} not found in {[str(d) for d in search_dirs(data_dir)]}; "
        f"fix: {fix_message(data_dir)}"
    )


def check(data_dir: str | os.PathLike[str] | None = None) -> Availability:
    """Whether all four files are present (checksums are verified when loading)."""
    try:
        paths = [locate(name, data_dir) for pair in FILES.values() for name in pair]
    except DatasetNotAvailableError as err:
        return Availability(False, str(err))
    return Availability(True, str(paths[0].parent))


def read_idx(path: Path, sha256: str) -> np.ndarray:
    """Decompress (if ``.gz``), verify the payload's sha256, then parse the IDX file."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ChecksumError(
                f"{path}: corrupt gzip file ({err}); replace it: {fix_message()}"
            ) from err
    actual = sha256_bytes(raw)
    if actual != sha256:
        raise ChecksumError(
            f"{path}: sha256 of the IDX data is {actual}, expected {sha256}; the file is corrupt or "
            f"not Fashion-MNIST. Replace it: {fix_message()}"
        )
    return parse_idx(raw)


def read(split: str, data_dir: str | os.PathLike[str] | None = None) -> RawImages:
    """Read one canonical split (``"train"``: 60,000 images, ``"test"``: 10,000)."""
    image_name, label_name = FILES[split]
    image_path, label_path = locate(image_name, data_dir), locate(label_name, data_dir)
    images = read_idx(image_path, SHA256[image_name])
    labels = read_idx(label_path, SHA256[label_name])
    info = {
        "source": f"{image_path.parent} (IDX files)",
        "licence": "MIT (Zalando Research, Fashion-MNIST)",
        "split": "canonical Fashion-MNIST train/test files",
    }
    return RawImages(images[:, None], labels.astype(np.int64), CLASS_NAMES, info)
