"""From measurements to evidence: model-level intervals, the normalised index G, the claims.

- **CKA claims** (1 and 2) use the model-level bootstrap of :mod:`vae_zoo.study.bootstrap`:
  models are resampled within their stratum (the seeds of one dataset; the untrained baselines),
  every pair among the drawn models is recomputed, and a random half of each evaluation set's
  examples adds the example-level variation. Every quantity below is computed on the same
  replicates, so differences and ratios have joint intervals.
- **G**, per layer and over the claim layers: (cross − random) / (same − random), where
  *cross* is the mean over pairs of models trained on different datasets, *same* over pairs
  trained on the same dataset with other seeds (the ceiling), and *random* over pairs of a
  trained and an untrained model (the floor). G = 1: as similar as two seeds of one dataset;
  G = 0: no more similar than a trained model is to an untrained one on the same images.
- **Transfer and probe claims** resample the (source, target) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..models import ENCODER_LAYERS
from .bootstrap import PairData, group_replicates, model_weights, percentile_interval
from .config import DECODER_CLAIM_LAYERS, DEPTH_PAIRS, ENCODER_CLAIM_LAYERS, StudyConfig
from .criteria import (
    MIN_SPAN,
    Claim,
    Interval,
    decoders_specific,
    encoders_generic,
)

GROUPS: tuple[str, ...] = ("cross", "same", "random")
GROUP_LABELS = {
    "cross": "cross-dataset (trained on different datasets)",
    "same": "same dataset, other seed (ceiling)",
    "random": "trained vs untrained (floor)",
}
RANDOM = "random"

#: Ceiling and floor closer than this (in CKA) leave G undefined (NaN) rather than a ratio of
#: rounding errors: at the input layer every model sees the same images, so all three groups
#: equal 1 up to rounding. The claim layers lie orders of magnitude above it.
G_MIN_SCALE = 1e-9


def parse_model(model_id: str) -> tuple[str, int]:
    """``"mnist/s1"`` -> ``("mnist", 1)``; ``"random/r3"`` -> ``("random", 3)``."""
    dataset, seed = model_id.rsplit("/", 1)
    return dataset, int(seed[1:])


def model_masks(models: Sequence[str]) -> dict[str, np.ndarray]:
    """``{group: (M, M) bool}``: each unordered pair of each comparison group once."""
    parsed = [parse_model(m)[0] for m in models]
    n = len(models)
    masks = {g: np.zeros((n, n), dtype=bool) for g in GROUPS}
    for a, da in enumerate(parsed):
        for b, db in enumerate(parsed):
            if da == RANDOM:
                continue
            if db == RANDOM:
                masks["random"][a, b] = True
            elif b > a:
                masks["same" if da == db else "cross"][a, b] = True
    return masks


def model_strata(models: Sequence[str]) -> list[list[int]]:
    """Indices of the models resampled together: one stratum per training dataset, and one of
    the untrained baselines."""
    strata: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        strata.setdefault(parse_model(m)[0], []).append(i)
    return list(strata.values())


def _interval(point: float, replicates: np.ndarray, level: float) -> Interval:
    """The point estimate with its percentile interval; NaN throughout when either is undefined
    (a G of 0/0 has no interval, even where some resamples happen to give a finite ratio)."""
    low, high = percentile_interval(replicates, level)
    if not (np.isfinite(low) and np.isfinite(point)):
        low = high = float("nan")
    return Interval(float(point), low, high)


@dataclass
class GroupStats:
    """Point estimates and joint replicates of every group's mean per unit, for one measure."""

    units: list[tuple[str, str]]
    point: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]
    n_pairs: dict[str, int]
    extra: dict[str, Any] = field(default_factory=dict)

    def indices(self, layers: Sequence[str], mode: str) -> list[int]:
        return [
            self.units.index((layer, "mean" if layer in ENCODER_LAYERS else mode))
            for layer in layers
        ]

    def mean(self, group: str, idx: Sequence[int]) -> tuple[float, np.ndarray]:
        """A group's mean over the units ``idx``: estimate and replicates."""
        return (
            float(np.mean(self.point[group][list(idx)])),
            np.mean(self.replicates[group][:, list(idx)], axis=1),
        )

    def g_index(self, idx: Sequence[int]) -> tuple[float, np.ndarray]:
        """G = (cross − random) / (same − random) of the means over ``idx``."""
        (c, rc), (s, rs), (r, rr) = (self.mean(g, idx) for g in GROUPS)
        with np.errstate(invalid="ignore", divide="ignore"):
            point = np.float64(c - r) / np.float64(s - r)
            reps = (rc - rr) / (rs - rr)
        if not abs(s - r) > G_MIN_SCALE:
            point = np.float64("nan")
        return float(point), np.where(np.abs(rs - rr) > G_MIN_SCALE, reps, np.nan)


