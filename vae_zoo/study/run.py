"""Run the whole study: stages, claims, figures, ``results.json`` and ``report.md``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..storage import lock_directory
from .analysis import cka_claims, transfer_claim, visual_claim
from .config import ENCODER_CLAIM_LAYERS, StudyConfig
from .criteria import Claim, Interval
from .figures import (
    group_heatmaps,
    layer_curves,
    reconstructions,
    sample_grid,
    transfer_curves,
    visual_check,
    visual_validation,
)
from .pipeline import RANDOM, Study, write_json
from .report import write_report

VARIANTS = (("debiased", "mean"), ("biased", "mean"), ("debiased", "sample"), ("biased", "sample"))
"""(estimator, decoder input) variants of claims 1 and 2; the first is primary, the last is the
paper's own setting."""


def run_study(config: StudyConfig, out_dir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the study in ``out_dir`` and return the content of ``results.json``.

    The study holds an exclusive lock on ``out_dir`` while it runs (see
    :func:`vae_zoo.storage.lock_directory`): a second study on the same directory raises
    :class:`~vae_zoo.storage.DirectoryLockedError` at once, naming the process that holds it.
    """
    with lock_directory(out_dir):
        return _run_locked(config, out_dir, progress=progress)


def _run_locked(config: StudyConfig, out_dir: str | Path, *, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    study = Study(config, out_dir, progress=progress)
    checkpoints = study.train_zoo()
    models = study.models(checkpoints)
    study.measure_cka(models)
    study.run_transfers(checkpoints)
    probes = study.run_probes(models)
    study.log("[5/5] verdicts, figures and report")
    results = analyse(study, models, probes)
    results["elapsed_seconds_this_invocation"] = round(time.perf_counter() - start, 1)
    write_json(study.out / "results.json", results)
    write_report(study.out / "report.md", results)
    study.log(
        f"done in {results['elapsed_seconds_this_invocation']:.0f} s: {study.out / 'report.md'}"
    )
    for claim in results["claims"]:
        verdict = {True: "holds", False: "does not hold", None: "inconclusive"}[claim["holds"]]
        study.log(f"  {claim['id']}: {verdict}")
    return results


def analyse(
    study: Study, models: dict[str, Any], probes: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """Claims, secondary variants and figures from the stored measurements."""
    config = study.config
    figures = study.out / "figures"
    variants: dict[str, dict[str, Any]] = {}
    curves_panels = []
    primary: list[Claim] = []
    for estimator, mode in VARIANTS:
        evals = study.eval_cka(estimator)
        claim1, claim2, extra = cka_claims(evals, config, mode=mode)
        for claim in (claim1, claim2):
            claim.evidence["estimator"] = f"linear CKA, {estimator}"
        key = f"{estimator}/{mode}"
        variants[key] = {
            "encoders-generic": claim1.to_dict(),
            "decoders-specific": claim2.to_dict(),
        }
        if (estimator, mode) == VARIANTS[0]:
            primary += [claim1, claim2]
        if mode == "mean" or estimator == "debiased":
            curves_panels.append(
                (f"{estimator} CKA, decoder driven by the {mode}", extra["curves"], extra["units"])
            )
    layer_curves(curves_panels, figures / "cka_layer_curves.png")
    _heatmaps(study, figures)

    final, scratch, curves = study.transfer_losses()
    primary.append(transfer_claim(final, scratch, config))
    transfer_curves(curves, config.recipes, figures / "transfer_curves.png")

    points, panels = _visual_points(study, models, probes)
    claim4 = visual_claim(points, config)
    primary.append(claim4)
    for target, (rows, originals, units) in panels.items():
        visual_check(target, rows, originals, units, figures / f"visual_check_{target}.png")
    visual_validation(
        points,
        Interval(**claim4.evidence["spearman_score_vs_gain"]),
        figures / "visual_check_validation.png",
    )
    _samples(study, models, figures / "samples.png")
    return {
        "config": config.to_dict(),
        "claims": [claim.to_dict() for claim in primary],
        "secondary": variants,
        "probe_accuracy": probes,
        "figures": sorted(str(p.relative_to(study.out)) for p in figures.glob("*.png")),
    }


def _heatmaps(study: Study, figures: Path) -> None:
    """Mean layer x layer CKA (debiased, decoder from the mean) per comparison group."""
    from .analysis import model_pairs

    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    units: list[tuple[str, str]] = []
    for name in study.config.datasets:
        data = study.load_cka(name)
        units = data["meta"]["units"]
        keep = [i for i, (_, mode) in enumerate(units) if mode == "mean"]
        full = data["debiased_full"][:, keep][:, :, :, keep]
        for group, pairs in model_pairs(data["meta"]["models"]).items():
            if group == "random":
                continue
            for a, b in pairs:
                sums[group] = sums.get(group, 0) + np.nan_to_num(full[a, :, b, :])
                counts[group] = counts.get(group, 0) + 1
    names = [layer for layer, mode in units if mode == "mean"]
    matrices = {
        "same dataset, other seed": (sums["same"] / counts["same"], names),
        "different datasets": (sums["cross"] / counts["cross"], names),
    }
    group_heatmaps(
        matrices,
        figures / "cka_heatmaps.png",
        "Mean debiased CKA between all layers of two VAEs (rows: model A, columns: model B)",
    )


def _visual_points(
    study: Study, models: dict[str, Any], probes: dict[str, dict[str, float]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    config = study.config
    points: list[dict[str, Any]] = []
    panels: dict[str, Any] = {}
    seeds = list(config.seeds)
    for target in config.datasets:
        data = study.load_cka(target)
        ids = data["meta"]["models"]
        units = data["meta"]["units"]
        diag = study.eval_cka("debiased")[config.datasets.index(target)].full
        labels = data["debiased_labels"]
        enc = [units.index((layer, "mean")) for layer in ENCODER_CLAIM_LAYERS]
        images, _ = study.eval_images(target)
        originals = images[:8].astype(np.float32) / 255
        rows = []
        for source in config.datasets:
            if source == target:
                continue
            for seed in seeds:
                s, t = ids.index(f"{source}/s{seed}"), ids.index(f"{target}/s{seed}")
                gain = probes[target][f"{source}/s{seed}"] - probes[target][f"{RANDOM}/s{seed}"]
                point = {
                    "source": source,
                    "target": target,
                    "seed": seed,
                    "score": float(np.nanmean(diag[s, t, enc])),
                    "label_score": float(np.nanmean(labels[s, enc])),
                    "gain": float(gain),
                }
                points.append(point)
                if seed == config.transfer_source_seed:
                    other = next(x for x in seeds if x != seed)
                    rows.append(
                        {
                            **point,
                            "profile": diag[s, t],
                            "same_profile": diag[t, ids.index(f"{target}/s{other}")],
                            "label_profile": labels[s],
                            "target_label_profile": labels[t],
                            "reconstructions": reconstructions(
                                models[f"{source}/s{seed}"], images[:8]
                            ),
                        }
                    )
        panels[target] = (rows, originals, units)
    return points, panels


def _samples(study: Study, models: dict[str, Any], path: Path) -> None:
    seed = study.config.transfer_source_seed
    rows = []
    for name in study.config.datasets:
        images, _ = study.eval_images(name)
        images = images[:10]
        rows.append(
            (
                f"{name} (seed {seed}): test images and reconstructions",
                images.astype(np.float32) / 255,
                reconstructions(models[f"{name}/s{seed}"], images),
            )
        )
    sample_grid(rows, path)
