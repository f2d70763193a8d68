"""The cases of the suite. Each returns table rows (dicts); every ratio is of two times from one run.

Row keys: ``case``, ``params`` (dict), ``contender``, ``seconds``, ``ratio`` with ``ratio_of``
(what over what), ``error`` (absolute difference from the float64 truth or from ``cka_sim``),
``peak_bytes`` (peak memory above the level before the call), ``value``, ``note``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import peers as peer_lib
from .data import CNN_LAYERS, activations, build_cnn, build_loader, debiased_cka_float64
from .timing import PeakMemory, interleaved_best, synchronizer

Row = dict[str, Any]


@dataclass
class Context:
    """What every case needs: device, repeats, time budget per measurement, peers, a logger."""

    device: str
    repeats: int
    budget_s: float
    peers: dict[str, peer_lib.Peer]
    log: Callable[[str], None] = print
    sync: Callable[[], None] = field(init=False)

    def __post_init__(self) -> None:
        self.sync = synchronizer(self.device)

    def time(self, fns: list[Callable[[], Any]]) -> list[float]:
        return interleaved_best(fns, repeats=self.repeats, sync=self.sync, budget_s=self.budget_s)

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
        "error": None,
        "peak_bytes": None,
        "value": None,
        "note": "",
    }
    out.update(values)
    return out


def _floor(xc: Any, yc: Any) -> Callable[[], Any]:
    """The three products a feature-form linear CKA cannot avoid, on centred data."""
    return lambda: (xc.T @ xc, yc.T @ yc, yc.T @ xc)


def gram_bytes(n: int, itemsize: int) -> int:
    return n * n * itemsize


def linear(ctx: Context, sizes: list[tuple[int, int]], peer_max_n: int) -> list[Row]:
    """``linear_cka`` (biased and debiased, torch on the device; NumPy on the CPU) vs the floor.

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
    from cka_sim import linear_cka

    params = {"n": n, "p": p}
    rows: list[Row] = []
    x, y = activations(n, p, device=ctx.device)
    xc, yc = x - x.mean(0), y - y.mean(0)
    fns = {
        "GEMM floor (torch)": _floor(xc, yc),
        "cka_sim": lambda: float(linear_cka(x, y)),
        "cka_sim debiased": lambda: float(linear_cka(x, y, debiased=True)),
    }
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
    times = dict(zip(fns, ctx.time(list(fns.values())), strict=True))
    floor, ours_db = times["GEMM floor (torch)"], times["cka_sim debiased"]
    for name, seconds in times.items():
        note = ""
        if name.startswith(("cka_sim", "GEMM")):
            ratio, of = seconds / floor, "/floor"
            if name.startswith("cka_sim"):
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
                peak_bytes=ctx.peak(fns[name]),
                note=note,
            )
        )
    if ctx.device == "cpu":
        rows += _linear_numpy(ctx, x.numpy(), y.numpy(), params)
    return rows


