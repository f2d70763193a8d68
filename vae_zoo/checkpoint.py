"""Checkpoints: atomic writes, validated reads, and loading a trained :class:`ConvVAE`.

A checkpoint is one ``torch.save`` file (``checkpoint.pt`` in a run directory) holding a dict:

``format``/``version``
    ``"vae_zoo.checkpoint"`` and the format version.
``model_config``
    :class:`~vae_zoo.models.ModelConfig` as a dict (channels, size, latent_dim).
``model``, ``optimizer``
    State dicts.
``step``, ``complete``
    Optimisation steps done, and whether the run reached its final step.
``train_config``, ``data``, ``rng``, ``trainable``, ``reinitialised``, ``metadata``
    What :mod:`vae_zoo.train` needs to resume bit for bit and what a transfer run records.

Writes go through :func:`vae_zoo.storage.atomic_write` (a temporary file in the same directory,
flushed to disk, then renamed over the target with :func:`os.replace`), so a run killed mid-write
leaves the previous checkpoint intact.
Reads use ``torch.load(weights_only=True)``: no arbitrary code runs when loading.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .models import ConvVAE, DecodeFrom, ModelConfig
from .storage import atomic_write, write_json

__all__ = [
    "CHECKPOINT_NAME",
    "RESUME_PAYLOAD_KEYS",
    "ArchitectureMismatchError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "atomic_write",
    "load_model",
    "load_model_state",
    "read_checkpoint",
    "require_keys",
    "resolve_checkpoint",
    "save_checkpoint",
    "write_json_atomic",
]

FORMAT = "vae_zoo.checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: What a checkpoint must hold to load its model.
MODEL_PAYLOAD_KEYS = ("model_config", "model")
#: What :mod:`vae_zoo.train` needs to resume from a checkpoint, bit for bit.
RESUME_PAYLOAD_KEYS = (
    *MODEL_PAYLOAD_KEYS,
    "optimizer",
    "step",
    "train_config",
    "data",
    "rng",
    "log_sums",
    "log_count",
    "trainable",
    "reinitialised",
    "metadata",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unreadable, of another format, or of another architecture."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path."""


class ArchitectureMismatchError(CheckpointError):
    """The checkpoint was written for a model with another architecture."""


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys to ``path`` atomically."""
    write_json(path, obj, sort_keys=True)


def require_keys(payload: dict[str, Any], keys: Iterable[str], source: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the ``keys`` that ``payload`` lacks.

    A file with the format tag but without what its reader needs was written by another tool
    or an interrupted older version: it is reported, never a bare ``KeyError``.

    Parameters
    ----------
    payload : dict
        A checkpoint read by :func:`read_checkpoint`.
    keys : iterable of str
        What the caller reads from it, e.g. :data:`RESUME_PAYLOAD_KEYS`.
    source : str or Path
        The checkpoint's path, for the message.

    Raises
    ------
    CheckpointError
        When some of ``keys`` are missing; the message lists them.
    """
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(
            f"{source} is a vae_zoo checkpoint without {missing}: it cannot be resumed or "
            "loaded; delete it (or its run directory) and train again"
        )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically, adding the ``format`` and ``version`` tags."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    atomic_write(path, lambda f: torch.save(payload, f))


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` itself, or ``path / "checkpoint.pt"`` when ``path`` is a run directory."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint file (or the ``checkpoint.pt`` of a run directory).

    Raises
    ------
    CheckpointNotFoundError
        When there is no such file.
    CheckpointError
        When the file is truncated, corrupt, or not a ``vae_zoo`` checkpoint.
    """
    file = resolve_checkpoint(path)
    if not file.is_file():
        raise CheckpointNotFoundError(
            f"no checkpoint at {file}: train a model there first "
            "(python -m vae_zoo.train --dataset NAME --out DIR) or check the path"
        )
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{file} is not a readable checkpoint (truncated or corrupt: "
            f"{type(exc).__name__}: {exc}); delete it and train again"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is a torch file but not a vae_zoo checkpoint (no format={FORMAT!r} tag); "
            "pass a checkpoint.pt written by vae_zoo.train"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format version {payload.get('version')}, this vae_zoo "
            f"reads version {VERSION}: retrain with this version"
        )
    return payload


def load_model_state(model: ConvVAE, payload: dict[str, Any], source: str | Path) -> None:
    """Load ``payload["model"]`` into ``model`` after checking the architectures agree.

    Raises
    ------
    ArchitectureMismatchError
        When the checkpoint's model config or parameter shapes differ from ``model``'s.
    """
    stored = payload.get("model_config")
    if stored != model.config.to_dict():
        try:
            described = ModelConfig(**stored).describe()
        except (TypeError, ValueError):
            described = repr(stored)
        raise ArchitectureMismatchError(
            f"checkpoint {source} was written for {described} but the model here is "
            f"{model.config.describe()}: use a matching dataset size/channels and latent_dim, "
            "or a different output directory"
        )
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ArchitectureMismatchError(
            f"checkpoint {source} does not match the parameters of {model.config.describe()} "
            f"({exc}); it was written by a different version of the model code"
        ) from exc


def load_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    decode_from: DecodeFrom = "sample",
    expect: ModelConfig | None = None,
) -> ConvVAE:
    """Load a trained :class:`ConvVAE` from a checkpoint file or run directory, in eval mode.

    Parameters
    ----------
    path : str or Path
        ``checkpoint.pt`` or the run directory holding it.
    device : str or torch.device
        Where to put the model.
    decode_from : {"sample", "mean"}
        The model's default latent code for ``forward``.
    expect : ModelConfig, optional
        Raise :class:`ArchitectureMismatchError` unless the checkpoint has this architecture.

    The global torch RNG is left as it was.
    """
    payload = read_checkpoint(path, map_location="cpu")
    require_keys(payload, MODEL_PAYLOAD_KEYS, resolve_checkpoint(path))
    try:
        config = ModelConfig(**payload["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{resolve_checkpoint(path)} has no valid model_config ({exc}); "
            "it was not written by vae_zoo.train"
        ) from exc
    if expect is not None and config != expect:
        raise ArchitectureMismatchError(
            f"checkpoint {resolve_checkpoint(path)} holds {config.describe()}, "
            f"expected {expect.describe()}"
        )
    with torch.random.fork_rng(devices=[]):  # the init is overwritten: leave the global RNG
        model = ConvVAE.from_config(config, decode_from=decode_from)
    load_model_state(model, payload, resolve_checkpoint(path))
    return model.to(device).eval()
