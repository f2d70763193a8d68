"""The study's stages, each resumable: zoo, CKA, transfer, probes, then verdicts and report.

Every stage writes its results atomically (temporary file, then rename), records their SHA-256
in the study's ``manifest.json``, and skips only work whose result file still has that checksum,
so a study killed at any point continues where it stopped when started again, and a truncated or
overwritten result is recomputed.
Training runs resume from their last checkpoint (:mod:`vae_zoo.train`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
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
from ..train import TrainConfig, is_complete, read_metrics, train
from ..transfer import Recipe, transfer
from ..zoo import DatasetLoader
from .analysis import RANDOM, parse_model
from .config import ENCODER_BLOCKS, StudyConfig
from .measurement import measure_evaluation_set
from .sampling import init_seed, random_seed, strata_keys, stratified_indices

__all__ = ["Study"]


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

    def loader(self) -> DatasetLoader:
        c = self.config
        return DatasetLoader(max_examples=c.train_examples, max_test_examples=c.test_examples)

    # -- stage 1: the zoo ----------------------------------------------------------------------

    def zoo_models(self) -> list[ZooModel]:
        """Every trained model of the zoo, with its derived initialisation seed and directory."""
        c = self.config
        return [
            ZooModel(
                dataset, seed, init_seed(dataset, seed), self.out / "zoo" / dataset / f"s{seed}"
            )
            for dataset in c.datasets
            for seed in c.seeds
        ]

    def train_zoo(self) -> dict[str, Path]:
        """Train every zoo model (skipping finished ones); return ``{model_id: checkpoint}``."""
        c = self.config
        zoo = self.zoo_models()
        jobs = [
            _TrainJob(
                m.dataset,
                str(m.run_dir),
                self.train_config(c.train_steps, seed=m.init_seed),
                self.loader(),
                self.size,
            )
            for m in zoo
        ]
        todo = [job for job in jobs if not is_complete(job.out_dir, c.train_steps)]
        self.log(
            f"[1/5] zoo: {len(c.datasets)} datasets x {len(c.seeds)} seeds, {c.train_steps} "
            f"steps each ({len(todo)} to train)"
        )
        self._parallel(_run_training, jobs, todo, "zoo")
        return {m.name: m.run_dir / "checkpoint.pt" for m in zoo}

    def _parallel(
        self,
        fn: Callable[[Any], Any],
        jobs: list[Any],
        todo: list[Any],
        desc: str,
        *,
        done: Callable[[Any], None] | None = None,
    ) -> None:
        """Run ``fn`` on every job of ``todo`` in ``workers`` single-thread processes.

        ``done(result)`` is called in this process after each job.
        """
        done = done or (lambda _: None)
        bar = tqdm(
            total=len(jobs),
            initial=len(jobs) - len(todo),
            desc=desc,
            unit="run",
            disable=not self.progress,
        )
        if self.config.workers <= 1 or len(todo) <= 1:
            for job in todo:
                done(fn(job))
                bar.update(1)
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                max_workers=min(self.config.workers, len(todo)), mp_context=context
            ) as pool:
                for future in as_completed([pool.submit(fn, job) for job in todo]):
                    done(future.result())
                    bar.update(1)
        bar.close()

    def models(self, checkpoints: dict[str, Path]) -> dict[str, torch.nn.Module]:
        """Trained zoo models and the untrained baselines (``random/r<i>``), by id."""
        models: dict[str, torch.nn.Module] = {
            model_id: load_model(path) for model_id, path in checkpoints.items()
        }
        channels = next(iter(models.values())).config.channels
        for i in range(self.config.random_models):
            models[f"{RANDOM}/r{i}"] = make_model(channels, self.size, seed=random_seed(i)).eval()
        return models

    def model_records(self) -> list[dict[str, Any]]:
        """``results.json``'s ``models``: every zoo model with its seeds and final test loss."""
        records = []
        for m in self.zoo_models():
            test = read_metrics(m.run_dir, "test")
            records.append(
                {
                    "name": m.name,
                    "dataset": m.dataset,
                    "seed": m.seed,
                    "init_seed": m.init_seed,
                    "train_steps": self.config.train_steps,
                    "final_test_loss": float(test[-1]["loss"]) if test else None,
                }
            )
        for i in range(self.config.random_models):
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

    # -- evaluation sets -----------------------------------------------------------------------

    @functools.cache  # noqa: B019 - one Study per run
    def eval_indices(self, name: str) -> np.ndarray:
        """Test-split indices of a dataset's evaluation set: distinct images, stratified sample.

        ``cka_examples`` images (all distinct ones where fewer), drawn with a seed derived from
        the dataset's name, balanced over labels (dSprites: shape x scale, then orientation and
        position; see :mod:`vae_zoo.study.sampling`).
        """
        data = self.dataset(name, "test")
        distinct = _first_distinct(data.images)
        n = min(self.config.cka_examples, len(distinct))
        chosen = stratified_indices(strata_keys(data)[distinct], n, _stable_seed(f"eval/{name}"))
        return distinct[chosen]

    def eval_images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation set of a dataset (see :meth:`eval_indices`): images and labels."""
        data = self.dataset(name, "test")
        keep = self.eval_indices(name)
        labels = data.labels if data.labels is not None else np.zeros(len(data), dtype=np.int64)
        return np.asarray(data.images[keep]), np.asarray(labels[keep])

    def evaluation_sets(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``evaluation_sets``: size, label counts and indices of each set."""
        out = {}
        for name in self.config.datasets:
            _, labels = self.eval_images(name)
            values, counts = np.unique(labels, return_counts=True)
            out[name] = {
                "n": len(labels),
                "label_counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
                "split": "test",
                "test_indices": [int(i) for i in self.eval_indices(name)],
            }
        return out

    # -- stage 2: CKA --------------------------------------------------------------------------

    def cka_path(self, name: str) -> Path:
        return self.out / "cka" / f"{name}.npz"

    def measure_cka(self, checkpoints: dict[str, Path]) -> None:
        """Stage 2: same-unit measures between every pair of models on each evaluation set.

        One job per evaluation set, in ``workers`` processes (one BLAS thread each).
        """
        c = self.config
        todo = [name for name in c.datasets if not self.manifest.verified(self.cka_path(name))]
        self.log(
            f"[2/5] CKA on {len(c.datasets)} evaluation sets ({len(todo)} to compute), "
            f"up to {c.cka_examples} examples, {len(checkpoints) + c.random_models} models"
        )
        jobs = []
        for name in todo:
            images, labels = self.eval_images(name)
            jobs.append(
                _CKAJob(
                    out=str(self.cka_path(name)),
                    checkpoints=tuple((m, str(p)) for m, p in checkpoints.items()),
                    random_seeds=tuple(
                        (f"{RANDOM}/r{i}", random_seed(i)) for i in range(c.random_models)
                    ),
                    init_seeds=tuple((m, init_seed(*parse_model(m))) for m in checkpoints),
                    size=self.size,
                    images=images,
                    labels=labels,
                    heatmap_models=tuple(self.heatmap_models()),
                    half_samples=c.half_samples,
                    seed=_stable_seed(f"halves/{name}"),
                    device=c.device,
                )
            )
        self._parallel(
            _run_cka, jobs, jobs, "cka", done=lambda out: self.manifest.record(Path(out))
        )

    def heatmap_models(self) -> list[str]:
        """Models whose layer x layer CKA is kept for the heatmaps: two seeds per dataset."""
        c = self.config
        return [f"{d}/s{s}" for d in c.datasets for s in c.seeds[:2]]

    def load_cka(self, name: str) -> dict[str, Any]:
        with np.load(self.cka_path(name), allow_pickle=False) as data:
            out = {key: data[key] for key in data.files if key != "meta"}
            out["meta"] = json.loads(str(data["meta"]))
        out["meta"]["units"] = [tuple(u) for u in out["meta"]["units"]]
        return out

    # -- stage 3: transfer ---------------------------------------------------------------------

    def transfer_loader(self) -> DatasetLoader:
        """Targets of every transfer: ``transfer_examples`` training images (data-scarce)."""
        c = self.config
        cap = c.transfer_examples if c.transfer_examples is not None else c.train_examples
        return DatasetLoader(max_examples=cap, max_test_examples=c.test_examples)

    def sweep_recipes(self) -> list[str | Recipe]:
        """The freeze-depth sweep, then the configured recipes (``scratch`` last)."""
        return [*(sweep_recipe(k) for k in range(len(ENCODER_BLOCKS) + 1)), *self.config.recipes]

    def transfer_jobs(self, checkpoints: dict[str, Path]) -> list[_TransferJob]:
        """Claim 3's sweep on ``sweep_pairs``, and claim 4's ``all`` and ``scratch`` runs."""
        c = self.config
        seed = c.transfer_source_seed
        sweep_config = self.train_config(c.transfer_steps, seed=seed)
        loader = self.transfer_loader()
        root = self.out / "transfer"
        jobs = []
        for source, target in c.sweep_pairs:
            for recipe in self.sweep_recipes():
                name = recipe if isinstance(recipe, str) else recipe.name
                if name == "scratch":
                    continue
                jobs.append(
                    _TransferJob(
                        str(checkpoints[f"{source}/s{seed}"]), target, recipe,
                        str(root / "sweep" / f"{source}-to-{target}" / name), sweep_config,
                        tuple(c.transfer_budgets), loader, self.size,
                    )
                )  # fmt: skip
        if "scratch" in c.recipes:
            for target in dict.fromkeys(t for _, t in c.sweep_pairs):
                jobs.append(
                    _TransferJob(
                        str(checkpoints[f"{target}/s{seed}"]), target, "scratch",
                        str(root / "sweep" / f"scratch-{target}"), sweep_config,
                        tuple(c.transfer_budgets), loader, self.size,
                    )
                )  # fmt: skip
        check_config = self.train_config(c.check_steps, seed=seed)
        budgets = (0, c.check_steps)
        for target in c.datasets:
            for source in c.datasets:
                if source != target:
                    jobs.append(
                        _TransferJob(
                            str(checkpoints[f"{source}/s{seed}"]), target, "all",
                            str(self.check_dir(source, target)), check_config, budgets, loader,
                            self.size,
                        )
                    )  # fmt: skip
            for i in range(c.scratch_seeds):
                jobs.append(
                    _TransferJob(
                        str(checkpoints[f"{target}/s{seed}"]), target, "scratch",
                        str(self.check_dir("scratch", target, i)),
                        self.train_config(c.check_steps, seed=_stable_seed(f"scratch/{target}/{i}")),
                        budgets, loader, self.size,
                    )
                )  # fmt: skip
        return jobs

    def check_dir(self, source: str, target: str, seed: int | None = None) -> Path:
        """Run directory of a claim-4 transfer (``source == "scratch"``: the ``seed``-th)."""
        root = self.out / "transfer" / "check"
        if source == "scratch":
            return root / f"scratch-{target}" / f"s{seed}"
        return root / f"{source}-to-{target}"

    def run_transfers(self, checkpoints: dict[str, Path]) -> None:
        """Stage 3: claim 3's freeze-depth sweep and claim 4's transfers, each resumable."""
        jobs = self.transfer_jobs(checkpoints)
        todo = [job for job in jobs if not self.manifest.verified(_transfer_file(job.out_dir))]
        steps = sum(job.config.steps for job in jobs)
        self.log(f"[3/5] transfer: {len(jobs)} runs, {steps} steps in all ({len(todo)} to run)")
        self._parallel(
            _run_transfer,
            jobs,
            todo,
            "transfer",
            done=lambda d: self.manifest.record(_transfer_file(d)),
        )

    def sweep_losses(self) -> tuple[dict[tuple[str, str], dict[str, dict[int, float]]], dict]:
        """Claim 3's target test losses: ``{(source, target): {recipe: {step: loss}}}`` and
        ``{target: {step: loss}}`` of scratch."""
        c = self.config
        root = self.out / "transfer" / "sweep"
        runs: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
        for source, target in c.sweep_pairs:
            runs[(source, target)] = {}
            for recipe in self.sweep_recipes():
                name = recipe if isinstance(recipe, str) else recipe.name
                if name != "scratch":
                    runs[(source, target)][name] = _read_transfer(
                        root / f"{source}-to-{target}" / name
                    )
        scratch = {
            t: _read_transfer(root / f"scratch-{t}")
            for t in dict.fromkeys(t for _, t in c.sweep_pairs)
            if "scratch" in c.recipes
        }
        return runs, scratch

    def check_losses(self) -> dict[str, Any]:
        """Claim 4's final target test losses: ``{"all": {(s, t): loss}, "scratch": {t: [...]}}``."""
        c = self.config
        out: dict[str, Any] = {"all": {}, "scratch": {}}
        for target in c.datasets:
            for source in c.datasets:
                if source != target:
                    record = _read_transfer(self.check_dir(source, target))
                    out["all"][(source, target)] = record[c.check_steps]
            out["scratch"][target] = [
                _read_transfer(self.check_dir("scratch", target, i))[c.check_steps]
                for i in range(c.scratch_seeds)
            ]
        return out

    # -- stage 4: probes -----------------------------------------------------------------------

    def probe_path(self) -> Path:
        return self.out / "probes.json"

    def run_probes(self, models: dict[str, torch.nn.Module]) -> dict[str, dict[str, float]]:
        """Stage 4: linear-probe accuracy on every dataset of every zoo and untrained encoder,
        and on its target of every claim-4 model (ids ``check/all/<source>``,
        ``check/scratch/<i>``)."""
        from .probes import probe_accuracy

        path = self.probe_path()
        done: dict[str, dict[str, float]] = (
            json.loads(path.read_text()) if self.manifest.verified(path) else {}
        )
        c = self.config
        checks = self.check_models()
        todo = [(t, m) for t in c.datasets for m in models if m not in done.get(t, {})]
        todo += [(t, m) for t, m in checks if m not in done.get(t, {})]
        self.log(
            f"[4/5] probes: {len(c.datasets)} targets x {len(models)} encoders and "
            f"{len(checks)} transferred or scratch models ({len(todo)} to fit)"
        )
        for target, model_id in tqdm(todo, desc="probes", unit="probe", disable=not self.progress):
            train_idx, test_idx = self.probe_indices(target)
            model = models[model_id] if model_id in models else load_model(checks[target, model_id])
            done.setdefault(target, {})[model_id] = probe_accuracy(
                model,
                self.dataset(target, "train"),
                self.dataset(target, "test"),
                train_indices=train_idx,
                test_indices=test_idx,
                device=c.device,
            )
            write_json(path, done)
            self.manifest.record(path)
        return done

    def check_models(self) -> dict[tuple[str, str], Path]:
        """Claim-4 models by (target, probe id): their checkpoints."""
        c = self.config
        out = {}
        for target in c.datasets:
            for source in c.datasets:
                if source != target:
                    out[target, f"check/all/{source}"] = self.check_dir(source, target)
            for i in range(c.scratch_seeds):
                out[target, f"check/scratch/{i}"] = self.check_dir("scratch", target, i)
        return {key: path / "checkpoint.pt" for key, path in out.items()}

    @functools.cache  # noqa: B019 - one Study per run
    def probe_indices(self, target: str) -> tuple[np.ndarray, np.ndarray]:
        """Stratified, seeded probe sets of a target: training-split and test-split indices."""
        c = self.config
        out = []
        for split, n in (("train", c.probe_train_examples), ("test", c.probe_test_examples)):
            data = self.dataset(target, split)
            keys = strata_keys(data)
            out.append(
                stratified_indices(keys, min(n, len(data)), _stable_seed(f"probe/{split}/{target}"))
            )
        return out[0], out[1]

    def probe_sets(self) -> dict[str, dict[str, Any]]:
        """``results.json``'s ``probe_sets``: size and label counts of each probe set."""
        out: dict[str, dict[str, Any]] = {}
        for target in self.config.datasets:
            for split, idx in zip(("train", "test"), self.probe_indices(target), strict=True):
                labels = self.dataset(target, split).labels
                values, counts = np.unique(labels[idx], return_counts=True)
                out.setdefault(target, {})[split] = {
                    "n": len(idx),
                    "label_counts": {
                        str(int(v)): int(c) for v, c in zip(values, counts, strict=True)
                    },
                }
        return out


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
            initial=lambda m, c: make_model(c, job.size, seed=inits[m]).eval(),
            heatmap_models=job.heatmap_models,
            half_samples=job.half_samples,
            seed=job.seed,
            device=job.device,
        )
        write_npz(Path(job.out), **arrays)
    return job.out


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


@functools.lru_cache(maxsize=8)
def _cached_load(loader: DatasetLoader, name: str, split: str, size: int) -> ImageDataset:
    return loader(name, split, size)


def _transfer_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / "transfer.json"


def _read_transfer(run_dir: Path) -> dict[int, float]:
    record = json.loads(_transfer_file(run_dir).read_text())
    return {int(step): float(loss) for step, loss in record["test_loss"].items()}


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


def _stable_seed(text: str) -> int:
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") % 2**32
