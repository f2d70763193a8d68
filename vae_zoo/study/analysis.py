"""From measurements to evidence: group means, bootstrap intervals, the four claims.

Uncertainty (every interval is a percentile bootstrap at the configured level):

- **CKA claims** resample, in each replicate, the evaluation datasets and, within each
  comparison group (cross-dataset, same-dataset-other-seed, trained-vs-random), the model pairs,
  with replacement; the example-level variation is added from a random half of the evaluation
  examples: the replicate uses ``full + (half_b − mean over halves)``. For a half-sample drawn
  without replacement the deviation ``T_half − T_full`` has about the variance of the full-data
  estimate, and centring the deviations removes the small-sample bias of biased CKA.
- **Transfer and probe claims** resample the (source, target) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from .config import DECODER_CLAIM_LAYERS, ENCODER_CLAIM_LAYERS, StudyConfig
from .criteria import (
    Claim,
    Interval,
    decoders_specific,
    encoders_generic,
    retrain_which,
    visual_transfer_check,
)

GROUPS: tuple[str, ...] = ("cross", "same", "random")
GROUP_LABELS = {
    "cross": "cross-dataset (trained on different datasets)",
    "same": "same dataset, other seed",
    "random": "trained vs random init",
}


@dataclass
class EvalCKA:
    """Same-unit CKA between all models on one evaluation dataset (one estimator).

    Attributes
    ----------
    dataset : str
    models : list of str
        Model ids ``"<dataset>/s<seed>"``, and ``"random/s<seed>"`` for the untrained baselines.
    units : list of (str, str)
        (layer, decode mode).
    full : numpy.ndarray, shape (M, M, U)
        CKA of unit ``u`` of model ``a`` with unit ``u`` of model ``b`` on all examples.
    halves : numpy.ndarray, shape (B, M, M, U)
        The same on ``B`` random halves of the examples.
    """

    dataset: str
    models: list[str]
    units: list[tuple[str, str]]
    full: np.ndarray
    halves: np.ndarray


def parse_model(model_id: str) -> tuple[str, int]:
    """``"mnist/s1"`` -> ``("mnist", 1)``."""
    dataset, seed = model_id.split("/s")
    return dataset, int(seed)


def model_pairs(models: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
    """Index pairs of models in each comparison group."""
    parsed = [parse_model(m) for m in models]
    pairs: dict[str, list[tuple[int, int]]] = {g: [] for g in GROUPS}
    for a, (da, sa) in enumerate(parsed):
        for b, (db, sb) in enumerate(parsed):
            if da == "random":
                continue
            if db == "random":
                pairs["random"].append((a, b))
            elif b > a and da != db:
                pairs["cross"].append((a, b))
            elif b > a and da == db and sa != sb:
                pairs["same"].append((a, b))
    return pairs


def _interval(point: float, replicates: np.ndarray, level: float) -> Interval:
    alpha = (1 - level) / 2
    low, high = np.nanpercentile(replicates, [100 * alpha, 100 * (1 - alpha)])
    return Interval(float(point), float(low), float(high))


class GroupBootstrap:
    """Bootstrap replicates of per-unit group means of CKA (see the module docstring)."""

    def __init__(self, evals: Sequence[EvalCKA], *, resamples: int, seed: int = 0) -> None:
        self.units = evals[0].units
        self.pairs = model_pairs(evals[0].models)
        missing = [g for g in GROUPS if not self.pairs[g]]
        if missing:
            raise ValueError(f"no model pairs for comparison group(s) {missing}")
        rng = np.random.default_rng(seed)
        n_eval = len(evals)
        full = {g: np.stack([self._cells(e.full, g) for e in evals]) for g in GROUPS}  # (E, P, U)
        halves = {
            g: np.stack([self._cells(e.halves, g) for e in evals]) for g in GROUPS
        }  # (E, B, P, U)
        self.point = {g: np.nanmean(full[g], axis=(0, 1)) for g in GROUPS}  # (U,)
        dev = {g: halves[g] - np.nanmean(halves[g], axis=1, keepdims=True) for g in GROUPS}
        n_halves = halves[GROUPS[0]].shape[1]
        self.replicates = {g: np.empty((resamples, len(self.units))) for g in GROUPS}
        for r in range(resamples):
            chosen = rng.integers(0, n_eval, n_eval)
            half = rng.integers(0, n_halves, n_eval)
            for g in GROUPS:
                p = rng.integers(0, full[g].shape[1], full[g].shape[1])
                cells = full[g][chosen][:, p] + dev[g][chosen, half][:, p]
                self.replicates[g][r] = np.nanmean(cells, axis=(0, 1))

    def _cells(self, values: np.ndarray, group: str) -> np.ndarray:
        a, b = np.array(self.pairs[group]).T
        return values[..., a, b, :]

    def unit_indices(self, layers: Sequence[str], mode: str) -> list[int]:
        from ..models import ENCODER_LAYERS

        return [
            self.units.index((layer, "mean" if layer in ENCODER_LAYERS else mode))
            for layer in layers
        ]

    def layer_mean(self, group: str, units: Sequence[int]) -> tuple[float, np.ndarray]:
        """Point estimate and replicates of the mean over ``units`` of a group's CKA."""
        return (
            float(np.nanmean(self.point[group][units])),
            np.nanmean(self.replicates[group][:, units], axis=1),
        )

    def per_unit(self, group: str, level: float) -> list[Interval]:
        """An interval for every unit."""
        return [
            _interval(self.point[group][u], self.replicates[group][:, u], level)
            for u in range(len(self.units))
        ]


