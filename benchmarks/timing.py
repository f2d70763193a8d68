"""The suite's one timing and memory helper: interleaved best-of timing, peak memory, machine name.

Every figure of the suite is a ratio of two times measured here side by side: the contenders of a
case run alternately, round after round, and each keeps its best (least disturbed) round, so that
load from other processes hits them alike.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def interleaved_best(
    fns: Sequence[Callable[[], Any]],
    *,
    repeats: int,
    sync: Callable[[], None],
    budget_s: float = float("inf"),
    clock: Callable[[], float] = time.perf_counter,
    settle_s: float = 0.0,
) -> list[float]:
    """Best wall time of each function over up to ``repeats`` interleaved rounds.

    Each function is called once first to warm up (kernels, caches, allocator); its time sets how
    many rounds fit in ``budget_s`` (at least one round always runs).

    Parameters
    ----------
    fns : sequence of callables
        The contenders; each call must do the whole measured work.
    repeats : int
        Most rounds to run.
    sync : callable
        Called after each function, inside its timed region (see :func:`synchronizer`).
    budget_s : float
        Rough budget, in ``clock`` seconds, for all rounds together.
    clock : callable
        The clock: ``time.perf_counter`` (wall time, the default) or ``time.process_time`` (CPU
        time of the process, all threads: on a machine shared with other jobs it counts the work
        done rather than the time spent waiting for a core; use it with one thread).
    settle_s : float
        Pause before each call, outside the timed region. On the CPU, NumPy's OpenBLAS threads
        keep spinning for a while after a product and take cores from the next contender's
        threads (torch's, say): on 2 cores a torch update right after NumPy products took 17 ms
        against 10 ms after a 0.3 s pause. The pause lets every contender start alike.

    Returns
    -------
    list of float
        The best time of each function, in seconds, in the order given.
    """
    warm = []
    for fn in fns:
        time.sleep(settle_s)
        start = clock()
        fn()
        sync()
        warm.append(clock() - start)
    fit = budget_s / max(sum(warm), 1e-9)
    rounds = max(1, min(repeats, int(fit) if fit < repeats else repeats))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            time.sleep(settle_s)
            start = clock()
            fn()
            sync()
            best[i] = min(best[i], clock() - start)
    return best


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    """Set the kernel's peak-RSS counter to the current RSS, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory above the level on entry, of the code run inside the ``with`` block.

    On the CPU: the process's peak resident set (``VmHWM``, reset through
    ``/proc/self/clear_refs``) minus the resident set on entry; ``bytes`` is None where the
    counter cannot be reset. On CUDA: ``torch.cuda.max_memory_allocated`` above the allocation on
    entry.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            self._ok = True
        else:
            self._base = _rss_bytes()
            self._ok = _reset_hwm()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._ok:
            return
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.bytes = max(0, torch.cuda.max_memory_allocated() - self._base)
        else:
            self.bytes = max(0, _hwm_bytes() - self._base)


@dataclass(frozen=True)
class Machine:
    """What ran the suite: a short name for file names and a line for the table."""

    slug: str
    description: str
    info: dict[str, Any]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str, threads: int) -> Machine:
    """Describe the machine and device the suite runs on."""
    import numpy as np
    import torch

    cpu = _cpu_model()
    cores = os.cpu_count() or 1
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": cores,
        "torch_threads": threads,
        "device": device,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    name = f"{cpu}, {cores} cores, torch {threads} thread(s)"
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(torch.device(device))
        info["gpu"] = gpu
        name = f"{gpu} (host: {name})"
        base = gpu
    else:
        base = f"{cpu}-{cores}c"
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower().replace("(r)", "").replace("(tm)", ""))
    return Machine(slug=slug.strip("-")[:60], description=name, info=info)
