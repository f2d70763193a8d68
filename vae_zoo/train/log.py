"""The metrics log of a run directory, ``metrics.jsonl``: append, read and cut back a line per
step and split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..checkpoint import CheckpointError
from ..storage import atomic_write
from .config import METRICS_NAME

__all__ = ["read_metrics"]


def _append_metrics(path: Path, row: dict[str, Any]) -> None:
    """Append one row to the log at ``path`` as a line of JSON."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _parse_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; an incomplete or garbled final line (a run killed while
    appending it) is dropped, a garbled line before it is an error."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a metrics row")
        except ValueError:
            if number == len(lines):
                break
            raise CheckpointError(
                f"line {number} of {path} is not a metrics row ({line[:60]!r}): the log is "
                "damaged; delete the run directory to train again"
            ) from None
        rows.append(row)
    return rows


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Return the lines of a run's ``metrics.jsonl`` (optionally only one ``split``).

    An incomplete last line, left by a run killed while writing it, is ignored.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The run directory.
    split : {"train", "test"}, optional
        Keep only these lines.

    Returns
    -------
    list of dict
        One dict per line, in order (``step``, ``split`` and the loss terms); empty when the
        run has written none.

    Raises
    ------
    CheckpointError
        If a line before the last is not a metrics row (the log is damaged).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> data = load("dsprites", size=32, max_examples=64)
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> run = tempfile.mkdtemp()
    >>> result = train(data, run, config, progress=False)
    >>> from vae_zoo.train import read_metrics
    >>> [row["step"] for row in read_metrics(run, "train")]
    [1, 2]
    """
    rows = _parse_metrics(Path(run_dir) / METRICS_NAME)
    return [r for r in rows if split is None or r.get("split") == split]


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only the metrics lines of steps <= ``last_step`` (lines written after a checkpoint
    by a run that was then killed are redone on resume; an incomplete last line is dropped)."""
    if not path.is_file():
        return
    keep = [row for row in _parse_metrics(path) if row["step"] <= last_step]
    text = "".join(json.dumps(row) + "\n" for row in keep)
    atomic_write(path, lambda f: f.write(text.encode()))
