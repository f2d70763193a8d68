"""``python -m benchmarks.published``: run the published checks, print them beside the papers'
figures and write ``benchmarks/results/published-<date>.{json,md}``."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import cka_sim
from cka_sim import gram_linear

from . import checks, layer_id
from .report import markdown
from .training import TrainSpec, train_all

RESULTS = Path(__file__).resolve().parent.parent / "results"


@dataclass(frozen=True)
class Config:
    """Sizes of one run.

    Parameters
    ----------
    networks : int
        Networks per architecture (Kornblith et al.: 10).
    steps, mlp_steps : int
        Adam steps of each Tiny-10 and each MLP (batch 128).
    train_examples : int
        Fashion-MNIST training images drawn from.
    eval_examples : int
        Fashion-MNIST test images the layers are compared on.
    procrustes_pairs : int
        Network pairs (network 0 with 1 ... k) compared with Procrustes.
    widths : tuple of int
        Feature counts of the bias curve (``n = 50``).
    draws : int
        Pairs per width of the bias curve.
    """

    networks: int = 10
    steps: int = 400
    mlp_steps: int = 400
    train_examples: int = 20000
    eval_examples: int = 500
    procrustes_pairs: int = 9
    widths: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
    draws: int = 20
    bias_n: int = 50
    translation_scales: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
    rbf_thresholds: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
    processes: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def tiny(cls) -> Config:
        """Seconds-long sizes for tests."""
        return cls(
            networks=3,
            steps=5,
            mlp_steps=5,
            train_examples=600,
            eval_examples=60,
            procrustes_pairs=1,
            widths=(10, 100),
            draws=2,
            processes=1,
        )


def _data(config: Config) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from vae_zoo.datasets import load

    train = load("fashion_mnist", split="train", size=32, max_examples=config.train_examples)
    test = load("fashion_mnist", split="test", size=32, max_examples=config.eval_examples)
    return (train.images, train.labels), (test.images, test.labels)


def _identification(
    arch: str, steps: int, config: Config, train: Any, evaluation: Any, log: Any
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    start = time.perf_counter()
    specs = [TrainSpec(arch, seed, steps) for seed in range(config.networks)]
    nets = train_all(specs, train, evaluation, processes=config.processes)
    trained = time.perf_counter() - start
    confounder = np.asarray(gram_linear(evaluation[0].reshape(len(evaluation[0]), -1) / 255.0))
    blocks = layer_id.measures(nets, confounder, procrustes_pairs=config.procrustes_pairs)
    result = {
        "layers": nets[0]["layers"],
        "test_accuracy": [net["accuracy"] for net in nets],
        "train_seconds": trained,
        "compare_seconds": time.perf_counter() - start - trained,
        "measures": {name: layer_id.identification(b) for name, b in blocks.items()},
        "linear_cka_01": blocks["linear CKA"][0, 1].tolist(),
    }
    log(f"  {arch}: trained {len(nets)} in {trained:.0f} s, test accuracy "
        f"{np.mean(result['test_accuracy']):.3f}")  # fmt: skip
    for name, found in result["measures"].items():
        published = layer_id.PUBLISHED.get(name, "-") if arch == "tiny10" else "-"
        log(f"    {name:22s} ours {100 * found['accuracy']:5.1f} %  published {published}")
    return result, nets, blocks


def run(config: Config, out: Path | None = RESULTS, log: Any = print) -> dict[str, Any]:
    """Run every check and write the JSON and Markdown (``out=None``: write nothing).

    Parameters
    ----------
    config : Config
        Sizes.
    out : path, optional
        Directory of ``published-<date>.{json,md}``.
    log : callable, default print
        Progress and result lines.

    Returns
    -------
    dict
        Everything written to the JSON.
    """
    start = time.perf_counter()
    train, evaluation = _data(config)
    log("1. layer identification (Fashion-MNIST at 32 x 32)")
    tiny, nets, _ = _identification("tiny10", config.steps, config, train, evaluation, log)
    mlp, _, _ = _identification("mlp", config.mlp_steps, config, train, evaluation, log)

    log("2. bias at p >> n: independent Gaussians")
    bias = checks.bias_curve(config.bias_n, list(config.widths), config.draws)
    for p, b, d in zip(bias["p"], bias["biased"]["mean"], bias["debiased"]["mean"], strict=True):
        log(f"    n={bias['n']} p={p:5d}: biased {b:.3f}, debiased {d:+.3f}")

    log("3. subset translation (one class of Tiny-10's pooled layer, along W's null space)")
    labels = evaluation[1]
    translation = checks.subset_translation(
        nets[0]["pool"], labels == 0, nets[0]["weight"], nets[0]["bias"], labels,
        list(config.translation_scales),
    )  # fmt: skip
    for s, c, a in zip(
        translation["scale"], translation["cka"], translation["accuracy"], strict=True
    ):
        log(f"    c = {s:7.1f} rms: CKA {c:.4f}, accuracy {a:.3f}")
    log(f"    closed-form limit CKA(X, subset) = {translation['limit']:.4f}")

    log("4. RBF -> linear as the bandwidth grows (Tiny-10 block7 vs another network's block7)")
    rbf = checks.rbf_to_linear(
        nets[0]["embeddings"][6], nets[1]["embeddings"][6], list(config.rbf_thresholds)
    )
    for t, r, g in zip(rbf["threshold"], rbf["rbf"], rbf["gap"], strict=True):
        log(f"    threshold {t:5.1f}: RBF CKA {r:.6f}, |RBF - linear| {g:.2e}")
    log(f"    linear CKA {rbf['linear']:.6f}")

    log("5. triangle inequality over every triple of two networks' layers")
    reps = [e for net in nets[:2] for e in net["embeddings"]]
    triangle = {name: checks.triangle_slack(d) for name, d in checks.angles(reps).items()}
    for name, found in triangle.items():
        log(f"    {name:20s} {found['violations']} violations of {found['triples']}, "
            f"min slack {found['min_slack']:+.2e}")  # fmt: skip

    result = {
        "meta": {
            "date": datetime.date.today().isoformat(),
            "cka_sim": cka_sim.__version__,
            "machine": f"{platform.machine()} {platform.processor()}".strip(),
            "config": asdict(config),
            "dataset": "fashion_mnist (canonical files), 32 x 32 (2-pixel padding)",
            "seconds": None,
        },
        "layer_identification": {"tiny10": tiny, "mlp": mlp, "published": layer_id.PUBLISHED},
        "bias": bias,
        "translation": translation,
        "rbf_to_linear": rbf,
        "triangle": triangle,
    }
    result["meta"]["seconds"] = time.perf_counter() - start
    log(f"done in {result['meta']['seconds']:.0f} s")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"published-{result['meta']['date']}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        stem.with_suffix(".md").write_text(markdown(result))
        log(f"wrote {stem}.json and .md")
    return result


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m benchmarks.published [--tiny] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.published", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="seconds-long sizes (for tests)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    run(Config.tiny() if args.tiny else Config(), out=args.out)
