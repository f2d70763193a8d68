"""Train a zoo of VAEs: a grid of datasets x seeds x objectives, in parallel worker processes.

Each run is an ordinary :func:`vae_zoo.train.train` run directory, laid out as
``OUT/{dataset}-{size}px/{objective tag}/seed{seed}``. Runs that are already complete are skipped
and interrupted ones resume from their last checkpoint, so calling :func:`run_zoo` again after a
crash loses at most ``checkpoint_every`` steps per run. Workers are separate processes (``spawn``)
each using one torch thread: on a small CPU machine, several single-thread processes train
faster than one multi-thread process.

Library use (what :mod:`vae_zoo.study` calls)::

    from vae_zoo.train import TrainConfig
    from vae_zoo.zoo import run_zoo
    runs = run_zoo(["mnist", "dsprites"], seeds=[0, 1], out_dir="runs/zoo", size=32,
                   config=TrainConfig(steps=5000), workers=2)
    for r in runs:
        print(r.run.dataset, r.run.seed, r.checkpoint)

Command line::

    python -m vae_zoo.zoo --datasets mnist dsprites --seeds 0 1 --steps 5000 --workers 2 \\
        --out runs/zoo

A script that calls :func:`run_zoo` with ``workers > 1`` must guard its entry point with
``if __name__ == "__main__":`` (the ``spawn`` start method re-imports it in each worker).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import torch  # noqa: F401 - checked here so that a missing torch gets the message below
    from tqdm.auto import tqdm
except ImportError as _err:
    from ._extras import missing

    missing(_err, "vae_zoo.zoo", command=__name__ == "__main__")

from .datasets.base import ImageDataset
from .storage import DirectoryLockedError, describe_os_error
from .train import HelpFormatter, TrainConfig, add_schedule_arguments, is_complete, train

__all__ = [
    "DatasetLoader",
    "ZooError",
    "ZooResult",
    "ZooRun",
    "main",
    "run_zoo",
    "zoo_grid",
]

Loader = Callable[[str, str, int], ImageDataset]
"""``loader(name, split, size) -> ImageDataset``; must be picklable when ``workers > 1``."""


class ZooError(RuntimeError):
    """One or more zoo runs failed; the message lists each with its error."""


@dataclass(frozen=True)
class ZooRun:
    """One cell of the grid.

    Parameters
    ----------
    dataset : str
        Dataset name passed to the loader.
    seed : int
        Training seed.
    objective : str, default "beta_vae"
        Objective name.
    params : tuple of (str, value) pairs, default ()
        Objective hyper-parameters, sorted by name (hashable form of a dict).

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the zoo of the study: datasets x seeds x objectives).

    Examples
    --------
    >>> from vae_zoo.zoo import ZooRun
    >>> run = ZooRun("mnist", seed=1, params=(("beta", 4.0),))
    >>> run.tag, run.run_dir("zoo", 32).as_posix()
    ('beta_vae-beta=4.0', 'zoo/mnist-32px/beta_vae-beta=4.0/seed1')
    """

    dataset: str
    seed: int
    objective: str = "beta_vae"
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def tag(self) -> str:
        """Directory name of the objective: ``beta_vae`` or ``beta_vae-beta=4``."""
        return "-".join([self.objective, *(f"{k}={v}" for k, v in self.params)])

    def run_dir(self, root: str | Path, size: int) -> Path:
        """Return the run's directory, ``root/{dataset}-{size}px/{tag}/seed{seed}``.

        Parameters
        ----------
        root : str or pathlib.Path
            The zoo's root directory.
        size : int
            Image side in pixels.

        Returns
        -------
        pathlib.Path
            The directory (not created).
        """
        return Path(root) / f"{self.dataset}-{size}px" / self.tag / f"seed{self.seed}"


@dataclass(frozen=True)
class ZooResult:
    """A finished zoo run: the cell, its directory and checkpoint, and whether it was skipped.

    Parameters
    ----------
    run : ZooRun
        The cell of the grid.
    out_dir : pathlib.Path
        Its run directory.
    checkpoint : pathlib.Path
        Its ``checkpoint.pt``.
    skipped : bool
        Whether it was already complete, so not trained again.
    """

    run: ZooRun
    out_dir: Path
    checkpoint: Path
    skipped: bool


@dataclass(frozen=True)
class DatasetLoader:
    """The default loader: :func:`vae_zoo.datasets.load` with fixed options (picklable).

    Parameters
    ----------
    data_dir : str, optional
        Dataset directory (see :func:`vae_zoo.datasets.load`).
    max_examples : int, optional
        Cap on the training split (a deterministic subset), e.g. for quick runs.
    max_test_examples : int, optional
        Cap on the test split.

    Raises
    ------
    ValueError
        When called with an unknown dataset, split or size (from :func:`vae_zoo.datasets.load`).
    DatasetNotAvailableError
        When called for a dataset whose files are missing.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the zoo of the study: datasets x seeds x objectives).

    Examples
    --------
    >>> from vae_zoo.zoo import DatasetLoader
    >>> DatasetLoader(max_examples=8)("dsprites", "train", 32).images.shape
    (8, 1, 32, 32)
    """

    data_dir: str | None = None
    max_examples: int | None = None
    max_test_examples: int | None = None

    def __call__(self, name: str, split: str, size: int) -> ImageDataset:
        from .datasets import load

        cap = self.max_examples if split == "train" else self.max_test_examples
        return load(name, split=split, size=size, data_dir=self.data_dir, max_examples=cap)


def zoo_grid(
    datasets: Iterable[str],
    seeds: Iterable[int],
    objectives: Iterable[str | tuple[str, dict[str, Any]]] = ("beta_vae",),
) -> list[ZooRun]:
    """Return the grid in order dataset, objective, seed.

    Parameters
    ----------
    datasets : iterable of str
        Dataset names.
    seeds : iterable of int
        Training seeds.
    objectives : iterable of str or (str, dict), default ("beta_vae",)
        Objective names, or ``(name, hyper-parameters)`` pairs.

    Returns
    -------
    list of ZooRun
        One run per combination.

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the zoo of the study: datasets x seeds x objectives).

    Examples
    --------
    >>> from vae_zoo.zoo import zoo_grid
    >>> [(r.dataset, r.tag, r.seed) for r in zoo_grid(["mnist"], [0, 1], ["beta_vae"])]
    [('mnist', 'beta_vae', 0), ('mnist', 'beta_vae', 1)]
    """
    objs = [(o, {}) if isinstance(o, str) else (o[0], dict(o[1])) for o in objectives]
    seeds = list(seeds)
    return [
        ZooRun(dataset, seed, name, tuple(sorted(params.items())))
        for dataset in datasets
        for name, params in objs
        for seed in seeds
    ]


@dataclass(frozen=True)
class _Job:
    run: ZooRun
    out_dir: Path
    config: TrainConfig
    loader: Loader
    size: int
    test: bool


_DATA_CACHE: dict[tuple[Any, ...], ImageDataset] = {}


def _load_cached(loader: Loader, name: str, split: str, size: int) -> ImageDataset:
    """Load once per worker process: consecutive runs on one dataset share the arrays."""
    key = (loader, name, split, size)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = loader(name, split, size)
    return _DATA_CACHE[key]


def _train_job(job: _Job) -> tuple[ZooRun, str | OSError | None]:
    """Run one job; return ``(run, None)``, ``(run, formatted error)`` or, for a file-system
    error such as a full disk, ``(run, the OSError)`` (never raises)."""
    try:
        data = _load_cached(job.loader, job.run.dataset, "train", job.size)
        test = _load_cached(job.loader, job.run.dataset, "test", job.size) if job.test else None
        train(data, job.out_dir, job.config, test_data=test, progress=False)
        return job.run, None
    except OSError as exc:
        return job.run, exc
    except Exception:
        return job.run, traceback.format_exc()


def run_zoo(
    datasets: Sequence[str],
    seeds: Sequence[int],
    objectives: Sequence[str | tuple[str, dict[str, Any]]] = ("beta_vae",),
    *,
    out_dir: str | Path,
    size: int = 32,
    config: TrainConfig | None = None,
    workers: int = 2,
    loader: Loader | None = None,
    test: bool = True,
    progress: bool = True,
) -> list[ZooResult]:
    """Train every run of the grid that is not complete yet; return all runs' checkpoints.

    Parameters
    ----------
    datasets : sequence of str
        Dataset names of the grid (see :func:`zoo_grid`).
    seeds : sequence of int
        Seeds of the grid.
    objectives : sequence of str or (str, dict), default ("beta_vae",)
        Objectives of the grid.
    out_dir : str or pathlib.Path
        Root directory of the zoo.
    size : {32, 64}, default 32
        Image side.
    config : TrainConfig, optional
        Shared settings (steps, batch size, lr, ...); each run's ``seed``, ``objective`` and
        ``objective_params`` come from the grid. ``threads`` stays per process (default 1).
    workers : int, default 2
        Worker processes; ``0`` or ``1`` trains in this process, one run after another.
    loader : callable, optional
        ``loader(name, split, size) -> ImageDataset``; default :class:`DatasetLoader`.
    test : bool, default True
        Evaluate the test loss on the test split during training.
    progress : bool, default True
        Show one progress bar over runs.

    Returns
    -------
    list of ZooResult
        In grid order, skipped (already complete) runs included.

    Raises
    ------
    ZooError
        After all other runs finished, when some runs failed; lists each failure.
    OSError
        After all other runs finished, when a run could not read or write its files (a full
        disk, a read-only directory, a missing dataset).

    References
    ----------
    Bonheme & Grześ (2023), *How good are variational autoencoders at transfer learning?*,
    arXiv:2304.10767 (the zoo of the study: datasets x seeds x objectives).

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.train import TrainConfig
    >>> from vae_zoo.zoo import DatasetLoader, run_zoo
    >>> config = TrainConfig(steps=2, batch_size=8, log_every=1, checkpoint_every=1)
    >>> results = run_zoo(["dsprites"], [0, 1], out_dir=tempfile.mkdtemp(), config=config,
    ...                   workers=0, loader=DatasetLoader(max_examples=64, max_test_examples=16),
    ...                   progress=False)
    >>> [(r.run.seed, r.skipped) for r in results]
    [(0, False), (1, False)]
    """
    jobs = _zoo_jobs(datasets, seeds, objectives, out_dir, size, config, loader, test)
    todo = [job for job in jobs if not is_complete(job.out_dir, job.config.steps)]
    failures = _run_jobs(todo, len(jobs), workers, progress)
    _raise_failures(failures, len(todo))
    pending = {job.run for job in todo}
    return [
        ZooResult(job.run, job.out_dir, job.out_dir / "checkpoint.pt", job.run not in pending)
        for job in jobs
    ]


def _zoo_jobs(
    datasets: Sequence[str],
    seeds: Sequence[int],
    objectives: Sequence[str | tuple[str, dict[str, Any]]],
    out_dir: str | Path,
    size: int,
    config: TrainConfig | None,
    loader: Loader | None,
    test: bool,
) -> list[_Job]:
    """One job per run of the grid, in grid order: its directory and its own settings."""
    base = config or TrainConfig()
    loader = loader or DatasetLoader()
    jobs: list[_Job] = []
    for run in zoo_grid(datasets, seeds, objectives):
        cfg = dataclasses.replace(
            base, seed=run.seed, objective=run.objective, objective_params=dict(run.params)
        )
        jobs.append(_Job(run, run.run_dir(out_dir, size), cfg, loader, size, test))
    return jobs


def _run_jobs(
    todo: list[_Job], total: int, workers: int, progress: bool
) -> list[tuple[ZooRun, str | OSError]]:
    """Train the ``todo`` jobs under one progress bar over all ``total`` runs; return the
    failures."""
    failures: list[tuple[ZooRun, str | OSError]] = []
    bar = tqdm(total=total, initial=total - len(todo), desc="zoo", unit="run", disable=not progress)
    with closing(_outcomes(todo, workers)) as outcomes:  # an error here also stops the pool
        for run, error in outcomes:
            if error:
                failures.append((run, error))
            bar.update(1)
    bar.close()
    return failures


def _outcomes(todo: list[_Job], workers: int) -> Iterator[tuple[ZooRun, str | OSError | None]]:
    """Train the jobs, one after another here (``workers <= 1``) or in ``spawn`` worker
    processes; yield each job's outcome (see ``_train_job``) as it finishes."""
    if workers <= 1:
        for job in todo:
            yield _train_job(job)
    elif todo:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
            futures = [pool.submit(_train_job, job) for job in todo]
            for future in as_completed(futures):
                yield future.result()


