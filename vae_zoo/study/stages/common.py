"""What every stage shares: the study directory, its datasets and training settings, atomic
writes, derived seeds and the worker processes' dataset cache."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ... import storage
from ...checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint
from ...datasets import ImageDataset
from ...train import TrainConfig
from ...zoo import DatasetLoader
from ..config import StudyConfig

__all__ = ["StudyContext", "check_config", "check_datasets", "write_json", "write_npz"]


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON atomically (see :mod:`vae_zoo.storage`): NumPy values become plain
    numbers and lists, and a non-finite number (an undefined quantity, such as G where the
    ceiling equals the floor) becomes ``null``, as RFC 8259 has no NaN."""
    storage.write_json(path, strict_json(data), allow_nan=False)


def strict_json(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays, tuples and dataclasses made plain, and every
    non-finite float replaced by None (``null``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def checkpoint_step_or_restart(run_dir: Path) -> int | None:
    """The step of a run's checkpoint, or None when it has none. A checkpoint that cannot be
    read (truncated, overwritten) cannot be resumed, so the run directory is removed and the
    run starts over: it is seeded, and trains the same model again."""
    checkpoint = run_dir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        return None
    try:
        return int(read_checkpoint(checkpoint)["step"])
    except (CheckpointError, KeyError):
        shutil.rmtree(run_dir, ignore_errors=True)
        return None


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically."""
    storage.atomic_write(path, lambda handle: np.savez(handle, **arrays))


def check_datasets(config: StudyConfig) -> None:
    """Refuse a configuration whose datasets do not load on this machine (before any work)."""
    from ...datasets import available

    status = available()
    missing = [f"{name}: {status[name].detail}" for name in config.datasets if not status[name].ok]
    if missing:
        raise ValueError(
            "these datasets do not load on this machine; install them or choose others with "
            "--datasets: " + "; ".join(missing)
        )


def check_config(config: StudyConfig, out: Path) -> None:
    """Refuse a study directory made by other settings; record the settings of a new one."""
    path = out / "config.json"
    if path.exists():
        changed = config.differs_from(json.loads(path.read_text()))
        if changed:
            raise ValueError(
                f"{out} holds a study with other settings (differs in {changed}); use "
                "another --out directory, or delete this one to start over"
            )
    else:
        write_json(path, config.to_dict())


class StudyContext:
    """The settings and directory of one study, and the datasets every stage reads.

    Parameters
    ----------
    config : StudyConfig
    out : Path
        The study directory.
    """

    def __init__(self, config: StudyConfig, out: Path) -> None:
        self.config = config
        self.out = out
        self._datasets: dict[tuple[str, str], ImageDataset] = {}

    @property
    def size(self) -> int:
        return self.config.size

    def dataset(self, name: str, split: str) -> ImageDataset:
        """A dataset split at the study's size, loaded once (the training split capped)."""
        key = (name, split)
        if key not in self._datasets:
            cap = self.config.train_examples if split == "train" else None
            from ...datasets import load

            self._datasets[key] = load(name, split=split, size=self.size, max_examples=cap)
        return self._datasets[key]

    def loader(self) -> DatasetLoader:
        """The loader of the zoo's training runs (in the worker processes)."""
        c = self.config
        return DatasetLoader(max_examples=c.train_examples, max_test_examples=c.test_examples)

    def train_config(self, steps: int, **extra: Any) -> TrainConfig:
        """Training settings of a run of ``steps`` steps (zoo model or transfer)."""
        c = self.config
        return TrainConfig(
            steps=steps,
            objective=c.objective,
            objective_params=dict(c.objective_params),
            eval_examples=c.test_examples,
            eval_every=0,
            checkpoint_every=max(50, steps // 5),
            log_every=max(10, steps // 20),
            device=c.device,
            **extra,
        )


@functools.lru_cache(maxsize=8)
def _cached_load(loader: DatasetLoader, name: str, split: str, size: int) -> ImageDataset:
    return loader(name, split, size)
