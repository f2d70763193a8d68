"""Stage 1, the zoo: one training run per (dataset, seed), each from its own initialisation.

Every run keeps its checkpoint at each earlier length of ``training_lengths``
(``TrainConfig.keep_checkpoints``; the last length is the final ``checkpoint.pt``) and evaluates
its test loss at every length, so the training-length check measures the same runs at several
lengths without training more (:func:`zoo_snapshots`; ``test_loss_at`` in
:func:`model_records`). A job is finished when its run is complete
(:func:`vae_zoo.train.is_complete`) and its ``result.json``, final checkpoint and every kept
checkpoint verify against the study's manifest; an unfinished one resumes from its last
checkpoint, and a run that lost a kept checkpoint it had already passed is trained again from
the start (a kept checkpoint cannot be written again otherwise).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import CHECKPOINT_NAME, CheckpointError, load_model, read_checkpoint
from ...models import make_model
from ...train import RESULT_NAME, TrainConfig, is_complete, read_metrics, snapshot_path, train
from ...zoo import DatasetLoader
from ..analysis import RANDOM
from ..sampling import init_seed, random_seed
from .common import StudyContext, _cached_load, checkpoint_step_or_restart
from .runner import Stage, Verified

__all__ = ["ZooModel", "ZooStage", "load_models", "model_records", "zoo_models", "zoo_snapshots"]


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A trained model of the zoo: ``name`` is ``"<dataset>/s<seed>"``."""

    dataset: str
    seed: int
    init_seed: int
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.dataset}/s{self.seed}"


def zoo_models(ctx: StudyContext) -> list[ZooModel]:
    """Every trained model of the zoo, with its derived initialisation seed and directory."""
    c = ctx.config
    return [
        ZooModel(dataset, seed, init_seed(dataset, seed), ctx.out / "zoo" / dataset / f"s{seed}")
        for dataset in c.datasets
        for seed in c.seeds
    ]


@dataclasses.dataclass(frozen=True)
class _TrainJob:
    dataset: str
    out_dir: str
    config: TrainConfig
    loader: DatasetLoader
    size: int


def _kept_lengths(ctx: StudyContext) -> tuple[int, ...]:
    """The training lengths kept as snapshots: all but the last (the final checkpoint)."""
    return tuple(int(n) for n in ctx.config.training_lengths[:-1])


def zoo_snapshots(ctx: StudyContext) -> dict[int, dict[str, Path]]:
    """The zoo's checkpoints at every training length.

    Parameters
    ----------
    ctx : StudyContext

    Returns
    -------
    dict
        ``{length: {model_id: checkpoint path}}`` for every length of ``training_lengths``, in
        order: an earlier length's kept checkpoint (:func:`vae_zoo.train.snapshot_path`), the
        last length's (``train_steps``) the run's final ``checkpoint.pt``.
    """
    models = zoo_models(ctx)
    out = {
        length: {m.name: snapshot_path(m.run_dir, length) for m in models}
        for length in _kept_lengths(ctx)
    }
    out[int(ctx.config.training_lengths[-1])] = {
        m.name: m.run_dir / CHECKPOINT_NAME for m in models
    }
    return out


def _run_outputs(run_dir: Path, kept: Sequence[int]) -> list[Path]:
    """What a finished zoo run leaves for the manifest: result, final and kept checkpoints."""
    return [
        run_dir / RESULT_NAME,
        run_dir / CHECKPOINT_NAME,
        *(snapshot_path(run_dir, step) for step in kept),
    ]


def _restart_if_a_snapshot_is_lost(run_dir: Path, config: TrainConfig) -> None:
    """Start a run over when its checkpoint has passed a kept step whose copy is missing or
    unreadable: training can write the copy only when it passes that step again (and, being
    seeded, trains the same model)."""
    step = checkpoint_step_or_restart(run_dir)
    if step is None:
        return
    for kept in config.keep_checkpoints:
        if kept > step:
            break
        try:
            read_checkpoint(snapshot_path(run_dir, kept))
        except CheckpointError:
            for path in _run_outputs(run_dir, config.keep_checkpoints):
                path.unlink(missing_ok=True)
            return