def _linear_numpy(ctx: Context, x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> list[Row]:
    """NumPy input: ``linear_cka`` against NumPy's own three products."""
    from cka_sim import linear_cka

    xc, yc = x - x.mean(0), y - y.mean(0)
    fns = [_floor(xc, yc), lambda: linear_cka(x, y), lambda: linear_cka(x, y, debiased=True)]
    t_floor, t_ours, t_db = ctx.time(fns)
    rows = [row("linear", params, "GEMM floor (numpy)", seconds=t_floor, ratio=1.0)]
    for name, seconds, fn in (
        ("cka_sim numpy", t_ours, fns[1]),
        ("cka_sim numpy debiased", t_db, fns[2]),
    ):
        rows.append(
            row(
                "linear",
                params,
                name,
                seconds=seconds,
                ratio=seconds / t_floor,
                ratio_of="/floor",
                peak_bytes=ctx.peak(fn),
            )
        )
    return rows


def accuracy(ctx: Context, n: int, p: int, means: list[float]) -> list[Row]:
    """Debiased linear CKA of float32 inputs with feature means 0, 10, 100 vs the float64 truth."""
    from cka_sim import linear_cka

    rows: list[Row] = []
    for mean in means:
        params = {"n": n, "p": p, "feature mean": mean}
        x, y = activations(n, p, mean=mean, seed=1, device=ctx.device)
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
        truth = debiased_cka_float64(x_np, y_np)
        contenders: dict[str, Callable[[], float]] = {
            "cka_sim": lambda x=x, y=y: float(linear_cka(x, y, debiased=True)),
            "cka_sim numpy": lambda x=x_np, y=y_np: float(linear_cka(x, y, debiased=True)),
        }
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


def streaming(ctx: Context, shapes: list[tuple[int, int, int]]) -> list[Row]:
    """``StreamingCKA.update`` per batch vs the three products of that batch (steady state)."""
    from cka_sim import StreamingCKA

    rows: list[Row] = []
    backends = ["torch"] + (["numpy"] if ctx.device == "cpu" else [])
    for m, p1, p2 in shapes:
        x, y = activations(m, max(p1, p2), seed=3, device=ctx.device)
        x, y = x[:, :p1].contiguous(), y[:, :p2].contiguous() - 20.0
        for backend in backends:
            xb, yb = (x, y) if backend == "torch" else (x.numpy(), y.numpy())
            for debiased in (False, True):
                params = {"m": m, "p1": p1, "p2": p2, "debiased": debiased, "backend": backend}
                acc = StreamingCKA(debiased=debiased).update(xb, yb)  # merging into a state
                floor = _floor(xb, yb)
                t_floor, t_update = ctx.time(
                    [floor, lambda acc=acc, xb=xb, yb=yb: acc.update(xb, yb)]
                )
                rows.append(row("streaming", params, "GEMM floor", seconds=t_floor, ratio=1.0))
                rows.append(
                    row(
                        "streaming",
                        params,
                        "StreamingCKA.update",
                        seconds=t_update,
                        ratio=t_update / t_floor,
                        ratio_of="/floor",
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


def compare(ctx: Context, n: int, batch_size: int, rounds: int = 1) -> list[Row]:
    """``compare_models`` vs pytorch-cka ``compute_cka``: same models, loader, layers, estimator.

    Both compute the debiased minibatch CKA (HSIC₁ per batch, Nguyen et al.) of the 10 layers of
    one CNN against the 10 layers of another. "forward only" runs the two models over the loader;
    "forward + Gram products" adds one plain ``out @ out.T`` per layer and batch: the work both
    libraries share, which bounds any speed-up. After a warm-up of two batches the contenders
    run one after the other, ``rounds`` times, and each keeps its best time.
    """
    import torch

    from cka_sim.torch import compare_models

    params = {"n": n, "batch": batch_size, "layers": f"{len(CNN_LAYERS)}x{len(CNN_LAYERS)}"}
    model_a = build_cnn(0).to(ctx.device)
    model_b = build_cnn(1).to(ctx.device)
    loader = build_loader(n, batch_size)
    rows: list[Row] = []

    def forward_only() -> None:
        with torch.inference_mode():
            for x, _ in loader:
                x = x.to(ctx.device)
                model_a(x)
                model_b(x)

    def ours() -> np.ndarray:
        result = compare_models(
            model_a, model_b, loader, layers_a=CNN_LAYERS, layers_b=CNN_LAYERS, progress=False
        )
        return result.values

    def forward_and_grams() -> None:
        """The work both libraries must do: the forward passes and one m x m Gram per layer."""
        outputs: list[Any] = []
        hooks = [
            model.get_submodule(name).register_forward_hook(
                lambda module, args, out: outputs.append(out.reshape(out.shape[0], -1))
            )
            for model in (model_a, model_b)
            for name in CNN_LAYERS
        ]
        try:
            with torch.inference_mode():
                for x, _ in loader:
                    x = x.to(ctx.device)
                    model_a(x)
                    model_b(x)
                    for out in outputs:
                        out @ out.T
                    outputs.clear()
        finally:
            for hook in hooks:
                hook.remove()

    fns: dict[str, Callable[[], Any]] = {
        "forward only": forward_only,
        "forward + Gram products": forward_and_grams,
        "cka_sim": ours,
    }
    peer = ctx.peers["pytorch-cka"]
    if peer.available:
        fns["pytorch-cka"] = lambda: peer_lib.compare_models(
            "pytorch-cka", model_a, model_b, loader, CNN_LAYERS, ctx.device
        )
    else:
        rows.append(row("compare_models", params, "pytorch-cka", note=peer.missing))
    with torch.inference_mode():  # warm-up: kernels and allocator
        for i, (x, _) in enumerate(loader):
            model_a(x.to(ctx.device))
            model_b(x.to(ctx.device))
            if i == 1:
                break
    results: dict[str, Any] = {}
    times: dict[str, float] = dict.fromkeys(fns, float("inf"))
    peaks: dict[str, int | None] = {}
    for round_ in range(rounds):  # interleaved rounds; each contender keeps its best
        for name, fn in fns.items():
            ctx.log(f"  compare_models: {name} (round {round_ + 1} of {rounds})")
            gc.collect()
            with PeakMemory(ctx.device) as peak:
                start = time.perf_counter()
                results[name] = fn()
                ctx.sync()
                times[name] = min(times[name], time.perf_counter() - start)
            peaks.setdefault(name, peak.bytes)
    ours_values = results["cka_sim"]
    for name, seconds in times.items():
        error = None
        if name == "pytorch-cka":
            error = float(np.nanmax(np.abs(results[name] - ours_values)))
        rows.append(
            row(
                "compare_models",
                params,
                name,
                seconds=seconds,
                ratio=seconds / times["cka_sim"],
                ratio_of="/cka_sim",
                error=error,
                peak_bytes=peaks[name],
                note="error: max |peer - cka_sim| over the matrix" if error is not None else "",
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
