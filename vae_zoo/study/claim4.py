"""Claim 4 (``visual-transfer-check``): does a visual check before transfer rank the sources?

For every ordered (source, target) pair of datasets, the source's models of each of
``config.check_source_seeds`` are transferred to the target with ``all`` and fine-tuned for
``check_steps`` steps; ``scratch_seeds`` scratch models per target are trained the same way.
Per (source, target) and source seed s:

- **score** (primary, pre-registered): the mean debiased CKA over the encoder claim layers
  between the source model of seed s and the target's trained models, on target images;
- **label score** (secondary): the mean debiased CKA of the source model's encoder claim
  layers with the target's one-hot labels;
- **gain**: the probe accuracy of the transferred model minus the mean probe accuracy of the
  target's scratch models, acc_s − mean(acc_scratch);
- **loss gain** (secondary): (mean(loss_scratch) − loss_s) / mean(loss_scratch).

The point of a (source, target) is the mean of each over the source seeds (:func:`check_point`).
The statistic is the mean over targets of the within-target Spearman ρ between score and gain;
its one-sided p-value permutes the sources within each target, enumerated exactly where
:data:`~vae_zoo.study.criteria.EXACT_LIMIT` allows (:mod:`vae_zoo.study.permutation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .config import StudyConfig
from .criteria import EXACT_LIMIT, MONTE_CARLO_DRAWS, Claim, visual_transfer_check
from .permutation import mean_within_spearman_test, spearman_by_group

__all__ = ["check_point", "target_spread", "visual_claim", "within_target_test"]

#: The per-seed fields a claim-4 point averages over its source seeds.
SEED_FIELDS = ("score", "label_score", "accuracy", "gain", "loss", "loss_gain")


def check_point(
    source: str,
    target: str,
    per_seed: Sequence[Mapping[str, float]],
    scratch_accuracy: Sequence[float],
    scratch_loss: Sequence[float],
) -> dict[str, Any]:
    """One (source, target) point of claim 4: per-seed readings and their means over seeds.

    Parameters
    ----------
    source, target : str
        The datasets.
    per_seed : sequence of mappings
        One per source seed: ``seed``, ``score``, ``label_score``, ``accuracy`` (probe accuracy
        of the model transferred from that seed) and ``loss`` (its target test loss).
    scratch_accuracy, scratch_loss : sequences of float
        Probe accuracies and test losses of the target's scratch models.

    Returns
    -------
    dict
        ``source``, ``target``, the seed means of :data:`SEED_FIELDS` (``gain`` = mean over
        seeds of acc_s − mean(acc_scratch); ``loss_gain`` = mean over seeds of
        (mean(loss_scratch) − loss_s) / mean(loss_scratch)), ``n_seeds`` and ``per_seed`` (the
        per-seed readings with their own ``gain`` and ``loss_gain``).
    """
    if not per_seed:
        raise ValueError(f"check_point {source}->{target}: no source seeds")
    if len(scratch_accuracy) == 0 or len(scratch_loss) == 0:
        raise ValueError(f"check_point {source}->{target}: no scratch models")
    base_acc = float(np.mean(scratch_accuracy))
    base_loss = float(np.mean(scratch_loss))
    rows = []
    for row in per_seed:
        rows.append(
            {
                "seed": int(row["seed"]),
                "score": float(row["score"]),
                "label_score": float(row["label_score"]),
                "accuracy": float(row["accuracy"]),
                "gain": float(row["accuracy"]) - base_acc,
                "loss": float(row["loss"]),
                "loss_gain": (base_loss - float(row["loss"])) / base_loss,
            }
        )
    means = {key: float(np.mean([r[key] for r in rows])) for key in SEED_FIELDS}
    return {"source": source, "target": target, **means, "n_seeds": len(rows), "per_seed": rows}


def within_target_test(
    points: Sequence[Mapping[str, Any]],
    score: str,
    gain: str,
    *,
    exact_limit: int = EXACT_LIMIT,
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean within-target Spearman ρ of ``score`` and ``gain``, with its permutation p-value.

    ρ̄ = (1/T) Σ_t ρ_t over the targets with at least three sources and neither side constant.
    The null permutes the gains among the sources of each target (the targets' own levels are
    kept, so targets with different baselines never mix); p = P(ρ̄_null ≥ ρ̄), exact when the
    number of combinations Π_t n_t! is at most ``exact_limit``, else Monte Carlo with ``draws``
    draws (:func:`vae_zoo.study.permutation.mean_within_spearman_test`).

    Returns
    -------
    dict
        ``rho``, ``pvalue``, ``exact``, ``combinations``, ``standard_error``, ``draws``,
        ``per_target`` (ρ_t, NaN where undefined), ``n_targets`` (targets in the mean).
    """
    x = [float(p[score]) for p in points]
    y = [float(p[gain]) for p in points]
    groups = [p["target"] for p in points]
    rho, test = mean_within_spearman_test(
        x, y, groups, exact_limit=exact_limit, draws=draws, seed=seed
    )
    per_target = spearman_by_group(x, y, groups)
    per_target = {t: per_target[t] for t in sorted(per_target)}
    return {
        "rho": rho,
        **test.to_dict(),
        "per_target": per_target,
        "n_targets": int(sum(np.isfinite(v) for v in per_target.values())),
    }


