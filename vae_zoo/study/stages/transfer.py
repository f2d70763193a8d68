"""Stage 3, transfer: claim 3's graded test, tie repeats and long curves; claim 4's transfers.

Every job is one resumable fine-tuning run (:func:`vae_zoo.transfer.transfer`) on the
data-scarce target (``transfer_examples`` training images), finished when its
``transfer.json`` verifies; jobs run in ``workers`` processes. Four parts, each in its own
directory under ``transfer/``:

- **graded** (``graded/<source>-to-<target>/<recipe>``): every ordered (source, target) pair
  with ``freeze0`` ... ``freeze5`` (:data:`~vae_zoo.study.config.GRADED_DEPTHS`) and ``paper``,
  ``sweep_steps`` steps from the source model of seed ``transfer_source_seed``, training seed
  ``transfer_seed(target, 0)``;
- **tie** (``graded/<source>-to-<target>/freeze2-r<r>``): per target, ``freeze2`` from the
  first other dataset (:func:`tie_source`) with training seeds ``transfer_seed(target, r)``,
  r = 1 ... ``tie_repeats`` (repeat 0 is the graded run);
- **long** (``long/<source>-to-<target>/<recipe>``, ``long/scratch-<target>``): on
  ``sweep_pairs``, ``freeze{k}`` for k in ``long_depths`` and the configured recipes,
  ``transfer_steps`` steps with the test loss at ``transfer_budgets``, and scratch once per
  target (seed ``long_scratch_seed(target)``);
- **check** (``check/<source>-to-<target>/s<seed>``, ``check/scratch-<target>/s<i>``): claim 4,
  ``all`` from every source dataset to every other from the model of each of
  ``check_source_seeds``, ``check_steps`` steps, and ``scratch_seeds`` scratch models per target
  (``scratch_seed(target, i)``).

Every transfer onto one target shares its training seed of repeat 0 (common random numbers:
recipes and sources are compared on the same batches and re-initialisations).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ...checkpoint import CHECKPOINT_NAME
from ...train import TrainConfig
from ...transfer import Recipe, transfer
from ...zoo import DatasetLoader
from ..config import ENCODER_BLOCKS, GRADED_DEPTHS
from ..sampling import long_scratch_seed, scratch_seed, transfer_seed
from .common import StudyContext, _cached_load, checkpoint_step_or_restart
from .runner import Stage, Verified

__all__ = [
    "PARTS",
    "TIE_DEPTH",
    "TIE_RECIPE",
    "TransferStage",
    "check_dir",
    "check_losses",
    "graded_dir",
    "graded_losses",
    "graded_recipes",
    "long_dir",
    "long_losses",
    "long_recipes",
    "sweep_recipe",
    "tie_dir",
    "tie_losses",
    "tie_source",
    "transfer_loader",
]

#: The stage's parts, in the order of the announce line, with their names there.
PARTS: dict[str, str] = {
    "graded": "graded test",
    "tie": "tie repeats",
    "long": "long curves",
    "check": "claim 4",
}
#: The freeze depth repeated with other training seeds for the tie band, and its recipe.
TIE_DEPTH = 2
TIE_RECIPE = f"freeze{TIE_DEPTH}"


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


def graded_recipes() -> list[str | Recipe]:
    """The graded test's recipes: ``freeze{k}`` for k in :data:`GRADED_DEPTHS`, then ``paper``."""
    return [*(sweep_recipe(k) for k in GRADED_DEPTHS), "paper"]


def long_recipes(ctx: StudyContext) -> list[str | Recipe]:
    """The long curves' recipes: ``freeze{k}`` for k in ``long_depths``, then the configured
    recipes but ``scratch`` (which runs once per target)."""
    c = ctx.config
    return [*(sweep_recipe(k) for k in c.long_depths), *(r for r in c.recipes if r != "scratch")]


def _recipe_name(recipe: str | Recipe) -> str:
    return recipe if isinstance(recipe, str) else recipe.name


