"""`CKAResult`: a layer x layer CKA matrix with its names, estimator and provenance."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

#: Version 2 adds the SHA-256 of every array to the header; version 1 files still load.
_FORMAT_VERSION = 2
_OPTIONAL_ARRAYS = ("ci_low", "ci_high", "pvalues")


def default_metadata(**extra: Any) -> dict[str, Any]:
    """Provenance recorded with every result: package version and UTC date, plus ``extra``."""
    from ._version import __version__

    meta: dict[str, Any] = {
        "cka_sim_version": __version__,
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

    Raises
    ------
    TypeError
        If ``row_names`` or ``col_names`` is a string instead of a list of names.
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

    def __post_init__(self) -> None:
        for attr in ("row_names", "col_names"):
            if isinstance(getattr(self, attr), str):
                raise TypeError(
                    f"{attr} must be a list of layer names, not the string "
                    f"{getattr(self, attr)!r}: pass [{getattr(self, attr)!r}] for one layer"
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
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to an ``.npz`` file (arrays + a JSON header; no pickle).

        The header records every field and the SHA-256 of each array, which :meth:`load`
        checks. The file is written to a temporary name and renamed, so it is never left
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
            "sha256": {name: _digest(array) for name, array in arrays.items()},
        }
        arrays["header"] = np.array(json.dumps(header))
        _write_atomic(path, lambda handle: np.savez(handle, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CKAResult:
        """Read a result written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.npz`` file.

        Returns
        -------
        CKAResult
            The result as saved.

        Raises
        ------
        ValueError
            When the file is not a complete ``CKAResult`` file (empty, truncated, another
            format), a header field is missing or of the wrong type, or an array's SHA-256
            differs from the one recorded when it was saved.
        """
        header, arrays = _read_npz(path)
        _check_header(header, path)
        if header["format_version"] >= 2:
            digests = header["sha256"]
            for name in sorted(set(digests) | set(arrays)):
                if name not in arrays or digests.get(name) != _digest(arrays[name]):
                    raise ValueError(
                        f"{path}: the {name!r} array does not match the checksum recorded when "
                        "it was saved; the file is corrupt, save the result again"
                    )
        try:
            return cls(
                values=arrays["values"],
                row_names=header["row_names"],
                col_names=header["col_names"],
                estimator=header["estimator"],
                n_examples=header["n_examples"],
                metadata=header["metadata"],
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
        return (
            f"CKAResult({self.shape[0]} x {self.shape[1]}, estimator={self.estimator!r}, "
            f"n_examples={self.n_examples})"
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


def _read_npz(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the arrays of a result file, or a ValueError saying what is wrong."""
    what = f"{path} is not a CKAResult file written by CKAResult.save"
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{what}: it holds a single array, not an .npz archive")
        with data:
            missing = {"header", "values"} - set(data.files)
            if missing:
                raise ValueError(f"{what}: it has no {sorted(missing)} entries")
            arrays = {k: data[k] for k in ("values", *_OPTIONAL_ARRAYS) if k in data.files}
            text = data["header"]
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{what}: it is empty, truncated or not an .npz archive ({err})") from err
    except ValueError as err:
        if str(err).startswith(what):
            raise
        raise ValueError(f"{what}: it is not an .npz archive of plain arrays") from err
    try:
        header = json.loads(str(text))
    except ValueError as err:
        raise ValueError(f"{what}: its header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError(f"{what}: its header is a JSON {type(header).__name__}, not an object")
    return header, arrays


def _check_header(header: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise ValueError naming the first header field that is missing or of the wrong type."""
    version = header.get("format_version")
    if version not in (1, _FORMAT_VERSION):
        raise ValueError(
            f"{path}: unsupported CKAResult format {version!r}; this cka_sim reads versions 1 "
            f"and {_FORMAT_VERSION}"
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
    for key, (valid, expected) in checks.items():
        if key not in header:
            raise ValueError(f"{path}: the CKAResult header has no {key!r} field")
        if not valid(header[key]):
            raise ValueError(
                f"{path}: the CKAResult header's {key!r} must be {expected}, got {header[key]!r}"
            )


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)
