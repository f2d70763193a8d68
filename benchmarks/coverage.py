"""Coverage of :func:`cka_sim.stats.bootstrap_ci` by simulation against known population values.

``python -m benchmarks.coverage`` (``--help`` for the options) draws many data sets from one
linear Gaussian model per shape, runs ``bootstrap_ci`` on each and counts how often its nominal
95 % interval contains the population value, for biased and debiased linear CKA, debiased
deconfounded CKA (dCKA) and the Procrustes similarity, at n = 50, 100, 400 and p/n = 0.1, 0.5,
1, 2. It writes ``coverage.json`` and ``coverage.md`` under ``--out``.

The model (per shape, fixed by a seed): latent ``s ~ N(0, I_p)``, confounder ``z ~ N(0, I_q)``,
noise ``e ~ N(0, I_p)``, all independent, and

    x = s Λ + z A,        y = ρ s Λ + z B + σ e,

with Λ = diag(k^(-1/4)), A and B fixed Gaussian (q, p) matrices. Its covariances are known
exactly, so are the population values (the n → ∞ limits of every estimator, biased or not):

- CKA = ‖Σxy‖²_F / (‖Σxx‖_F ‖Σyy‖_F),
- Procrustes similarity = ‖Σxy‖_* / √(tr Σxx · tr Σyy),
- dCKA = (a_xy − a_xz a_yz / a_zz) / √((a_xx − a_xz² / a_zz)(a_yy − a_yz² / a_zz)),
  a_uv = ‖Σuv‖²_F,

checked against the estimates from one very large sample (``--check-rows``) of the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

STATISTICS = ("cka", "cka-debiased", "dcka-debiased", "procrustes")
SIZES = (50, 100, 400)
RATIOS = (0.1, 0.5, 1.0, 2.0)
Q = 3  # confounder width
RHO, SIGMA = 0.8, 1.0
LEVEL = 0.95


@dataclass(frozen=True)
class Model:
    """One shape's generative model: the square root of the spectrum and the confounder loadings."""

    p: int
    lam: np.ndarray  # (p,) diagonal of Λ
    a: np.ndarray  # (q, p)
    b: np.ndarray  # (q, p)

    @classmethod
    def make(cls, p: int) -> Model:
        rng = np.random.default_rng([2026, p])
        lam = np.arange(1, p + 1) ** -0.25
        scale = lam / np.sqrt(Q)  # the confounder carries about as much variance as s
        return cls(p, lam, rng.standard_normal((Q, p)) * scale, rng.standard_normal((Q, p)) * scale)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        s = rng.standard_normal((n, self.p)) * self.lam
        z = rng.standard_normal((n, Q))
        x = s + z @ self.a
        y = RHO * s + z @ self.b + SIGMA * rng.standard_normal((n, self.p))
        return x, y, z

    def population(self) -> dict[str, float]:
        """The population value of every statistic, from the exact covariances."""
        lam2 = np.diag(self.lam**2)
        sxx = lam2 + self.a.T @ self.a
        syy = RHO**2 * lam2 + self.b.T @ self.b + SIGMA**2 * np.eye(self.p)
        sxy = RHO * lam2 + self.a.T @ self.b
        fro = lambda m: float(np.sum(m * m))  # noqa: E731
        a_xy, a_xx, a_yy = fro(sxy), fro(sxx), fro(syy)
        a_xz, a_yz, a_zz = fro(self.a), fro(self.b), float(Q)
        cka = a_xy / np.sqrt(a_xx * a_yy)
        nuclear = float(np.sum(np.linalg.svd(sxy, compute_uv=False)))
        procrustes = nuclear / np.sqrt(np.trace(sxx) * np.trace(syy))
        dcka = (a_xy - a_xz * a_yz / a_zz) / np.sqrt(
            (a_xx - a_xz**2 / a_zz) * (a_yy - a_yz**2 / a_zz)
        )
        return {
            "cka": float(cka),
            "cka-debiased": float(cka),
            "dcka-debiased": float(dcka),
            "procrustes": float(procrustes),
        }