def _raise_failures(failures: list[tuple[ZooRun, str | OSError]], attempted: int) -> None:
    """Raise the first file-system error as it is, or one :class:`ZooError` listing every
    failure of the ``attempted`` runs; nothing when none failed."""
    for _, error in failures:
        if isinstance(error, OSError):
            raise error  # a full disk or unwritable directory is one error, not one per run
    if failures:
        lines = [f"- {r.dataset} seed {r.seed} {r.tag}:\n{err}" for r, err in failures]
        raise ZooError(f"{len(failures)} of {attempted} zoo runs failed:\n" + "\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vae_zoo.zoo`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m vae_zoo.zoo",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument("--datasets", nargs="+", required=True, help="datasets of the grid")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds of the grid")
    p.add_argument("--out", type=Path, required=True, help="root directory of the zoo")
    add_schedule_arguments(p)
    p.add_argument(
        "--workers", type=int, default=2, help="training processes, one torch thread each"
    )
    p.add_argument(
        "--max-examples", type=int, default=None, help="cap on each training set (default: all)"
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="dataset cache directory (default: $VAE_ZOO_DATA or ~/.cache/vae_zoo)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m vae_zoo.zoo``: train a grid of models from the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for an error, which is printed as one line.

    Examples
    --------
    >>> from vae_zoo.zoo import main
    >>> main(["--datasets", "dsprites", "--seeds", "0", "--steps", "1", "--out", "zoo"])
    ... # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
    )
    try:
        results = run_zoo(
            args.datasets,
            args.seeds,
            [(args.objective, dict(args.param))],
            out_dir=args.out,
            size=args.size,
            config=config,
            workers=args.workers,
            loader=DatasetLoader(args.data_dir, args.max_examples),
        )
    except (ValueError, ZooError, DirectoryLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing dataset, a full disk, a read-only --out
        print(f"error: {describe_os_error(exc, '--out')}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            [
                {
                    "dataset": r.run.dataset,
                    "seed": r.run.seed,
                    "objective": r.run.tag,
                    "checkpoint": str(r.checkpoint),
                    "skipped": r.skipped,
                }
                for r in results
            ],
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