def target_spread(
    points: Sequence[Mapping[str, Any]], scratch_accuracy: Mapping[str, Sequence[float]]
) -> dict[str, dict[str, Any]]:
    """Per target: the scratch models' spread beside the spread of the gains between sources.

    ``scratch_sd`` is the SD (ddof 1) of the target's scratch probe accuracies and
    ``scratch_range`` their max − min; ``gain_sd_between_sources`` and
    ``gain_range_between_sources`` the same of the seed-mean gains of its sources;
    ``source_seed_sd`` the pooled SD over the source seeds of a (source, target)'s accuracy,
    √(mean over sources of their variance, ddof 1). A seed mean of k independent models carries
    noise of about ``scratch_sd / √k``; ``between_over_noise`` is
    ``gain_sd_between_sources / (scratch_sd / √k)``, with k the source seeds: near 1 or below,
    the sources' gains differ no more than noise would make them.
    """
    out: dict[str, dict[str, Any]] = {}
    for target in sorted({p["target"] for p in points}):
        rows = [p for p in points if p["target"] == target]
        scratch = np.asarray(scratch_accuracy.get(target, []), dtype=float)
        gains = np.array([r["gain"] for r in rows], dtype=float)
        seeds = [[s["accuracy"] for s in r.get("per_seed", [])] for r in rows]
        seed_vars = [np.var(a, ddof=1) for a in seeds if len(a) >= 2]
        k = min((len(a) for a in seeds), default=1) or 1
        scratch_sd = float(np.std(scratch, ddof=1)) if scratch.size >= 2 else float("nan")
        between = float(np.std(gains, ddof=1)) if gains.size >= 2 else float("nan")
        noise = scratch_sd / np.sqrt(k)
        out[target] = {
            "n_scratch": int(scratch.size),
            "scratch_accuracies": [float(a) for a in scratch],
            "scratch_sd": scratch_sd,
            "scratch_range": float(np.ptp(scratch)) if scratch.size else float("nan"),
            "n_sources": len(rows),
            "n_source_seeds": int(k),
            "gain_sd_between_sources": between,
            "gain_range_between_sources": float(np.ptp(gains)) if gains.size else float("nan"),
            "source_seed_sd": float(np.sqrt(np.mean(seed_vars))) if seed_vars else float("nan"),
            "between_over_noise": between / noise if noise > 0 else float("nan"),
        }
    return out


