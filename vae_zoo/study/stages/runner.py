"""The one routine that runs a stage: its manifest, process pool and progress display.

A :class:`Stage` only says what it does: the jobs it plans, which of them an earlier invocation
finished, the function each job runs, and the files a finished job leaves. :func:`run_stage`
does the bookkeeping every stage shares: it skips the finished jobs, announces the stage, runs
the others (in ``workers`` single-thread processes, or in this process), records the checksum
of every file a job leaves in the study's manifest, and shows the progress.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ... import storage

__all__ = ["Stage", "run_stage"]

Verified = Callable[[Path], bool]


class Stage:
    """One stage of the study: the jobs it plans and runs.

    Subclasses set :attr:`name` and define :meth:`plan`, :meth:`is_done`, :meth:`announce` and
    :meth:`worker`; :meth:`resume`, :meth:`collect` and :meth:`close` have defaults.
    """

    #: The stage's name in the progress display.
    name = "stage"
    #: What one job is called in the progress display.
    unit = "run"
    #: Run every job in this process (jobs that hold live models), whatever the worker count.
    in_process = False

    def resume(self, verified: Verified) -> None:
        """Read back what earlier invocations finished (``verified(path)``: the file checks)."""

    def plan(self) -> list[Any]:
        """Every job of the stage, in the order they run."""
        raise NotImplementedError

    def is_done(self, job: Any, verified: Verified) -> bool:
        """Whether an earlier invocation finished ``job``."""
        raise NotImplementedError

    def announce(self, jobs: Sequence[Any], todo: Sequence[Any]) -> str:
        """The stage's message: what it does and how much is left (``todo`` of ``jobs``)."""
        raise NotImplementedError

    def worker(self) -> Callable[[Any], Any]:
        """The function that runs one job: module-level (it is sent to worker processes)
        unless :attr:`in_process`."""
        raise NotImplementedError

    def collect(self, result: Any) -> list[Path]:
        """Take a finished job's result (in this process); return the files to record."""
        return [Path(result)]

    def close(self, todo: Sequence[Any]) -> list[Path]:
        """After the last job: write what is left; return the files to record."""
        return []


def run_stage(
    stage: Stage,
    *,
    manifest: storage.Manifest,
    workers: int,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Run the jobs of ``stage`` that are not finished, recording their outputs.

    Parameters
    ----------
    stage : Stage
    manifest : vae_zoo.storage.Manifest
        The study's checksums: a job counts as finished only when its output verifies, and
        every file a job leaves is recorded as soon as it is written.
    workers : int
        Worker processes (``spawn``, one thread each); one, or a single job to run, runs in
        this process.
    progress : bool
        Show a progress bar.
    log : callable
        Where the stage's message goes.
    """
    stage.resume(manifest.verified)
    jobs = stage.plan()
    todo = [job for job in jobs if not stage.is_done(job, manifest.verified)]
    log(stage.announce(jobs, todo))
    bar = tqdm(
        total=len(jobs),
        initial=len(jobs) - len(todo),
        desc=stage.name,
        unit=stage.unit,
        disable=not progress,
    )
    for result in _results(stage.worker(), todo, 1 if stage.in_process else workers):
        for path in stage.collect(result):
            manifest.record(path)
        bar.update(1)
    for path in stage.close(todo):
        manifest.record(path)
    bar.close()


def _results(fn: Callable[[Any], Any], todo: list[Any], workers: int) -> Iterator[Any]:
    """``fn(job)`` of every job: in order in this process, or as they finish in a pool."""
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            yield fn(job)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        for future in as_completed([pool.submit(fn, job) for job in todo]):
            yield future.result()
