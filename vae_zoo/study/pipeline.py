"""The study's stages, each resumable: zoo, CKA, transfer, probes, then verdicts and report.

Every stage writes its results atomically (temporary file, then rename), records their SHA-256
in the study's ``manifest.json``, and skips only work whose result file still has that checksum,
so a study killed at any point continues where it stopped when started again, and a truncated or
overwritten result is recomputed.
Training runs resume from their last checkpoint (:mod:`vae_zoo.train`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import storage
from ..checkpoint import load_model
from ..datasets import ImageDataset
from ..models import make_model
from ..train import TrainConfig
from ..transfer import transfer
from ..zoo import DatasetLoader, run_zoo
from .analysis import EvalCKA
from .config import StudyConfig
from .representations import (
    centred_grams,
    cka_units,
    label_cka,
    model_activations,
    unit_layers,
)

__all__ = ["Study"]

ESTIMATORS = ("debiased", "biased")
RANDOM = "random"


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :mod:`vae_zoo.storage`)."""
    storage.write_json(path, data, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically."""
    storage.atomic_write(path, lambda handle: np.savez(handle, **arrays))


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
        self._check_datasets()
        self._check_config()
        #: Checksums of the finished stage outputs: only outputs that verify are skipped.
        self.manifest = storage.Manifest(self.out)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _check_datasets(self) -> None:
        from ..datasets import available

        status = available()
        missing = [
            f"{name}: {status[name].detail}" for name in self.config.datasets if not status[name].ok
        ]
        if missing:
            raise ValueError(
                "these datasets do not load on this machine; install them or choose others with "
                "--datasets: " + "; ".join(missing)
            )

    def _check_config(self) -> None:
        path = self.out / "config.json"
        if path.exists():
            changed = self.config.differs_from(json.loads(path.read_text()))
            if changed:
                raise ValueError(
                    f"{self.out} holds a study with other settings (differs in {changed}); use "
                    "another --out directory, or delete this one to start over"
                )
        else:
            write_json(path, self.config.to_dict())

    def log(self, message: str) -> None:
        if self.progress:
            self._log(message)

    @property
    def size(self) -> int:
        return self.config.size

    def train_config(self, steps: int, **extra: Any) -> TrainConfig:
        c = self.config
        return TrainConfig(
            steps=steps,
            objective=c.objective,
            objective_params=dict(c.objective_params),
            eval_examples=c.test_examples,
            eval_every=0,
            checkpoint_every=max(50, steps // 5),
            log_every=max(10, steps // 20),
            device=c.device,
            **extra,
        )

    @functools.cache  # noqa: B019 - one Study per run; datasets are reused by every stage
    def dataset(self, name: str, split: str) -> ImageDataset:
        cap = self.config.train_examples if split == "train" else None
        from ..datasets import load

        return load(name, split=split, size=self.size, max_examples=cap)

    # -- stage 1: the zoo ----------------------------------------------------------------------

    def train_zoo(self) -> dict[str, Path]:
        """Train every zoo model (skipping finished ones); return ``{model_id: checkpoint}``."""
        c = self.config
        self.log(
            f"[1/5] zoo: {len(c.datasets)} datasets x {len(c.seeds)} seeds, {c.train_steps} steps each"
        )
        results = run_zoo(
            c.datasets,
            c.seeds,
            ((c.objective, dict(c.objective_params)),),
            out_dir=self.out / "zoo",
            size=self.size,
            config=self.train_config(c.train_steps),
            workers=c.workers,
            loader=DatasetLoader(max_examples=c.train_examples, max_test_examples=c.test_examples),
            progress=self.progress,
        )
        return {f"{r.run.dataset}/s{r.run.seed}": r.checkpoint for r in results}

    def models(self, checkpoints: dict[str, Path]) -> dict[str, torch.nn.Module]:
        """Trained zoo models and one untrained model per seed, by id."""
        models: dict[str, torch.nn.Module] = {
            model_id: load_model(path) for model_id, path in checkpoints.items()
        }
        channels = next(iter(models.values())).config.channels
        for seed in self.config.seeds:
            models[f"{RANDOM}/s{seed}"] = make_model(channels, self.size, seed=10_000 + seed).eval()
        return models

    # -- stage 2: CKA --------------------------------------------------------------------------

    def eval_images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The first ``cka_examples`` distinct test images of a dataset, and their labels."""
        data = self.dataset(name, "test")
        flat = np.ascontiguousarray(data.images).reshape(len(data), -1)
        _, first = np.unique(flat, axis=0, return_index=True)
        keep = np.sort(first)[: self.config.cka_examples]
        if len(keep) < self.config.cka_examples:
            raise ValueError(
                f"{name} has only {len(keep)} distinct test images; lower cka_examples"
            )
        labels = data.labels if data.labels is not None else np.zeros(len(data), dtype=np.int64)
        return np.asarray(data.images[keep]), np.asarray(labels[keep])

    def cka_path(self, name: str) -> Path:
        return self.out / "cka" / f"{name}.npz"

    def measure_cka(self, models: dict[str, torch.nn.Module]) -> None:
        """Stage 2: CKA between every pair of models on each dataset's held-out images."""
        c = self.config
        todo = [name for name in c.datasets if not self.manifest.verified(self.cka_path(name))]
        self.log(
            f"[2/5] CKA on {len(c.datasets)} evaluation sets ({len(todo)} to compute), {c.cka_examples} examples, {len(models)} models"
        )
        for name in tqdm(todo, desc="cka", unit="dataset", disable=not self.progress):
            self._measure_cka_on(name, models)

    def _measure_cka_on(self, name: str, models: dict[str, torch.nn.Module]) -> None:
        c = self.config
        images, labels = self.eval_images(name)
        ids = list(models)
        grams = []
        for i, model_id in enumerate(ids):
            acts = model_activations(models[model_id], images, noise_seed=i, device=c.device)
            grams.append(centred_grams(acts))
        rng = np.random.default_rng(_stable_seed(name))
        halves = [
            np.sort(rng.choice(len(images), len(images) // 2, replace=False))
            for _ in range(c.half_samples)
        ]
        arrays: dict[str, np.ndarray] = {"labels": labels}
        for estimator in ESTIMATORS:
            debiased = estimator == "debiased"
            arrays[f"{estimator}_full"] = cka_units(grams, debiased=debiased)
            arrays[f"{estimator}_halves"] = np.stack(
                [cka_units(grams, debiased=debiased, subset=h, same_unit_only=True) for h in halves]
            )
            arrays[f"{estimator}_labels"] = np.array(
                [list(label_cka(g, labels, debiased=debiased).values()) for g in grams]
            )
        meta = {"models": ids, "units": [list(u) for u in unit_layers()], "n_examples": len(images)}
        arrays["meta"] = np.array(json.dumps(meta))
        write_npz(self.cka_path(name), **arrays)
        self.manifest.record(self.cka_path(name))

    def load_cka(self, name: str) -> dict[str, Any]:
        with np.load(self.cka_path(name), allow_pickle=False) as data:
            out = {key: data[key] for key in data.files if key != "meta"}
            out["meta"] = json.loads(str(data["meta"]))
        out["meta"]["units"] = [tuple(u) for u in out["meta"]["units"]]
        return out

    def eval_cka(self, estimator: str) -> list[EvalCKA]:
        """Same-unit CKA of every evaluation set, for the claims."""
        evals = []
        for name in self.config.datasets:
            data = self.load_cka(name)
            full = data[f"{estimator}_full"]
            evals.append(
                EvalCKA(
                    name,
                    data["meta"]["models"],
                    data["meta"]["units"],
                    _same_unit(full),
                    data[f"{estimator}_halves"],
                )
            )
        return evals

    # -- stage 3: transfer ---------------------------------------------------------------------

    def transfer_jobs(self, checkpoints: dict[str, Path]) -> list[_TransferJob]:
        c = self.config
        config = self.train_config(c.transfer_steps, seed=c.transfer_source_seed)
        loader = DatasetLoader(max_examples=c.train_examples, max_test_examples=c.test_examples)
        jobs = []
        for target in c.datasets:
            for source in c.datasets:
                if source == target:
                    continue
                for recipe in c.recipes:
                    if recipe == "scratch":
                        continue
                    jobs.append(
                        _TransferJob(
                            str(checkpoints[f"{source}/s{c.transfer_source_seed}"]),
                            target,
                            recipe,
                            str(self.out / "transfer" / f"{source}-to-{target}" / recipe),
                            config,
                            tuple(c.transfer_budgets),
                            loader,
                            self.size,
                        )
                    )
            jobs.append(
                _TransferJob(
                    str(checkpoints[f"{target}/s{c.transfer_source_seed}"]),
                    target,
                    "scratch",
                    str(self.out / "transfer" / f"scratch-{target}"),
                    config,
                    tuple(c.transfer_budgets),
                    loader,
                    self.size,
                )
            )
        return jobs

    def run_transfers(self, checkpoints: dict[str, Path]) -> None:
        """Stage 3: every recipe for every ordered (source, target) pair, same budget."""
        jobs = self.transfer_jobs(checkpoints)
        todo = [job for job in jobs if not self.manifest.verified(_transfer_file(job.out_dir))]
        self.log(
            f"[3/5] transfer: {len(jobs)} runs of {self.config.transfer_steps} steps ({len(todo)} to run)"
        )
        bar = tqdm(
            total=len(jobs),
            initial=len(jobs) - len(todo),
            desc="transfer",
            unit="run",
            disable=not self.progress,
        )
        if self.config.workers <= 1 or len(todo) <= 1:
            for job in todo:
                self.manifest.record(_transfer_file(_run_transfer(job)))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(self.config.workers, len(todo)), mp_context=context
            ) as pool:
                for future in as_completed([pool.submit(_run_transfer, job) for job in todo]):
                    self.manifest.record(_transfer_file(future.result()))
                    bar.update(1)
        bar.close()

    def transfer_losses(
        self,
    ) -> tuple[dict[tuple[str, str], dict[str, float]], dict[str, float], dict[str, Any]]:
        """Final target test losses per recipe, scratch per target, and the loss curves."""
        c = self.config
        final: dict[tuple[str, str], dict[str, float]] = {}
        scratch: dict[str, float] = {}
        curves: dict[str, dict[str, dict[int, float]]] = {}
        for target in c.datasets:
            record = _read_transfer(self.out / "transfer" / f"scratch-{target}")
            scratch[target] = record[c.transfer_steps]
            curves.setdefault(target, {})["scratch"] = record
            for source in c.datasets:
                if source == target:
                    continue
                final[(source, target)] = {}
                for recipe in c.recipes:
                    if recipe == "scratch":
                        continue
                    record = _read_transfer(
                        self.out / "transfer" / f"{source}-to-{target}" / recipe
                    )
                    final[(source, target)][recipe] = record[c.transfer_steps]
                    curves[target][f"{source}:{recipe}"] = record
        return final, scratch, curves

    # -- stage 4: probes -----------------------------------------------------------------------

    def probe_path(self) -> Path:
        return self.out / "probes.json"

    def run_probes(self, models: dict[str, torch.nn.Module]) -> dict[str, dict[str, float]]:
        """Stage 4: linear-probe accuracy of every encoder's posterior mean on every dataset."""
        from .probes import probe_accuracy

        path = self.probe_path()
        done: dict[str, dict[str, float]] = (
            json.loads(path.read_text()) if self.manifest.verified(path) else {}
        )
        c = self.config
        todo = [(t, m) for t in c.datasets for m in models if m not in done.get(t, {})]
        self.log(
            f"[4/5] probes: {len(c.datasets)} targets x {len(models)} encoders ({len(todo)} to fit)"
        )
        for target, model_id in tqdm(todo, desc="probes", unit="probe", disable=not self.progress):
            train = self.dataset(target, "train")
            test = self.dataset(target, "test")
            done.setdefault(target, {})[model_id] = probe_accuracy(
                models[model_id],
                train,
                test,
                n_train=c.probe_train_examples,
                n_test=c.probe_test_examples,
                device=c.device,
            )
            write_json(path, done)
            self.manifest.record(path)
        return done


@dataclasses.dataclass(frozen=True)
class _TransferJob:
    source: str
    target: str
    recipe: str
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


@functools.lru_cache(maxsize=8)
def _cached_load(loader: DatasetLoader, name: str, split: str, size: int) -> ImageDataset:
    return loader(name, split, size)


def _transfer_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / "transfer.json"


def _read_transfer(run_dir: Path) -> dict[int, float]:
    record = json.loads(_transfer_file(run_dir).read_text())
    return {int(step): float(loss) for step, loss in record["test_loss"].items()}


def _same_unit(full: np.ndarray) -> np.ndarray:
    """``(M, U, M, U)`` -> ``(M, M, U)``: each unit against the same unit of every model."""
    n_units = full.shape[1]
    units = np.arange(n_units)
    return full[:, units, :, units].transpose(1, 2, 0)


def _stable_seed(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % 2**32
