"""Memory checked before it is spent: the machine's budget, and the refusal that names the bytes.

An estimator whose state grows with the layer widths (the exact accumulators: O(p²) per layer) or
with the batch (the minibatch estimator: O(m²) per layer) asks :func:`check_budget` before it
allocates. The default budget is a fraction (:data:`BUDGET_FRACTION`) of the memory available
now: on a CUDA device its free memory (``torch.cuda.mem_get_info``), elsewhere the host's
``MemAvailable`` (Linux ``/proc/meminfo``, or ``sysconf`` where that file is absent). This module
imports torch only when asked about a CUDA device.
"""

from __future__ import annotations

import os
from typing import Any

# The share of the available memory that an estimator may plan to use by default: the rest is
# left to the models, their activations and the rest of the machine.
BUDGET_FRACTION = 0.5

AUTO = "auto"


def available_bytes(device: Any = None) -> int:
    """The memory available now on ``device`` (a CUDA device) or on the host (anything else).

    Parameters
    ----------
    device : str, torch.device or None
        ``"cuda"``, ``"cuda:1"`` or a CUDA ``torch.device``: that device's free memory; anything
        else (``None``, ``"cpu"``): the host's available memory.

    Returns
    -------
    int
        Bytes.
    """
    if device is not None and str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def resolve_budget(budget: Any, device: Any = None) -> int | None:
    """The budget in bytes: ``"auto"`` is :data:`BUDGET_FRACTION` of :func:`available_bytes`.

    ``None`` means no limit (returned as None); a positive int is returned as it is.
    """
    if budget is None:
        return None
    if isinstance(budget, str):
        if budget != AUTO:
            raise ValueError(
                f"memory_budget_bytes must be 'auto', None (no limit) or a positive int; got "
                f"{budget!r}"
            )
        return int(BUDGET_FRACTION * available_bytes(device))
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ValueError(
            "memory_budget_bytes must be 'auto' (a share of the memory available now), None "
            f"(no limit) or a positive int number of bytes; got {budget!r}"
        )
    return budget


def format_bytes(n: int) -> str:
    """``n`` bytes written for a person: ``"12,884,901,888 bytes (12.00 GiB)"``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.2f} {unit})"
    return f"{n:,} bytes"


def check_budget(need: int, budget: int | None, what: str, advice: str) -> None:
    """Raise ``MemoryError`` when ``need`` bytes exceed ``budget`` (None: no limit).

    The message names the bytes needed, the budget, what needs them and what to do instead.
    """
    if budget is None or need <= budget:
        return
    raise MemoryError(
        f"{what} needs about {format_bytes(need)}, over the memory budget of "
        f"{format_bytes(budget)}. {advice} (memory_budget_bytes=None lifts the check; an int "
        "sets another budget)."
    )