def _pairs(datasets: Sequence[str]) -> list[tuple[str, str]]:
    """Every ordered (source, target) pair, by target, sources in dataset order."""
    return [(s, t) for t in datasets for s in datasets if s != t]


def _long_targets(ctx: StudyContext) -> list[str]:
    """The long curves' targets, each once, in the order of ``sweep_pairs``."""
    return list(dict.fromkeys(t for _, t in ctx.config.sweep_pairs))


def tie_source(datasets: Sequence[str], target: str) -> str:
    """The source of ``target``'s tie repeats: the first other dataset in ``datasets`` order."""
    return next(d for d in datasets if d != target)


def transfer_loader(ctx: StudyContext) -> DatasetLoader:
    """Targets of every transfer: ``transfer_examples`` training images (data-scarce)."""
    c = ctx.config
    cap = c.transfer_examples if c.transfer_examples is not None else c.train_examples
    return DatasetLoader(max_examples=cap, max_test_examples=c.test_examples)


def graded_dir(ctx: StudyContext, source: str, target: str, recipe: str) -> Path:
    """Run directory of one graded-test transfer."""
    return ctx.out / "transfer" / "graded" / f"{source}-to-{target}" / recipe


def tie_dir(ctx: StudyContext, target: str, repeat: int) -> Path:
    """Run directory of ``target``'s tie repeat ``repeat`` (1, 2, ...; 0 is the graded run)."""
    source = tie_source(ctx.config.datasets, target)
    if repeat == 0:
        return graded_dir(ctx, source, target, TIE_RECIPE)
    return graded_dir(ctx, source, target, f"{TIE_RECIPE}-r{repeat}")


def long_dir(ctx: StudyContext, source: str, target: str, recipe: str = "scratch") -> Path:
    """Run directory of a long-curve run (``source == "scratch"``: the target's scratch run)."""
    root = ctx.out / "transfer" / "long"
    if source == "scratch":
        return root / f"scratch-{target}"
    return root / f"{source}-to-{target}" / recipe


def check_dir(ctx: StudyContext, source: str, target: str, seed: int) -> Path:
    """Run directory of a claim-4 run: ``all`` from the source model of zoo seed ``seed``, or,
    for ``source == "scratch"``, the ``seed``-th scratch model of ``target``."""
    root = ctx.out / "transfer" / "check"
    if source == "scratch":
        return root / f"scratch-{target}" / f"s{seed}"
    return root / f"{source}-to-{target}" / f"s{seed}"


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
    part: str = "graded"


def _run_transfer(job: _TransferJob) -> str:
    torch.set_num_threads(job.config.threads or 1)
    checkpoint_step_or_restart(Path(job.out_dir))  # an unreadable checkpoint: start over
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


def _run_outputs(run_dir: str | Path) -> list[Path]:
    """What a finished transfer leaves for the manifest: its losses and final checkpoint."""
    return [_transfer_file(run_dir), Path(run_dir) / CHECKPOINT_NAME]


