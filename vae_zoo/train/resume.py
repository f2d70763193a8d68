"""What resuming a run needs: the data fingerprint, the RNG states saved in a checkpoint, the
checks that a checkpoint belongs to the run asked for, and whether a run directory is complete."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import CHECKPOINT_NAME, RESUME_PAYLOAD_KEYS, CheckpointError, require_keys
from ..datasets.base import ImageDataset
from .config import RESULT_NAME, TrainConfig, snapshot_path

__all__ = ["ResumeMismatchError", "data_fingerprint", "is_complete"]


class ResumeMismatchError(CheckpointError):
    """A run directory holds a run whose settings differ from the ones asked for."""


def data_fingerprint(data: ImageDataset) -> dict[str, Any]:
    """Identify a dataset cheaply: name, split, shape and a SHA-256 of up to 1024 spread images.

    A resumed run compares it with the checkpoint's, so it cannot continue on other data.

    Parameters
    ----------
    data : ImageDataset
        The dataset.

    Returns
    -------
    dict
        ``{"name", "split", "shape", "sha256_sample"}``, JSON-serialisable.

    References
    ----------
    NIST (2015), *Secure Hash Standard (SHS)*, FIPS PUB 180-4.

    Examples
    --------
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import data_fingerprint
    >>> data = load("dsprites", size=32, max_examples=16)
    >>> data_fingerprint(data)["shape"], data_fingerprint(data) == data_fingerprint(data)
    ([16, 1, 32, 32], True)
    """
    n = len(data)
    idx = np.linspace(0, n - 1, num=min(n, 1024)).astype(np.int64) if n else np.zeros(0, int)
    digest = hashlib.sha256(np.ascontiguousarray(data.images[idx]).tobytes()).hexdigest()
    return {
        "name": data.name,
        "split": data.split,
        "shape": list(data.images.shape),
        "sha256_sample": digest,
    }


def is_complete(run_dir: str | Path, steps: int | None = None) -> bool:
    """Tell whether ``run_dir`` holds a finished run (of at least ``steps`` steps, if given).

    Parameters
    ----------
    run_dir : str or pathlib.Path
        The run directory.
    steps : int, optional
        The number of steps the run must have reached.

    Returns
    -------
    bool
        False for a missing, unfinished or unreadable run: it is never an error.

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> data = load("dsprites", size=32, max_examples=64)
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> run = tempfile.mkdtemp()
    >>> result = train(data, run, config, progress=False)
    >>> from vae_zoo.train import is_complete
    >>> is_complete(run), is_complete(run, steps=10)
    (True, False)
    """
    path = Path(run_dir) / RESULT_NAME
    if not path.is_file() or not (Path(run_dir) / CHECKPOINT_NAME).is_file():
        return False
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(result.get("complete")) and (steps is None or result.get("step", -1) >= steps)


def _rng_states(data_rng: np.random.Generator, noise: torch.Generator) -> dict[str, Any]:
    """Every RNG state a run depends on, in ``weights_only``-loadable types."""
    np_state = np.random.get_state()  # noqa: NPY002 (saved so user code using it resumes)
    return {
        "data": data_rng.bit_generator.state,
        "noise": noise.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": random.getstate(),
    }


def _restore_rng_states(
    states: dict[str, Any], data_rng: np.random.Generator, noise: torch.Generator
) -> None:
    data_rng.bit_generator.state = states["data"]
    noise.set_state(states["noise"])
    torch.set_rng_state(states["torch"])
    kind, keys, *rest = states["numpy"]
    numpy_state = (kind, np.asarray(keys, dtype=np.uint32), *rest)
    np.random.set_state(numpy_state)  # noqa: NPY002 - restores the legacy global RNG on resume
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))


def _check_resume(payload: dict[str, Any], config: TrainConfig, fingerprint: dict, out: Path):
    require_keys(payload, RESUME_PAYLOAD_KEYS, out / CHECKPOINT_NAME)
    stored = payload.get("train_config", {})
    for key in TrainConfig.RESUME_KEYS:
        if stored.get(key) != getattr(config, key):
            raise ResumeMismatchError(
                f"{out} holds a run with {key}={stored.get(key)!r} but this run asks for "
                f"{key}={getattr(config, key)!r}: use another output directory, or the same "
                "settings to resume"
            )
    if payload.get("data") != fingerprint:
        raise ResumeMismatchError(
            f"{out} holds a run trained on {payload.get('data')} but this run's data is "
            f"{fingerprint}: use another output directory"
        )
    if payload["step"] > config.steps:
        raise ResumeMismatchError(
            f"{out} already holds {payload['step']} steps, more than the {config.steps} asked "
            "for: ask for at least as many steps, or use another output directory"
        )
    _check_snapshots(config, payload["step"], out)


def _check_snapshots(config: TrainConfig, step: int, out: Path) -> None:
    """Refuse to resume past a kept step whose snapshot is not on disk (it cannot be redone)."""
    missing = [
        s for s in config.keep_checkpoints if s <= step and not snapshot_path(out, s).is_file()
    ]
    if missing:
        raise ResumeMismatchError(
            f"{out} holds a run at step {step} without the checkpoints keep_checkpoints asks for "
            f"at steps {missing} ({snapshot_path(out, missing[0]).name} is missing); a copy is "
            "written only when training passes its step: drop these steps from "
            "keep_checkpoints, or delete the run directory to train again"
        )
