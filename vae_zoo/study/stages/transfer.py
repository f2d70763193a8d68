"""Stage 3, transfer: claim 3's freeze-depth sweep and claim 4's transfers against scratch.

Every job is one resumable fine-tuning run (:func:`vae_zoo.transfer.transfer`) on the
data-scarce target, finished when its ``transfer.json`` verifies; jobs run in ``workers``
processes. The sweep runs under ``transfer/sweep/``, claim 4's runs under ``transfer/check/``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...train import TrainConfig
from ...transfer import Recipe, transfer
from ...zoo import DatasetLoader
from ..config import ENCODER_BLOCKS
from ..sampling import scratch_seed
from .common import StudyContext, _cached_load
from .runner import Stage, Verified

__all__ = [
    "TransferStage",
    "check_dir",
    "check_losses",
    "sweep_losses",
    "sweep_recipe",
    "sweep_recipes",
    "transfer_loader",
]


def sweep_recipe(k: int) -> Recipe:
    """``freeze{k}``: reuse the source encoder, freeze its first ``k`` blocks, fine-tune the
    rest of the encoder, re-initialise and train the decoder."""
    trained = [name for block in ENCODER_BLOCKS[k:] for name in block]
    return Recipe(
        f"freeze{k}",
        train=(*trained, "decoder"),
        reinit=("decoder",),
        description=(
            f"reuse the encoder, freeze its first {k} of {len(ENCODER_BLOCKS)} blocks, "
            "re-initialise and train the decoder"
        ),
    )


def sweep_recipes(ctx: StudyContext) -> list[str | Recipe]:
    """The freeze-depth sweep, then the configured recipes (``scratch`` last)."""
    return [*(sweep_recipe(k) for k in range(len(ENCODER_BLOCKS) + 1)), *ctx.config.recipes]


def _recipe_name(recipe: str | Recipe) -> str:
    return recipe if isinstance(recipe, str) else recipe.name


def _sweep_targets(ctx: StudyContext) -> list[str]:
    """The sweep's targets, each once, in the order of ``sweep_pairs``."""
    return list(dict.fromkeys(t for _, t in ctx.config.sweep_pairs))


def transfer_loader(ctx: StudyContext) -> DatasetLoader:
    """Targets of every transfer: ``transfer_examples`` training images (data-scarce)."""
    c = ctx.config
    cap = c.transfer_examples if c.transfer_examples is not None else c.train_examples
    return DatasetLoader(max_examples=cap, max_test_examples=c.test_examples)


def check_dir(ctx: StudyContext, source: str, target: str, seed: int | None = None) -> Path:
    """Run directory of a claim-4 transfer (``source == "scratch"``: the ``seed``-th)."""
    root = ctx.out / "transfer" / "check"
    if source == "scratch":
        return root / f"scratch-{target}" / f"s{seed}"
    return root / f"{source}-to-{target}"


@dataclasses.dataclass(frozen=True)
class _TransferJob:
    source: str
    target: str
    recipe: str | Recipe
    out_dir: str
    config: TrainConfig
    budgets: tuple[int, ...]
    loader: DatasetLoader
    size: int


def _run_transfer(job: _TransferJob) -> str:
    torch.set_num_threads(job.config.threads or 1)
    train = _cached_load(job.loader, job.target, "train", job.size)
    test = _cached_load(job.loader, job.target, "test", job.size)
    transfer(
        job.source,
        train,
        job.recipe,
        job.out_dir,
        job.config,
        test_data=test,
        eval_budgets=job.budgets,
        progress=False,
    )
    return job.out_dir


def _transfer_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / "transfer.json"


def _read_transfer(run_dir: Path) -> dict[int, float]:
    record = json.loads(_transfer_file(run_dir).read_text())
    return {int(step): float(loss) for step, loss in record["test_loss"].items()}


