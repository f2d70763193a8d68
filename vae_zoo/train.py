"""A resumable, deterministic trainer for :class:`~vae_zoo.models.ConvVAE`.

Training is step-based Adam (default: learning rate 1e-4, batch 64, as in the paper) on batches
of random indices drawn from the whole training set held in memory as ``uint8`` (no DataLoader,
no workers). A run directory holds:

``config.json``
    The training configuration, model architecture, data fingerprint and metadata.
``metrics.jsonl``
    One JSON object per line: ``{"step", "split": "train"|"test", "loss", "recon", "kl", ...}``;
    train lines average the loss terms since the previous train line.
``checkpoint.pt``
    The latest checkpoint (see :mod:`vae_zoo.checkpoint`), written atomically every
    ``checkpoint_every`` steps and at the end.
``result.json``
    Written last, when the run is complete; its presence marks a finished run.

Determinism and resume
----------------------
All randomness is seeded from ``TrainConfig.seed``: the model initialisation, the batch indices
(a NumPy ``Generator``) and the reparameterisation noise (a dedicated ``torch.Generator``). The
global torch, NumPy and Python RNGs are seeded too, and every one of these states is saved in
the checkpoint with the model and optimiser. Calling :func:`train` again on a run directory
resumes from its last checkpoint and, on the CPU, ends with the same parameters, bit for bit, as
an uninterrupted run; ``metrics.jsonl`` is cut back to the checkpoint's step first so no line is
duplicated. Training uses ``threads`` torch threads (default 1: on a small machine several
single-thread processes give the best throughput).

Command line::

    python -m vae_zoo.train --dataset dsprites --size 32 --steps 5000 --seed 0 --out runs/x
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from tqdm.auto import tqdm
except ImportError as _err:
    from ._extras import missing

    missing(_err, "vae_zoo.train", command=__name__ == "__main__")

from .checkpoint import (
    CHECKPOINT_NAME,
    RESUME_PAYLOAD_KEYS,
    CheckpointError,
    load_model_state,
    read_checkpoint,
    require_keys,
    save_checkpoint,
    write_json_atomic,
)
from .datasets.base import ImageDataset
from .models import ConvVAE, check_images_fit, make_model
from .objectives import OBJECTIVES, Objective, make_objective
from .storage import DirectoryLockedError, atomic_write, describe_os_error, lock_directory

__all__ = [
    "METRICS_NAME",
    "RESULT_NAME",
    "ResumeMismatchError",
    "TrainConfig",
    "TrainResult",
    "data_fingerprint",
    "evaluate",
    "is_complete",
    "main",
    "read_metrics",
    "train",
]

METRICS_NAME = "metrics.jsonl"
RESULT_NAME = "result.json"
CONFIG_NAME = "config.json"


class ResumeMismatchError(CheckpointError):
    """A run directory holds a run whose settings differ from the ones asked for."""


@dataclass
class TrainConfig:
    """Settings of one training run.

    Parameters
    ----------
    steps : int, default 5000
        Total optimisation steps.
    batch_size : int, default 64
        Examples per step (drawn uniformly with replacement).
    lr : float, default 1e-4
        Adam learning rate (β = (0.9, 0.999), ε = 1e-8).
    seed : int, default 0
        Seeds the initialisation, batch indices and sampling noise.
    objective : str, default "beta_vae"
        A name in :data:`vae_zoo.objectives.OBJECTIVES`.
    objective_params : dict, optional
        Its hyper-parameters, e.g. ``{"beta": 4.0}``; by default the objective's defaults.
    latent_dim : int, default 10
        Latent size of a freshly built model.
    log_every : int, default 100
        Write averaged train loss terms every this many steps.
    eval_every : int, default 1000
        Evaluate the test loss every this many steps (0: only at the end and ``eval_at``).
    eval_at : tuple of int, default ()
        Extra steps at which to evaluate the test loss (0 means before the first step).
    eval_examples : int, default 2048
        Test examples used per evaluation (the first ones of the test set).
    checkpoint_every : int, default 500
        Write a checkpoint every this many steps (and always at the end).
    threads : int or None, default 1
        ``torch.set_num_threads`` during training (restored afterwards); None leaves it.
    device : str, default "cpu"
        ``"cpu"`` (deterministic) or ``"cuda"``.

    Raises
    ------
    ValueError
        If a count is below 1 (``eval_every`` and ``eval_at`` below 0), or the objective's name
        or hyper-parameters are unknown.

    References
    ----------
    Kingma & Ba (2015), *Adam: A Method for Stochastic Optimization*, ICLR. Locatello et al.
    (2019), *Challenging Common Assumptions in the Unsupervised Learning of Disentangled
    Representations*, ICML (the training settings of ``disentanglement_lib``).

    Examples
    --------
    >>> from vae_zoo.train import TrainConfig
    >>> config = TrainConfig(steps=300, eval_every=100, eval_at=(0,))
    >>> sorted(config.eval_steps()), TrainConfig.from_dict(config.to_dict()) == config
    ([0, 100, 200, 300], True)
    """

    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-4
    seed: int = 0
    objective: str = "beta_vae"
    objective_params: dict[str, Any] = field(default_factory=dict)
    latent_dim: int = 10
    log_every: int = 100
    eval_every: int = 1000
    eval_at: tuple[int, ...] = ()
    eval_examples: int = 2048
    checkpoint_every: int = 500
    threads: int | None = 1
    device: str = "cpu"

    #: Settings that must equal those of a checkpoint to resume from it.
    RESUME_KEYS = ("batch_size", "lr", "seed", "objective", "objective_params", "latent_dim")

    def __post_init__(self) -> None:
        self.eval_at = tuple(sorted({int(s) for s in self.eval_at}))
        for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or any(s < 0 for s in self.eval_at):
            raise ValueError("eval_every and eval_at must be >= 0")
        make_objective(self.objective, **self.objective_params)  # validates name and params

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain, JSON-serialisable dict.

        Returns
        -------
        dict
            Field name to value; ``eval_at`` as a list.
        """
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from the dict form of :meth:`to_dict` (unknown keys are ignored).

        Parameters
        ----------
        d : dict
            Settings by field name.

        Returns
        -------
        TrainConfig
            The config, validated.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def build_objective(self) -> Objective:
        """Build the configured objective.

        Returns
        -------
        Objective
            ``make_objective(objective, **objective_params)``.
        """
        return make_objective(self.objective, **self.objective_params)

    def eval_steps(self) -> set[int]:
        """Return the steps after which the test loss is evaluated.

        Returns
        -------
        set of int
            Multiples of ``eval_every``, the ``eval_at`` steps up to ``steps``, and ``steps``.
        """
        periodic = (
            range(self.eval_every, self.steps + 1, self.eval_every) if self.eval_every else ()
        )
        return {*periodic, *(s for s in self.eval_at if s <= self.steps), self.steps}


