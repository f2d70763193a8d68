"""Stage 4, probes: linear-probe accuracy (:func:`vae_zoo.study.probes.probe_accuracy`) on
every target.

One job per (target, encoder): every zoo and untrained encoder on every dataset, and every
claim-4 model on its target (ids ``check/all/<source>/s<seed>``, one per source seed of
``check_source_seeds``, and ``check/scratch/<i>``). Jobs run in
this process (they use the loaded models); the accuracies go to ``probes.json``, written once
per finished target, and a job is finished when that file verifies and holds its accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...checkpoint import load_model
from ..sampling import probe_seed, strata_keys, stratified_indices
from .common import StudyContext, write_json
from .runner import Stage, Verified
from .transfer import check_dir

__all__ = ["ProbeSets", "ProbeStage", "check_models", "probe_path"]

_ProbeJob = tuple[str, str]  # (target, model id)


def probe_path(ctx: StudyContext) -> Path:
    """Where the probe accuracies go: ``{target: {model_id: accuracy}}``."""
    return ctx.out / "probes.json"


def check_models(ctx: StudyContext) -> dict[tuple[str, str], Path]:
    """Claim-4 models by (target, probe id): their checkpoints.

    Probe ids: ``check/all/<source>/s<seed>`` for the transfer from every other dataset's model
    of each seed in ``check_source_seeds``, and ``check/scratch/<i>`` for the target's
    ``scratch_seeds`` scratch models.
    """
    c = ctx.config
    out = {}
    for target in c.datasets:
        for source in c.datasets:
            if source == target:
                continue
            for seed in c.check_source_seeds:
                out[target, f"check/all/{source}/s{seed}"] = check_dir(ctx, source, target, seed)
        for i in range(c.scratch_seeds):
            out[target, f"check/scratch/{i}"] = check_dir(ctx, "scratch", target, i)
    return {key: path / "checkpoint.pt" for key, path in out.items()}


class ProbeSets:
    """The probe sets of every target: stratified, seeded training and test examples.

    Parameters
    ----------
    ctx : StudyContext
    """

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx
        self._indices: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def indices(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded probe sets of a target: training-split and test-split indices."""
        if target not in self._indices:
            c = self.ctx.config
            out = []
            for split, n in (("train", c.probe_train_examples), ("test", c.probe_test_examples)):
                data = self.ctx.dataset(target, split)
                keys = strata_keys(data)
                seed = probe_seed(split, target)
                out.append(stratified_indices(keys, min(n, len(data)), seed))
            self._indices[target] = (out[0], out[1])
        return self._indices[target]

    def records(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``probe_sets``: size and label counts of each probe set."""
        out: dict[str, dict[str, Any]] = {}
        for target in self.ctx.config.datasets:
            for split, idx in zip(("train", "test"), self.indices(target), strict=True):
                labels = self.ctx.dataset(target, split).labels
                values, counts = np.unique(labels[idx], return_counts=True)
                out.setdefault(target, {})[split] = {
                    "n": len(idx),
                    "label_counts": {
                        str(int(v)): int(c) for v, c in zip(values, counts, strict=True)
                    },
                }
        return out


class ProbeStage(Stage):
    """Fit a linear probe per (target, encoder); :attr:`results` holds the accuracies.

    Parameters
    ----------
    ctx : StudyContext
    models : dict
        The zoo and untrained models by id (:func:`vae_zoo.study.stages.zoo.load_models`).
    probe_sets : ProbeSets
    """

    name = "probes"
    unit = "probe"
    in_process = True

    def __init__(
        self, ctx: StudyContext, models: dict[str, torch.nn.Module], probe_sets: ProbeSets
    ) -> None:
        self.ctx = ctx
        self.models = models
        self.probe_sets = probe_sets
        self.checks = check_models(ctx)
        self.path = probe_path(ctx)
        #: ``{target: {model_id: accuracy}}``, read back from ``probes.json`` where it verifies.
        self.results: dict[str, dict[str, float]] = {}

    def resume(self, verified: Verified) -> None:
        self.results = json.loads(self.path.read_text()) if verified(self.path) else {}

    def plan(self) -> list[_ProbeJob]:
        jobs = [(t, m) for t in self.ctx.config.datasets for m in self.models]
        return jobs + list(self.checks)

    def is_done(self, job: _ProbeJob, verified: Verified) -> bool:
        target, model_id = job
        return model_id in self.results.get(target, {})

    def announce(self, jobs: Sequence[_ProbeJob], todo: Sequence[_ProbeJob]) -> str:
        return (
            f"[4/5] probes: {len(self.ctx.config.datasets)} targets x {len(self.models)} "
            f"encoders and {len(self.checks)} transferred or scratch models ({len(todo)} to fit)"
        )

    def worker(self) -> Callable[[_ProbeJob], tuple[str, str, float]]:
        return self._fit

    def _fit(self, job: _ProbeJob) -> tuple[str, str, float]:
        from ..probes import probe_accuracy

        target, model_id = job
        train_idx, test_idx = self.probe_sets.indices(target)
        models = self.models
        model = models[model_id] if model_id in models else load_model(self.checks[job])
        accuracy = probe_accuracy(
            model,
            self.ctx.dataset(target, "train"),
            self.ctx.dataset(target, "test"),
            train_indices=train_idx,
            test_indices=test_idx,
            device=self.ctx.config.device,
        )
        return target, model_id, accuracy

    def collect(self, result: tuple[str, str, float]) -> list[Path]:
        target, model_id, accuracy = result
        self.results.setdefault(target, {})[model_id] = accuracy
        expected = len(self.models) + sum(t == target for t, _ in self.checks)
        if len(self.results[target]) == expected:
            return self._save()  # one write per finished target
        return []

    def close(self, todo: Sequence[_ProbeJob]) -> list[Path]:
        return self._save() if todo else []

    def _save(self) -> list[Path]:
        write_json(self.path, self.results)
        return [self.path]
