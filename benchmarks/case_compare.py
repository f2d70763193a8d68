"""The ``compare_models`` case: ``cka_sim.torch.compare_models`` vs pytorch-cka's ``compute_cka``.

Both compute the debiased minibatch CKA (HSIC₁ per batch, Nguyen et al.) of the 10 layers of one
CNN against the 10 layers of another, over the same loader. Beside them run the floors, the work
both must do:

- "forward only": the two models over the loader;
- "forward + Gram products": plus one plain ``out @ out.T`` (a GEMM) per layer and batch, the
  library's own floor of the torch code;
- "forward + symmetric Grams": plus each layer's Gram formed the fastest way this machine has for
  its shape (GEMM, torch block-symmetric or NumPy SYRK, chosen once per layer before timing);
- "forward + half-flop Grams" (derived, not timed): forward only plus half of the GEMM Grams'
  extra time, what a symmetric product at the GEMM's rate would cost.

The machine's fastest floor is the lower of the last two; every contender's ``ratio2`` is over it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import numpy as np

from . import peers as peer_lib
from .baseline import torch_module
from .cases import Context, Row, row
from .data import CNN_LAYERS, build_cnn, build_loader
from .floors import fastest_gram
from .timing import PeakMemory


def compare(ctx: Context, n: int, batch_size: int, rounds: int = 1) -> list[Row]:
    """Time the contenders and floors of the case one after the other, ``rounds`` times (each
    keeps its best round; with two rounds or more, the notes also give the median over rounds
    of cka_sim's time over each other library's), after a warm-up of two batches."""
    import torch

    params = {"n": n, "batch": batch_size, "layers": f"{len(CNN_LAYERS)}x{len(CNN_LAYERS)}"}
    models = (build_cnn(0).to(ctx.device), build_cnn(1).to(ctx.device))
    loader = build_loader(n, batch_size)
    rows: list[Row] = []
    with torch.inference_mode():  # warm-up: kernels and allocator
        for i, (x, _) in enumerate(loader):
            for model in models:
                model(x.to(ctx.device))
            if i == 1:
                break
    grams = {"gemm": [lambda a: a @ a.T] * (2 * len(CNN_LAYERS))}
    grams["fastest"] = _calibrate(ctx, models, loader)

    fns: dict[str, Callable[[], Any]] = {
        "forward only": lambda: _forward(ctx, models, loader, None),
        "forward + Gram products": lambda: _forward(ctx, models, loader, grams["gemm"]),
        "forward + symmetric Grams": lambda: _forward(ctx, models, loader, grams["fastest"]),
    }
    for label, package in ctx.libs.items():
        compare_models = torch_module(package).compare_models
        fns[label] = lambda f=compare_models: (
            f(*models, loader, layers_a=CNN_LAYERS, layers_b=CNN_LAYERS, progress=False).values
        )
    peer = ctx.peers["pytorch-cka"]
    if peer.available:
        fns["pytorch-cka"] = lambda: peer_lib.compare_models(
            "pytorch-cka", *models, loader, CNN_LAYERS, ctx.device
        )
    else:
        rows.append(row("compare_models", params, "pytorch-cka", note=peer.missing))
    per_round, peaks, results = _interleaved(ctx, fns, rounds)
    times = {name: min(values) for name, values in per_round.items()}

    forward, gemm = times["forward only"], times["forward + Gram products"]
    times["forward + half-flop Grams"] = forward + (gemm - forward) / 2
    fastest = min(times["forward + symmetric Grams"], times["forward + half-flop Grams"])
    ours = times["cka_sim"]
    for name, seconds in times.items():
        if name in ctx.libs:
            ratio, of = seconds / gemm, "/floor"
        else:
            ratio, of = seconds / ours, "/cka_sim"
        error, note = None, ""
        rounds_note = ""
        if rounds > 1 and name != "cka_sim" and name in per_round:
            rounds_note = (
                f"; median of the {rounds} rounds' cka_sim/{name}: "
                f"{median_ratio(per_round['cka_sim'], per_round[name]):.2f}"
            )
        if name == "pytorch-cka":
            error = float(np.nanmax(np.abs(results[name] - results["cka_sim"])))
            note = "error: max |peer - cka_sim| over the matrix" + rounds_note
        elif name in ctx.libs and name != "cka_sim":
            error = float(np.nanmax(np.abs(results[name] - results["cka_sim"])))
            note = (
                f"error: max |{name} - cka_sim|; cka_sim takes {ours / seconds:.2f}x its time"
                + rounds_note
            )
        elif name == "forward + half-flop Grams":
            note = "derived: forward only + half the GEMM Grams' time"
        rows.append(
            row(
                "compare_models",
                params,
                name,
                seconds=seconds,
                ratio=ratio,
                ratio_of=of,
                ratio2=seconds / fastest,
                ratio2_of="/fastest",
                error=error,
                peak_bytes=peaks.get(name),
                note=note,
            )
        )
    return rows


def _interleaved(
    ctx: Context, fns: dict[str, Callable[[], Any]], rounds: int
) -> tuple[dict[str, list[float]], dict[str, int | None], dict[str, Any]]:
    """Every round's time, first-round peak memory and last result of each function.

    Each round runs every function once; the order rotates by one from round to round, so that
    no contender always follows the same one.
    """
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    peaks: dict[str, int | None] = {}
    names = list(fns)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            ctx.log(f"  compare_models: {name} (round {round_ + 1} of {rounds})")
            gc.collect()
            with PeakMemory(ctx.device) as peak:
                start = ctx.clock()
                results[name] = fns[name]()
                ctx.sync()
                times[name].append(ctx.clock() - start)
            peaks.setdefault(name, peak.bytes)
    return times, peaks, results


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[i] / b[i]``: two contenders compared round by round, which a
    machine whose speed drifts during a run disturbs less than the ratio of their best rounds."""
    return float(np.median([x / y for x, y in zip(a, b, strict=True)]))


def _hooks(models: tuple[Any, Any], outputs: list[Any]) -> list[Any]:
    return [
        model.get_submodule(name).register_forward_hook(
            lambda module, args, out: outputs.append(out.reshape(out.shape[0], -1))
        )
        for model in models
        for name in CNN_LAYERS
    ]


def _forward(
    ctx: Context,
    models: tuple[Any, Any],
    loader: Any,
    grams: list[Callable[[Any], Any]] | None,
) -> None:
    """Run both models over ``loader``; with ``grams``, form each layer's Gram (in hook order)."""
    import torch

    outputs: list[Any] = []
    hooks = _hooks(models, outputs) if grams is not None else []
    try:
        with torch.inference_mode():
            for x, _ in loader:
                x = x.to(ctx.device)
                for model in models:
                    model(x)
                if grams is not None:
                    for gram, out in zip(grams, outputs, strict=True):
                        gram(out)
                    outputs.clear()
    finally:
        for hook in hooks:
            hook.remove()


def _calibrate(ctx: Context, models: tuple[Any, Any], loader: Any) -> list[Callable[[Any], Any]]:
    """The fastest Gram routine for each recorded layer's shape, from the first batch."""
    import torch

    outputs: list[Any] = []
    hooks = _hooks(models, outputs)
    try:
        with torch.inference_mode():
            x = next(iter(loader))[0].to(ctx.device)
            for model in models:
                model(x)
            return [fastest_gram(out.contiguous(), ctx.sync, ctx.clock) for out in outputs]
    finally:
        for hook in hooks:
            hook.remove()
