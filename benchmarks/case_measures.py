r"""The second measures: ``procrustes_similarity`` against its floor, one GEMM and one SVD.

The Procrustes similarity of centred (n, p) activations needs the p x p cross product
:math:`\bar Y^\\top\bar X` and its singular values; nothing else it does (centring, the two
Frobenius norms) is more than O(n p). Its floor is therefore that GEMM in the input's dtype plus
the singular values of the float64 product, by the same library, timed side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .cases import Context, Row, row
from .data import activations


def _floor(xc: Any, yc: Any) -> Callable[[], Any]:
    """One GEMM of the centred data and the singular values of the float64 product."""
    if isinstance(xc, np.ndarray):
        return lambda: np.linalg.svd((yc.T @ xc).astype(np.float64), compute_uv=False).sum()
    import torch

    return lambda: float(torch.linalg.svdvals((yc.T @ xc).double()).sum())


def procrustes(ctx: Context, sizes: list[tuple[int, int]]) -> list[Row]:
    """``procrustes_similarity`` (float32, feature means 10) over GEMM + SVD, per library."""
    rows: list[Row] = []
    for n, p in sizes:
        ctx.log(f"  procrustes n={n} p={p}")
        params = {"n": n, "p": p}
        x, y = activations(n, p, device=ctx.device)
        xc, yc = x - x.mean(0), y - y.mean(0)
        inputs = {"torch": (x, y, xc, yc)}
        if ctx.device == "cpu":
            inputs["numpy"] = tuple(a.numpy() for a in (x, y, xc, yc))
        truth = ctx.libs["cka_sim"].procrustes_similarity(
            x.cpu().double().numpy(), y.cpu().double().numpy()
        )
        fns: dict[str, Callable[[], Any]] = {}
        for lib, (a, b, ac, bc) in inputs.items():
            fns[f"floor {lib}"] = _floor(ac, bc)
            for label, package in ctx.libs.items():
                f = getattr(package, "procrustes_similarity", None)
                if f is None:  # a --baseline older than the function
                    continue
                fns[f"{label} {lib}"] = lambda f=f, a=a, b=b: float(f(a, b))
        times = dict(zip(fns, ctx.time(list(fns.values())), strict=True))
        for name, seconds in times.items():
            lib = name.rsplit(" ", 1)[1]
            floor = times[f"floor {lib}"]
            is_floor = name.startswith("floor")
            value = None if is_floor else fns[name]()
            rows.append(
                row(
                    "procrustes",
                    params,
                    f"GEMM + SVD floor ({lib})" if is_floor else name,
                    seconds=seconds,
                    ratio=seconds / floor,
                    ratio_of="/floor",
                    error=None if is_floor else abs(value - truth),
                    value=value,
                    note="" if is_floor else f"SVD + GEMM = {100 * floor / seconds:.0f}%",
                )
            )
    return rows
