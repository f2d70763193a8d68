"""The training loop: :func:`train`, the state of a run while it runs (``_Run``) and the step
loop that logs, evaluates and checkpoints it."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import (
    CHECKPOINT_NAME,
    load_model_state,
    read_checkpoint,
    save_checkpoint,
    write_json_atomic,
)
from ..datasets.base import ImageDataset
from ..models import ConvVAE, check_images_fit, make_model
from ..objectives import Objective
from ..storage import lock_directory
from .config import (
    CONFIG_NAME,
    METRICS_NAME,
    RESULT_NAME,
    TrainConfig,
    TrainResult,
    snapshot_path,
)
from .evaluation import evaluate
from .log import _append_metrics, _truncate_metrics, read_metrics
from .resume import _check_resume, _restore_rng_states, _rng_states, data_fingerprint

__all__ = ["train"]

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
        Run directory, locked while training. When it holds a checkpoint, training resumes from
        it; a complete run is returned as is.
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
        When it holds a run with other ``TrainConfig.RESUME_KEYS`` settings or other data.
    DirectoryLockedError
        At once, when another process is training in it (the message names that process).

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
    _check_not_empty(data)
    with lock_directory(out_dir) as out, _torch_threads(config.threads):
        run = _Run.start(
            data, out, config, test_data, init_model, trainable, reinitialised, metadata
        )
        return _loop(run, progress)


def _check_not_empty(data: ImageDataset) -> None:
    """Refuse an empty dataset, before the run directory is created and locked."""
    if len(data) == 0:
        raise ValueError(f"dataset {data.name!r} is empty: nothing to train on")


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Use ``threads`` torch threads in the ``with`` block (None or 0: leave them); restore after."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
        metadata: dict[str, Any] | None,
    ) -> _Run:
        """A fresh run, or the run restored from ``out``'s checkpoint; writes ``config.json``."""
        metadata = metadata or {}
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
        _append_metrics(self.out / METRICS_NAME, row)

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

    def save_checkpoint(self, path: Path | None = None) -> None:
        """Write ``checkpoint.pt`` (or ``path``: a kept copy), atomically, with everything a
        bit-exact resume needs."""
        save_checkpoint(
            path or self.out / CHECKPOINT_NAME,
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
    eval_steps, kept = config.eval_steps(), set(config.keep_checkpoints)
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
        if run.step in kept:  # before checkpoint.pt: a checkpoint past it implies the copy
            run.save_checkpoint(snapshot_path(run.out, run.step))
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
            "snapshots": {
                str(step): snapshot_path(run.out, step).name for step in config.keep_checkpoints
            },
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
