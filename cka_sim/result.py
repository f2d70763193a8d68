"""`CKAResult`: a layer x layer CKA matrix with its names, estimator and provenance."""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_FORMAT_VERSION = 1


def default_metadata(**extra: Any) -> dict[str, Any]:
    """Provenance recorded with every result: package version and UTC date, plus ``extra``."""
    from . import __version__

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
    metadata : dict
        JSON-serialisable provenance: package version, date, input dtype and what the caller adds.
    ci_low, ci_high : numpy.ndarray, optional
        Per-cell confidence interval bounds, where computed.
    pvalues : numpy.ndarray, optional
        Per-cell permutation-test p-values, where computed.
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
        """``(La, Lb)``."""
        return (len(self.row_names), len(self.col_names))

    def value(self, row: str, col: str) -> float:
        """The CKA between layer ``row`` (of the first model) and ``col`` (of the second)."""
        return float(
            self.values[_index(self.row_names, row, "row"), _index(self.col_names, col, "column")]
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (NaN written as ``null``)."""

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

        The file is written to a temporary name and renamed, so it is never left half-written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = (
                path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
            )
        header = {
            "format_version": _FORMAT_VERSION,
            "row_names": self.row_names,
            "col_names": self.col_names,
            "estimator": self.estimator,
            "n_examples": int(self.n_examples),
            "metadata": self.metadata,
        }
        arrays = {"values": self.values, "header": np.array(json.dumps(header))}
        for attr in ("ci_low", "ci_high", "pvalues"):
            if getattr(self, attr) is not None:
                arrays[attr] = getattr(self, attr)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CKAResult:
        """Read a result written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                extras = {k: data[k] for k in ("ci_low", "ci_high", "pvalues") if k in data.files}
                values = data["values"]
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(
                f"{path} is not a CKAResult file written by CKAResult.save: {err}"
            ) from err
        if header.get("format_version") != _FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported CKAResult format {header.get('format_version')!r}"
            )
        return cls(
            values=values,
            row_names=header["row_names"],
            col_names=header["col_names"],
            estimator=header["estimator"],
            n_examples=header["n_examples"],
            metadata=header["metadata"],
            **extras,
        )

    def plot(self, **kwargs: Any) -> Any:
        """Draw the matrix as a heatmap (see :func:`cka_sim.plot.heatmap`; needs matplotlib)."""
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