def _per_source_seed(points: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The primary test on each source seed alone (what one seed would have said)."""
    seeds = sorted({s["seed"] for p in points for s in p.get("per_seed", [])})
    out = {}
    for seed in seeds:
        rows = [
            {"target": p["target"], **s}
            for p in points
            for s in p.get("per_seed", [])
            if s["seed"] == seed
        ]
        test = within_target_test(rows, "score", "gain")
        out[str(seed)] = {k: test[k] for k in ("rho", "pvalue", "exact", "per_target")}
    return out


def _pooled_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman ρ over all points, targets mixed (post hoc; NaN when a side is constant)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def _definitions(config: StudyConfig) -> dict[str, str]:
    seeds = ", ".join(str(s) for s in config.check_source_seeds)
    return {
        "score_definition": (
            "mean debiased CKA over the encoder claim layers between the source model and the "
            "target's trained models, on target images; the mean over the source models of "
            f"seeds {seeds}"
        ),
        "label_score_definition": (
            "mean debiased CKA over the encoder claim layers between the source model and the "
            "target's one-hot labels; the mean over the source seeds"
        ),
        "gain_definition": (
            f"linear-probe test accuracy on the target's labels of the source model transferred "
            f"with 'all' and fine-tuned for {config.check_steps} steps on "
            f"{config.transfer_examples} target images, minus the mean over "
            f"{config.scratch_seeds} scratch models trained the same way; the mean over the "
            f"source models of seeds {seeds}"
        ),
        "spread_definition": (
            "scratch_sd: SD (ddof 1) of the target's scratch probe accuracies; "
            "gain_sd_between_sources: SD of its sources' seed-mean gains; between_over_noise: "
            "their ratio with the scratch SD divided by √(source seeds), the noise of a seed mean"
        ),
    }


def visual_claim(
    points: Sequence[dict[str, Any]],
    config: StudyConfig,
    scratch_accuracy: Mapping[str, Sequence[float]] | None = None,
) -> Claim:
    """Claim 4 from (source, target) points with visual scores and gains of real transfer.

    Parameters
    ----------
    points : sequence of dict
        One per (source, target) (:func:`check_point`): ``source``, ``target``, ``score``
        (primary), ``label_score`` (secondary), ``gain`` (probe accuracy minus the mean of the
        target's scratch models) and ``loss_gain``, each a mean over the source seeds; with
        ``per_seed`` where the seeds' own readings are known.
    config : StudyConfig
    scratch_accuracy : mapping, optional
        Probe accuracies of each target's scratch models, for the spread of
        :func:`target_spread`.

    Returns
    -------
    Claim
        :func:`vae_zoo.study.criteria.visual_transfer_check` on the mean within-target ρ of
        score and gain and its exact (or Monte Carlo) permutation p-value.
    """
    primary = within_target_test(points, "score", "gain")
    secondary = {
        "label_score_vs_probe_gain": within_target_test(points, "label_score", "gain"),
        "score_vs_loss_gain": within_target_test(points, "score", "loss_gain"),
        "per_source_seed": _per_source_seed(points),
    }
    groups = [p["target"] for p in points]
    pooled = _pooled_rho([p["score"] for p in points], [p["gain"] for p in points])
    targets = sorted(set(groups))
    evidence = {
        "n_points": len(points),
        "n_sources_per_target": {t: groups.count(t) for t in targets},
        "n_source_seeds": max((int(p.get("n_seeds", 1)) for p in points), default=0),
        "source_seeds": list(config.check_source_seeds),
        "per_target_rho": primary["per_target"],
        "n_targets_in_mean": primary["n_targets"],
        "pvalue_exact": primary["exact"],
        "combinations": primary["combinations"],
        "pvalue_standard_error": primary["standard_error"],
        "monte_carlo_draws": primary["draws"],
        "target_spread": target_spread(points, scratch_accuracy or {}),
        "secondary": secondary,
        "pooled_rho_post_hoc": pooled,
        **_definitions(config),
        "points": list(points),
    }
    return visual_transfer_check(primary["rho"], primary["pvalue"], evidence)
