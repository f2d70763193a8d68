"""The cases of the suite. Each returns table rows (dicts); every ratio is of two times from one run.

Row keys: ``case``, ``params`` (dict), ``contender``, ``seconds``, ``ratio`` with ``ratio_of``
(what over what: for ``cka_sim`` the library's own floor), ``ratio2`` with ``ratio2_of`` (for
``cka_sim`` the machine's fastest floor, see :mod:`benchmarks.floors`), ``error`` (absolute
difference from the float64 truth or from ``cka_sim``), ``peak_bytes`` (peak memory above the
level before the call), ``value``, ``note``.

Every ``cka_sim`` contender runs once per entry of ``Context.libs``: the current package and, with
``--baseline``, an older one (:mod:`benchmarks.baseline`), timed in the same interleaved rounds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from . import peers as peer_lib
from .data import activations, debiased_cka_float64
from .floors import library_products, sum_floors
from .timing import PeakMemory, interleaved_best, synchronizer

Row = dict[str, Any]


@dataclass
class Context:
    """What every case needs: device, repeats, time budget per measurement, peers, a logger, and
    the ``cka_sim`` packages to time (label -> package; default: the current one)."""

    device: str
    repeats: int
    budget_s: float
    peers: dict[str, peer_lib.Peer]
    log: Callable[[str], None] = print
    libs: dict[str, ModuleType] = field(default_factory=dict)
    clock: Callable[[], float] = time.perf_counter
    settle_s: float = 0.0
    sync: Callable[[], None] = field(init=False)

    def __post_init__(self) -> None:
        self.sync = synchronizer(self.device)
        if not self.libs:
            import cka_sim

            self.libs = {"cka_sim": cka_sim}

    def time(self, fns: list[Callable[[], Any]]) -> list[float]:
        return interleaved_best(
            fns,
            repeats=self.repeats,
            sync=self.sync,
            budget_s=self.budget_s,
            clock=self.clock,
            settle_s=self.settle_s,
        )

    def peak(self, fn: Callable[[], Any]) -> int | None:
        gc.collect()
        with PeakMemory(self.device) as peak:
            fn()
            self.sync()
        return peak.bytes


def row(case: str, params: dict[str, Any], contender: str, **values: Any) -> Row:
    out: Row = {
        "case": case,
        "params": params,
        "contender": contender,
        "seconds": None,
        "ratio": None,
        "ratio_of": "",
        "ratio2": None,
        "ratio2_of": "",
        "error": None,
        "peak_bytes": None,
        "value": None,
        "note": "",
    }
    out.update(values)
    return out


def gram_bytes(n: int, itemsize: int) -> int:
    return n * n * itemsize


def _time_with_products(
    ctx: Context,
    products: dict[str, dict[str, Callable[[], Any]]],
    fns: dict[str, Callable[[], Any]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Time every product of every library and every contender in the same interleaved rounds.

    Returns (floors: library -> seconds and "fastest" -> seconds, contender -> seconds).
    """
    keys = [(lib, prod) for lib, prods in products.items() for prod in prods]
    calls = [products[lib][prod] for lib, prod in keys] + list(fns.values())
    times = ctx.time(calls)
    floors = sum_floors(dict(zip(keys, times[: len(keys)], strict=True)))
    return floors, dict(zip(fns, times[len(keys) :], strict=True))


def _floor_rows(
    case: str, params: dict[str, Any], floors: dict[str, float], only: tuple[str, ...] = ()
) -> list[Row]:
    """One row per floor (``only``: just those libraries), each over the fastest floor."""
    rows = []
    for lib, seconds in floors.items():
        if only and lib not in only:
            continue
        name = "fastest floor" if lib == "fastest" else f"GEMM floor ({lib})"
        rows.append(
            row(
                case,
                params,
                name,
                seconds=seconds,
                ratio=1.0 if lib != "fastest" else None,
                ratio_of="/floor" if lib != "fastest" else "",
                ratio2=seconds / floors["fastest"],
                ratio2_of="/fastest",
                note="each product in the faster library" if lib == "fastest" else "",
            )
        )
    return rows


def linear(ctx: Context, sizes: list[tuple[int, int]], peer_max_n: int) -> list[Row]:
    """``linear_cka`` (biased and debiased; torch tensors on the device, NumPy on the CPU) against
    the library's own three products and the machine's fastest (:mod:`benchmarks.floors`).

    Peers compute the debiased estimator (pytorch-cka has no other), so their ratio is to
    ``cka_sim`` debiased. They form n x n Grams: beyond ``peer_max_n`` they are skipped with the
    memory they would need.
    """

    rows: list[Row] = []
    for n, p in sizes:
        ctx.log(f"  linear n={n} p={p}")
        rows += _linear_one(ctx, n, p, peer_max_n)
        gc.collect()
    return rows


