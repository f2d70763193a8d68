"""StreamingCKA.update per batch against the GEMM floor of that batch, and peak memory.

The floor is the three float32 products a batch needs at least (XᵀX, YᵀY, YᵀX of the batch);
everything else ``update`` does (validation, two-pass centring, float64 upcast and the
Chan–Golub–LeVeque merge) is overhead on top. Goal: update <= 1.3x the floor.

    python benchmarks/bench_streaming.py            # NumPy, float32, several shapes
    python benchmarks/bench_streaming.py --torch    # torch tensors (CUDA when available)

Peak memory is measured with tracemalloc (NumPy allocations) in a separate pass and compared with
the accumulator's state size, 8 (p1² + p2² + p1 p2) bytes, to show it does not grow with n.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from cka_sim import StreamingCKA


def _interleaved(fns, repeats: int) -> list[float]:
    """Minimum time of each function, run alternately so that load from other processes hits
    them alike (the minimum is the least disturbed run)."""
    for fn in fns:
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bench_numpy(m: int, p1: int, p2: int, debiased: bool, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((m, p1)) + 10).astype(np.float32)
    y = (rng.standard_normal((m, p2)) - 10).astype(np.float32)

    def floor() -> None:
        x.T @ x
        y.T @ y
        y.T @ x

    acc = StreamingCKA(debiased=debiased).update(x, y)  # steady state: merging into a state
    t_floor, t_update = _interleaved([floor, lambda: acc.update(x, y)], repeats)
    return {"floor_ms": 1e3 * t_floor, "update_ms": 1e3 * t_update, "ratio": t_update / t_floor}


def bench_torch(m: int, p1: int, p2: int, debiased: bool, repeats: int) -> dict[str, float]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.randn(m, p1, generator=gen) + 10).to(device)
    y = (torch.randn(m, p2, generator=gen) - 10).to(device)

    def floor() -> None:
        x.T @ x
        y.T @ y
        y.T @ x
        sync()

    acc = StreamingCKA(debiased=debiased).update(x, y)

    def update() -> None:
        acc.update(x, y)
        sync()

    t_floor, t_update = _interleaved([floor, update], repeats)
    return {"floor_ms": 1e3 * t_floor, "update_ms": 1e3 * t_update, "ratio": t_update / t_floor}


def peak_memory(m: int, p1: int, p2: int, n_batches: int, debiased: bool) -> tuple[int, int]:
    """(peak bytes traced while streaming n_batches batches, state bytes)."""
    rng = np.random.default_rng(1)
    acc = StreamingCKA(debiased=debiased)
    batches = [
        (
            rng.standard_normal((m, p1)).astype(np.float32),
            rng.standard_normal((m, p2)).astype(np.float32),
        )
        for _ in range(2)
    ]
    tracemalloc.start()
    tracemalloc.reset_peak()
    for t in range(n_batches):
        acc.update(*batches[t % 2])
    acc.compute()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    state = 8 * (p1 * p1 + p2 * p2 + p1 * p2)
    return peak, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", action="store_true", help="benchmark torch tensors")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    shapes = [(4096, 256, 256), (2048, 512, 512), (1024, 1024, 512), (512, 256, 128)]
    bench = bench_torch if args.torch else bench_numpy
    print(f"StreamingCKA.update vs GEMM floor ({'torch' if args.torch else 'numpy'}, float32)")
    print(
        f"{'m':>6} {'p1':>5} {'p2':>5} {'debiased':>8} {'floor ms':>9} {'update ms':>10} {'ratio':>6}"
    )
    for m, p1, p2 in shapes:
        for debiased in (False, True):
            r = bench(m, p1, p2, debiased, args.repeats)
            print(
                f"{m:>6} {p1:>5} {p2:>5} {debiased!s:>8} {r['floor_ms']:>9.2f} "
                f"{r['update_ms']:>10.2f} {r['ratio']:>6.2f}"
            )
    print("\nPeak traced memory while streaming (NumPy), vs the float64 state size:")
    for n_batches in (4, 40):
        peak, state = peak_memory(1024, 512, 256, n_batches, debiased=True)
        print(
            f"  {n_batches:>3} batches of 1024 x (512, 256): peak {peak / 2**20:7.1f} MiB, "
            f"state {state / 2**20:5.1f} MiB, n = {n_batches * 1024}"
        )


if __name__ == "__main__":
    main()
