"""`linear_cka` against the GEMM floor, measured side by side in one run.

The floor is the three float32 products a feature-form linear CKA cannot avoid,
X̄ᵀX̄, ȲᵀȲ and ȲᵀX̄, on already-centred data. The goal is ``linear_cka`` <= 1.25x the floor
with a float64-accurate result.

Run: ``python benchmarks/bench_linear_cka.py [--repeats 5] [--backend numpy|torch]``.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from cka_sim import linear_cka

CASES = [(20_000, 1024), (4_000, 512)]


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_data(n: int, p: int, mean: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """ReLU-like float32 activations with a feature mean around ``mean``."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, p), dtype=np.float32)
    mix = rng.standard_normal((p, p), dtype=np.float32) / np.float32(np.sqrt(p))
    y = np.maximum(x @ mix, 0) + rng.standard_normal((n, p), dtype=np.float32)
    return x + np.float32(mean), y + np.float32(mean)


def measure(x: np.ndarray, y: np.ndarray, backend: str, repeats: int) -> tuple[float, float, float]:
    """Best times of the GEMM floor and of ``linear_cka``, and the latter's result."""
    if backend == "torch":
        import torch

        x_in, y_in = torch.from_numpy(x), torch.from_numpy(y)
    else:
        x_in, y_in = x, y
    xc, yc = x_in - x_in.mean(0), y_in - y_in.mean(0)

    def floor() -> object:
        return (xc.T @ xc, yc.T @ yc, yc.T @ xc)

    def ours() -> float:
        return float(linear_cka(x_in, y_in))

    t_floor, t_ours = [], []
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both equally
        t_floor.append(best_time(floor, 1))
        t_ours.append(best_time(ours, 1))
    return min(t_floor), min(t_ours), ours()


def run(backend: str, repeats: int) -> list[dict[str, float]]:
    rows = []
    for n, p in CASES:
        x, y = make_data(n, p)
        truth = linear_cka(x.astype(np.float64), y.astype(np.float64))
        t_floor, t_ours, value = measure(x, y, backend, repeats)
        rows.append(
            {
                "n": n,
                "p": p,
                "floor_s": t_floor,
                "linear_cka_s": t_ours,
                "ratio": t_ours / t_floor,
                "abs_error_vs_float64": abs(value - truth),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", choices=["numpy", "torch"], default="numpy")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} | backend: {args.backend}")
    print(f"{'n':>7} {'p':>5} {'floor s':>9} {'ours s':>9} {'ratio':>6} {'|err| vs f64':>13}")
    for row in run(args.backend, args.repeats):
        print(
            f"{row['n']:>7} {row['p']:>5} {row['floor_s']:>9.4f} {row['linear_cka_s']:>9.4f} "
            f"{row['ratio']:>6.2f} {row['abs_error_vs_float64']:>13.2e}"
        )


if __name__ == "__main__":
    main()
