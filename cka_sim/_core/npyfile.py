"""Reading the command line's activation files: ``.npy`` memory-mapped, ``.npz`` member by member.

Every file is checked before anything is allocated, and every fault is one
:class:`ActivationFileError` (a ``ValueError``) that names the file and says what it is:

- a missing path, a directory, a FIFO, a socket or a device is named as such (a FIFO is never
  opened, which would block until a writer comes);
- a file that starts with neither NumPy's signature (``\\x93NUMPY``) nor a zip archive's is "not
  a .npy or .npz file" (NumPy would call it pickled data and point at ``allow_pickle``);
- a malformed header is reported as malformed, whatever NumPy's parser raised;
- the size the header declares (shape x item size) is compared with the bytes the file holds
  before any array is made, so a forged shape such as (10**12, 10**6) costs nothing;
- object arrays are refused: nothing is ever unpickled.

A ``.npy`` file comes back as a read-only :class:`numpy.memmap`, which the estimators read in
blocks (the feature form of linear CKA touches each row once), so a file larger than memory can
be compared; ``.npz`` members are read into memory (a zip member cannot be mapped).
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive


class ActivationFileError(ValueError):
    """An activation file that cannot be read, with the reason, in one line."""


def open_activations(path: str | os.PathLike[str]) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a ``.npy`` file (memory-mapped, read-only) or the arrays of a ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file (one array) or a ``.npz`` archive (one array per layer). The kind is
        told by the file's first bytes, not its name.

    Returns
    -------
    numpy.ndarray or dict of str to numpy.ndarray
        A read-only :class:`numpy.memmap` for ``.npy`` (an ordinary array when it holds no
        values), or ``{member name without .npy: array}`` in the archive's order for ``.npz``.

    Raises
    ------
    ActivationFileError
        When ``path`` is not a regular file, is neither ``.npy`` nor ``.npz``, has a malformed
        header, declares more data than it holds, or holds Python objects.
    """
    p = Path(path)
    _check_regular_file(p)
    with open(p, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head == NPY_MAGIC:
        return _open_npy(p)
    if head[:4] in ZIP_MAGICS:
        return _read_npz(p)
    raise ActivationFileError(
        f"{path}: not a .npy or .npz file (it starts with neither NumPy's signature nor a zip "
        "archive's); save the activations with np.save or np.savez"
    )


def _check_regular_file(p: Path) -> None:
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ActivationFileError(f"{p}: no such file") from None
    except OSError as err:
        raise ActivationFileError(f"{p}: cannot be read ({err.strerror or err})") from None
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    for test, kind in kinds.items():
        if test(mode):
            raise ActivationFileError(
                f"{p}: is {kind}, not a regular file; give a .npy or .npz file (save the "
                "activations to a file first)"
            )


def _header(f: IO[bytes], label: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """``(shape, fortran_order, dtype)`` of the .npy header at ``f``'s position."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:  # 2.0, or 3.0: the same layout with a UTF-8 header (only non-Latin-1 field names)
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except Exception as err:  # the parser raises many kinds (TokenError, SyntaxError, ...)
        reason = " ".join(str(err).split())[:200]
        if "allow_pickle" in reason:  # NumPy's advice for a long header: unsafe for a forged one
            reason = "the header is longer than NumPy reads safely"
        raise ActivationFileError(
            f"{label}: not a readable .npy file: its header is malformed ({reason})"
        ) from None
    if dtype.hasobject:
        raise ActivationFileError(
            f"{label}: holds Python objects (dtype {dtype}), which cka-sim never reads (they "
            "would be unpickled); save the activations as a numeric array, e.g. "
            "np.save(path, np.asarray(acts, dtype=np.float32))"
        )
    return shape, fortran, dtype


def _check_size(label: str, shape: tuple[int, ...], dtype: np.dtype[Any], held: int) -> None:
    """Raise unless ``held`` bytes are enough for the declared array (checked before reading)."""
    declared = math.prod(shape) * dtype.itemsize
    if declared > held:
        raise ActivationFileError(
            f"{label}: its header declares shape {shape} of {dtype} ({declared:,} bytes), but "
            f"the file holds only {held:,} bytes of data: it is truncated or its header is wrong"
        )


def _open_npy(p: Path) -> np.ndarray:
    with open(p, "rb") as f:
        shape, fortran, dtype = _header(f, str(p))
        offset = f.tell()
    _check_size(str(p), shape, dtype, p.stat().st_size - offset)
    if not shape or math.prod(shape) == 0:  # nothing to map: read it (no values to speak of)
        return np.load(p, allow_pickle=False)
    order = "F" if fortran else "C"
    return np.memmap(p, dtype=dtype, mode="r", shape=shape, order=order, offset=offset)


def _read_npz(p: Path) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ActivationFileError(f"{p}: not a readable .npz file ({err})") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        for info in archive.infolist():
            label = f"{p}[{info.filename!r}]"
            if not info.filename.endswith(".npy"):
                raise ActivationFileError(
                    f"{label}: the archive holds a member that is not a .npy array; save the "
                    "layers with np.savez(path, name=array, ...)"
                )
            out[info.filename.removesuffix(".npy")] = _read_member(archive, info, label)
    if not out:
        raise ActivationFileError(f"{p}: the .npz file holds no arrays")
    return out


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> np.ndarray:
    try:
        with archive.open(info) as f:
            shape, _, dtype = _header(f, label)
            _check_size(label, shape, dtype, info.file_size - f.tell())
        with archive.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except ActivationFileError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ActivationFileError(f"{label}: cannot be read ({reason})") from None
