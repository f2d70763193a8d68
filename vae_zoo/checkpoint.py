"""Checkpoints: atomic writes, validated reads, and loading a trained :class:`~vae_zoo.models.ConvVAE`.

A checkpoint is one ``torch.save`` file (``checkpoint.pt`` in a run directory) holding a dict:

``format``/``version``
    ``"vae_zoo.checkpoint"`` and the format version.
``model_config``
    :class:`~vae_zoo.models.ModelConfig` as a dict (channels, size, latent_dim,
    encoder_kernels). A checkpoint written before ``encoder_kernels`` existed lacks it and is
    read as the architecture it was trained with, kernel 4 throughout
    (:data:`~vae_zoo.models.LEGACY_ENCODER_KERNELS`; see
    :meth:`~vae_zoo.models.ModelConfig.from_dict`).
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

import io
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
    """Write ``obj`` as indented JSON with sorted keys to ``path`` atomically.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write.
    obj : Any
        A JSON-serialisable object.

    Raises
    ------
    TypeError
        If ``obj`` is not JSON-serialisable (nothing is written).
    OSError
        If the file cannot be written; a previous file is left as it was.

    References
    ----------
    The Open Group Base Specifications Issue 7 (POSIX.1-2017), ``rename()`` (atomic replacement).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.checkpoint import write_json_atomic
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "result.json"
    >>> write_json_atomic(path, {"b": 1, "a": 2})
    >>> path.read_text().splitlines()[1]
    '  "a": 2,'
    """
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

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (``torch.save`` and ``torch.load(weights_only=True)``, the file format).

    Examples
    --------
    >>> from vae_zoo.checkpoint import CheckpointError, require_keys
    >>> try:
    ...     require_keys({"model": {}}, ["model_config", "model"], "run/checkpoint.pt")
    ... except CheckpointError as err:
    ...     print(str(err).split(":")[0])
    run/checkpoint.pt is a vae_zoo checkpoint without ['model_config']
    """
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(
            f"{source} is a vae_zoo checkpoint without {missing}: it cannot be resumed or "
            "loaded; delete it (or its run directory) and train again"
        )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Save a checkpoint dict atomically, adding the ``format`` and ``version`` tags.

    Parameters
    ----------
    path : str or pathlib.Path
        The file, usually ``run_dir / "checkpoint.pt"``; its directory is created.
    payload : dict
        What to save (see the module docstring for the keys); tensors and plain Python values.

    Raises
    ------
    OSError
        If the file cannot be written; a previous checkpoint is left as it was.

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (``torch.save`` and ``torch.load(weights_only=True)``, the file format).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.checkpoint import load_model, read_checkpoint, save_checkpoint
    >>> from vae_zoo.models import make_model
    >>> model = make_model(size=32, seed=0)
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> save_checkpoint(run / "checkpoint.pt",
    ...                 {"model_config": model.config.to_dict(), "model": model.state_dict()})
    >>> sorted(read_checkpoint(run))
    ['format', 'model', 'model_config', 'version']
    """
    payload = {"format": FORMAT, "version": VERSION, **payload}
    # Serialise in memory first: torch's zip writer reports a failed write (a full disk) as a
    # RuntimeError ("unexpected pos"), while a plain file write raises the OSError (ENOSPC)
    # that the study turns into its one-line error. A checkpoint is a few MB.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def resolve_checkpoint(path: str | Path) -> Path:
    """Return ``path`` itself, or ``path / "checkpoint.pt"`` when ``path`` is a run directory.

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint file or a run directory.

    Returns
    -------
    pathlib.Path
        The checkpoint file (which may not exist).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.checkpoint import resolve_checkpoint
    >>> resolve_checkpoint(tempfile.gettempdir()).name
    'checkpoint.pt'
    """
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def read_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Read and validate a checkpoint file (or the ``checkpoint.pt`` of a run directory).

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint file or a run directory.
    map_location : str or torch.device, default "cpu"
        Where to load the tensors, as in ``torch.load``.

    Returns
    -------
    dict
        The payload, with its ``format`` and ``version`` tags.

    Raises
    ------
    CheckpointNotFoundError
        When there is no such file.
    CheckpointError
        When the file is truncated, corrupt, or not a ``vae_zoo`` checkpoint.

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (``torch.save`` and ``torch.load(weights_only=True)``, the file format).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.checkpoint import load_model, read_checkpoint, save_checkpoint
    >>> from vae_zoo.models import make_model
    >>> model = make_model(size=32, seed=0)
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> save_checkpoint(run / "checkpoint.pt",
    ...                 {"model_config": model.config.to_dict(), "model": model.state_dict()})
    >>> read_checkpoint(run)["model_config"]
    {'channels': 1, 'size': 32, 'latent_dim': 10, 'encoder_kernels': [4, 4, 2, 2]}
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

    Parameters
    ----------
    model : ConvVAE
        The model to load into, built with the checkpoint's architecture.
    payload : dict
        A checkpoint read by :func:`read_checkpoint`.
    source : str or pathlib.Path
        The checkpoint's path, for messages.

    Raises
    ------
    ArchitectureMismatchError
        When the checkpoint's model config or parameter shapes differ from ``model``'s.

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (``torch.save`` and ``torch.load(weights_only=True)``, the file format).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.checkpoint import load_model, read_checkpoint, save_checkpoint
    >>> from vae_zoo.models import make_model
    >>> model = make_model(size=32, seed=0)
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> save_checkpoint(run / "checkpoint.pt",
    ...                 {"model_config": model.config.to_dict(), "model": model.state_dict()})
    >>> from vae_zoo.checkpoint import load_model_state
    >>> fresh = make_model(size=32, seed=1)
    >>> load_model_state(fresh, read_checkpoint(run), run)
    >>> bool((fresh.encoder.mu.weight == model.encoder.mu.weight).all())
    True
    """
    stored = payload.get("model_config")
    try:
        config: ModelConfig | None = ModelConfig.from_dict(stored)
    except (TypeError, ValueError):
        config = None
    if config != model.config:
        described = repr(stored) if config is None else config.describe()
        raise ArchitectureMismatchError(
            f"checkpoint {source} was written for {described} but the model here is "
            f"{model.config.describe()}: use a matching dataset size/channels, latent_dim and "
            "encoder_kernels, or a different output directory"
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
    """Load a trained :class:`~vae_zoo.models.ConvVAE` from a checkpoint file or run directory, in eval mode.

    The global torch RNG is left as it was. A checkpoint whose model config has no
    ``encoder_kernels`` (written before the field existed) loads as the architecture it was
    trained with, kernel 4 in every encoder convolution.

    Parameters
    ----------
    path : str or pathlib.Path
        ``checkpoint.pt`` or the run directory holding it.
    device : str or torch.device, default "cpu"
        Where to put the model.
    decode_from : {"sample", "mean"}, default "sample"
        The model's default latent code for ``forward``.
    expect : ModelConfig, optional
        Raise :class:`ArchitectureMismatchError` unless the checkpoint has this architecture.

    Returns
    -------
    ConvVAE
        The trained model, in eval mode, on ``device``.

    Raises
    ------
    CheckpointNotFoundError
        When there is no checkpoint at ``path``.
    CheckpointError
        When the file is unreadable, not a ``vae_zoo`` checkpoint, or lacks the model.
    ArchitectureMismatchError
        When the architecture differs from ``expect``, or the parameters from the config.

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (``torch.save`` and ``torch.load(weights_only=True)``, the file format).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from vae_zoo.checkpoint import load_model, read_checkpoint, save_checkpoint
    >>> from vae_zoo.models import make_model
    >>> model = make_model(size=32, seed=0)
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> save_checkpoint(run / "checkpoint.pt",
    ...                 {"model_config": model.config.to_dict(), "model": model.state_dict()})
    >>> loaded = load_model(run, decode_from="mean")
    >>> loaded.training, loaded.config == model.config
    (False, True)
    """
    payload = read_checkpoint(path, map_location="cpu")
    require_keys(payload, MODEL_PAYLOAD_KEYS, resolve_checkpoint(path))
    try:
        config = ModelConfig.from_dict(payload["model_config"])
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