@dataclass
class TrainResult:
    """The outcome of one training run, as :func:`train` returns it.

    Parameters
    ----------
    out_dir : pathlib.Path
        The run directory.
    checkpoint : pathlib.Path
        Its ``checkpoint.pt``.
    step : int
        Steps done.
    complete : bool
        Whether ``step == config.steps``.
    train, test : dict
        The last train and test metrics lines (empty when none was written).
    resumed_from : int, optional
        The checkpoint step this call resumed from (None for a fresh start).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> data = load("dsprites", size=32, max_examples=64)
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> run = tempfile.mkdtemp()
    >>> result = train(data, run, config, progress=False)
    >>> result.step, result.complete, result.resumed_from
    (2, True, None)
    """

    out_dir: Path
    checkpoint: Path
    step: int
    complete: bool
    train: dict[str, Any]
    test: dict[str, Any]
    resumed_from: int | None = None


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


@torch.no_grad()
def evaluate(
    model: ConvVAE,
    objective: Objective,
    data: ImageDataset,
    *,
    step: int = 0,
    dataset_size: int | None = None,
    max_examples: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, float]:
    """Mean loss terms of ``model`` on (the first ``max_examples`` of) ``data``.

    Batches are consecutive, the sampling noise comes from a ``torch.Generator`` seeded with
    ``seed``, and the global RNGs are not touched: the same model gives the same numbers. Terms
    are averaged over examples (weighted by batch size).

    Parameters
    ----------
    model : ConvVAE
        The model; its training flag is restored afterwards.
    objective : Objective
        The loss terms to average.
    data : ImageDataset
        The images.
    step : int, default 0
        The training step, for the Annealed VAE's capacity.
    dataset_size : int, optional
        The ``N`` of the β-TCVAE estimator (default: ``len(data)``).
    max_examples : int, optional
        Use only the first this many images.
    batch_size : int, default 256
        Images per forward pass.
    seed : int, default 0
        Seed of the sampling noise.

    Returns
    -------
    dict
        Term name to its mean over the examples (``"loss"``, ``"recon"``, ``"kl"``, ...).

    Raises
    ------
    ValueError
        If the images do not fit the model (channels or size).

    References
    ----------
    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, ICLR (the negative ELBO).

    Examples
    --------
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.models import make_model
    >>> from vae_zoo.objectives import BetaVAE
    >>> from vae_zoo.train import evaluate
    >>> data = load("dsprites", size=32, max_examples=16)
    >>> terms = evaluate(make_model(size=32, seed=0), BetaVAE(), data)
    >>> sorted(terms), terms == evaluate(make_model(size=32, seed=0), BetaVAE(), data)
    (['kl', 'loss', 'recon'], True)
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(data) if max_examples is None else min(len(data), max_examples)
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = np.array(data.images[start : min(start + batch_size, n)])  # a writable copy
        x = torch.from_numpy(batch).to(device).float().div_(255.0)
        out = model(x, decode_from="sample", generator=generator)
        terms = objective(x, out, step=step, dataset_size=dataset_size or len(data))
        for key, value in terms.items():
            totals[key] = totals.get(key, 0.0) + float(value) * x.shape[0]
    model.train(was_training)
    return {key: total / n for key, total in totals.items()}


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


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only the metrics lines of steps <= ``last_step`` (lines written after a checkpoint
    by a run that was then killed are redone on resume; an incomplete last line is dropped)."""
    if not path.is_file():
        return
    keep = [row for row in _parse_metrics(path) if row["step"] <= last_step]
    text = "".join(json.dumps(row) + "\n" for row in keep)
    atomic_write(path, lambda f: f.write(text.encode()))


