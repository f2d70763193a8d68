"""Benchmark: ``cka_sim.torch.compare_models`` against pytorch-cka's ``compute_cka``.

Both compute the debiased minibatch CKA (Nguyen et al. 2021) of 10 layers of one small CNN against
10 layers of another, over the same DataLoader of structured 3x32x32 images, on the CPU. Each
contender runs in its own subprocess (so peak memory is its own), one after the other in the same
invocation, and the table reports wall time, the ratio to ``compare_models``, the peak resident
memory above the process's memory before the call, and the largest difference between the two
CKA matrices. A "forward only" row times the two models' forward passes over the loader: the floor
that neither library can beat.

Run (pytorch-cka installed in a separate virtual environment; see benchmarks/requirements.txt)::

    python -m venv --system-site-packages /tmp/benchvenv
    /tmp/benchvenv/bin/pip install --no-deps -c <(echo torch==2.13.0) -r benchmarks/requirements.txt
    /tmp/benchvenv/bin/python benchmarks/bench_compare_models.py

Without pytorch-cka its row is skipped with a message. ``--threads`` (default 1) sets
``torch.set_num_threads`` in every subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported in the worker processes only
    from torch import nn
    from torch.utils.data import DataLoader

LAYERS = [
    "conv1",
    "relu1",
    "conv2",
    "relu2",
    "conv3",
    "relu3",
    "conv4",
    "relu4",
    "conv5",
    "fc",
]


def build_model(seed: int) -> nn.Module:
    """A 10-layer CNN for 3x32x32 inputs; separate ReLU modules, none in place."""
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.relu2 = nn.ReLU()
            self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
            self.relu3 = nn.ReLU()
            self.conv4 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
            self.relu4 = nn.ReLU()
            self.conv5 = nn.Conv2d(64, 64, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.relu1(self.conv1(x))
            x = self.relu2(self.conv2(x))
            x = self.relu3(self.conv3(x))
            x = self.relu4(self.conv4(x))
            x = self.pool(torch.relu(self.conv5(x))).flatten(1)
            return self.fc(x)

    torch.manual_seed(seed)
    return SmallCNN().eval()


def build_loader(n: int, batch_size: int) -> DataLoader:
    """Structured images: smooth random fields (8x8 noise upsampled) plus a little pixel noise."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    coarse = torch.randn(n, 3, 8, 8, generator=g)
    images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False)
    images += 0.1 * torch.randn(n, 3, 32, 32, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(contender: str, args: argparse.Namespace, out: Path) -> None:
    """Run one contender in this process; write its timing, memory and matrix to ``out``."""
    import torch

    torch.set_num_threads(args.threads)
    model_a, model_b = build_model(0), build_model(1)
    loader = build_loader(args.n, args.batch_size)
    # Warm up kernels and allocator on two batches, outside the timed region.
    with torch.inference_mode():
        for i, (x, _) in enumerate(loader):
            model_a(x)
            model_b(x)
            if i == 1:
                break
    base = _rss_bytes()
    exact_peak = _reset_peak()
    start = time.perf_counter()
    values = None
    if contender == "forward only":
        with torch.inference_mode():
            for x, _ in loader:
                model_a(x)
                model_b(x)
    elif contender == "cka_sim":
        from cka_sim.torch import compare_models

        result = compare_models(
            model_a, model_b, loader, layers_a=LAYERS, layers_b=LAYERS, progress=False
        )
        values = result.values
    elif contender == "pytorch-cka":
        from cka import compute_cka

        matrices = compute_cka(
            model_a,
            model_b,
            loader,
            layers=LAYERS,
            model2_layers=LAYERS,
            device="cpu",
            progress=False,
        )
        values = matrices[0].double().numpy()
    else:
        raise ValueError(f"unknown contender {contender!r}")
    seconds = time.perf_counter() - start
    peak = _peak_bytes() if exact_peak else int(_rss_bytes())
    report = {"seconds": seconds, "peak_above_base": peak - base, "peak_exact": exact_peak}
    if values is not None:
        np.save(out.with_suffix(".npy"), values)
    out.write_text(json.dumps(report))


def _peer_available() -> bool:
    probe = "import cka, sys; sys.exit(0 if hasattr(cka, 'compute_cka') else 1)"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of examples")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args, Path(args.out))
        return

    contenders = ["forward only", "cka_sim"]
    if _peer_available():
        contenders.append("pytorch-cka")
    else:
        print(
            "pytorch-cka is not importable here: its row is skipped. Install it in a separate venv "
            "(see benchmarks/requirements.txt) and run this script with that venv's python."
        )
    import torch

    print(
        f"compare_models vs compute_cka: {len(LAYERS)} x {len(LAYERS)} layers, n={args.n} "
        f"examples of 3x32x32, batch {args.batch_size}, torch {torch.__version__}, "
        f"torch.set_num_threads({args.threads}), CPU"
    )
    results: dict[str, dict] = {}
    matrices: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for contender in contenders:
            out = Path(tmp) / (contender.replace(" ", "_") + ".json")
            command = [
                sys.executable,
                __file__,
                "--worker",
                contender,
                "--out",
                str(out),
                "--n",
                str(args.n),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
            ]
            subprocess.run(command, check=True)
            results[contender] = json.loads(out.read_text())
            if out.with_suffix(".npy").exists():
                matrices[contender] = np.load(out.with_suffix(".npy"))

    ours = results["cka_sim"]["seconds"]
    print(f"{'contender':<14}{'seconds':>10}{'vs cka_sim':>12}{'peak MiB':>11}")
    for contender, report in results.items():
        print(
            f"{contender:<14}{report['seconds']:>10.2f}{report['seconds'] / ours:>11.2f}x"
            f"{report['peak_above_base'] / 2**20:>11.1f}"
        )
    if "pytorch-cka" in matrices:
        diff = np.abs(matrices["cka_sim"] - matrices["pytorch-cka"])
        print(f"max |cka_sim - pytorch-cka| over the {diff.size} cells: {np.nanmax(diff):.2e}")
    floor = results["forward only"]["seconds"]
    print(
        f"CKA work beyond the forward passes: cka_sim {ours - floor:.2f} s"
        + (
            f", pytorch-cka {results['pytorch-cka']['seconds'] - floor:.2f} s"
            if "pytorch-cka" in results
            else ""
        )
    )
    if not all(r["peak_exact"] for r in results.values()):
        print("(peak memory: /proc/self/clear_refs not writable; figures are end-of-run RSS)")


if __name__ == "__main__":
    main()
