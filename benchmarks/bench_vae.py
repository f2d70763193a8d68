"""Training throughput of the paper's conv VAE: steps/s at 32 and 64 px, batch 64, one thread.

Runs the real trainer (:func:`vae_zoo.train.train`) on synthetic binary images for a few
seconds per size and prints the steps/s measured between the first and last logged step (the
first ``warmup`` steps and the final checkpoint are excluded). Usage::

    python benchmarks/bench_vae.py [--steps-32 150] [--steps-64 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from vae_zoo.datasets.base import ImageDataset
from vae_zoo.train import TrainConfig, read_metrics, train


def synthetic(size: int, n: int = 2048, seed: int = 0) -> ImageDataset:
    """``n`` binary images with one random rectangle each (dSprites-like density)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.uint8)
    for image, (y, x), (h, w) in zip(
        images,
        rng.integers(0, size // 2, (n, 2)),
        rng.integers(size // 8, size // 2, (n, 2)),
        strict=True,
    ):
        image[0, y : y + h, x : x + w] = 255
    return ImageDataset(f"synthetic{size}", images)


def steps_per_second(size: int, steps: int, warmup: int, threads: int) -> float:
    """Steps/s of ``train`` after ``warmup`` steps (one log line at warmup, one at the end)."""
    config = TrainConfig(
        steps=warmup + steps,
        log_every=warmup,
        eval_every=0,
        checkpoint_every=10**9,
        threads=threads,
    )
    with tempfile.TemporaryDirectory() as out:
        train(synthetic(size), out, config, progress=False)
        return read_metrics(out, "train")[-1]["steps_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps-32", type=int, default=150)
    p.add_argument("--steps-64", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 64, Adam, beta-VAE")
    for size, steps in ((32, args.steps_32), (64, args.steps_64)):
        start = time.perf_counter()
        rate = steps_per_second(size, steps, args.warmup, args.threads)
        print(
            f"{size} px: {rate:6.1f} steps/s  ({steps} timed steps, "
            f"{time.perf_counter() - start:.1f} s total)"
        )


if __name__ == "__main__":
    main()
