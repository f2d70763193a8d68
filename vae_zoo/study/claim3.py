"""Claim 3 (``retrain-which``) and the paper's recipe against scratch (``paper-recipe``).

The graded test (rules version 4, :func:`vae_zoo.study.criteria.retrain_which`):

- **Pair-level G profile** (:func:`pair_g_profile`): per encoder block, the source model's mean
  debiased CKA with the target's trained models on the target's evaluation set, between the
  floor f (the target's models against the untrained ones) and the ceiling c (the target's
  models among themselves): G = (cross − f) / (c − f). The block is *unresolved* when its span
  c − f is below :data:`~vae_zoo.study.criteria.MIN_SPAN` or its seed margin
  δ = 2 SD(same-dataset pairs) / (c − f) is at least 1 (SD over every same-dataset pair of the
  target's evaluation set, as :func:`vae_zoo.study.analysis.seed_margin` takes it).
- **Predicted depth** (:func:`predicted_depth`): the number of leading blocks with
  G ≥ :data:`~vae_zoo.study.criteria.G_FALL`, unresolved blocks passed over (counted as
  reusable).
- **Best depth**: argmin of the target test loss over ``freeze0..5`` at ``sweep_steps``.
- **Statistic**: Spearman ρ pooled over the pairs, with the one-sided permutation p of
  :func:`vae_zoo.study.permutation.pooled_spearman_test` (best depths permuted among the
  sources of each target).
- **Tie band** (:func:`tie_band`): :data:`~vae_zoo.study.criteria.TIE_SDS` x the pooled seed SD
  of a recipe's relative loss (loss over the target's mean scratch loss), pooled over the
  scratch models of each target and the ``freeze2`` repeats of each target.
- **Power** (:func:`graded_power`): the rule's rate of holding by simulation, at the observed
  predicted depths, when each best depth equals the prediction with probability 0.5 and is
  otherwise drawn from the observed best depths.

The paper's recipe (:func:`paper_gain`): mean over pairs of (m_t − loss_paper) / m_t, m_t the
mean of target t's scratch losses, with an interval resampling targets and, within each, its
scratch models. The long curves (:func:`long_gains`) are a secondary reading.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import RANDOM, model_masks, parse_model
from .bootstrap import percentile_interval
from .config import ENCODER_BLOCKS, GRADED_DEPTHS, StudyConfig
from .criteria import (
    G_FALL,
    MIN_SPAN,
    PERMUTATION_ALPHA,
    RHO_MIN,
    TIE_SDS,
    Claim,
    Interval,
    paper_recipe,
    retrain_which,
)
from .permutation import pooled_spearman_test

__all__ = [
    "BlockProfile",
    "best_depths",
    "graded_power",
    "long_gains",
    "pair_g_profile",
    "paper_claim",
    "paper_gain",
    "predicted_depth",
    "retrain_claim",
    "tie_band",
    "transfer_claims",
]

Pair = tuple[str, str]
#: Simulations of the graded test's power (its Monte Carlo standard error is stated).
POWER_SIMULATIONS = 400
#: The alternative of the power: the chance that a pair's best depth equals its prediction.
POWER_HIT_RATE = 0.5


def _key(pair: Pair) -> str:
    return f"{pair[0]}->{pair[1]}"


@dataclass(frozen=True)
class BlockProfile:
    """A source model's pair-level G on one target, per encoder block, with its resolution.

    Attributes
    ----------
    blocks : tuple of str
        The block names (their first layer; the heads by ``encoder.mu``).
    g : tuple of float
        G = (cross − floor) / (ceiling − floor) per block.
    span : tuple of float
        ceiling − floor per block (debiased CKA).
    margin : tuple of float
        δ = 2 SD(same-dataset pairs) / span per block (NaN when the span is not positive).
    """

    blocks: tuple[str, ...]
    g: tuple[float, ...]
    span: tuple[float, ...]
    margin: tuple[float, ...]

    @property
    def unresolved(self) -> tuple[bool, ...]:
        """Per block: span < MIN_SPAN or δ ≥ 1 (or either undefined)."""
        return tuple(
            not (s >= MIN_SPAN and m < 1.0) for s, m in zip(self.span, self.margin, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "blocks": list(self.blocks),
            "G": list(self.g),
            "span": list(self.span),
            "margin": list(self.margin),
            "unresolved": [b for b, u in zip(self.blocks, self.unresolved, strict=True) if u],
        }


def pair_g_profile(data: Mapping[str, Any], source_model: str, target: str) -> BlockProfile:
    """G of one source model on a target's evaluation set per encoder block, with its span and
    seed margin (see the module docstring).

    Parameters
    ----------
    data : mapping
        The stage-2 arrays of the target's evaluation set (``debiased_full``, ``meta``).
    source_model : str
        Its model id, e.g. ``"mnist/s0"``.
    target : str
        The target dataset (its trained models give the ceiling and the floor).
    """
    ids = data["meta"]["models"]
    units = [tuple(u) for u in data["meta"]["units"]]
    full = data["debiased_full"]
    sym = np.where(np.isnan(full), np.transpose(full, (1, 0, 2)), full)
    targets = [i for i, m in enumerate(ids) if parse_model(m)[0] == target]
    randoms = [i for i, m in enumerate(ids) if parse_model(m)[0] == RANDOM]
    same_a, same_b = np.nonzero(model_masks(ids)["same"])
    s = ids.index(source_model)
    g, span, margin = [], [], []
    for block in ENCODER_BLOCKS:
        u = units.index((block[0], "mean"))
        cross = np.nanmean(sym[s, targets, u])
        ceiling = np.nanmean([sym[a, b, u] for a in targets for b in targets if a < b])
        floor = np.nanmean(sym[np.ix_(targets, randoms)][:, :, u])
        pairs = sym[same_a, same_b, u]
        pairs = pairs[np.isfinite(pairs)]
        sd = float(np.std(pairs, ddof=1)) if len(pairs) > 1 else float("nan")
        width = float(ceiling - floor)
        g.append(float((cross - floor) / width) if width != 0 else float("nan"))
        span.append(width)
        margin.append(2.0 * sd / width if width > 0 else float("nan"))
    return BlockProfile(tuple(b[0] for b in ENCODER_BLOCKS), tuple(g), tuple(span), tuple(margin))


def predicted_depth(profile: Sequence[float], unresolved: Sequence[bool] = ()) -> int:
    """Leading blocks whose G is at least :data:`~vae_zoo.study.criteria.G_FALL`.

    A block flagged in ``unresolved`` is passed over: counted as reusable whatever its G. The
    count stops at the first resolved block below the threshold (or with an undefined G).
    """
    flags = list(unresolved) + [False] * (len(profile) - len(unresolved))
    depth = 0
    for g, skip in zip(profile, flags, strict=False):
        if not (skip or g >= G_FALL):
            break
        depth += 1
    return depth


def best_depths(losses: Mapping[str, float]) -> tuple[int, int]:
    """The best and second-best freeze depth of one pair (lowest target test loss over
    ``freeze{k}``, k in :data:`~vae_zoo.study.config.GRADED_DEPTHS`; ties to the shallower)."""
    values = np.array([losses[f"freeze{k}"] for k in GRADED_DEPTHS])
    order = np.argsort(values, kind="stable")
    return int(GRADED_DEPTHS[order[0]]), int(GRADED_DEPTHS[order[1]])


def _pooled_sd(groups: Mapping[str, Sequence[float]]) -> tuple[float, int]:
    """√(Σ_g Σ_i (x_gi − x̄_g)² / Σ_g (n_g − 1)) over groups of at least two, and its degrees
    of freedom."""
    squares, dof = 0.0, 0
    for values in groups.values():
        v = np.asarray(values, dtype=float)
        if len(v) > 1:
            squares += float(np.sum((v - v.mean()) ** 2))
            dof += len(v) - 1
    return (float(np.sqrt(squares / dof)) if dof else float("nan")), dof


def tie_band(
    scratch: Mapping[str, Sequence[float]], repeats: Mapping[str, Sequence[float]]
) -> dict[str, Any]:
    """The tie band: ``TIE_SDS`` x the pooled seed SD of a recipe's relative target loss.

    Parameters
    ----------
    scratch : mapping
        ``{target: [loss of each scratch model]}``.
    repeats : mapping
        ``{target: [loss of each training seed of the repeated recipe]}``.

    Returns
    -------
    dict
        ``band``, ``pooled_sd``, ``dof``, ``tie_sds`` and ``group_sizes`` (``scratch/<t>``,
        ``freeze2/<t>``): relative losses are each loss over the target's mean scratch loss.
    """
    groups: dict[str, np.ndarray] = {}
    for target, values in scratch.items():
        mean = float(np.mean(values))
        groups[f"scratch/{target}"] = np.asarray(values, dtype=float) / mean
        if target in repeats:
            groups[f"freeze2/{target}"] = np.asarray(repeats[target], dtype=float) / mean
    sd, dof = _pooled_sd(groups)
    return {
        "band": TIE_SDS * sd,
        "pooled_sd": sd,
        "dof": dof,
        "tie_sds": TIE_SDS,
        "group_sizes": {name: len(v) for name, v in groups.items()},
    }


def _depth_rows(
    graded: Mapping[Pair, Mapping[str, float]],
    scratch: Mapping[str, Sequence[float]],
    profiles: Mapping[Pair, BlockProfile],
    band: float,
) -> dict[str, dict[str, Any]]:
    """Per pair: the profile, predicted, best and second-best depth, the gap between the two
    best (relative loss), whether it lies inside the tie band, and the losses."""
    rows = {}
    for pair, losses in graded.items():
        profile = profiles[pair]
        mean = float(np.mean(scratch[pair[1]]))
        best, second = best_depths(losses)
        gap = (losses[f"freeze{second}"] - losses[f"freeze{best}"]) / mean
        rows[_key(pair)] = {
            "source": pair[0],
            "target": pair[1],
            "profile": profile.to_dict(),
            "predicted_depth": predicted_depth(profile.g, profile.unresolved),
            "best_depth": best,
            "second_best_depth": second,
            "gap": float(gap),
            "in_tie_band": bool(gap < band),
            "losses": {r: float(v) for r, v in losses.items()},
            "relative_losses": {r: float(v / mean) for r, v in losses.items()},
        }
    return rows


def graded_power(
    predicted: Sequence[int],
    best: Sequence[int],
    groups: Sequence[Hashable],
    *,
    hit_rate: float = POWER_HIT_RATE,
    simulations: int = POWER_SIMULATIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """The rate at which the graded rule holds, by simulation, under an alternative.

    Each simulation keeps the observed predicted depths and groups; each pair's best depth is
    its prediction (clipped to :data:`~vae_zoo.study.config.GRADED_DEPTHS`) with probability
    ``hit_rate``, otherwise a draw from the observed best depths; the rule holds when
    ρ ≥ RHO_MIN and p ≤ PERMUTATION_ALPHA. Returns the rate with its standard error
    √(r(1 − r)/simulations).
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(predicted, dtype=float)
    observed = np.asarray(best, dtype=float)
    hit = np.clip(x, min(GRADED_DEPTHS), max(GRADED_DEPTHS))
    holds = 0
    for _ in range(simulations):
        y = np.where(rng.random(len(x)) < hit_rate, hit, rng.choice(observed, len(x)))
        rho, test = pooled_spearman_test(x, y, groups)
        holds += bool(np.isfinite(rho) and rho >= RHO_MIN and test.pvalue <= PERMUTATION_ALPHA)
    rate = holds / simulations
    return {
        "power": rate,
        "standard_error": float(np.sqrt(rate * (1 - rate) / simulations)),
        "simulations": simulations,
        "alternative": (
            f"each pair's best depth equals its predicted depth (clipped to 0-"
            f"{max(GRADED_DEPTHS)}) with probability {hit_rate}, otherwise a draw from the "
            "observed best depths; predicted depths and targets as observed"
        ),
    }


