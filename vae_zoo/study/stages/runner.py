"""The one routine that runs a stage: its manifest, process pool and progress display.

A :class:`Stage` only says what it does: the jobs it plans, which of them an earlier invocation
finished, the function each job runs, and the files a finished job leaves. :func:`run_stage`
does the bookkeeping every stage shares: it skips the finished jobs, announces the stage, runs
the others (in ``workers`` single-thread processes, or in this process), records the checksum
of every file a job leaves in the study's manifest, and shows the progress: a tqdm bar in a
terminal, and in a log that is not one (stdout redirected to a file, a batch job) one plain,
flushed line per finished job instead of a bar's carriage-return updates, e.g.
``[3/5] transfer 17/217 done (mnist-to-digits/freeze2, 41 s)``.
"""

from __future__ import annotations

import functools
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ... import storage

__all__ = ["LINE_INTERVAL", "Stage", "is_terminal", "run_stage"]

Verified = Callable[[Path], bool]

#: In a log that is not a terminal, a finished job gets its own line unless the last line is
#: younger than this many seconds (the stage's last job always gets one): slow jobs (training,
#: CKA) are each reported, a burst of quick ones (probes) is summarised by its latest line.
LINE_INTERVAL = 10.0


class Stage:
    """One stage of the study: the jobs it plans and runs.

    Subclasses set :attr:`name` and define :meth:`plan`, :meth:`is_done`, :meth:`announce` and
    :meth:`worker`; :meth:`resume`, :meth:`collect`, :meth:`close` and :meth:`describe` have
    defaults.
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

    def outputs(self, job: Any) -> list[Path]:
        """The files a finished ``job`` leaves whose damage means its run must start over:
        one that was recorded in the manifest and no longer has its checksum (see
        :func:`run_stage`). By default none."""
        return []

    def restart(self, job: Any) -> None:
        """Remove what ``job`` left, so that it runs again from the start (called for a job
        whose :meth:`outputs` are damaged)."""

    def describe(self, job: Any) -> str:
        """A job's short name in a progress line: the last two parts of its output path
        (``out_dir`` or ``out``, suffix dropped: ``mnist-to-digits/freeze2``, ``cka/mnist``),
        the items of a tuple job joined by spaces, or ``str(job)``."""
        out = getattr(job, "out_dir", None) or getattr(job, "out", None)
        if out is not None:
            return "/".join(Path(str(out)).with_suffix("").parts[-2:])
        if isinstance(job, tuple):
            return " ".join(str(item) for item in job)
        return str(job)


def is_terminal(stream: Any = None) -> bool:
    """Whether progress goes to a person watching: ``stream`` (default ``sys.stderr``, where
    tqdm draws) is a TTY, or the code runs in a Jupyter kernel (tqdm's widget)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def run_stage(
    stage: Stage,
    *,
    manifest: storage.Manifest,
    workers: int,
    progress: bool,
    log: Callable[[str], None],
    terminal: bool | None = None,
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
        Show the progress (nothing at all when False).
    log : callable
        Where the stage's message, and the progress lines outside a terminal, go.
    terminal : bool, optional
        A tqdm bar (True) or one line per finished job through ``log`` (False); by default
        :func:`is_terminal`.
    """
    stage.resume(manifest.verified)
    jobs = stage.plan()
    todo = [job for job in jobs if not stage.is_done(job, manifest.verified)]
    message = stage.announce(jobs, todo)
    log(message)
    _flush()
    terminal = is_terminal() if terminal is None else terminal
    damaged = _restart_damaged(stage, todo, manifest, log)
    display = _Progress(stage, message, len(jobs), len(jobs) - len(todo), progress, terminal, log)
    for job, result, seconds in _results(stage.worker(), todo, 1 if stage.in_process else workers):
        collected = stage.collect(result)
        _check_retrained_weights(damaged.get(id(job), {}))
        for path in collected:
            manifest.record(path)
        display.update(stage.describe(job), seconds)
    for path in stage.close(todo):
        manifest.record(path)
    display.close()


def _restart_damaged(
    stage: Stage, todo: Sequence[Any], manifest: storage.Manifest, log: Callable[[str], None]
) -> dict[int, dict[Path, str]]:
    """Start over every job of ``todo`` whose outputs were recorded and have changed since
    (a truncated or overwritten checkpoint, a flipped bit); return, per job (by ``id``), the
    checksums that were recorded for its damaged files."""
    damaged: dict[int, dict[Path, str]] = {}
    for job in todo:
        bad = {p: manifest.recorded(p) for p in stage.outputs(job) if manifest.damaged(p)}
        if bad:
            names = ", ".join(p.name for p in bad)
            log(
                f"[{stage.name}] {stage.describe(job)}: {names} changed since it was recorded "
                "(damaged); the run starts over"
            )
            stage.restart(job)
            damaged[id(job)] = {p: digest for p, digest in bad.items() if digest is not None}
    return damaged


def _check_retrained_weights(recorded: dict[Path, str]) -> None:
    """After a damaged run has been trained again: its weights must be the ones recorded
    (training is seeded), or what later stages computed from the old weights no longer
    matches them."""
    for path, digest in recorded.items():
        if path.suffix == ".pt" and storage.sha256_file(path) != digest:
            raise ValueError(
                f"{path} was damaged and trained again, but the new weights differ from the "
                "recorded ones, so outputs computed from the old weights (CKA, transfers, "
                "probes) may not match them; run the study in a fresh --out directory"
            )


def _flush() -> None:
    """Flush stdout, where ``print`` (the default log) writes: a log file sees each line when
    it is written, not when a block buffer fills."""
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):  # a closed or replaced stream
        pass


class _Progress:
    """A tqdm bar in a terminal; elsewhere one flushed line per finished job through ``log``
    (at most one per :data:`LINE_INTERVAL` seconds, the stage's last job always)."""

    def __init__(
        self,
        stage: Stage,
        message: str,
        total: int,
        done: int,
        enabled: bool,
        terminal: bool,
        log: Callable[[str], None],
    ) -> None:
        step = re.match(r"\s*(\[\d+/\d+\])", message)
        self.prefix = f"{step.group(1)} {stage.name}" if step else stage.name
        self.total, self.done = total, done
        self.lines = enabled and not terminal
        self.log = log
        self.last_line = -float("inf")
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=stage.name,
            unit=stage.unit,
            disable=not (enabled and terminal),
        )

    def update(self, job: str, seconds: float) -> None:
        """One more job finished: ``job`` (its short name) after ``seconds`` of work."""
        self.done += 1
        self.bar.update(1)
        now = time.monotonic()
        if self.lines and (self.done >= self.total or now - self.last_line >= LINE_INTERVAL):
            self.log(f"{self.prefix} {self.done}/{self.total} done ({job}, {_seconds(seconds)})")
            _flush()
            self.last_line = now

    def close(self) -> None:
        self.bar.close()


def _seconds(seconds: float) -> str:
    """``41 s``, ``0.4 s``, ``12 min 5 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _timed(fn: Callable[[Any], Any], job: Any) -> tuple[Any, float]:
    """``fn(job)`` and the seconds it took (module-level: it is sent to worker processes)."""
    start = time.perf_counter()
    result = fn(job)
    return result, time.perf_counter() - start


def _results(
    fn: Callable[[Any], Any], todo: list[Any], workers: int
) -> Iterator[tuple[Any, Any, float]]:
    """``(job, fn(job), seconds)`` of every job: in order in this process, or as they finish
    in a pool (the seconds are the job's own, measured in the process that ran it)."""
    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            yield (job, *_timed(fn, job))
        return
    context = multiprocessing.get_context("spawn")
    timed = functools.partial(_timed, fn)
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures = {pool.submit(timed, job): job for job in todo}
        for future in as_completed(futures):
            yield (futures[future], *future.result())
