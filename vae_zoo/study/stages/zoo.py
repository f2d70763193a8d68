"""Stage 1, the zoo: one training run per (dataset, seed), each from its own initialisation.

A job is finished when its training run is complete (:func:`vae_zoo.train.is_complete`); an
unfinished one resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import load_model
from ...models import make_model
from ...train import TrainConfig, is_complete, read_metrics, train
from ...zoo import DatasetLoader
from ..analysis import RANDOM
from ..sampling import init_seed, random_seed
from .common import StudyContext, _cached_load
from .runner import Stage, Verified

__all__ = ["ZooModel", "ZooStage", "load_models", "model_records", "zoo_models"]


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


def _run_training(job: _TrainJob) -> str:
    torch.set_num_threads(job.config.threads or 1)
    train(
        _cached_load(job.loader, job.dataset, "train", job.size),
        job.out_dir,
        job.config,
        test_data=_cached_load(job.loader, job.dataset, "test", job.size),
        progress=False,
    )
    return job.out_dir


class ZooStage(Stage):
    """Train every zoo model: one job per (dataset, seed), finished when training is complete."""

    name = "zoo"

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx
        self.models = zoo_models(ctx)

    def plan(self) -> list[_TrainJob]:
        ctx = self.ctx
        steps = ctx.config.train_steps
        return [
            _TrainJob(
                m.dataset,
                str(m.run_dir),
                ctx.train_config(steps, seed=m.init_seed),
                ctx.loader(),
                ctx.size,
            )
            for m in self.models
        ]

    def is_done(self, job: _TrainJob, verified: Verified) -> bool:
        return is_complete(job.out_dir, self.ctx.config.train_steps)

    def announce(self, jobs: Sequence[_TrainJob], todo: Sequence[_TrainJob]) -> str:
        c = self.ctx.config
        return (
            f"[1/5] zoo: {len(c.datasets)} datasets x {len(c.seeds)} seeds, {c.train_steps} "
            f"steps each ({len(todo)} to train)"
        )

    def worker(self) -> Callable[[_TrainJob], str]:
        return _run_training

    def collect(self, result: str) -> list[Path]:
        return []  # a training run's own files say whether it is complete

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
    """``results.json``'s ``models``: every zoo model with its seeds and final test loss."""
    records = []
    for m in zoo_models(ctx):
        test = read_metrics(m.run_dir, "test")
        records.append(
            {
                "name": m.name,
                "dataset": m.dataset,
                "seed": m.seed,
                "init_seed": m.init_seed,
                "train_steps": ctx.config.train_steps,
                "final_test_loss": float(test[-1]["loss"]) if test else None,
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
            }
        )
    return records