def retrain_claim(
    graded: Mapping[Pair, Mapping[str, float]],
    scratch: Mapping[str, Sequence[float]],
    repeats: Mapping[str, Sequence[float]],
    profiles: Mapping[Pair, BlockProfile],
    config: StudyConfig,
    *,
    secondary: Mapping[str, Any] | None = None,
    power_simulations: int = POWER_SIMULATIONS,
) -> Claim:
    """Claim 3 from the graded test (see the module docstring).

    Parameters
    ----------
    graded : mapping
        ``{(source, target): {recipe: target test loss at sweep_steps}}``, ``freeze0..5``.
    scratch : mapping
        ``{target: [loss of each scratch model at the same budget]}``.
    repeats : mapping
        ``{target: [loss of freeze2 from the tie source, each training seed]}``.
    profiles : mapping
        ``{(source, target): BlockProfile}`` (:func:`pair_g_profile`).
    config : StudyConfig
    secondary : mapping, optional
        The long curves' reading (:func:`long_gains`), added to the evidence.
    power_simulations : int
        Simulations of :func:`graded_power`.
    """
    band = tie_band(scratch, repeats)
    rows = _depth_rows(graded, scratch, profiles, band["band"])
    ordered = list(rows.values())
    x = [r["predicted_depth"] for r in ordered]
    y = [r["best_depth"] for r in ordered]
    groups = [r["target"] for r in ordered]
    rho, test = pooled_spearman_test(x, y, groups)
    evidence = {
        "n_pairs": len(rows),
        "group_sizes": {t: groups.count(t) for t in dict.fromkeys(groups)},
        "permutation": test.to_dict(),
        "power": graded_power(x, y, groups, simulations=power_simulations),
        "predicted_depth": {k: r["predicted_depth"] for k, r in rows.items()},
        "best_depth": {k: r["best_depth"] for k, r in rows.items()},
        "g_profiles": {k: r["profile"]["G"] for k, r in rows.items()},
        "unresolved_blocks": {k: r["profile"]["unresolved"] for k, r in rows.items()},
        "tie_band": {**band, "pairs_inside": [k for k, r in rows.items() if r["in_tie_band"]]},
        "pairs": rows,
        "graded_budget": config.sweep_steps,
        "scratch_models_per_target": {t: len(v) for t, v in scratch.items()},
        "target_train_examples": config.transfer_examples,
        "definitions": {
            "margin": "δ = 2 SD of every same-dataset pair's CKA on the target's evaluation set "
            "/ the target's span (ceiling − floor)",
            "relative_loss": "target test loss / the mean of the target's scratch models",
            "gap": "relative loss of the second-best depth − that of the best depth",
        },
        **({"long_curves": dict(secondary)} if secondary is not None else {}),
    }
    return retrain_which(float(rho), float(test.pvalue), evidence)