def _run_training(job: _TrainJob) -> str:
    torch.set_num_threads(job.config.threads or 1)
    _restart_if_a_snapshot_is_lost(Path(job.out_dir), job.config)
    train(
        _cached_load(job.loader, job.dataset, "train", job.size),
        job.out_dir,
        job.config,
        test_data=_cached_load(job.loader, job.dataset, "test", job.size),
        progress=False,
    )
    return job.out_dir


class ZooStage(Stage):
    """Train every zoo model: one job per (dataset, seed), finished when training is complete
    and its result, final checkpoint and kept checkpoints verify."""

    name = "zoo"

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx
        self.models = zoo_models(ctx)

    def plan(self) -> list[_TrainJob]:
        ctx = self.ctx
        steps, kept = ctx.config.train_steps, _kept_lengths(ctx)
        return [
            _TrainJob(
                m.dataset,
                str(m.run_dir),
                ctx.train_config(steps, seed=m.init_seed, keep_checkpoints=kept),
                ctx.loader(),
                ctx.size,
            )
            for m in self.models
        ]

    def is_done(self, job: _TrainJob, verified: Verified) -> bool:
        run_dir = Path(job.out_dir)
        return is_complete(run_dir, self.ctx.config.train_steps) and all(
            verified(path) for path in _run_outputs(run_dir, _kept_lengths(self.ctx))
        )

    def announce(self, jobs: Sequence[_TrainJob], todo: Sequence[_TrainJob]) -> str:
        c = self.ctx.config
        lengths = ", ".join(str(n) for n in c.training_lengths)
        return (
            f"[1/5] zoo: {len(c.datasets)} datasets x {len(c.seeds)} seeds, {c.train_steps} "
            f"steps each, checkpoints and test loss at {lengths} ({len(todo)} to train)"
        )

    def worker(self) -> Callable[[_TrainJob], str]:
        return _run_training

    def collect(self, result: str) -> list[Path]:
        return _run_outputs(Path(result), _kept_lengths(self.ctx))

    def outputs(self, job: _TrainJob) -> list[Path]:
        return _run_outputs(Path(job.out_dir), _kept_lengths(self.ctx))

    def restart(self, job: _TrainJob) -> None:
        shutil.rmtree(job.out_dir, ignore_errors=True)

    def checkpoints(self) -> dict[str, Path]:
        """``{model_id: checkpoint}`` of every zoo model."""
        return {m.name: m.run_dir / "checkpoint.pt" for m in self.models}


def load_models(ctx: StudyContext, checkpoints: dict[str, Path]) -> dict[str, torch.nn.Module]:
    """Trained zoo models and the untrained baselines (``random/r<i>``), by id."""
    models: dict[str, torch.nn.Module] = {
        model_id: load_model(path) for model_id, path in checkpoints.items()
    }
    channels = next(iter(models.values())).config.channels
    for i in range(ctx.config.random_models):
        models[f"{RANDOM}/r{i}"] = make_model(channels, ctx.size, seed=random_seed(i)).eval()
    return models


def model_records(ctx: StudyContext) -> list[dict[str, Any]]:
    """``results.json``'s ``models``: every zoo model with its seeds, its test loss at every
    training length (``test_loss_at``: ``{str(step): loss}``, None where the run's metrics log
    has no test line at that step) and its final test loss (at ``train_steps``)."""
    records = []
    for m in zoo_models(ctx):
        logged = {int(r["step"]): float(r["loss"]) for r in read_metrics(m.run_dir, "test")}
        at = {str(n): logged.get(int(n)) for n in ctx.config.training_lengths}
        records.append(
            {
                "name": m.name,
                "dataset": m.dataset,
                "seed": m.seed,
                "init_seed": m.init_seed,
                "train_steps": ctx.config.train_steps,
                "final_test_loss": logged.get(ctx.config.train_steps),
                "test_loss_at": at,
            }
        )
    for i in range(ctx.config.random_models):
        records.append(
            {
                "name": f"{RANDOM}/r{i}",
                "dataset": None,
                "seed": i,
                "init_seed": random_seed(i),
                "train_steps": 0,
                "final_test_loss": None,
                "test_loss_at": {},
            }
        )
    return records