def group_stats(
    evals: Sequence[Mapping[str, Any]], measure: str, config: StudyConfig, seed: int = 0
) -> GroupStats:
    """Model-level bootstrap of every group's mean per unit for one measure.

    ``evals``: the stage-2 arrays of each evaluation set (:meth:`Study.load_cka`).
    """
    models = evals[0]["meta"]["models"]
    masks = model_masks(models)
    empty = [g for g in GROUPS if not masks[g].any()]
    if empty:
        raise ValueError(f"no model pairs for comparison group(s) {empty}")
    data = [PairData(e[f"{measure}_full"], e[f"{measure}_halves"]) for e in evals]
    strata = model_strata(models)
    point, reps = group_replicates(
        data, masks, strata, resamples=config.bootstrap_resamples, seed=seed
    )
    return GroupStats(
        [tuple(u) for u in evals[0]["meta"]["units"]],
        point,
        reps,
        {g: int(masks[g].sum()) for g in GROUPS},
        {"strata": strata, "models": models, "seed": seed},
    )


def own_init_stats(
    evals: Sequence[Mapping[str, Any]], config: StudyConfig, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean debiased CKA of trained models with their own initial weights, per unit.

    Uses the same model weights as :func:`group_stats` with the same ``seed`` (the first draw
    of the resampling), so it can be compared with the floor on joint replicates.
    """
    models = evals[0]["meta"]["models"]
    trained = np.array([parse_model(m)[0] != RANDOM for m in models])
    weights = model_weights(
        model_strata(models), len(models), config.bootstrap_resamples, np.random.default_rng(seed)
    )
    values = np.stack([e["own_init"] for e in evals])[:, trained]  # (E, T, U)
    w = weights[:, trained]
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0)
    num = np.einsum("rt,etu->ru", w, v)
    den = np.einsum("rt,etu->ru", w, finite.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        point = v.sum(axis=(0, 1)) / finite.sum(axis=(0, 1))
        return point, num / den


def seed_margin(
    evals: Sequence[Mapping[str, Any]], measure: str, idx: Sequence[int], stats: GroupStats
) -> float:
    """The equivalence margin of claims 1 and 2, on the G scale: seed-to-seed spread.

    Twice the standard deviation of the same-dataset (other seed) pairs' CKA averaged over the
    units ``idx`` (pooled over evaluation sets: the root of the mean within-set variance), over
    the ceiling-to-floor distance (same − random): the half-width of the range that holds about
    95 % of the pairs of seeds of one dataset, in units of G. NaN when the ceiling is not above the floor.
    """
    masks = model_masks(evals[0]["meta"]["models"])
    a, b = np.nonzero(masks["same"])
    variances = []
    for e in evals:
        v = np.nanmean(e[f"{measure}_full"][a, b][:, list(idx)], axis=1)
        v = v[np.isfinite(v)]
        if len(v) > 1:
            variances.append(np.var(v, ddof=1))
    spread = 2.0 * float(np.sqrt(np.mean(variances))) if variances else float("nan")
    same, _ = stats.mean("same", idx)
    random, _ = stats.mean("random", idx)
    if not same > random:  # no ceiling above the floor: the G scale is undefined
        return float("nan")
    return spread / (same - random)


def cka_claims(
    evals: Sequence[Mapping[str, Any]],
    config: StudyConfig,
    *,
    measure: str = "debiased",
    mode: str = "mean",
    second: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[Claim, Claim, dict[str, Any]]:
    """Claims 1 and 2 from the stage-2 arrays, with the tables of the report.

    Parameters
    ----------
    evals : sequence of mapping
        Stage-2 arrays of each evaluation set.
    measure, mode : str
        The measure (``debiased`` or ``biased``) and decoder input of this reading.
    second : sequence of mapping, optional
        When given (the primary reading), the deconfounded measure is read from the same
        arrays as the second reading of both rules.
    """
    level = config.confidence_level
    stats = group_stats(evals, measure, config)
    enc = stats.indices(ENCODER_CLAIM_LAYERS, mode)
    dec = stats.indices(DECODER_CLAIM_LAYERS, mode)
    sides = (("enc", enc), ("dec", dec))
    readings = {key: _reading(evals, stats, measure, idx, level) for key, idx in sides}
    contrast = _contrast(readings, level)
    dstats: GroupStats | None = None
    deconf: dict[str, dict[str, Any]] | None = None
    if second is not None:
        dstats = group_stats(evals, "deconfounded", config)
        deconf = {key: _reading(evals, dstats, "deconfounded", idx, level) for key, idx in sides}
    common = _common_evidence(evals, stats, measure, mode)
    extra = _claims_extra(stats, dstats, deconf, level, measure, mode)
    claim1 = encoders_generic(
        readings["enc"]["G"], readings["enc"]["margin"], _evidence(common, readings, deconf, "enc")
    )
    claim2 = decoders_specific(
        readings["dec"]["G"],
        readings["dec"]["margin"],
        contrast,
        {
            **_evidence(common, readings, deconf, "dec"),
            "encoder_G": readings["enc"]["G"].to_dict(),
            "encoder_G_mean_of_layers": readings["enc"]["G_mean_of_layers"].to_dict(),
            "encoder_minus_decoder_G_mean_of_layers": _contrast(
                readings, level, "G_mean_of_layers"
            ).to_dict(),
            "depth_differences": extra["depth"],
        },
    )
    return claim1, claim2, extra


def _reading(
    evals: Sequence[Mapping[str, Any]],
    stats: GroupStats,
    measure: str,
    idx: list[int],
    level: float,
) -> dict[str, Any]:
    """One side (encoder or decoder layers ``idx``) of one measure: G (primary weighting), the
    mean of per-layer G (second weighting, :func:`layer_weighting`), their replicates, the
    margin and the group means."""
    g_point, g_reps = stats.g_index(idx)
    mean_g, mean_reps, layers = layer_weighting(evals, stats, measure, idx, level)
    return {
        "G": _interval(g_point, g_reps, level),
        "G_replicates": g_reps,
        "G_mean_of_layers": mean_g,
        "G_mean_of_layers_replicates": mean_reps,
        "layer_weights": layers,
        "margin": seed_margin(evals, measure, idx, stats),
        "means": {g: _interval(*stats.mean(g, idx), level).to_dict() for g in GROUPS},
    }


def layer_weighting(
    evals: Sequence[Mapping[str, Any]],
    stats: GroupStats,
    measure: str,
    idx: Sequence[int],
    level: float,
) -> tuple[Interval, np.ndarray, list[dict[str, Any]]]:
    r"""The second weighting of G over a side: the mean of per-layer G over resolved layers.

    G of the layer means (primary) is a weighted mean of per-layer G,
    :math:`G = \sum_u w_u G_u` with :math:`w_u = (s_u - r_u) / \sum_v (s_v - r_v)`: each layer
    weighs by its span same − random. The second weighting gives every resolved layer the same
    weight, :math:`\bar G = \frac{1}{|R|} \sum_{u \in R} G_u`, where a layer is unresolved
    when its span is below :data:`~vae_zoo.study.criteria.MIN_SPAN` or its seed margin
    :math:`\delta_u \ge 1` (:func:`seed_margin` of that layer; NaN counts as unresolved).

    Returns
    -------
    mean_g : Interval
        :math:`\bar G` with its interval from the same replicates as G (NaN when no layer is
        resolved).
    replicates : numpy.ndarray, shape (R,)
    layers : list of dict
        Per layer: ``layer``, ``span``, ``weight`` (its share of the summed span, the weight of
        the primary G), ``G`` with its interval, ``margin`` and ``resolved``.
    """
    spans = [float(stats.point["same"][u] - stats.point["random"][u]) for u in idx]
    total = float(np.sum(spans))
    rows, resolved = [], []
    for u, span in zip(idx, spans, strict=True):
        g = stats.g_index([u])
        margin = seed_margin(evals, measure, [u], stats)
        ok = bool(span >= MIN_SPAN and margin < 1.0)
        rows.append(
            {
                "layer": stats.units[u][0],
                "span": span,
                "weight": span / total if total > 0 else float("nan"),
                "G": _interval(*g, level).to_dict(),
                "margin": margin,
                "resolved": ok,
            }
        )
        if ok:
            resolved.append(g)
    if not resolved:
        nan = float("nan")
        return Interval(nan, nan, nan), np.full(len(stats.replicates["same"]), nan), rows
    point = float(np.mean([g for g, _ in resolved]))
    reps = np.mean(np.stack([r for _, r in resolved]), axis=0)
    return _interval(point, reps, level), reps, rows


def _contrast(readings: Mapping[str, Mapping[str, Any]], level: float, key: str = "G") -> Interval:
    """Encoder minus decoder ``key`` (G, or ``G_mean_of_layers``), with its interval on the
    joint replicates."""
    return _interval(
        readings["enc"][key].estimate - readings["dec"][key].estimate,
        readings["enc"][f"{key}_replicates"] - readings["dec"][f"{key}_replicates"],
        level,
    )


def _common_evidence(
    evals: Sequence[Mapping[str, Any]], stats: GroupStats, measure: str, mode: str
) -> dict[str, Any]:
    """The evidence claims 1 and 2 share: the reading, the data and the layers."""
    return {
        "measure": measure,
        "decoder_driven_by": mode,
        "evaluation_datasets": [e["meta"].get("dataset", "") for e in evals],
        "n_pairs_per_evaluation_set": stats.n_pairs,
        "n_models": {
            "trained": sum(parse_model(m)[0] != RANDOM for m in stats.extra["models"]),
            "untrained": sum(parse_model(m)[0] == RANDOM for m in stats.extra["models"]),
        },
        "encoder_layers": list(ENCODER_CLAIM_LAYERS),
        "decoder_layers": list(DECODER_CLAIM_LAYERS),
    }


def _evidence(
    common: Mapping[str, Any],
    readings: Mapping[str, Mapping[str, Any]],
    deconf: Mapping[str, Mapping[str, Any]] | None,
    key: str,
) -> dict[str, Any]:
    """The evidence of one side (``"enc"`` or ``"dec"``): the group means, the second
    weighting and each layer's weight, and the deconfounded reading."""
    out = {
        **common,
        "means": readings[key]["means"],
        "G_weighting": (
            "G is taken of the layer means: each layer weighs by its span same − random "
            "(layer_weights: its share); G_mean_of_layers is the mean of per-layer G over the "
            f"resolved layers (span ≥ {MIN_SPAN}, δ < 1), each weighing the same"
        ),
        "G_mean_of_layers": readings[key]["G_mean_of_layers"].to_dict(),
        "layer_weights": readings[key]["layer_weights"],
    }
    if deconf is not None:
        out["deconfounded_G"] = deconf[key]["G"].to_dict()
        out["deconfounded_margin"] = deconf[key]["margin"]
    return out


def _claims_extra(
    stats: GroupStats,
    dstats: GroupStats | None,
    deconf: Mapping[str, Mapping[str, Any]] | None,
    level: float,
    measure: str,
    mode: str,
) -> dict[str, Any]:
    """The third value of :func:`cka_claims`: statistics, tables, deconfounded claims and
    the bootstrap replicates of every group."""
    extra: dict[str, Any] = {"stats": stats, "units": stats.units}
    if dstats is not None:
        extra["deconfounded_stats"] = dstats
    extra["layers"] = _layer_table(stats, deconf_stats=dstats, level=level, mode=mode)
    extra["depth"] = _depth_table(stats, level, mode)
    if deconf is not None:
        extra["deconfounded_claims"] = (
            encoders_generic(deconf["enc"]["G"], deconf["enc"]["margin"], {}),
            decoders_specific(
                deconf["dec"]["G"], deconf["dec"]["margin"], _contrast(deconf, level), {}
            ),
        )
    extra["replicates"] = {f"{g}_{measure}_{mode}": stats.replicates[g] for g in GROUPS}
    return extra


def _layer_table(
    stats: GroupStats, *, deconf_stats: GroupStats | None, level: float, mode: str
) -> list[dict[str, Any]]:
    """One row per layer (decoder driven by ``mode``): group means, G, deconfounded G."""
    rows = []
    for u, (layer, m) in enumerate(stats.units):
        if m != mode and layer not in ENCODER_LAYERS:
            continue
        row: dict[str, Any] = {"layer": layer}
        for g in GROUPS:
            row[g] = _interval(*stats.mean(g, [u]), level).to_dict()
        row["G"] = _interval(*stats.g_index([u]), level).to_dict()
        if deconf_stats is not None:
            row["deconfounded"] = _interval(*deconf_stats.mean("cross", [u]), level).to_dict()
            row["deconfounded_G"] = _interval(*deconf_stats.g_index([u]), level).to_dict()
        rows.append(row)
    return rows


def _depth_table(stats: GroupStats, level: float, mode: str) -> list[dict[str, Any]]:
    """Encoder − decoder G at each distance from the bottleneck."""
    rows = []
    for depth, (enc_layer, dec_layer) in enumerate(DEPTH_PAIRS, start=1):
        (ge, re), (gd, rd) = (
            stats.g_index(stats.indices([enc_layer], mode)),
            stats.g_index(stats.indices([dec_layer], mode)),
        )
        rows.append(
            {
                "depth": depth,
                "encoder_layer": enc_layer,
                "decoder_layer": dec_layer,
                "encoder_G": _interval(ge, re, level).to_dict(),
                "decoder_G": _interval(gd, rd, level).to_dict(),
                "difference": _interval(ge - gd, re - rd, level).to_dict(),
            }
        )
    return rows


def init_control(
    evals: Sequence[Mapping[str, Any]], stats: GroupStats, config: StudyConfig
) -> dict[str, Any]:
    """The shared-initialisation control: trained vs own init, against trained vs other inits."""
    point, reps = own_init_stats(evals, config, seed=stats.extra["seed"])
    level = config.confidence_level
    out = {}
    for side, layers in (("encoder", ENCODER_CLAIM_LAYERS), ("decoder", DECODER_CLAIM_LAYERS)):
        idx = stats.indices(layers, "mean")
        own = (float(np.mean(point[idx])), np.mean(reps[:, idx], axis=1))
        rnd = stats.mean("random", idx)
        out[side] = {
            "own_init": _interval(*own, level).to_dict(),
            "other_init": _interval(*rnd, level).to_dict(),
            "difference": _interval(own[0] - rnd[0], own[1] - rnd[1], level).to_dict(),
        }
    return out