def _linear_one(ctx: Context, n: int, p: int, peer_max_n: int) -> list[Row]:
    params = {"n": n, "p": p}
    rows: list[Row] = []
    x, y = activations(n, p, device=ctx.device)
    products = library_products(x - x.mean(0), y - y.mean(0), ctx.device)
    inputs = {"torch": (x, y)}
    if ctx.device == "cpu":
        inputs["numpy"] = (x.numpy(), y.numpy())
    fns: dict[str, Callable[[], Any]] = {}
    library_of: dict[str, str] = {}
    for label, package in ctx.libs.items():
        for lib, (a, b) in inputs.items():
            suffix = "" if lib == "torch" else " numpy"
            for debiased in (False, True):
                name = label + suffix + (" debiased" if debiased else "")
                fns[name] = lambda a=a, b=b, f=package.linear_cka, d=debiased: float(
                    f(a, b, debiased=d)
                )
                library_of[name] = lib
    for name, peer in ctx.peers.items():
        if not peer.available:
            rows.append(row("linear", params, name, note=peer.missing))
        elif n > peer_max_n:
            need = 2 * gram_bytes(n, 8 if name == "ckatorch" else 4) / 2**30
            note = f"skipped: n x n Grams ({need:.1f} GiB), n > {peer_max_n}"
            rows.append(row("linear", params, name, note=note))
        else:
            fn = peer_lib.linear_debiased(name)
            fns[name] = lambda fn=fn: fn(x, y)
    floors, times = _time_with_products(ctx, products, fns)
    rows += _floor_rows("linear", params, floors)
    ours_db = times["cka_sim debiased"]
    for name, seconds in times.items():
        note = ""
        if name in library_of:
            floor = floors[library_of[name]]
            ratio, of = seconds / floor, "/floor"
            if library_of[name] == "torch":
                note = f"{100 * floor / seconds:.0f}% of the GEMM rate"
        else:
            ratio, of = seconds / ours_db, "/cka_sim db"
        rows.append(
            row(
                "linear",
                params,
                name,
                seconds=seconds,
                ratio=ratio,
                ratio_of=of,
                ratio2=seconds / floors["fastest"],
                ratio2_of="/fastest",
                peak_bytes=ctx.peak(fns[name]),
                note=note,
            )
        )
    return rows


def accuracy(ctx: Context, n: int, p: int, means: list[float]) -> list[Row]:
    """Debiased linear CKA of float32 inputs with feature means 0, 10, 100 vs the float64 truth."""
    rows: list[Row] = []
    for mean in means:
        params = {"n": n, "p": p, "feature mean": mean}
        x, y = activations(n, p, mean=mean, seed=1, device=ctx.device)
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
        truth = debiased_cka_float64(x_np, y_np)
        contenders: dict[str, Callable[[], float]] = {}
        for label, package in ctx.libs.items():
            f = package.linear_cka
            contenders[label] = lambda f=f, x=x, y=y: float(f(x, y, debiased=True))
            contenders[f"{label} numpy"] = lambda f=f, x=x_np, y=y_np: float(f(x, y, debiased=True))
        for name, peer in ctx.peers.items():
            if peer.available:
                fn = peer_lib.linear_debiased(name)
                contenders[name] = lambda fn=fn, x=x, y=y: fn(x, y)
            else:
                rows.append(row("accuracy", params, name, note=peer.missing))
        for name, fn in contenders.items():
            value = fn()
            rows.append(
                row(
                    "accuracy",
                    params,
                    name,
                    value=value,
                    error=abs(value - truth),
                    note=f"float64 truth {truth:.6f}",
                )
            )
    return rows


def rbf(ctx: Context, sizes: list[int], p: int, threshold: float) -> list[Row]:
    """Biased RBF ``kernel_cka`` vs ckatorch ``cka_base(kernel="rbf")`` (same median rule)."""
    from cka_sim import kernel_cka

    rows: list[Row] = []
    peer = ctx.peers["ckatorch"]
    for n in sizes:
        params = {"n": n, "p": p, "threshold": threshold}
        ctx.log(f"  rbf n={n}")
        x, y = activations(n, p, mean=1.0, seed=2, device=ctx.device)
        fns = {"cka_sim": lambda x=x, y=y: float(kernel_cka(x, y, threshold=threshold))}
        if peer.available:
            fn = peer_lib.rbf_biased("ckatorch", threshold)
            fns["ckatorch"] = lambda fn=fn, x=x, y=y: fn(x, y)
        else:
            rows.append(row("rbf", params, "ckatorch", note=peer.missing))
        times = dict(zip(fns, ctx.time(list(fns.values())), strict=True))
        ours_value = fns["cka_sim"]()
        for name, seconds in times.items():
            value = fns[name]() if name != "cka_sim" else ours_value
            rows.append(
                row(
                    "rbf",
                    params,
                    name,
                    seconds=seconds,
                    ratio=seconds / times["cka_sim"],
                    ratio_of="/cka_sim",
                    value=value,
                    error=abs(value - ours_value) if name != "cka_sim" else None,
                    peak_bytes=ctx.peak(fns[name]),
                    note=""
                    if name == "cka_sim"
                    else "error: |peer - cka_sim| (lower vs mean median)",
                )
            )
    return rows