def _read_transfer(run_dir: Path) -> dict[int, float]:
    """``{step: target test loss}`` of a finished run."""
    path = _transfer_file(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: the transfer stage has not finished this run")
    record = json.loads(path.read_text())
    return {int(step): float(loss) for step, loss in record["test_loss"].items()}


def _final(run_dir: Path, steps: int) -> float:
    """The target test loss of a finished run at ``steps``."""
    record = _read_transfer(run_dir)
    if steps not in record:
        raise KeyError(f"{run_dir}: no test loss at step {steps} (has {sorted(record)})")
    return record[steps]


class TransferStage(Stage):
    """Claim 3's graded test, tie repeats and long curves, and claim 4's transfers.

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
        """Every job: the long curves first (the longest runs), then the graded test, the tie
        repeats and claim 4."""
        return [*self._long_jobs(), *self._graded_jobs(), *self._tie_jobs(), *self._check_jobs()]

    def _job(
        self,
        model: str,
        target: str,
        recipe: str | Recipe,
        out_dir: Path,
        config: TrainConfig,
        budgets: tuple[int, ...],
        part: str,
    ) -> _TransferJob:
        """A run on ``target`` from the zoo model ``model`` (``"<dataset>/s<seed>"``)."""
        return _TransferJob(
            str(self.checkpoints[model]),
            target,
            recipe,
            str(out_dir),
            config,
            budgets,
            self.loader,
            self.ctx.size,
            part,
        )

    def _source(self, dataset: str) -> str:
        """The model id of claim 3's source on ``dataset``."""
        return f"{dataset}/s{self.ctx.config.transfer_source_seed}"

    def _graded_jobs(self) -> list[_TransferJob]:
        """Every graded recipe on every ordered pair, ``sweep_steps`` steps."""
        c, ctx = self.ctx.config, self.ctx
        budgets = (0, c.sweep_steps)
        jobs = []
        for source, target in _pairs(c.datasets):
            config = ctx.train_config(c.sweep_steps, seed=transfer_seed(target, 0))
            for recipe in graded_recipes():
                out_dir = graded_dir(ctx, source, target, _recipe_name(recipe))
                jobs.append(
                    self._job(
                        self._source(source), target, recipe, out_dir, config, budgets, "graded"
                    )
                )
        return jobs

    def _tie_jobs(self) -> list[_TransferJob]:
        """``freeze2`` from the first other dataset, repeats 1..tie_repeats, per target."""
        c, ctx = self.ctx.config, self.ctx
        budgets, recipe = (0, c.sweep_steps), sweep_recipe(TIE_DEPTH)
        jobs = []
        for target in c.datasets:
            source = self._source(tie_source(c.datasets, target))
            for r in range(1, c.tie_repeats + 1):
                config = ctx.train_config(c.sweep_steps, seed=transfer_seed(target, r))
                out_dir = tie_dir(ctx, target, r)
                jobs.append(self._job(source, target, recipe, out_dir, config, budgets, "tie"))
        return jobs

    def _long_jobs(self) -> list[_TransferJob]:
        """The long curves on ``sweep_pairs``, then scratch once per long-curve target."""
        c, ctx = self.ctx.config, self.ctx
        budgets = tuple(c.transfer_budgets)
        jobs = []
        for source, target in c.sweep_pairs:
            config = ctx.train_config(c.transfer_steps, seed=transfer_seed(target, 0))
            for recipe in long_recipes(ctx):
                out_dir = long_dir(ctx, source, target, _recipe_name(recipe))
                jobs.append(
                    self._job(
                        self._source(source), target, recipe, out_dir, config, budgets, "long"
                    )
                )
        for target in _long_targets(ctx):
            config = ctx.train_config(c.transfer_steps, seed=long_scratch_seed(target))
            out_dir = long_dir(ctx, "scratch", target)
            jobs.append(
                self._job(self._source(target), target, "scratch", out_dir, config, budgets, "long")
            )
        return jobs

    def _check_jobs(self) -> list[_TransferJob]:
        """Claim 4, per target: ``all`` from every other dataset and source seed, then
        ``scratch_seeds`` scratch models."""
        c, ctx = self.ctx.config, self.ctx
        budgets = (0, c.check_steps)
        jobs = []
        for target in c.datasets:
            config = ctx.train_config(c.check_steps, seed=transfer_seed(target, 0))
            for source in c.datasets:
                if source == target:
                    continue
                for seed in c.check_source_seeds:
                    out_dir = check_dir(ctx, source, target, seed)
                    model = f"{source}/s{seed}"
                    jobs.append(self._job(model, target, "all", out_dir, config, budgets, "check"))
            for i in range(c.scratch_seeds):
                scratch = ctx.train_config(c.check_steps, seed=scratch_seed(target, i))
                out_dir = check_dir(ctx, "scratch", target, i)
                model = self._source(target)  # the architecture only: every layer is re-initialised
                jobs.append(self._job(model, target, "scratch", out_dir, scratch, budgets, "check"))
        return jobs

    def is_done(self, job: _TransferJob, verified: Verified) -> bool:
        return all(verified(path) for path in self.outputs(job))

    def outputs(self, job: _TransferJob) -> list[Path]:
        """The run's losses and its final checkpoint (claim 4's probes load it)."""
        return _run_outputs(job.out_dir)

    def restart(self, job: _TransferJob) -> None:
        shutil.rmtree(job.out_dir, ignore_errors=True)

    def announce(self, jobs: Sequence[_TransferJob], todo: Sequence[_TransferJob]) -> str:
        """``[3/5] transfer: N runs, S steps in all (T to run); graded test n runs x s steps,
        ...``: runs and steps of every part."""
        steps = sum(job.config.steps for job in jobs)
        parts = []
        for part, label in PARTS.items():
            mine = [job for job in jobs if job.part == part]
            if mine:
                parts.append(f"{label} {len(mine)} runs, {sum(j.config.steps for j in mine)} steps")
        return (
            f"[3/5] transfer: {len(jobs)} runs, {steps} steps in all ({len(todo)} to run); "
            + "; ".join(parts)
        )

    def worker(self) -> Callable[[_TransferJob], str]:
        return _run_transfer  # looked up at each run, so a test can stand in for it

    def collect(self, result: str) -> list[Path]:
        return _run_outputs(result)


def graded_losses(ctx: StudyContext) -> dict[tuple[str, str], dict[str, float]]:
    """Claim 3's graded test: ``{(source, target): {recipe: target test loss at sweep_steps}}``,
    recipes ``freeze0..5`` and ``paper``, pairs by target."""
    c = ctx.config
    return {
        (source, target): {
            name: _final(graded_dir(ctx, source, target, name), c.sweep_steps)
            for name in map(_recipe_name, graded_recipes())
        }
        for source, target in _pairs(c.datasets)
    }


def tie_losses(ctx: StudyContext) -> dict[str, list[float]]:
    """The tie repeats: ``{target: [loss of repeat 0, 1, ..., tie_repeats]}`` of ``freeze2``
    from :func:`tie_source` at ``sweep_steps`` (repeat 0 is the graded test's run)."""
    c = ctx.config
    return {
        target: [_final(tie_dir(ctx, target, r), c.sweep_steps) for r in range(c.tie_repeats + 1)]
        for target in c.datasets
    }


def long_losses(
    ctx: StudyContext,
) -> tuple[dict[tuple[str, str], dict[str, dict[int, float]]], dict[str, dict[int, float]]]:
    """The long curves: ``{(source, target): {recipe: {step: loss}}}`` on ``sweep_pairs`` and
    ``{target: {step: loss}}`` of scratch."""
    c = ctx.config
    runs = {
        (source, target): {
            name: _read_transfer(long_dir(ctx, source, target, name))
            for name in map(_recipe_name, long_recipes(ctx))
        }
        for source, target in c.sweep_pairs
    }
    scratch = {t: _read_transfer(long_dir(ctx, "scratch", t)) for t in _long_targets(ctx)}
    return runs, scratch


def check_losses(ctx: StudyContext) -> dict[str, Any]:
    """Claim 4's target test losses at ``check_steps``: ``{"all": {(source, target, seed):
    loss}, "scratch": {target: [loss of scratch model 0, 1, ...]}}``."""
    c = ctx.config
    out: dict[str, Any] = {"all": {}, "scratch": {}}
    for source, target in _pairs(c.datasets):
        for seed in c.check_source_seeds:
            loss = _final(check_dir(ctx, source, target, seed), c.check_steps)
            out["all"][(source, target, seed)] = loss
    for target in c.datasets:
        out["scratch"][target] = [
            _final(check_dir(ctx, "scratch", target, i), c.check_steps)
            for i in range(c.scratch_seeds)
        ]
    return out