def paper_gain(
    graded: Mapping[Pair, Mapping[str, float]],
    scratch: Mapping[str, Sequence[float]],
    *,
    resamples: int,
    level: float,
    seed: int = 0,
    recipe: str = "paper",
) -> tuple[Interval, dict[str, float]]:
    """Mean over pairs of (m_t − loss_recipe) / m_t, with its bootstrap interval.

    m_t is the mean of target t's scratch losses. Each of ``resamples`` replicates draws the
    targets with replacement and, within each drawn target, its scratch models with
    replacement, and takes the mean gain over the drawn targets' pairs; the interval is the
    central ``level`` percentile interval. Returns the interval and each pair's gain.
    """
    targets = list(dict.fromkeys(t for _, t in graded))
    losses = {t: np.array([v[recipe] for (_, tt), v in graded.items() if tt == t]) for t in targets}
    models = {t: np.asarray(scratch[t], dtype=float) for t in targets}
    per_pair = {
        _key(pair): float((np.mean(models[pair[1]]) - v[recipe]) / np.mean(models[pair[1]]))
        for pair, v in graded.items()
    }
    rng = np.random.default_rng(seed)
    replicates = np.empty(resamples)
    for r in range(resamples):
        gains = []
        for t in rng.integers(0, len(targets), len(targets)):
            m = rng.choice(models[targets[t]], len(models[targets[t]])).mean()
            gains.append((m - losses[targets[t]]) / m)
        replicates[r] = np.mean(np.concatenate(gains))
    low, high = percentile_interval(replicates, level)
    return Interval(float(np.mean(list(per_pair.values()))), low, high), per_pair