#: Rows of one timed stream of the ``streaming`` case: a whole number of the accumulators' blocks
#: (4096 rows, :mod:`cka_sim.accumulators.rowbuffer`) for every batch size of the presets.
STREAM_ROWS = 16384


def _stream_of_updates(acc: Any, a: Any, b: Any, batches: int) -> Callable[[], Any]:
    """``batches`` updates, then whatever the accumulator still holds back is processed (what
    ``compute`` would do first), so that every round pays for all its rows."""
    flush = getattr(acc, "_flush", lambda: None)  # an older cka_sim (--baseline) has none

    def run() -> None:
        for _ in range(batches):
            acc.update(a, b)
        flush()

    return run


def streaming(ctx: Context, shapes: list[tuple[int, int, int]]) -> list[Row]:
    """``StreamingCKA.update`` per batch (steady state: merging into an existing state) against
    the three products of that batch, in its own library and in the machine's fastest.

    A round feeds a stream of ``STREAM_ROWS`` rows (at least one batch, at most 64 batches) and
    ends by processing any rows still waiting in the accumulator's block; its time divided by the
    batches is the time per batch.
    """
    rows: list[Row] = []
    for m, p1, p2 in shapes:
        batches = max(1, min(64, STREAM_ROWS // m))
        x, y = activations(m, max(p1, p2), seed=3, device=ctx.device)
        x, y = x[:, :p1].contiguous(), y[:, :p2].contiguous() - 20.0
        shape = {"m": m, "p1": p1, "p2": p2}
        # the floor: the products of the batch as it comes (centring it is the library's work)
        products = library_products(x, y, ctx.device)
        inputs = {"torch": (x, y)}
        if ctx.device == "cpu":
            inputs["numpy"] = (x.numpy(), y.numpy())
        fns: dict[tuple[str, str, bool], Callable[[], Any]] = {}
        for label, package in ctx.libs.items():
            for backend, (xb, yb) in inputs.items():
                for debiased in (False, True):
                    acc = package.StreamingCKA(debiased=debiased).update(xb, yb)
                    fns[(label, backend, debiased)] = _stream_of_updates(acc, xb, yb, batches)
        floors, streams = _time_with_products(ctx, products, fns)  # type: ignore[arg-type]
        times = {key: seconds / batches for key, seconds in streams.items()}
        for lib in inputs:
            rows += _floor_rows("streaming", {**shape, "backend": lib}, floors, only=(lib,))
        rows += _floor_rows("streaming", shape, floors, only=("fastest",))
        for (label, backend, debiased), seconds in times.items():
            params = {**shape, "debiased": debiased, "backend": backend}
            rows.append(
                row(
                    "streaming",
                    params,
                    f"{label} update" if label != "cka_sim" else "StreamingCKA.update",
                    seconds=seconds,
                    ratio=seconds / floors[backend],
                    ratio_of="/floor",
                    ratio2=seconds / floors["fastest"],
                    ratio2_of="/fastest",
                    note=f"per batch of a stream of {batches}",
                )
            )
    return rows


def streaming_memory(ctx: Context, totals: list[int], p: int, batch: int) -> list[Row]:
    """Peak memory of ``StreamingCKA`` (debiased) fed ``total`` examples in batches of ``batch``.

    Batches are generated inside the measured region one at a time (their own size, 2 batch p
    float32, is part of the peak); the state is 8 (3 p² + O(p)) bytes. No n x n array exists.
    """
    rows: list[Row] = []
    for total in totals:
        params = {"n": total, "p": p, "batch": batch}
        ctx.log(f"  streaming memory n={total} p={p}")
        seconds, peak, value = _stream(ctx, total, p, batch)
        state = 8 * 3 * p * p
        rows.append(
            row(
                "memory",
                params,
                "StreamingCKA debiased",
                seconds=seconds,
                peak_bytes=peak,
                value=value,
                ratio=None if peak is None else peak / state,
                ratio_of="/state",
                note=f"an n x n float32 Gram would be {gram_bytes(total, 4) / 2**30:.0f} GiB",
            )
        )
    return rows


def _stream(ctx: Context, total: int, p: int, batch: int) -> tuple[float, int | None, float]:
    """(seconds, peak bytes, CKA) of a debiased StreamingCKA fed ``total`` generated examples."""
    import torch

    from cka_sim import StreamingCKA

    gen = torch.Generator().manual_seed(4)
    mix = torch.randn(p, p, generator=gen) / float(np.sqrt(p))
    acc = StreamingCKA(debiased=True)
    value: list[float] = []

    def feed() -> None:
        for start in range(0, total, batch):
            rows = min(batch, total - start)
            xb = torch.randn(rows, p, generator=gen) + 10.0
            yb = torch.relu(xb @ mix) + torch.randn(rows, p, generator=gen)
            acc.update(xb.to(ctx.device), yb.to(ctx.device))
        value.append(float(acc.compute()))

    start = time.perf_counter()
    peak = ctx.peak(feed)
    return time.perf_counter() - start, peak, value[0]
