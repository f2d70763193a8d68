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
import torch
from tqdm.auto import tqdm

from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_write,
    load_model_state,
    read_checkpoint,
    save_checkpoint,
    write_json_atomic,
)
from .datasets.base import ImageDataset
from .models import ConvVAE, check_images_fit, make_model
from .objectives import OBJECTIVES, Objective, make_objective
from .storage import DirectoryLockedError, describe_os_error, lock_directory

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
    steps : int
        Total optimisation steps.
    batch_size : int
        Examples per step (drawn uniformly with replacement).
    lr : float
        Adam learning rate (β = (0.9, 0.999), ε = 1e-8).
    seed : int
        Seeds the initialisation, batch indices and sampling noise.
    objective : str
        A name in :data:`vae_zoo.objectives.OBJECTIVES`.
    objective_params : dict
        Its hyper-parameters, e.g. ``{"beta": 4.0}``.
    latent_dim : int
        Latent size of a freshly built model.
    log_every : int
        Write averaged train loss terms every this many steps.
    eval_every : int
        Evaluate the test loss every this many steps (0: only at the end and ``eval_at``).
    eval_at : tuple of int
        Extra steps at which to evaluate the test loss (0 means before the first step).
    eval_examples : int
        Test examples used per evaluation (the first ones of the test set).
    checkpoint_every : int
        Write a checkpoint every this many steps (and always at the end).
    threads : int or None
        ``torch.set_num_threads`` during training (restored afterwards); None leaves it.
    device : str
        ``"cpu"`` (deterministic) or ``"cuda"``.
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
        """Plain dict (JSON-serialisable)."""
        d = asdict(self)
        d["eval_at"] = list(self.eval_at)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def build_objective(self) -> Objective:
        """The configured :class:`~vae_zoo.objectives.Objective`."""
        return make_objective(self.objective, **self.objective_params)

    def eval_steps(self) -> set[int]:
        """Steps after which the test loss is evaluated (``steps`` included)."""
        periodic = (
            range(self.eval_every, self.steps + 1, self.eval_every) if self.eval_every else ()
        )
        return {*periodic, *(s for s in self.eval_at if s <= self.steps), self.steps}


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    out_dir : Path
        The run directory.
    checkpoint : Path
        Its ``checkpoint.pt``.
    step : int
        Steps done.
    complete : bool
        Whether ``step == config.steps`` (False only after ``interrupt_after``).
    train, test : dict
        The last train and test metrics lines (empty when none was written).
    resumed_from : int or None
        The checkpoint step this call resumed from (None for a fresh start).
    """

    out_dir: Path
    checkpoint: Path
    step: int
    complete: bool
    train: dict[str, Any]
    test: dict[str, Any]
    resumed_from: int | None = None


def data_fingerprint(data: ImageDataset) -> dict[str, Any]:
    """Identify a dataset cheaply: name, split, shape and a SHA-256 of up to 1024 spread images."""
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
    are averaged over examples (weighted by batch size). ``dataset_size`` is the ``N`` of the
    β-TCVAE estimator (default: ``len(data)``); ``step`` is the Annealed VAE's step.
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


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The lines of a run's ``metrics.jsonl`` (optionally only one ``split``)."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r.get("split") == split]


def is_complete(run_dir: str | Path, steps: int | None = None) -> bool:
    """Whether ``run_dir`` holds a finished run (of at least ``steps`` steps, if given)."""
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
    by a run that was then killed are redone on resume)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["step"] <= last_step
    ]
    text = "".join(line + "\n" for line in keep)
    atomic_write(path, lambda f: f.write(text.encode()))


def _mean_terms(sums: dict[str, float], count: int) -> dict[str, float]:
    return {key: value / count for key, value in sums.items()}


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
    interrupt_after: int | None = None,
) -> TrainResult:
    """Train a VAE on ``data``, writing checkpoints and logs to ``out_dir``; resume if possible.

    Parameters
    ----------
    data : ImageDataset
        Training images (``uint8``); the model's channels and size must match.
    out_dir : str or Path
        Run directory, locked while training: a second process on it fails at once with
        :class:`~vae_zoo.storage.DirectoryLockedError`, naming the first. When it holds a
        checkpoint, training resumes from it (the settings in
        ``TrainConfig.RESUME_KEYS`` and the data must be the same); a complete run is returned
        as is.
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
    reinitialised : sequence of str
        Names of parameters the caller re-initialised; only recorded.
    metadata : dict, optional
        JSON-serialisable notes stored in ``config.json`` and the checkpoint.
    progress : bool
        Show a tqdm progress bar.
    interrupt_after : int, optional
        Stop after this step without writing a checkpoint, as if the process were killed there
        (for testing resume).

    Returns
    -------
    TrainResult
    """
    config = config or TrainConfig()
    out = Path(out_dir)
    previous_threads = torch.get_num_threads()
    with lock_directory(out):
        if config.threads:
            torch.set_num_threads(config.threads)
        try:
            return _run(
                data,
                out,
                config,
                test_data,
                init_model,
                trainable,
                reinitialised,
                metadata or {},
                progress,
                interrupt_after,
            )
        finally:
            torch.set_num_threads(previous_threads)


def _run(
    data: ImageDataset,
    out: Path,
    config: TrainConfig,
    test_data: ImageDataset | None,
    init_model: ConvVAE | None,
    trainable: Iterable[str] | None,
    reinitialised: Sequence[str],
    metadata: dict[str, Any],
    progress: bool,
    interrupt_after: int | None,
) -> TrainResult:
    device = torch.device(config.device)
    ckpt_path, log_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    fingerprint = data_fingerprint(data)
    n = len(data)
    if n == 0:
        raise ValueError(f"dataset {data.name!r} is empty: nothing to train on")

    # -- state: fresh, or restored from the last checkpoint ------------------------------------
    payload = read_checkpoint(ckpt_path) if ckpt_path.exists() else None
    data_rng = np.random.default_rng(config.seed)
    noise = torch.Generator(device=device).manual_seed(config.seed)
    if payload is not None:
        _check_resume(payload, config, fingerprint, out)
        model = ConvVAE.from_config(payload["model_config"])
        load_model_state(model, payload, ckpt_path)
        trainable_names = list(payload["trainable"])
        reinitialised = list(payload["reinitialised"])
        metadata = payload["metadata"]
    else:
        random.seed(config.seed)
        np.random.seed(config.seed)  # noqa: NPY002 (the global RNG, for user code)
        torch.manual_seed(config.seed)
        if init_model is not None:
            model = init_model
        else:
            model = make_model(data.channels, data.size, config.latent_dim, seed=config.seed)
        all_names = [name for name, _ in model.named_parameters()]
        trainable_names = all_names if trainable is None else list(trainable)
        unknown = sorted(set(trainable_names) - set(all_names))
        if unknown:
            raise ValueError(f"trainable names {unknown} are not parameters of the model")
    check_images_fit(model.config, data.channels, data.size, dataset=data.name)
    if test_data is not None:
        check_images_fit(model.config, test_data.channels, test_data.size, dataset=test_data.name)
    model.to(device).train()
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable_names)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: pass at least one name in `trainable`")
    optimizer = torch.optim.Adam(params, lr=config.lr)
    objective = config.build_objective()
    start, log_sums, log_count = 0, {}, 0
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        _restore_rng_states(payload["rng"], data_rng, noise)
        start, log_sums, log_count = payload["step"], payload["log_sums"], payload["log_count"]
        _truncate_metrics(log_path, start)
        if start < config.steps:  # an extended run is not complete until it reaches the end
            (out / RESULT_NAME).unlink(missing_ok=True)
    else:
        log_path.unlink(missing_ok=True)
        (out / RESULT_NAME).unlink(missing_ok=True)
    write_json_atomic(
        out / CONFIG_NAME,
        {
            "train_config": config.to_dict(),
            "model_config": model.config.to_dict(),
            "data": fingerprint,
            "test_data": test_data and data_fingerprint(test_data),
            "trainable": trainable_names,
            "reinitialised": list(reinitialised),
            "metadata": metadata,
        },
    )

    def log(row: dict[str, Any]) -> None:
        with log_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def test_loss(step: int) -> None:
        if test_data is not None:
            terms = evaluate(
                model,
                objective,
                test_data,
                step=step,
                dataset_size=n,
                max_examples=config.eval_examples,
                seed=config.seed,
            )
            log({"step": step, "split": "test", **terms})

    def checkpoint(step: int) -> None:
        save_checkpoint(
            ckpt_path,
            {
                "model_config": model.config.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": step,
                "complete": step == config.steps,
                "train_config": config.to_dict(),
                "data": fingerprint,
                "rng": _rng_states(data_rng, noise),
                "log_sums": log_sums,
                "log_count": log_count,
                "trainable": trainable_names,
                "reinitialised": list(reinitialised),
                "metadata": metadata,
            },
        )

    # -- the training loop ----------------------------------------------------------------------
    eval_steps = config.eval_steps()
    if start == 0 and 0 in eval_steps:
        test_loss(0)
    bar = tqdm(
        total=config.steps, initial=start, desc=out.name, disable=not progress, dynamic_ncols=True
    )
    tick = time.perf_counter()
    for step in range(start, config.steps):
        idx = data_rng.integers(0, n, size=config.batch_size)
        x = torch.from_numpy(data.images[idx]).to(device).float().div_(255.0)  # uint8 -> [0, 1]
        out_ = model(x, decode_from="sample", generator=noise)
        terms = objective(x, out_, step=step, dataset_size=n)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

        done = step + 1
        values = {key: float(value.detach()) for key, value in terms.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(
                f"loss became {values['loss']} at step {done} of {out}: lower the learning "
                "rate or the objective's weights"
            )
        for key, value in values.items():
            log_sums[key] = log_sums.get(key, 0.0) + value
        log_count += 1
        if done % config.log_every == 0 or done == config.steps:
            now = time.perf_counter()
            row = _mean_terms(log_sums, log_count)
            log(
                {
                    "step": done,
                    "split": "train",
                    **row,
                    "steps_per_s": round(log_count / max(now - tick, 1e-9), 2),
                }
            )
            bar.set_postfix(loss=f"{row['loss']:.2f}")
            tick, log_sums, log_count = now, {}, 0
        if done in eval_steps:
            test_loss(done)
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint(done)
        bar.update(1)
        if interrupt_after is not None and done >= interrupt_after and done < config.steps:
            bar.close()
            return _result(out, done, False, start if payload else None)
    bar.close()
    if payload is not None and start == config.steps and payload.get("complete") is False:
        checkpoint(config.steps)  # an extended run that already had enough steps
    result = _result(out, config.steps, True, start if payload else None)
    write_json_atomic(
        out / RESULT_NAME,
        {
            "complete": True,
            "step": config.steps,
            "checkpoint": CHECKPOINT_NAME,
            "train": result.train,
            "test": result.test,
            "train_config": config.to_dict(),
            "model_config": model.config.to_dict(),
            "metadata": metadata,
        },
    )
    return result


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


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vae_zoo.train`` argument parser."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m vae_zoo.train",
        description="Train the paper's conv VAE on one dataset (resumes when --out has a run).",
    )
    p.add_argument("--dataset", required=True, help="dsprites, mnist, fashion_mnist, animals...")
    p.add_argument("--size", type=int, default=32, choices=(32, 64), help="image side (px)")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--objective", default=d.objective, choices=sorted(OBJECTIVES))
    add_param_argument(p)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--latent-dim", type=int, default=d.latent_dim)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-examples", type=int, default=d.eval_examples)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (default 1)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--data-dir", type=Path, default=None, help="dataset cache directory")
    p.add_argument("--no-test", action="store_true", help="skip the test-loss evaluations")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m vae_zoo.train``; returns the exit status."""
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