def estimate(stat: str, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """The statistic of one data set, by the public one-shot functions."""
    from cka_sim import deconfounded_cka, linear_cka, procrustes_similarity

    if stat == "cka":
        return float(linear_cka(x, y))
    if stat == "cka-debiased":
        return float(linear_cka(x, y, debiased=True))
    if stat == "dcka-debiased":
        return float(deconfounded_cka(x, y, z, debiased=True))
    return float(procrustes_similarity(x, y))


def interval_call(stat: str, x, y, z, n_resamples: int, seed: int):
    """``bootstrap_ci`` with the default method (BCa) for one statistic."""
    from cka_sim.stats import bootstrap_ci

    options = {
        "cka": {},
        "cka-debiased": {"debiased": True},
        "dcka-debiased": {"debiased": True, "measure": "dcka", "confounder": z},
        "procrustes": {"measure": "procrustes"},
    }[stat]
    return bootstrap_ci(x, y, n_resamples=n_resamples, seed=seed, **options)


def run_cell(task: tuple[int, float, int, int]) -> dict:
    """Every statistic's intervals on ``replicates`` data sets of one shape."""
    n, ratio, replicates, n_resamples = task
    p = max(1, round(ratio * n))
    model = Model.make(p)
    truth = model.population()
    alpha = 1 - LEVEL
    rows: dict[str, list] = {s: [] for s in STATISTICS}
    start = time.process_time()
    for r in range(replicates):
        x, y, z = model.sample(n, np.random.default_rng([7, n, p, r]))
        for stat in STATISTICS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = interval_call(stat, x, y, z, n_resamples, seed=r)
            t = res.bootstrap_distribution
            q_lo, q_hi = np.quantile(t, [alpha / 2, 1 - alpha / 2])
            theta = res.statistic
            rows[stat].append(
                (theta, res.confidence_interval.low, res.confidence_interval.high,
                 q_lo, q_hi, 2 * theta - q_hi, 2 * theta - q_lo,
                 float(np.mean(t)), res.standard_error,
                 res.interval_method == "basic-widened")
            )  # fmt: skip
    out = {"n": n, "p": p, "p_over_n": ratio, "replicates": replicates,
           "n_resamples": n_resamples, "cpu_s": time.process_time() - start, "stats": {}}  # fmt: skip
    for stat, values in rows.items():
        v = np.array(values, dtype=float)
        theta0 = truth[stat]

        def covers(lo: int, hi: int, v: np.ndarray = v, theta0: float = theta0) -> float:
            return float(np.mean((v[:, lo] <= theta0) & (theta0 <= v[:, hi])))

        out["stats"][stat] = {
            "population": theta0,
            "coverage_bca": covers(1, 2),
            "coverage_percentile": covers(3, 4),
            "coverage_basic": covers(5, 6),
            "mean_width_bca": float(np.mean(v[:, 2] - v[:, 1])),
            "bias_of_estimate": float(np.mean(v[:, 0]) - theta0),
            "sd_of_estimate": float(np.std(v[:, 0], ddof=1)),
            "mean_replicate_shift": float(np.mean(v[:, 7] - v[:, 0])),
            "mean_standard_error": float(np.mean(v[:, 8])),
            "fallback_share": float(np.mean(v[:, 9])),
        }
    return out


def large_sample_check(rows: int) -> list[dict]:
    """Closed-form population values against the estimates of one very large sample."""
    checks = []
    for p in (10, 40):
        model = Model.make(p)
        x, y, z = model.sample(rows, np.random.default_rng([11, p]))
        truth = model.population()
        for stat in STATISTICS:
            est = estimate(stat, x, y, z)
            checks.append({"p": p, "rows": rows, "statistic": stat,
                           "population": truth[stat], "large_sample": est})  # fmt: skip
    return checks


def replicates_for(n: int, args: argparse.Namespace) -> int:
    return args.replicates_large if n >= 400 else args.replicates


def monte_carlo_error(replicates: int) -> float:
    """Two standard errors of a coverage near 95 % estimated from ``replicates`` data sets."""
    return 2.0 * float(np.sqrt(LEVEL * (1 - LEVEL) / replicates))


def markdown(result: dict) -> str:
    """The coverage table: one row per shape and statistic."""
    lines = [
        "# Coverage of `bootstrap_ci` (nominal 95 %)",
        "",
        f"Generated by `python -m benchmarks.coverage` on {result['machine']}, "
        f"{result['wall_s']:.0f} s wall. Half-samples per interval: {result['n_resamples']}. "
        "The ± is two Monte-Carlo standard errors of a coverage near 95 %.",
        "",
        "| n | p | statistic | population | BCa (default) | percentile | basic | ± | "
        "bias / SD of estimate | replicate SE / SD | BCa fell back |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in result["cells"]:
        mc = monte_carlo_error(cell["replicates"])
        for stat, s in cell["stats"].items():
            lines.append(
                f"| {cell['n']} | {cell['p']} | {stat} | {s['population']:.3f} | "
                f"{100 * s['coverage_bca']:.1f} | {100 * s['coverage_percentile']:.1f} | "
                f"{100 * s['coverage_basic']:.1f} | {100 * mc:.1f} | "
                f"{s['bias_of_estimate'] / s['sd_of_estimate']:+.2f} | "
                f"{s['mean_standard_error'] / s['sd_of_estimate']:.2f} | "
                f"{100 * s['fallback_share']:.0f} % |"
            )
    lines += ["", "Population values (closed form) against one very large sample:", "",
              "| p | rows | statistic | closed form | large sample |", "|---|---|---|---|---|"]  # fmt: skip
    for c in result["large_sample_check"]:
        lines.append(
            f"| {c['p']} | {c['rows']} | {c['statistic']} | {c['population']:.5f} | "
            f"{c['large_sample']:.5f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__)
    parser.add_argument("--replicates", type=int, default=400, help="data sets per shape, n < 400")
    parser.add_argument("--replicates-large", type=int, default=120, help="data sets, n = 400")
    parser.add_argument("--resamples", type=int, default=200, help="half-samples per interval")
    parser.add_argument("--check-rows", type=int, default=100_000, help="large-sample rows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="coverage", help="output file stem")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one BLAS thread per worker, read when it starts
    start = time.perf_counter()
    tasks = [(n, ratio, replicates_for(n, args), args.resamples)
             for n in args.sizes for ratio in args.ratios]  # fmt: skip
    tasks.sort(key=lambda t: -t[0] * t[0] * t[1])  # the expensive shapes first
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        cells = list(pool.map(run_cell, tasks))
    cells.sort(key=lambda c: (c["n"], c["p"]))
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "level": LEVEL,
        "n_resamples": args.resamples,
        "model": {"q": Q, "rho": RHO, "sigma": SIGMA, "spectrum": "k**-0.5"},
        "large_sample_check": large_sample_check(args.check_rows),
        "cells": cells,
    }
    result["wall_s"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result), file=sys.stdout)


if __name__ == "__main__":
    main()