#: Test hook: stop after this step without writing a checkpoint, as if the process were killed
#: there (the tests of resume set it with ``monkeypatch``). Not part of the API.
_interrupt_after: int | None = None


def train(
    data: ImageDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    test_data: ImageDataset | None = None,
    init_model: ConvVAE | None = None,
    trainable: Iterable[str] | None = None,
    reinitialised: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a VAE on ``data``, writing checkpoints and logs to ``out_dir``; resume if possible.

    Parameters
    ----------
    data : ImageDataset
        Training images (``uint8``); the model's channels and size must match.
    out_dir : str or Path
        Run directory, locked while training: a second process on it fails at once with
        :class:`~vae_zoo.storage.DirectoryLockedError`, naming the first. When it holds a
        checkpoint, training resumes from it (the settings in ``TrainConfig.RESUME_KEYS`` and
        the data must be the same); a complete run is returned as is.
    config : TrainConfig, optional
        Settings (default ``TrainConfig()``).
    test_data : ImageDataset, optional
        Test images for the periodic test loss.
    init_model : ConvVAE, optional
        Start from this model (used by :mod:`vae_zoo.transfer`) instead of a fresh one seeded
        by ``config.seed``. It is trained in place; ignored on resume.
    trainable : iterable of str, optional
        Names of the parameters to optimise (``named_parameters`` names); the others are
        frozen. Default: all.
    reinitialised : sequence of str, default ()
        Names of parameters the caller re-initialised; only recorded.
    metadata : dict, optional
        JSON-serialisable notes stored in ``config.json`` and the checkpoint.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    TrainResult
        The run directory, its checkpoint, the steps done and the last metrics.

    Raises
    ------
    ValueError
        When ``data`` is empty, or its images do not fit the model.
    CheckpointError
        When the run directory's checkpoint is unreadable or lacks what a resume needs.
    ResumeMismatchError
        When it holds a run with other settings or data.
    DirectoryLockedError
        When another process is training in it.

    References
    ----------
    Kingma & Ba (2015), *Adam: A Method for Stochastic Optimization*, ICLR. Locatello et al.
    (2019), *Challenging Common Assumptions in the Unsupervised Learning of Disentangled
    Representations*, ICML (the training settings of ``disentanglement_lib``).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.datasets import load
    >>> from vae_zoo.train import TrainConfig, train
    >>> data = load("dsprites", size=32, max_examples=64)
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> run = tempfile.mkdtemp()
    >>> result = train(data, run, config, progress=False)
    >>> again = train(data, run, config, progress=False)  # complete: returned as it is
    >>> result.complete, again.step
    (True, 2)
    """
    config = config or TrainConfig()
    if len(data) == 0:
        raise ValueError(f"dataset {data.name!r} is empty: nothing to train on")
    out = Path(out_dir)
    previous_threads = torch.get_num_threads()
    with lock_directory(out):
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            run = _Run.start(
                data, out, config, test_data, init_model, trainable, reinitialised, metadata or {}
            )
            return _loop(run, progress)
        finally:
            torch.set_num_threads(previous_threads)


@dataclass
class _Run:
    """What one training run holds while it runs: model, optimiser, RNGs and log sums."""

    out: Path
    config: TrainConfig
    data: ImageDataset
    test_data: ImageDataset | None
    fingerprint: dict[str, Any]
    model: ConvVAE
    objective: Objective
    optimizer: torch.optim.Optimizer
    data_rng: np.random.Generator
    noise: torch.Generator
    trainable: list[str]
    reinitialised: list[str]
    metadata: dict[str, Any]
    step: int = 0
    resumed_from: int | None = None
    #: Whether the checkpoint resumed from marked its run complete (None: fresh start).
    was_complete: bool | None = None
    log_sums: dict[str, float] = field(default_factory=dict)
    log_count: int = 0

    @classmethod
    def start(
        cls,
        data: ImageDataset,
        out: Path,
        config: TrainConfig,
        test_data: ImageDataset | None,
        init_model: ConvVAE | None,
        trainable: Iterable[str] | None,
        reinitialised: Sequence[str],
        metadata: dict[str, Any],
    ) -> _Run:
        """A fresh run, or the run restored from ``out``'s checkpoint; writes ``config.json``."""
        device = torch.device(config.device)
        checkpoint = out / CHECKPOINT_NAME
        fingerprint = data_fingerprint(data)
        payload = read_checkpoint(checkpoint) if checkpoint.exists() else None
        if payload is not None:
            _check_resume(payload, config, fingerprint, out)
            model = ConvVAE.from_config(payload["model_config"])
            load_model_state(model, payload, checkpoint)
            trainable = list(payload["trainable"])
            reinitialised = list(payload["reinitialised"])
            metadata = payload["metadata"]
        else:
            random.seed(config.seed)
            np.random.seed(config.seed)  # noqa: NPY002 (the global RNG, for user code)
            torch.manual_seed(config.seed)
            model = init_model
            if model is None:
                model = make_model(data.channels, data.size, config.latent_dim, seed=config.seed)
        for images in (data, test_data):
            if images is not None:
                check_images_fit(model.config, images.channels, images.size, dataset=images.name)
        names = _set_trainable(model.to(device).train(), trainable)
        run = cls(
            out=out,
            config=config,
            data=data,
            test_data=test_data,
            fingerprint=fingerprint,
            model=model,
            objective=config.build_objective(),
            optimizer=torch.optim.Adam(
                [p for p in model.parameters() if p.requires_grad], lr=config.lr
            ),
            data_rng=np.random.default_rng(config.seed),
            noise=torch.Generator(device=device).manual_seed(config.seed),
            trainable=names,
            reinitialised=list(reinitialised),
            metadata=metadata,
        )
        run._restore(payload)
        write_json_atomic(
            out / CONFIG_NAME,
            {
                "train_config": config.to_dict(),
                "model_config": model.config.to_dict(),
                "data": fingerprint,
                "test_data": test_data and data_fingerprint(test_data),
                "trainable": names,
                "reinitialised": run.reinitialised,
                "metadata": metadata,
            },
        )
        return run

    def _restore(self, payload: dict[str, Any] | None) -> None:
        """Load the optimiser, RNGs, step and log sums of ``payload``; None: a fresh start."""
        log_path, result_path = self.out / METRICS_NAME, self.out / RESULT_NAME
        if payload is None:
            log_path.unlink(missing_ok=True)
            result_path.unlink(missing_ok=True)
            return
        self.optimizer.load_state_dict(payload["optimizer"])
        _restore_rng_states(payload["rng"], self.data_rng, self.noise)
        self.step = self.resumed_from = payload["step"]
        self.log_sums, self.log_count = payload["log_sums"], payload["log_count"]
        self.was_complete = bool(payload.get("complete"))
        _truncate_metrics(log_path, self.step)
        if self.step < self.config.steps:  # an extended run is not complete until the end
            result_path.unlink(missing_ok=True)

    def log(self, row: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl``."""
        with (self.out / METRICS_NAME).open("a") as f:
            f.write(json.dumps(row) + "\n")

    def log_test_loss(self, step: int) -> None:
        """Evaluate and log the test loss (when there is test data)."""
        if self.test_data is not None:
            terms = evaluate(
                self.model,
                self.objective,
                self.test_data,
                step=step,
                dataset_size=len(self.data),
                max_examples=self.config.eval_examples,
                seed=self.config.seed,
            )
            self.log({"step": step, "split": "test", **terms})

    def train_step(self) -> dict[str, float]:
        """One Adam step on a batch of random examples; return the loss terms."""
        n, device = len(self.data), self.noise.device
        idx = self.data_rng.integers(0, n, size=self.config.batch_size)
        x = torch.from_numpy(self.data.images[idx]).to(device).float().div_(255.0)
        out = self.model(x, decode_from="sample", generator=self.noise)
        terms = self.objective(x, out, step=self.step, dataset_size=n)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        self.step += 1
        values = {key: float(value.detach()) for key, value in terms.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(
                f"loss became {values['loss']} at step {self.step} of {self.out}: lower the "
                "learning rate or the objective's weights"
            )
        return values

    def log_train_terms(self, values: dict[str, float], seconds: float) -> dict[str, float]:
        """Add one step's terms to the sums; every ``log_every`` steps log and return their mean."""
        for key, value in values.items():
            self.log_sums[key] = self.log_sums.get(key, 0.0) + value
        self.log_count += 1
        if self.step % self.config.log_every and self.step != self.config.steps:
            return {}
        row = _mean_terms(self.log_sums, self.log_count)
        speed = round(self.log_count / max(seconds, 1e-9), 2)
        self.log({"step": self.step, "split": "train", **row, "steps_per_s": speed})
        self.log_sums, self.log_count = {}, 0
        return row

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` (atomically) with everything a bit-exact resume needs."""
        save_checkpoint(
            self.out / CHECKPOINT_NAME,
            {
                "model_config": self.model.config.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "complete": self.step == self.config.steps,
                "train_config": self.config.to_dict(),
                "data": self.fingerprint,
                "rng": _rng_states(self.data_rng, self.noise),
                "log_sums": self.log_sums,
                "log_count": self.log_count,
                "trainable": self.trainable,
                "reinitialised": self.reinitialised,
                "metadata": self.metadata,
            },
        )


def _set_trainable(model: ConvVAE, trainable: Iterable[str] | None) -> list[str]:
    """Freeze every parameter not named in ``trainable`` (None: train all); return the names."""
    all_names = [name for name, _ in model.named_parameters()]
    names = all_names if trainable is None else list(trainable)
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"trainable names {unknown} are not parameters of the model")
    if not names:
        raise ValueError("no trainable parameters: pass at least one name in `trainable`")
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)
    return names


def _loop(run: _Run, progress: bool) -> TrainResult:
    """The training loop: step, log, evaluate, checkpoint; then ``result.json``."""
    config = run.config
    eval_steps = config.eval_steps()
    if run.step == 0 and 0 in eval_steps:
        run.log_test_loss(0)
    bar = tqdm(
        total=config.steps,
        initial=run.step,
        desc=run.out.name,
        disable=not progress,
        dynamic_ncols=True,
    )
    tick = time.perf_counter()
    while run.step < config.steps:
        values = run.train_step()
        row = run.log_train_terms(values, time.perf_counter() - tick)
        if row:
            bar.set_postfix(loss=f"{row['loss']:.2f}")
            tick = time.perf_counter()
        if run.step in eval_steps:
            run.log_test_loss(run.step)
        if run.step % config.checkpoint_every == 0 or run.step == config.steps:
            run.save_checkpoint()
        bar.update(1)
        if _interrupt_after is not None and _interrupt_after <= run.step < config.steps:
            bar.close()
            return _result(run.out, run.step, False, run.resumed_from)
    bar.close()
    if run.was_complete is False and run.resumed_from == config.steps:
        run.save_checkpoint()  # an extended run that already had enough steps
    result = _result(run.out, config.steps, True, run.resumed_from)
    write_json_atomic(
        run.out / RESULT_NAME,
        {
            "complete": True,
            "step": config.steps,
            "checkpoint": CHECKPOINT_NAME,
            "train": result.train,
            "test": result.test,
            "train_config": config.to_dict(),
            "model_config": run.model.config.to_dict(),
            "metadata": run.metadata,
        },
    )
    return result


def _mean_terms(sums: dict[str, float], count: int) -> dict[str, float]:
    return {key: value / count for key, value in sums.items()}


def _result(out: Path, step: int, complete: bool, resumed_from: int | None) -> TrainResult:
    train_rows, test_rows = read_metrics(out, "train"), read_metrics(out, "test")
    return TrainResult(
        out_dir=out,
        checkpoint=out / CHECKPOINT_NAME,
        step=step,
        complete=complete,
        train=train_rows[-1] if train_rows else {},
        test=test_rows[-1] if test_rows else {},
        resumed_from=resumed_from,
    )


# -- command line -------------------------------------------------------------------------------


def _parse_param(text: str) -> tuple[str, float | int]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, int(value)
    except ValueError:
        pass
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a number") from None


def add_param_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--param KEY=VALUE`` option for objective hyper-parameters."""
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        type=_parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="objective hyper-parameter, e.g. -p beta=4",
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the uninformative ones (None, False, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``vae_zoo.train`` and ``vae_zoo.zoo``, with TrainConfig's defaults."""
    d = TrainConfig()
    parser.add_argument(
        "--objective",
        default=d.objective,
        choices=sorted(OBJECTIVES),
        help="VAE objective (its hyper-parameters: --param)",
    )
    add_param_argument(parser)
    parser.add_argument(
        "--size", type=int, default=32, choices=(32, 64), help="image side in pixels"
    )
    parser.add_argument("--steps", type=int, default=d.steps, help="optimisation steps per run")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between checkpoints (a killed run loses at most this many)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="steps between test-loss evaluations (0: only at the end)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vae_zoo.train`` argument parser."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m vae_zoo.train",
        description="Train the paper's conv VAE on one dataset (resumes when --out has a run).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--dataset", required=True, help="dsprites, mnist, fashion_mnist, animals, shapes3d, digits"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds init, batches and noise")
    add_schedule_arguments(p)
    p.add_argument("--latent-dim", type=int, default=d.latent_dim, help="latent size d")
    p.add_argument(
        "--log-every", type=int, default=d.log_every, help="steps between train-loss lines"
    )
    p.add_argument(
        "--eval-examples",
        type=int,
        default=d.eval_examples,
        help="test examples per test-loss evaluation",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    p.add_argument("--device", default=d.device, help="cpu (bit-exact resume) or cuda")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset cache directory (default: $VAE_ZOO_DATA or ~/.cache/vae_zoo)",
    )
    p.add_argument("--no-test", action="store_true", help="skip the test-loss evaluations")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m vae_zoo.train``: train one model from the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for an error, which is printed as one line.

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.train import main
    >>> main(["--dataset", "dsprites", "--size", "32", "--steps", "1", "--no-progress",
    ...       "--out", tempfile.mkdtemp()])  # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    from .datasets import load  # lazily: loading is only needed when run as a program

    try:
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            objective=args.objective,
            objective_params=dict(args.param),
            latent_dim=args.latent_dim,
            log_every=args.log_every,
            eval_every=args.eval_every,
            eval_examples=args.eval_examples,
            checkpoint_every=args.checkpoint_every,
            threads=args.threads,
            device=args.device,
        )
        data = load(args.dataset, split="train", size=args.size, data_dir=args.data_dir)
        test = (
            None
            if args.no_test
            else load(args.dataset, split="test", size=args.size, data_dir=args.data_dir)
        )
        result = train(data, args.out, config, test_data=test, progress=not args.no_progress)
    except (ValueError, CheckpointError, DirectoryLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing dataset, a full disk, a read-only --out
        print(f"error: {describe_os_error(exc, '--out')}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": str(result.out_dir),
                "step": result.step,
                "train": result.train,
                "test": result.test,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