class TransferStage(Stage):
    """Claim 3's sweep on ``sweep_pairs``, and claim 4's ``all`` and ``scratch`` runs.

    Parameters
    ----------
    ctx : StudyContext
    checkpoints : dict
        ``{model_id: checkpoint}`` of the zoo: the sources (and scratch's architecture).
    """

    name = "transfer"

    def __init__(self, ctx: StudyContext, checkpoints: dict[str, Path]) -> None:
        self.ctx = ctx
        self.checkpoints = checkpoints
        self.loader = transfer_loader(ctx)

    def plan(self) -> list[_TransferJob]:
        return [*self._sweep_jobs(), *self._sweep_scratch_jobs(), *self._check_jobs()]

    def _job(
        self,
        source: str,
        target: str,
        recipe: str | Recipe,
        out_dir: Path,
        config: TrainConfig,
        budgets: tuple[int, ...],
    ) -> _TransferJob:
        """A run on ``target`` from the transfer-source model of dataset ``source``."""
        checkpoint = self.checkpoints[f"{source}/s{self.ctx.config.transfer_source_seed}"]
        return _TransferJob(
            str(checkpoint),
            target,
            recipe,
            str(out_dir),
            config,
            budgets,
            self.loader,
            self.ctx.size,
        )

    def _sweep_config(self) -> TrainConfig:
        c = self.ctx.config
        return self.ctx.train_config(c.transfer_steps, seed=c.transfer_source_seed)

    def _sweep_jobs(self) -> list[_TransferJob]:
        """Every sweep recipe but scratch on every (source, target) of ``sweep_pairs``."""
        c = self.ctx.config
        config, budgets = self._sweep_config(), tuple(c.transfer_budgets)
        root = self.ctx.out / "transfer" / "sweep"
        return [
            self._job(
                source, target, recipe, root / f"{source}-to-{target}" / name, config, budgets
            )
            for source, target in c.sweep_pairs
            for recipe in sweep_recipes(self.ctx)
            if (name := _recipe_name(recipe)) != "scratch"
        ]

    def _sweep_scratch_jobs(self) -> list[_TransferJob]:
        """Scratch once per sweep target (when ``scratch`` is among the recipes)."""
        c = self.ctx.config
        if "scratch" not in c.recipes:
            return []
        config, budgets = self._sweep_config(), tuple(c.transfer_budgets)
        root = self.ctx.out / "transfer" / "sweep"
        return [
            self._job(target, target, "scratch", root / f"scratch-{target}", config, budgets)
            for target in _sweep_targets(self.ctx)
        ]

    def _check_jobs(self) -> list[_TransferJob]:
        """Claim 4, per target: ``all`` from every other dataset, then ``scratch_seeds`` scratch."""
        c, ctx = self.ctx.config, self.ctx
        config = ctx.train_config(c.check_steps, seed=c.transfer_source_seed)
        budgets = (0, c.check_steps)
        jobs = []
        for target in c.datasets:
            for source in c.datasets:
                if source != target:
                    out_dir = check_dir(ctx, source, target)
                    jobs.append(self._job(source, target, "all", out_dir, config, budgets))
            for i in range(c.scratch_seeds):
                scratch = ctx.train_config(c.check_steps, seed=scratch_seed(target, i))
                out_dir = check_dir(ctx, "scratch", target, i)
                jobs.append(self._job(target, target, "scratch", out_dir, scratch, budgets))
        return jobs

    def is_done(self, job: _TransferJob, verified: Verified) -> bool:
        return verified(_transfer_file(job.out_dir))

    def announce(self, jobs: Sequence[_TransferJob], todo: Sequence[_TransferJob]) -> str:
        steps = sum(job.config.steps for job in jobs)
        return f"[3/5] transfer: {len(jobs)} runs, {steps} steps in all ({len(todo)} to run)"

    def worker(self) -> Callable[[_TransferJob], str]:
        return _run_transfer  # looked up at each run, so a test can stand in for it

    def collect(self, result: str) -> list[Path]:
        return [_transfer_file(result)]


def sweep_losses(
    ctx: StudyContext,
) -> tuple[dict[tuple[str, str], dict[str, dict[int, float]]], dict]:
    """Claim 3's target test losses: ``{(source, target): {recipe: {step: loss}}}`` and
    ``{target: {step: loss}}`` of scratch."""
    c = ctx.config
    root = ctx.out / "transfer" / "sweep"
    runs: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for source, target in c.sweep_pairs:
        runs[(source, target)] = {}
        for recipe in sweep_recipes(ctx):
            name = _recipe_name(recipe)
            if name != "scratch":
                runs[(source, target)][name] = _read_transfer(root / f"{source}-to-{target}" / name)
    scratch = {
        t: _read_transfer(root / f"scratch-{t}")
        for t in _sweep_targets(ctx)
        if "scratch" in c.recipes
    }
    return runs, scratch


def check_losses(ctx: StudyContext) -> dict[str, Any]:
    """Claim 4's final target test losses: ``{"all": {(s, t): loss}, "scratch": {t: [...]}}``."""
    c = ctx.config
    out: dict[str, Any] = {"all": {}, "scratch": {}}
    for target in c.datasets:
        for source in c.datasets:
            if source != target:
                record = _read_transfer(check_dir(ctx, source, target))
                out["all"][(source, target)] = record[c.check_steps]
        out["scratch"][target] = [
            _read_transfer(check_dir(ctx, "scratch", target, i))[c.check_steps]
            for i in range(c.scratch_seeds)
        ]
    return out
