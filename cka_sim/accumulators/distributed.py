r"""Reduce the streaming accumulators across a ``torch.distributed`` process group.

Every accumulator's ``all_reduce(group=None)`` calls into this module; call it on every process
of the group (it is a collective). This module knows collectives only, not accumulators: the
exact reduction of centred moments lives with them (:func:`all_reduce_moments`). Any backend works: NCCL (statistics on the current CUDA
device), gloo or MPI (CPU). NumPy-backed accumulators are copied to a tensor for the
communication and back.

Exact accumulators (:class:`~cka_sim.StreamingCKA`, :class:`~cka_sim.StreamingCKAMatrix`) hold
centred sums about their own means, which cannot simply be added. The reduction therefore

1. gathers every process's count and means (``all_gather``, O(p) per process),
2. forms the global mean :math:`\mu = \sum_k n_k\mu_k / N` (identically on every process),
3. moves each process's sums to :math:`\mu` with the exact shift formulas
   (:math:`S + n_k d_k d_k^\top` and the higher-order terms of the debiased estimator, see
   :mod:`cka_sim.accumulators.streaming`): this is the many-set form of the Chan–Golub–LeVeque update,
4. adds them with one ``all_reduce(SUM)`` of a flat float64 buffer.

Memory is one copy of the state; the result equals one process over the union of the data (to
rounding). :class:`~cka_sim.MinibatchCKA`'s state is plain sums, reduced with step 4 alone.
A process that saw no data takes part with an empty (zero) state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._core.backend import Array, is_torch
from .._core.moments import Moments

_MISSING = 'all_reduce needs torch; install the torch extra: pip install "cka-sim[torch]"'


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError as err:
        raise ModuleNotFoundError(_MISSING, name="torch") from err
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "all_reduce needs an initialised torch.distributed process group; call "
            "torch.distributed.init_process_group(...) first (e.g. under torchrun)"
        )
    return dist


def comm_device(group: Any, like: Any = None) -> Any:
    """The device collectives on ``group`` use: the tensor's own device, CUDA for NCCL, else CPU."""
    dist = _dist()
    import torch

    backend = str(dist.get_backend(group)).lower()
    if like is not None and is_torch(like):
        if like.device.type == "cpu" and "nccl" in backend:
            return torch.device("cuda", torch.cuda.current_device())
        return like.device
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_objects(obj: Any, group: Any) -> list[Any]:
    """``all_gather_object``: every process's ``obj``, in rank order."""
    dist = _dist()
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, obj, group=group)
    return out


def _agree(values: list[Any], what: str) -> Any:
    present = [(rank, v) for rank, v in enumerate(values) if v is not None]
    if not present:
        return None
    first_rank, first = present[0]
    for rank, v in present[1:]:
        if v != first:
            raise ValueError(
                f"all_reduce: process {rank} has {what} {v!r} but process {first_rank} has {first!r}; "
                "every process must accumulate the same layers with the same settings"
            )
    return first


def agree(local: Any, group: Any, what: str) -> Any:
    """The value every process that has one agrees on (``None`` where no process has one)."""
    return _agree(gather_objects(local, group), what)


def to_comm(a: Array, device: Any) -> Any:
    import torch

    if is_torch(a):
        return a.to(device=device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)


def from_comm(t: Any, like: Any) -> Array:
    """``t`` back in the library and on the device of ``like``."""
    if like is not None and is_torch(like):
        return t.to(like.device)
    return t.detach().cpu().numpy()


def all_reduce_sum(arrays: list[Array], group: Any, like: Any = None) -> list[Array]:
    """Sum equally shaped arrays across ``group`` with one all_reduce of a flat float64 buffer."""
    import torch

    dist = _dist()
    device = comm_device(group, like)
    flat = torch.cat([to_comm(a, device).reshape(-1) for a in arrays])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    out, start = [], 0
    for a in arrays:
        size = int(np.prod(tuple(a.shape)))
        out.append(from_comm(flat[start : start + size].reshape(tuple(a.shape)), like))
        start += size
    return out


def gather_counts_and_means(
    n: int, means: list[Array], group: Any, like: Any
) -> tuple[list[int], list[list[Array]]]:
    """Every process's count and means (one ``all_gather``), in rank order.

    Returns the counts and, per unit, the list of every process's mean, in ``like``'s library.
    """
    import torch

    dist = _dist()
    device = comm_device(group, like)
    local = torch.cat(
        [torch.tensor([float(n)], dtype=torch.float64, device=device)]
        + [to_comm(mu, device) for mu in means]
    )
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    counts = [round(float(g[0])) for g in gathered]
    per_unit, start = [], 1
    for mu in means:
        width = int(mu.shape[0])
        per_unit.append([from_comm(g[start : start + width], like) for g in gathered])
        start += width
    return counts, per_unit


def torch_namespace() -> Any:
    """The array-API namespace of torch (for a process that holds no state yet)."""
    from array_api_compat import torch as xp

    return xp


def all_reduce_moments(m: Moments | None, signature: dict[str, Any], group: Any) -> Any:
    """Exact reduction of a state across a ``torch.distributed`` group (``None``: no data here).

    Gathers every process's count and means, forms the global mean, moves this process's sums
    there (:meth:`Moments.recentred`) and adds them with one ``all_reduce`` of sums.
    """
    if m is None:
        xp = torch_namespace()
        dev = comm_device(group)
        m = Moments.zeros(signature["widths"], signature["pairs"], signature["debiased"], xp, dev)
        m.eps = list(signature["eps"])
    like = m.mean[0]
    counts, means = gather_counts_and_means(m.n, m.mean, group, like)
    total = sum(counts)
    new_mean = [
        sum((mu * (c / total) for mu, c in zip(column, counts, strict=True) if c), m.mean[i] * 0.0)
        for i, column in enumerate(means)
    ]
    shifted = m.recentred(new_mean, m.namespace())
    fields = shifted.sum_fields()
    reduced = all_reduce_sum([a for _, values in fields for a in values], group, like)
    k = 0
    for name, values in fields:
        setattr(shifted, name, reduced[k : k + len(values)])
        k += len(values)
    shifted.n = total
    return shifted
