"""`CKAResult`: a layer x layer CKA matrix with its names, estimator and provenance."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import stat
import tokenize
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

#: The file format :meth:`CKAResult.save` writes. Version 1: arrays and a JSON header. Version 2
#: adds the SHA-256 of every array to the header. Version 3 adds the ``cka_sim_version`` field and
#: the ``checksum`` entry, the SHA-256 of the header's text, so that one checksum covers the names,
#: the estimator, the metadata and (through their recorded checksums) the arrays. Versions 1 and
#: 2 still load, with a warning saying what their format cannot check.
_FORMAT_VERSION = 3
_OPTIONAL_ARRAYS = ("ci_low", "ci_high", "pvalues")
#: Deflate never expands data by more than this factor (1032:1 is its limit), so an entry whose
#: declared size exceeds its compressed size times this is damaged or crafted.
_MAX_DEFLATE_RATIO = 1032


def _current_version() -> str:
    """The version of the running cka_sim."""
    from ._version import __version__

    return __version__


def default_metadata(**extra: Any) -> dict[str, Any]:
    """Provenance recorded with every result: package version and UTC date, plus ``extra``."""
    meta: dict[str, Any] = {
        "cka_sim_version": _current_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


@dataclass
class CKAResult:
    """CKA between every layer of one model (rows) and every layer of another (columns).

    Parameters
    ----------
    values : numpy.ndarray, shape (La, Lb)
        CKA values; NaN where undefined (a constant layer).
    row_names, col_names : list of str
        Layer names of the rows and columns, in order.
    estimator : str
        How the values were estimated, e.g. ``"linear"``, ``"linear-debiased"``,
        ``"minibatch-debiased"``.
    n_examples : int
        Number of examples the estimate used.
    metadata : dict, optional
        JSON-serialisable provenance: package version, date, input dtype and what the caller
        adds; by default the package version and the UTC date.
    ci_low, ci_high : numpy.ndarray, optional
        Per-cell confidence interval bounds, where computed.
    pvalues : numpy.ndarray, optional
        Per-cell permutation-test p-values, where computed.
    cka_sim_version : str or None, optional
        The version of cka_sim that computed the values, so that a published number can be tied
        to the code that made it; by default the running version. A result loaded from a file
        keeps the version that saved it (``None`` for an old file that did not record one).

    Raises
    ------
    TypeError
        If ``row_names`` or ``col_names`` is a string instead of a list of names, or
        ``cka_sim_version`` is neither a string nor ``None``.
    ValueError
        If ``values`` (or ``ci_low``, ``ci_high``, ``pvalues``) does not have one row per row
        name and one column per column name.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML (layer x layer CKA matrices).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import CKAResult
    >>> result = CKAResult(np.array([[1.0, 0.4]]), ["conv1"], ["conv1", "fc"], "linear", 100)
    >>> result.shape, result.value("conv1", "fc")
    ((1, 2), 0.4)
    >>> result.to_dict()["values"]
    [[1.0, 0.4]]
    """

    values: np.ndarray
    row_names: list[str]
    col_names: list[str]
    estimator: str
    n_examples: int
    metadata: dict[str, Any] = field(default_factory=default_metadata)
    ci_low: np.ndarray | None = None
    ci_high: np.ndarray | None = None
    pvalues: np.ndarray | None = None
    cka_sim_version: str | None = field(default_factory=_current_version)

    def __post_init__(self) -> None:
        for attr in ("row_names", "col_names"):
            if isinstance(getattr(self, attr), str):
                raise TypeError(
                    f"{attr} must be a list of layer names, not the string "
                    f"{getattr(self, attr)!r}: pass [{getattr(self, attr)!r}] for one layer"
                )
        if self.cka_sim_version is not None and not isinstance(self.cka_sim_version, str):
            raise TypeError(
                f"cka_sim_version must be a version string or None, not {self.cka_sim_version!r}"
            )
        self.values = np.asarray(self.values, dtype=np.float64)
        self.row_names = [str(name) for name in self.row_names]
        self.col_names = [str(name) for name in self.col_names]
        expected = (len(self.row_names), len(self.col_names))
        if self.values.shape != expected:
            raise ValueError(
                f"values has shape {self.values.shape} but there are {expected[0]} row names and "
                f"{expected[1]} column names"
            )
        for attr in ("ci_low", "ci_high", "pvalues"):
            extra = getattr(self, attr)
            if extra is not None:
                extra = np.asarray(extra, dtype=np.float64)
                if extra.shape != expected:
                    raise ValueError(f"{attr} has shape {extra.shape}; expected {expected}")
                setattr(self, attr, extra)

    @property
    def shape(self) -> tuple[int, int]:
        """The number of rows and columns, ``(La, Lb)``."""
        return (len(self.row_names), len(self.col_names))

    def value(self, row: str, col: str) -> float:
        """Return the CKA between layer ``row`` (of the first model) and ``col`` (of the second).

        Parameters
        ----------
        row : str
            A name in ``row_names``.
        col : str
            A name in ``col_names``.

        Returns
        -------
        float
            The value; NaN where it is undefined.

        Raises
        ------
        KeyError
            For a name that is not a row (or column); the message lists the names.
        """
        return float(
            self.values[_index(self.row_names, row, "row"), _index(self.col_names, col, "column")]
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dictionary.

        Returns
        -------
        dict
            Every field; arrays as nested lists, NaN written as ``None`` (JSON ``null``).
        """

        def listify(a: np.ndarray | None) -> list[list[float | None]] | None:
            if a is None:
                return None
            return [[None if np.isnan(v) else float(v) for v in row] for row in a]

        return {
            "values": listify(self.values),
            "row_names": self.row_names,
            "col_names": self.col_names,
            "estimator": self.estimator,
            "n_examples": int(self.n_examples),
            "metadata": self.metadata,
            "ci_low": listify(self.ci_low),
            "ci_high": listify(self.ci_high),
            "pvalues": listify(self.pvalues),
            "cka_sim_version": self.cka_sim_version,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to an ``.npz`` file (arrays + a JSON header; no pickle).

        The header records every field and the SHA-256 of each array; the ``checksum`` entry
        holds the SHA-256 of the header, so one checksum covers the whole file. :meth:`load`
        checks both. The file is written to a temporary name and renamed, so it is never left
        half-written; it gets the usual permissions (``0o666`` minus the umask).

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; ``.npz`` is appended when the name has another suffix or none.

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        OSError
            If the file cannot be written; an existing file is left as it was.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = (
                path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
            )
        arrays = {"values": self.values}
        for attr in _OPTIONAL_ARRAYS:
            if getattr(self, attr) is not None:
                arrays[attr] = getattr(self, attr)
        header = {
            "format_version": _FORMAT_VERSION,
            "row_names": self.row_names,
            "col_names": self.col_names,
            "estimator": self.estimator,
            "n_examples": int(self.n_examples),
            "metadata": self.metadata,
            "cka_sim_version": self.cka_sim_version,
            "sha256": {name: _digest(array) for name, array in arrays.items()},
        }
        text = json.dumps(header)
        arrays["header"] = np.array(text)
        arrays["checksum"] = np.array(_text_digest(text))
        _write_atomic(path, lambda handle: np.savez(handle, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CKAResult:
        """Read a result written by :meth:`save`.

        Before anything is allocated, each array's declared shape and dtype are checked against
        the bytes the file holds. A file of the current format (3) must match its checksums: the
        header's (row and column names, estimator, metadata, version) and every array's. Files
        of older formats still load, with a :class:`UserWarning` that says what they cannot
        check: format 2 has no checksum of the header (an edited name or estimator goes
        unnoticed), format 1 none at all. Save such a result again to protect it.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.npz`` file.

        Returns
        -------
        CKAResult
            The result as saved, with the ``cka_sim_version`` that saved it.

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ValueError
            When the file is not a complete ``CKAResult`` file (empty, truncated, not a regular
            file, another format, an array that declares more data than the file holds, a header
            nested too deeply to be a ``CKAResult``'s), a header field is missing or of the wrong
            type, or the header's or an array's SHA-256 differs from the one recorded when it
            was saved.

        Warns
        -----
        UserWarning
            For a file of format 1 or 2, which this version reads but cannot fully verify.
        """
        text, checksum, arrays = _read_npz(path)
        if checksum is not None and checksum != _text_digest(text):
            raise ValueError(
                f"{path}: the header (layer names, estimator, metadata) does not match the "
                "checksum recorded when it was saved; the file is corrupt or was edited, save "
                "the result again"
            )
        header = _parse_header(text, path)
        _check_header(header, path, has_checksum=checksum is not None)
        if header["format_version"] >= 2:
            _check_arrays(header["sha256"], arrays, path)
        if header["format_version"] < _FORMAT_VERSION:
            _warn_old_format(header["format_version"], path)
        try:
            return cls(
                values=arrays["values"],
                row_names=header["row_names"],
                col_names=header["col_names"],
                estimator=header["estimator"],
                n_examples=header["n_examples"],
                metadata=header["metadata"],
                cka_sim_version=_saved_version(header),
                **{k: v for k, v in arrays.items() if k != "values"},
            )
        except ValueError as err:
            raise ValueError(f"{path} holds an inconsistent CKAResult: {err}") from err

    def plot(self, **kwargs: Any) -> Any:
        """Draw the matrix as a heatmap (see :func:`cka_sim.plot.heatmap`; needs matplotlib).

        Parameters
        ----------
        **kwargs : Any
            Passed to :func:`cka_sim.plot.heatmap`.

        Returns
        -------
        matplotlib.axes.Axes
            The axes drawn on.
        """
        from .plot import heatmap

        return heatmap(self, **kwargs)

    def __repr__(self) -> str:
        version = self.cka_sim_version if self.cka_sim_version is not None else "unknown"
        return (
            f"CKAResult({self.shape[0]} x {self.shape[1]}, estimator={self.estimator!r}, "
            f"n_examples={self.n_examples}, cka_sim {version})"
        )


def _index(names: list[str], name: str, what: str) -> int:
    try:
        return names.index(name)
    except ValueError:
        raise KeyError(f"no {what} named {name!r}; {what}s are {names}") from None


def _digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-order bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through a temporary file in its directory and :func:`os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:  # mode 0o666 minus the umask, unlike mkstemp's 0o600
            write(handle)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _text_digest(text: str) -> str:
    """SHA-256 of a header's text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_npz(path: str | os.PathLike[str]) -> tuple[str, str | None, dict[str, np.ndarray]]:
    """The header text, the header checksum (None before format 3) and the arrays of a result
    file, or a ValueError saying what is wrong."""
    what = f"{path} is not a CKAResult file written by CKAResult.save"
    mode = os.stat(path).st_mode  # FileNotFoundError for a missing file, as open() would
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ValueError(f"{what}: it is {kind}")
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if handle.read(6) == b"\x93NUMPY":
            raise ValueError(f"{what}: it holds a single array, not an .npz archive")
        handle.seek(0)
        try:
            with zipfile.ZipFile(handle) as archive:
                entries = {
                    info.filename[: -len(".npy")]: info
                    for info in archive.infolist()
                    if info.filename.endswith(".npy")
                }
                missing = {"header", "values"} - set(entries)
                if missing:
                    raise ValueError(f"{what}: it has no {sorted(missing)} entries")
                read = {
                    name: _read_entry(archive, entries[name], size, what)
                    for name in ("header", "checksum", "values", *_OPTIONAL_ARRAYS)
                    if name in entries
                }
        except (OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error) as err:
            raise ValueError(
                f"{what}: it is empty, truncated or not an .npz archive ({err})"
            ) from err
    text = _as_text(read.pop("header"), "header", what)
    checksum = _as_text(read.pop("checksum"), "checksum", what) if "checksum" in read else None
    return text, checksum, read


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int, what: str) -> Any:
    """One ``.npy`` entry, once its declared shape and dtype fit the bytes the file holds."""
    name = info.filename[: -len(".npy")]
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO
    if info.compress_size > size or info.file_size > ratio * info.compress_size:
        raise ValueError(
            f"{what}: its {name!r} entry declares {info.file_size} bytes, more than the "
            f"{size}-byte file can hold"
        )
    try:
        with archive.open(info) as entry:
            version = np.lib.format.read_magic(entry)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"its {name!r} entry is .npy format {version}, not 1.0 or 2.0")
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(entry)
            declared = dtype.itemsize * math.prod(shape)
            if dtype.hasobject or declared > info.file_size:
                raise ValueError(
                    f"its {name!r} entry declares shape {shape} of {dtype} "
                    + (
                        "(Python objects), not plain numbers or text"
                        if dtype.hasobject
                        else f"({declared} bytes), but holds only {info.file_size} bytes"
                    )
                )
        with archive.open(info) as entry:
            return np.lib.format.read_array(entry, allow_pickle=False)
    except (ValueError, SyntaxError, tokenize.TokenError, RecursionError, MemoryError) as err:
        raise ValueError(f"{what}: {err}") from err


def _as_text(array: np.ndarray, name: str, what: str) -> str:
    """The text of a 0-d string entry (the header, the checksum)."""
    if array.ndim != 0 or array.dtype.kind != "U":
        raise ValueError(
            f"{what}: its {name!r} entry is a {array.dtype} array of shape {array.shape}, not text"
        )
    return str(array)


def _parse_header(text: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header as a dict, or a ValueError (also for one nested too deeply to parse)."""
    what = f"{path} is not a CKAResult file written by CKAResult.save"
    try:
        header = json.loads(text)
    except RecursionError:
        raise ValueError(
            f"{what}: its header is nested too deeply to be a CKAResult header"
        ) from None
    except ValueError as err:
        raise ValueError(f"{what}: its header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{what}: its header is a JSON {type(header).__name__}, not an object")
    return header


def _check_header(
    header: dict[str, Any], path: str | os.PathLike[str], *, has_checksum: bool
) -> None:
    """Raise ValueError naming the first header field that is missing or of the wrong type."""
    version = header.get("format_version")
    if version not in (1, 2, _FORMAT_VERSION) or isinstance(version, bool):
        raise ValueError(
            f"{path}: unsupported CKAResult format {version!r}; this cka_sim reads versions "
            f"1 to {_FORMAT_VERSION}"
        )
    if version >= 3 and not has_checksum:
        raise ValueError(
            f"{path}: a CKAResult file of format {version} must have a 'checksum' entry; the "
            "file is damaged, save the result again"
        )
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "row_names": (_is_name_list, "a list of strings"),
        "col_names": (_is_name_list, "a list of strings"),
        "estimator": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
        "n_examples": (
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "a non-negative integer",
        ),
        "metadata": (lambda v: isinstance(v, dict), "an object"),
    }
    if version >= 2:
        checks["sha256"] = (lambda v: isinstance(v, dict), "an object of array checksums")
    if version >= 3:
        checks["cka_sim_version"] = (lambda v: v is None or isinstance(v, str), "a string")
    for key, (valid, expected) in checks.items():
        if key not in header:
            raise ValueError(f"{path}: the CKAResult header has no {key!r} field")
        if not valid(header[key]):
            raise ValueError(
                f"{path}: the CKAResult header's {key!r} must be {expected}, got {header[key]!r}"
            )


def _check_arrays(
    digests: dict[str, Any], arrays: dict[str, np.ndarray], path: str | os.PathLike[str]
) -> None:
    """Raise ValueError naming the first array missing or differing from its recorded SHA-256."""
    for name in sorted(set(digests) | set(arrays)):
        if name not in arrays or digests.get(name) != _digest(arrays[name]):
            raise ValueError(
                f"{path}: the {name!r} array does not match the checksum recorded when it was "
                "saved; the file is corrupt, save the result again"
            )


def _warn_old_format(version: int, path: str | os.PathLike[str]) -> None:
    """Say what a file of an older format cannot check."""
    unchecked = (
        "no checksums: damage to its values or its header cannot be detected"
        if version == 1
        else "no checksum of its header: an edited layer name, estimator or metadata cannot "
        "be detected (its arrays were checked)"
    )
    warnings.warn(
        f"{path} is a CKAResult file of format {version}, which has {unchecked}; save it again "
        f"to write format {_FORMAT_VERSION}",
        UserWarning,
        stacklevel=3,
    )


def _saved_version(header: dict[str, Any]) -> str | None:
    """The cka_sim version that saved a file: a header field since format 3, before that the
    metadata's ``cka_sim_version`` when it is there."""
    if "cka_sim_version" in header:
        return header["cka_sim_version"]
    saved = header["metadata"].get("cka_sim_version")
    return saved if isinstance(saved, str) else None


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)
