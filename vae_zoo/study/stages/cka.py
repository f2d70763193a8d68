"""Stage 2, CKA: every same-unit measure between every pair of models, on each dataset's
evaluation set (:mod:`vae_zoo.study.measurement`), at every training length.

One job per evaluation set and training length, finished when its ``.npz`` verifies; jobs run
in ``workers`` processes (one BLAS thread each). The final checkpoints give
``cka/<dataset>.npz`` with every control; each earlier length of ``training_lengths`` gives
``cka/<dataset>_step<length>.npz``: the zoo's snapshots at that step against each other and
against the same untrained models, on the same evaluation sets and halves, without the
initial-weight control and the heatmap (the claims and the pair-level G profiles need neither).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...checkpoint import load_model
from ...models import make_model
from ..analysis import RANDOM, parse_model
from ..measurement import measure_evaluation_set
from ..sampling import (
    eval_seed,
    halves_seed,
    init_seed,
    random_seed,
    strata_keys,
    stratified_indices,
)
from .common import StudyContext, write_npz
from .runner import Stage, Verified

__all__ = ["CKAStage", "EvaluationSets", "cka_path", "load_cka"]


class EvaluationSets:
    """The evaluation set of every dataset: distinct test images, a stratified sample.

    Parameters
    ----------
    ctx : StudyContext
    """

    def __init__(self, ctx: StudyContext) -> None:
        self.ctx = ctx
        self._indices: dict[str, np.ndarray] = {}

    def indices(self, name: str) -> np.ndarray:
        """Test-split indices of a dataset's evaluation set: distinct images, stratified sample.

        ``cka_examples`` images (all distinct ones where fewer), drawn with a seed derived from
        the dataset's name, balanced over labels (dSprites: shape x scale, then orientation and
        position; see :mod:`vae_zoo.study.sampling`).
        """
        if name not in self._indices:
            data = self.ctx.dataset(name, "test")
            distinct = _first_distinct(data.images)
            n = min(self.ctx.config.cka_examples, len(distinct))
            keys = strata_keys(data)[distinct]
            chosen = stratified_indices(keys, n, eval_seed(name))
            self._indices[name] = distinct[chosen]
        return self._indices[name]

    def images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation set of a dataset (see :meth:`indices`): images and labels."""
        data = self.ctx.dataset(name, "test")
        keep = self.indices(name)
        labels = data.labels if data.labels is not None else np.zeros(len(data), dtype=np.int64)
        return np.asarray(data.images[keep]), np.asarray(labels[keep])

    def records(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``evaluation_sets``: size, label counts and indices of each set."""
        out = {}
        for name in self.ctx.config.datasets:
            _, labels = self.images(name)
            values, counts = np.unique(labels, return_counts=True)
            out[name] = {
                "n": len(labels),
                "label_counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
                "split": "test",
                "test_indices": [int(i) for i in self.indices(name)],
            }
        return out


def _first_distinct(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of every distinct image (rows hashed by SHA-1)."""
    seen: set[bytes] = set()
    keep = []
    for i, image in enumerate(images):
        digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def cka_path(ctx: StudyContext, name: str, length: int | None = None) -> Path:
    """The stage-2 arrays of the evaluation set of dataset ``name``.

    ``length``: the training length (steps) of the zoo models measured; None or ``train_steps``
    is the final checkpoints (``cka/<name>.npz``), an earlier one ``cka/<name>_step<length>.npz``.
    """
    if length is None or length == ctx.config.train_steps:
        return ctx.out / "cka" / f"{name}.npz"
    if length not in ctx.config.training_lengths:
        raise ValueError(
            f"training length {length} is not one of training_lengths {ctx.config.training_lengths}"
        )
    return ctx.out / "cka" / f"{name}_step{length}.npz"


def heatmap_models(ctx: StudyContext) -> list[str]:
    """Models whose layer x layer CKA is kept for the heatmaps: two seeds per dataset, and two
    untrained models (the floor panel: a trained against an untrained model)."""
    c = ctx.config
    trained = [f"{d}/s{s}" for d in c.datasets for s in c.seeds[:2]]
    return [*trained, *(f"{RANDOM}/r{i}" for i in range(min(2, c.random_models)))]


def load_cka(ctx: StudyContext, name: str, length: int | None = None) -> dict[str, Any]:
    """The stage-2 arrays of one evaluation set (at training ``length``, see :func:`cka_path`),
    with its ``meta`` decoded."""
    with np.load(cka_path(ctx, name, length), allow_pickle=False) as data:
        out = {key: data[key] for key in data.files if key != "meta"}
        out["meta"] = json.loads(str(data["meta"]))
    out["meta"]["units"] = [tuple(u) for u in out["meta"]["units"]]
    return out


@dataclasses.dataclass(frozen=True)
class _CKAJob:
    out: str
    checkpoints: tuple[tuple[str, str], ...]
    random_seeds: tuple[tuple[str, int], ...]
    init_seeds: tuple[tuple[str, int], ...]
    size: int
    images: np.ndarray
    labels: np.ndarray
    heatmap_models: tuple[str, ...]
    half_samples: int
    seed: int
    device: str
    controls: bool = True
    matched_floor: bool = True


def _run_cka(job: _CKAJob) -> str:
    """Stage 2 on one evaluation set: build the models, measure, write the ``.npz``."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (the zoo extra) brings it
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        models: dict[str, torch.nn.Module] = {m: load_model(p) for m, p in job.checkpoints}
        channels = int(job.images.shape[1])
        for m, seed in job.random_seeds:
            models[m] = make_model(channels, job.size, seed=seed).eval()
        inits = dict(job.init_seeds)
        arrays = measure_evaluation_set(
            models,
            job.images,
            job.labels,
            initial=(lambda m, c: make_model(c, job.size, seed=inits[m]).eval())
            if job.controls
            else None,
            heatmap_models=job.heatmap_models if job.controls else (),
            half_samples=job.half_samples,
            seed=job.seed,
            matched_floor=job.matched_floor,
            device=job.device,
        )
        write_npz(Path(job.out), **arrays)
    return job.out


class CKAStage(Stage):
    """Measure every evaluation set at every training length: one job per (length, dataset),
    finished when its ``.npz`` verifies; the final checkpoints' jobs first.

    Parameters
    ----------
    ctx : StudyContext
    eval_sets : EvaluationSets
    checkpoints : dict
        ``{model_id: checkpoint}`` of the zoo (its final checkpoints); the earlier lengths'
        come from :func:`vae_zoo.study.stages.zoo.zoo_snapshots`.
    """

    name = "cka"

    def __init__(
        self, ctx: StudyContext, eval_sets: EvaluationSets, checkpoints: dict[str, Path]
    ) -> None:
        self.ctx = ctx
        self.eval_sets = eval_sets
        self.checkpoints = checkpoints

    def plan(self) -> list[_CKAJob]:
        c = self.ctx.config
        jobs = [self._job(name, None, self.checkpoints) for name in c.datasets]
        earlier = c.training_lengths[:-1]
        if earlier:
            from .zoo import zoo_snapshots

            snapshots = zoo_snapshots(self.ctx)
            for length in earlier:
                if length not in snapshots:
                    raise ValueError(f"the zoo has no snapshots at training length {length}")
                jobs += [self._job(name, length, snapshots[length]) for name in c.datasets]
        return jobs

    def _job(self, name: str, length: int | None, checkpoints: dict[str, Path]) -> _CKAJob:
        c = self.ctx.config
        images, labels = self.eval_sets.images(name)
        return _CKAJob(
            out=str(cka_path(self.ctx, name, length)),
            checkpoints=tuple((m, str(p)) for m, p in checkpoints.items()),
            random_seeds=tuple((f"{RANDOM}/r{i}", random_seed(i)) for i in range(c.random_models)),
            init_seeds=tuple((m, init_seed(*parse_model(m))) for m in checkpoints),
            size=self.ctx.size,
            images=images,
            labels=labels,
            heatmap_models=tuple(heatmap_models(self.ctx)),
            half_samples=c.half_samples,
            seed=halves_seed(name),
            device=c.device,
            controls=length is None,
        )

    def is_done(self, job: _CKAJob, verified: Verified) -> bool:
        return verified(Path(job.out))

    def announce(self, jobs: Sequence[_CKAJob], todo: Sequence[_CKAJob]) -> str:
        c = self.ctx.config
        lengths = ", ".join(str(n) for n in c.training_lengths)
        return (
            f"[2/5] CKA on {len(c.datasets)} evaluation sets at training lengths {lengths} "
            f"({len(todo)} of {len(jobs)} to compute), up to {c.cka_examples} examples, "
            f"{len(self.checkpoints) + c.random_models} models"
        )

    def worker(self) -> Callable[[_CKAJob], str]:
        return _run_cka
