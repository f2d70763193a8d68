"""The floors of the suite: the products no implementation of the same estimator can skip.

Every ratio is reported against two floors, both timed side by side with the contenders:

- the **library's own floor**: the products in the input's library (torch's for torch input,
  NumPy's for NumPy input), as a plain matmul;
- the **machine's fastest floor**: each product in whichever way is fastest on this machine for
  the same data. On the CPU that is the faster of torch and NumPy (zero-copy views of the same
  memory; NumPy runs ``a.T @ a`` and ``a @ a.T`` as the BLAS symmetric rank-k update, SYRK, half
  the flops of a GEMM), and for m x m Grams also a block-row symmetric product in torch. On CUDA
  only torch's own products exist, so both floors are torch's.

For Grams the suite also reports the **half-flop floor**: the time of the full ``x @ x.T`` GEMMs,
halved. It is what a symmetric product running at the GEMM's rate would cost (SYRK computes one
triangle), an ideal no library here reaches on every shape, so it bounds every implementation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

FEATURE_PRODUCTS = ("xx", "yy", "yx")


def feature_products(x: Any, y: Any) -> dict[str, Callable[[], Any]]:
    """The three products of feature-form linear CKA of centred (n, p) data: X̄ᵀX̄, ȲᵀȲ, ȲᵀX̄.

    ``x`` and ``y`` are torch tensors or NumPy arrays; the products run in that library (NumPy's
    ``a.T @ a`` is a SYRK).
    """
    return {"xx": lambda: x.T @ x, "yy": lambda: y.T @ y, "yx": lambda: y.T @ x}


def library_products(xc: Any, yc: Any, device: str) -> dict[str, dict[str, Callable[[], Any]]]:
    """The three products in every library that can run them on the data: ``{library: fns}``.

    ``xc``, ``yc`` are centred torch tensors; on the CPU NumPy gets zero-copy views of them.
    """
    out = {"torch": feature_products(xc, yc)}
    if device == "cpu":
        out["numpy"] = feature_products(xc.numpy(), yc.numpy())
    return out


def sum_floors(times: dict[tuple[str, str], float]) -> dict[str, float]:
    """Library floors and the fastest floor from per-product best times.

    ``times[(library, product)]`` is the best time of one product; a library's floor is the sum
    of its three, the fastest floor the sum over products of the fastest library's time.
    """
    libraries = sorted({lib for lib, _ in times})
    floors = {lib: sum(times[(lib, prod)] for prod in FEATURE_PRODUCTS) for lib in libraries}
    floors["fastest"] = sum(
        min(times[(lib, prod)] for lib in libraries) for prod in FEATURE_PRODUCTS
    )
    return floors


_BLOCK = 64


def block_symmetric_gram(x: Any) -> Any:
    """``x @ x.T`` of a torch (m, p) tensor from its upper block rows, mirrored (5/8 of the flops
    at m = 256): the symmetric product torch can run, having no SYRK."""
    import torch

    m = x.shape[0]
    out = torch.empty((m, m), dtype=x.dtype, device=x.device)
    for start in range(0, m, _BLOCK):
        stop = min(start + _BLOCK, m)
        block = x[start:stop] @ x[start:].T
        out[start:stop, start:] = block
        out[stop:, start:stop] = block[:, stop - start :].T
    return out


def gram_candidates(x: Any) -> dict[str, Callable[[Any], Any]]:
    """Ways to form the m x m Gram of a torch (m, p) tensor: GEMM, block-symmetric, NumPy SYRK."""
    out: dict[str, Callable[[Any], Any]] = {
        "gemm": lambda a: a @ a.T,
        "blocks": block_symmetric_gram,
    }
    if x.device.type == "cpu":
        out["syrk"] = lambda a: (lambda v: v @ v.T)(a.numpy())
    return out


def fastest_gram(
    x: Any,
    sync: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
    repeats: int = 5,
) -> Callable[[Any], Any]:
    """The fastest of :func:`gram_candidates` for tensors shaped like ``x`` (best of ``repeats``)."""
    best_name, best_time = "gemm", float("inf")
    candidates = gram_candidates(x)
    for name, fn in candidates.items():
        fn(x)
        sync()
        for _ in range(repeats):
            start = clock()
            fn(x)
            sync()
            elapsed = clock() - start
            if elapsed < best_time:
                best_name, best_time = name, elapsed
    return candidates[best_name]