def cka_claims(
    evals: Sequence[EvalCKA], config: StudyConfig, *, mode: str = "mean"
) -> tuple[Claim, Claim, dict[str, object]]:
    """Claims 1 and 2 from same-unit CKA on every evaluation dataset."""
    boot = GroupBootstrap(evals, resamples=config.bootstrap_resamples)
    level = config.confidence_level
    enc = boot.unit_indices(ENCODER_CLAIM_LAYERS, mode)
    dec = boot.unit_indices(DECODER_CLAIM_LAYERS, mode)
    means = {
        (g, side): boot.layer_mean(g, idx)
        for g in GROUPS
        for side, idx in (("enc", enc), ("dec", dec))
    }

    def ratio(side: str) -> tuple[float, np.ndarray]:
        (pc, rc), (ps, rs) = means[("cross", side)], means[("same", side)]
        return pc / ps, rc / rs

    enc_ratio, dec_ratio = ratio("enc"), ratio("dec")
    summary = {
        f"{side}_{g}_mean_cka": _interval(*means[(g, side)], level).to_dict()
        for g in GROUPS
        for side in ("enc", "dec")
    }
    common = {
        "evaluation_datasets": [e.dataset for e in evals],
        "n_pairs": {g: len(boot.pairs[g]) for g in GROUPS},
        "decoder_driven_by": mode,
    }
    claim1 = encoders_generic(
        _interval(*enc_ratio, level),
        _interval(
            means[("cross", "enc")][0] - means[("random", "enc")][0],
            means[("cross", "enc")][1] - means[("random", "enc")][1],
            level,
        ),
        {**common, **{k: v for k, v in summary.items() if k.startswith("enc")}},
    )
    claim2 = decoders_specific(
        _interval(*dec_ratio, level),
        _interval(enc_ratio[0] - dec_ratio[0], enc_ratio[1] - dec_ratio[1], level),
        {
            **common,
            **{k: v for k, v in summary.items() if k.startswith("dec")},
            "encoder_ratio": _interval(*enc_ratio, level).to_dict(),
        },
    )
    curves = {g: boot.per_unit(g, level) for g in GROUPS}
    return claim1, claim2, {"curves": curves, "units": boot.units, "summary": summary}


def _pair_bootstrap(values: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """Replicates of the mean of ``values`` (one per (source, target) pair) over resampled pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), (resamples, len(values)))
    return np.nanmean(values[idx], axis=1)


def transfer_claim(
    final_loss: Mapping[tuple[str, str], Mapping[str, float]],
    scratch_loss: Mapping[str, float],
    config: StudyConfig,
) -> Claim:
    """Claim 3 from the target test losses at the full transfer budget.

    Parameters
    ----------
    final_loss : mapping
        ``{(source, target): {recipe: loss}}`` for every recipe but ``scratch``.
    scratch_loss : mapping
        ``{target: loss}`` of the ``scratch`` baseline.
    """
    pairs = sorted(final_loss)
    level = config.confidence_level
    relative = {
        recipe: np.array(
            [(scratch_loss[t] - final_loss[(s, t)][recipe]) / scratch_loss[t] for s, t in pairs]
        )
        for recipe in config.recipes
        if recipe != "scratch"
    }
    advantage = np.array(
        [
            (final_loss[(s, t)]["encoder"] - final_loss[(s, t)]["decoder"]) / scratch_loss[t]
            for s, t in pairs
        ]
    )
    evidence = {
        "n_pairs": len(pairs),
        "steps": config.transfer_steps,
        "gain_over_scratch": {
            recipe: _interval(
                float(v.mean()), _pair_bootstrap(v, config.bootstrap_resamples), level
            ).to_dict()
            for recipe, v in relative.items()
        },
        "gain_over_scratch_definition": "(loss_scratch − loss_recipe) / loss_scratch, target test loss at the full budget",
        "per_pair_loss": {f"{s}->{t}": dict(final_loss[(s, t)]) for s, t in pairs},
        "scratch_loss": dict(scratch_loss),
    }
    interval = _interval(
        float(advantage.mean()), _pair_bootstrap(advantage, config.bootstrap_resamples), level
    )
    return retrain_which(interval, evidence)


def visual_claim(points: Sequence[dict[str, object]], config: StudyConfig) -> Claim:
    """Claim 4 from (source, target, seed) points with ``score``, ``label_score`` and ``gain``."""
    level = config.confidence_level
    clusters = sorted({(p["source"], p["target"]) for p in points})
    by_cluster = {c: [p for p in points if (p["source"], p["target"]) == c] for c in clusters}
    rng = np.random.default_rng(0)

    def rho(rows: Sequence[dict[str, object]], key: str) -> float:
        x = np.array([r[key] for r in rows], dtype=float)
        y = np.array([r["gain"] for r in rows], dtype=float)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(spearmanr(x, y).statistic)

    results = {}
    for key in ("score", "label_score"):
        reps = []
        for _ in range(config.bootstrap_resamples):
            chosen = rng.integers(0, len(clusters), len(clusters))
            reps.append(rho([p for i in chosen for p in by_cluster[clusters[i]]], key))
        results[key] = _interval(rho(points, key), np.array(reps), level)
    evidence = {
        "n_points": len(points),
        "score_definition": "mean debiased CKA over encoder layers between the source-trained and the target-trained model (same seed) on target images",
        "gain_definition": "linear-probe test accuracy on the target's labels from the posterior mean: source encoder minus random-init encoder",
        "spearman_label_score_vs_gain": results["label_score"].to_dict(),
        "label_score_definition": "mean debiased CKA over encoder layers between the source model and the target's one-hot labels",
        "points": list(points),
    }
    return visual_transfer_check(results["score"], evidence)
