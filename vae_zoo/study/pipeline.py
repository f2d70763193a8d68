"""The study's stages, each resumable: zoo, CKA, transfer, probes, then verdicts and report.

:class:`Study` is the façade over :mod:`vae_zoo.study.stages`: each ``train_zoo``,
``measure_cka``, ``run_transfers`` and ``run_probes`` builds its stage and hands it to
:func:`~vae_zoo.study.stages.runner.run_stage`, which owns the manifest, the process pool and
the progress display. Every stage writes its results atomically (temporary file, then rename),
records their SHA-256 in the study's ``manifest.json``, and skips only work whose result file
still has that checksum, so a study killed at any point continues where it stopped when started
again, and a truncated or overwritten result is recomputed.
Training runs resume from their last checkpoint (:mod:`vae_zoo.train`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import storage
from ..datasets import ImageDataset
from ..train import TrainConfig
from ..transfer import Recipe
from ..zoo import DatasetLoader
from .config import StudyConfig
from .stages import cka, probes, transfer, zoo
from .stages.cka import CKAStage, EvaluationSets
from .stages.common import StudyContext, check_config, check_datasets
from .stages.common import write_json as write_json
from .stages.common import write_npz as write_npz
from .stages.probes import ProbeSets, ProbeStage
from .stages.runner import Stage, run_stage
from .stages.transfer import TransferStage, _TransferJob
from .stages.transfer import sweep_recipe as sweep_recipe
from .stages.zoo import ZooModel, ZooStage

__all__ = ["Study"]

# ``write_json``, ``write_npz`` and ``sweep_recipe`` (each imported as itself
# above) were defined here before the stages moved to vae_zoo.study.stages: re-exported for the
# code that imports them from here.


class Study:
    """One study directory: its configuration, stages and results.

    Parameters
    ----------
    config : StudyConfig
    out_dir : str or Path
        Study directory. A directory made by another configuration is refused, so results of
        different settings never mix.
    progress : bool
        Progress bars and stage messages.
    log : callable, optional
        Where stage messages go (default ``print``).
    """

    def __init__(
        self,
        config: StudyConfig,
        out_dir: str | Path,
        *,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out_dir)
        self.progress = progress
        self._log = log or print
        check_datasets(config)
        check_config(config, self.out)
        #: Checksums of the finished stage outputs: only outputs that verify are skipped.
        self.manifest = storage.Manifest(self.out)
        #: The settings, directory and datasets every stage shares.
        self.context = StudyContext(config, self.out)
        self._eval_sets = EvaluationSets(self.context)
        self._probe_sets = ProbeSets(self.context)

    def log(self, message: str) -> None:
        if self.progress:
            self._log(message)

    def run(self, stage: Stage) -> None:
        """Run a stage's unfinished jobs (see :func:`~vae_zoo.study.stages.runner.run_stage`)."""
        run_stage(
            stage,
            manifest=self.manifest,
            workers=self.config.workers,
            progress=self.progress,
            log=self.log,
        )

    @property
    def size(self) -> int:
        return self.config.size

    def train_config(self, steps: int, **extra: Any) -> TrainConfig:
        return self.context.train_config(steps, **extra)

    def dataset(self, name: str, split: str) -> ImageDataset:
        return self.context.dataset(name, split)

    def loader(self) -> DatasetLoader:
        return self.context.loader()

    # -- stage 1: the zoo (vae_zoo.study.stages.zoo) --------------------------------------------

    def zoo_models(self) -> list[ZooModel]:
        """Every trained model of the zoo, with its derived initialisation seed and directory."""
        return zoo.zoo_models(self.context)

    def train_zoo(self) -> dict[str, Path]:
        """Train every zoo model (skipping finished ones); return ``{model_id: checkpoint}``."""
        stage = ZooStage(self.context)
        self.run(stage)
        return stage.checkpoints()

    def models(self, checkpoints: dict[str, Path]) -> dict[str, torch.nn.Module]:
        """Trained zoo models and the untrained baselines (``random/r<i>``), by id."""
        return zoo.load_models(self.context, checkpoints)

    def model_records(self) -> list[dict[str, Any]]:
        """``results.json``'s ``models``: every zoo model with its seeds and final test loss."""
        return zoo.model_records(self.context)

    # -- evaluation sets and stage 2: CKA (vae_zoo.study.stages.cka) ----------------------------

    def eval_indices(self, name: str) -> np.ndarray:
        """Test-split indices of a dataset's evaluation set (see :class:`EvaluationSets`)."""
        return self._eval_sets.indices(name)

    def eval_images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation set of a dataset (see :meth:`eval_indices`): images and labels."""
        return self._eval_sets.images(name)

    def evaluation_sets(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``evaluation_sets``: size, label counts and indices of each set."""
        return self._eval_sets.records()

    def cka_path(self, name: str) -> Path:
        return cka.cka_path(self.context, name)

    def measure_cka(self, checkpoints: dict[str, Path]) -> None:
        """Stage 2: same-unit measures between every pair of models on each evaluation set.

        One job per evaluation set, in ``workers`` processes (one BLAS thread each).
        """
        self.run(CKAStage(self.context, self._eval_sets, checkpoints))

    def heatmap_models(self) -> list[str]:
        """Models whose layer x layer CKA is kept for the heatmaps: two seeds per dataset."""
        return cka.heatmap_models(self.context)

    def load_cka(self, name: str) -> dict[str, Any]:
        return cka.load_cka(self.context, name)

    # -- stage 3: transfer (vae_zoo.study.stages.transfer) --------------------------------------

    def transfer_loader(self) -> DatasetLoader:
        """Targets of every transfer: ``transfer_examples`` training images (data-scarce)."""
        return transfer.transfer_loader(self.context)

    def graded_recipes(self) -> list[str | Recipe]:
        """Claim 3's graded test: ``freeze0..5``, then ``paper``."""
        return transfer.graded_recipes()

    def long_recipes(self) -> list[str | Recipe]:
        """Claim 3's long curves: ``freeze{k}`` for ``long_depths``, then the configured
        recipes but ``scratch`` (run once per target)."""
        return transfer.long_recipes(self.context)

    def transfer_jobs(self, checkpoints: dict[str, Path]) -> list[_TransferJob]:
        """Every run of stage 3: the long curves, the graded test, the tie repeats, claim 4."""
        return TransferStage(self.context, checkpoints).plan()

    def check_dir(self, source: str, target: str, seed: int) -> Path:
        """Run directory of a claim-4 run (``all`` from the source of zoo seed ``seed``; for
        ``source == "scratch"``, the ``seed``-th scratch model)."""
        return transfer.check_dir(self.context, source, target, seed)

    def run_transfers(self, checkpoints: dict[str, Path]) -> None:
        """Stage 3: claim 3's graded test, tie repeats and long curves, and claim 4's
        transfers, each resumable."""
        self.run(TransferStage(self.context, checkpoints))

    def graded_losses(self) -> dict[tuple[str, str], dict[str, float]]:
        """Claim 3's graded test: ``{(source, target): {recipe: loss at sweep_steps}}``."""
        return transfer.graded_losses(self.context)

    def tie_losses(self) -> dict[str, list[float]]:
        """The tie repeats: ``{target: [loss of freeze2, repeat 0, 1, ...]}``."""
        return transfer.tie_losses(self.context)

    def long_losses(
        self,
    ) -> tuple[dict[tuple[str, str], dict[str, dict[int, float]]], dict[str, dict[int, float]]]:
        """Claim 3's long curves: ``{(source, target): {recipe: {step: loss}}}`` and
        ``{target: {step: loss}}`` of scratch."""
        return transfer.long_losses(self.context)

    def check_losses(self) -> dict[str, Any]:
        """Claim 4's target test losses: ``{"all": {(source, target, seed): loss},
        "scratch": {target: [...]}}``."""
        return transfer.check_losses(self.context)

    # -- stage 4: probes (vae_zoo.study.stages.probes) ------------------------------------------

    def probe_path(self) -> Path:
        return probes.probe_path(self.context)

    def run_probes(self, models: dict[str, torch.nn.Module]) -> dict[str, dict[str, float]]:
        """Stage 4: linear-probe accuracy on every dataset of every zoo and untrained encoder,
        and on its target of every claim-4 model (ids ``check/all/<source>``,
        ``check/scratch/<i>``)."""
        stage = ProbeStage(self.context, models, self._probe_sets)
        self.run(stage)
        return stage.results

    def check_models(self) -> dict[tuple[str, str], Path]:
        """Claim-4 models by (target, probe id): their checkpoints."""
        return probes.check_models(self.context)

    def probe_indices(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded probe sets of a target: training-split and test-split indices."""
        return self._probe_sets.indices(target)

    def probe_sets(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``probe_sets``: size and label counts of each probe set."""
        return self._probe_sets.records()