def paper_claim(
    graded: Mapping[Pair, Mapping[str, float]],
    scratch: Mapping[str, Sequence[float]],
    config: StudyConfig,
    *,
    seed: int = 0,
) -> Claim:
    """The paper's recipe against scratch over every pair (:func:`criteria.paper_recipe`)."""
    gain, per_pair = paper_gain(
        graded,
        scratch,
        resamples=config.bootstrap_resamples,
        level=config.confidence_level,
        seed=seed,
    )
    evidence = {
        "n_pairs": len(per_pair),
        "per_pair_gain": per_pair,
        "scratch_mean": {t: float(np.mean(v)) for t, v in scratch.items()},
        "scratch_models_per_target": {t: len(v) for t, v in scratch.items()},
        "budget": config.sweep_steps,
        "resamples": config.bootstrap_resamples,
        "confidence_level": config.confidence_level,
        "bootstrap_seed": seed,
        "gain_definition": "(m_t − loss_paper) / m_t, m_t the mean target test loss of the "
        "target's scratch models at the same budget; mean over ordered pairs",
    }
    return paper_recipe(gain, evidence)


def long_gains(
    runs: Mapping[Pair, Mapping[str, Mapping[int, float]]],
    scratch: Mapping[str, Mapping[int, float]],
    config: StudyConfig,
) -> dict[str, Any]:
    """The long curves against scratch at every budget after 0 (a secondary reading).

    Gain = (loss_scratch − loss_recipe) / loss_scratch, per pair and as the mean over pairs,
    for the configured recipes, every long depth, and ``best freeze depth`` (the lowest loss
    over the long depths, chosen after the fact).
    """
    depths = [f"freeze{k}" for k in config.long_depths]
    budgets = [b for b in config.transfer_budgets if b > 0]
    per_pair: dict[str, dict[str, dict[str, float]]] = {}
    for pair, recipes in runs.items():
        base = scratch[pair[1]]
        lines = {name: {b: record[b] for b in budgets} for name, record in recipes.items()}
        lines["best freeze depth"] = {b: min(recipes[d][b] for d in depths) for b in budgets}
        per_pair[_key(pair)] = {
            name: {str(b): float((base[b] - v[b]) / base[b]) for b in budgets}
            for name, v in lines.items()
        }
    names = list(dict.fromkeys(n for p in per_pair.values() for n in p))
    mean = {
        name: {
            str(b): float(np.mean([p[name][str(b)] for p in per_pair.values() if name in p]))
            for b in budgets
        }
        for name in names
    }
    return {
        "gain_over_scratch": mean,
        "per_pair": per_pair,
        "budgets": list(config.transfer_budgets),
        "steps": config.transfer_steps,
        "single_runs": True,
        "gain_definition": "(loss_scratch − loss_recipe) / loss_scratch at each budget; one run "
        "per recipe and one scratch run per target (no seed replicate)",
    }


def transfer_claims(
    graded: Mapping[Pair, Mapping[str, float]],
    scratch: Mapping[str, Sequence[float]],
    repeats: Mapping[str, Sequence[float]],
    profiles: Mapping[Pair, BlockProfile],
    config: StudyConfig,
    long: tuple[Mapping, Mapping] | None = None,
) -> tuple[Claim, Claim, dict[str, Any]]:
    """Claim 3, the paper's recipe line, and the long curves' gains table.

    ``long``: ``(runs, scratch)`` of the long curves (:func:`long_gains`), or None.
    """
    secondary = long_gains(*long, config) if long is not None else None
    claim3 = retrain_claim(graded, scratch, repeats, profiles, config, secondary=secondary)
    return claim3, paper_claim(graded, scratch, config), (secondary or {})
