"""The report's per-claim text, read from ``results.json`` only: one-line measurements and the
detail tables of each claim (:mod:`vae_zoo.study.report` assembles the report).

Every reader tolerates a missing key: results of an older rules version (or a run that skipped
a reading) render what they have and say what is not recorded, never a number written here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "PLAIN",
    "SHORT",
    "VERDICT",
    "cka_details",
    "depth_sentence",
    "fmt",
    "iv",
    "long_curve_gains",
    "measurement",
    "paper_details",
    "pvalue_text",
    "retrain_details",
    "visual_details",
    "where_it_lost",
]

VERDICT = {True: "**holds**", False: "**does not hold**", None: "**inconclusive**"}
PLAIN = {True: "holds", False: "does not hold", None: "is inconclusive"}
SHORT = {True: "holds", False: "does not hold", None: "inconclusive"}
NOT_RECORDED = "not recorded"


def fmt(value: Any, spec: str = ".3f") -> str:
    """A number as ``spec``, ``undefined`` for NaN/inf and ``not recorded`` for None."""
    if value is None:
        return NOT_RECORDED
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "undefined"
    text = format(number, spec)
    if text.startswith("-") and not text.strip("-+0.%"):
        text = text[1:]  # -0.000: a rounding, not a sign
    return text


def iv(d: Mapping[str, Any] | None, spec: str = ".3f") -> str:
    """An interval ``{"estimate", "low", "high"}`` as ``0.300 [0.200, 0.390]``."""
    if not d or "estimate" not in d:
        return NOT_RECORDED
    if d["estimate"] is None or not math.isfinite(float(d["estimate"])):
        return "undefined"  # None: an undefined number as results.json writes it (null)
    return f"{fmt(d['estimate'], spec)} [{fmt(d.get('low'), spec)}, {fmt(d.get('high'), spec)}]"


def pvalue_text(ev: Mapping[str, Any]) -> str:
    """``one-sided permutation p = 0.0568`` with how it was computed: ``(exact, N
    combinations)``, or ``(Monte Carlo, N draws, standard error s)``. Reads ``pvalue`` and
    ``pvalue_exact`` / ``exact``, ``combinations``, ``pvalue_standard_error`` /
    ``standard_error``, ``monte_carlo_draws`` / ``draws`` / ``permutations``."""
    text = f"one-sided permutation p = {fmt(ev.get('pvalue'), '.4f')}"
    p = ev.get("pvalue")
    if p is None or not math.isfinite(float(p)):
        return text  # undefined (a constant side): how it would have been computed says nothing
    exact = ev.get("pvalue_exact", ev.get("exact"))
    if exact is True:
        combos = ev.get("combinations")
        return text + (f" (exact, {int(combos):,} combinations)" if combos else " (exact)")
    se = ev.get("pvalue_standard_error", ev.get("standard_error"))
    draws = ev.get("monte_carlo_draws") or ev.get("draws") or ev.get("permutations")
    if se is not None and draws:
        return text + f" (Monte Carlo, {draws} draws, standard error {fmt(se, '.4f')})"
    return text + (f" (Monte Carlo, {draws} draws)" if draws else "")


def measurement(claim: Mapping[str, Any]) -> str:
    """One line of evidence for a claim: the statistic the rule reads, against its threshold."""
    ev = claim.get("evidence", {})
    cid = claim["id"]
    if cid in ("encoders-generic", "decoders-specific"):
        side = "encoder" if cid == "encoders-generic" else "decoder"
        text = f"{side} G = {iv(ev.get('G'))} against 1 − δ = {fmt(1 - ev['margin'])}"
        if cid == "decoders-specific":
            text += f"; encoder − decoder G = {iv(ev.get('encoder_G_minus_decoder_G'))}"
        cross = ev.get("means", {}).get("cross")
        if cid == "encoders-generic" and cross:
            text += f" (raw cross-dataset CKA {fmt(cross.get('estimate'))})"
        return text
    if cid == "retrain-which":
        if "rho" in ev:
            return (
                f"Spearman ρ = {fmt(ev['rho'], '.2f')} between the predicted and the best freeze "
                f"depth over {ev.get('n_pairs', '?')} pairs, "
                f"{pvalue_text({**ev.get('permutation', {}), 'pvalue': ev.get('pvalue')})}"
            )
        hits = ev.get("hits", {})
        return (
            f"the predicted freeze depth was right (within one block) in {sum(hits.values())} "
            f"of {ev.get('n_pairs', len(hits))} sweep pairs"
        )
    if cid == "paper-recipe":
        return (
            f"mean relative gain of the paper's recipe over scratch = {iv(ev.get('gain'))} over "
            f"{ev.get('n_pairs', '?')} pairs at {ev.get('budget', '?')} steps"
        )
    if cid == "visual-transfer-check":
        targets = ev.get("n_sources_per_target", {})
        return (
            f"mean within-target Spearman ρ = {fmt(ev.get('rho_within_targets'), '.2f')}, "
            f"{pvalue_text(ev)}, over {ev.get('n_points', '?')} (source, target) pairs in "
            f"{len(targets)} targets"
        )
    return "see `results.json`"


def cka_details(claim: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    """Claims 1 and 2: group means with their sizes, both weightings of G with each layer's
    weight, every reading of the rule (both sample-mode floors), and the per-layer or
    per-depth tables."""
    ev = claim["evidence"]
    n = ev.get("n_pairs_per_evaluation_set", {})
    models = ev.get("n_models", {})
    layers = ev.get("encoder_layers" if claim["id"] == "encoders-generic" else "decoder_layers")
    sets = ev.get("evaluation_datasets", [])
    out = [
        f"Mean debiased CKA over {', '.join(f'`{x}`' for x in layers or [])} "
        f"({models.get('trained', '?')} trained and {models.get('untrained', '?')} untrained "
        f"models; {len(sets)} evaluation sets, each weighing the same):",
        "",
        "| comparison | pairs per evaluation set | mean CKA |",
        "|---|---|---|",
    ]
    for group, label in (
        ("cross", "different datasets"),
        ("same", "same dataset, other seed (ceiling)"),
        ("random", "trained vs untrained (floor)"),
    ):
        out.append(f"| {label} | {n.get(group, '?')} | {iv(ev.get('means', {}).get(group))} |")
    out += ["", *_weighting(ev), *_readings(claim["id"], results)]
    tables = results.get("tables", {})
    if claim["id"] == "encoders-generic":
        out += _layer_lines(tables)
    else:
        out += _depth_lines(tables)
    return out


def _weighting(ev: Mapping[str, Any]) -> list[str]:
    """The primary G (of the layer means) beside the mean of per-layer G, with each layer's
    weight (its share of the span same − random)."""
    rows = ev.get("layer_weights")
    if not rows:
        return []
    out = [
        f"Weighting. The rule reads G of the layer means, G = {iv(ev.get('G'))}: each layer "
        "weighs by its span same − random. Beside it, the mean of per-layer G over the resolved "
        f"layers, each weighing the same: {iv(ev.get('G_mean_of_layers'))}.",
        "",
        "| layer | span same − random | weight in G | G of the layer | δ | resolved |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        out.append(
            f"| `{row.get('layer')}` | {fmt(row.get('span'), '.4f')} | "
            f"{fmt(100 * row['weight'] if row.get('weight') is not None else None, '.0f')} % | "
            f"{iv(row.get('G'))} | {fmt(row.get('margin'), '.2f')} | "
            f"{'yes' if row.get('resolved') else 'no'} |"
        )
    return [*out, ""]


def _readings(claim_id: str, results: Mapping[str, Any]) -> list[str]:
    """The rule under every reading in ``results["secondary"]`` (measure / decoder input /
    floor)."""
    variants = results.get("secondary", {})
    if not variants:
        return []
    out = [
        "The same rule under each reading (the paper's setting is biased / sample; "
        "deconfounded: the input images' Gram regressed out, Cui et al. 2022; a sample-mode "
        "floor is named where the run has two):",
        "",
        "| reading | G | 1 − δ | floor (random) | verdict |",
        "|---|---|---|---|---|",
    ]
    for key, variant in variants.items():
        v = variant.get(claim_id)
        if not v:
            continue
        evidence = v["evidence"]
        floor = evidence.get("means", {}).get("random")
        out.append(
            f"| {key} | {iv(evidence.get('G'))} | {fmt(1 - evidence['margin'])} | "
            f"{iv(floor)} | {VERDICT[v['holds']]} |"
        )
    return [*out, ""]


def _layer_lines(tables: Mapping[str, Any]) -> list[str]:
    if not tables.get("layers"):
        return []
    out = [
        "Per layer (debiased CKA, decoder driven by the mean; G and deconfounded G with their "
        "model-level intervals):",
        "",
        "| layer | cross | same | random | G | deconfounded cross | deconfounded G |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in tables["layers"]:
        out.append(
            f"| `{row['layer']}` | {iv(row.get('cross'))} | {iv(row.get('same'))} | "
            f"{iv(row.get('random'))} | {iv(row.get('G'))} | {iv(row.get('deconfounded'))} | "
            f"{iv(row.get('deconfounded_G'))} |"
        )
    out += [
        "",
        "Undefined: G where the ceiling and the floor coincide (the input layer, the same images "
        "for every model), and deconfounded values where the input's Gram leaves no residual "
        "(the input layer itself).",
        "",
    ]
    control = tables.get("init_control")
    if control:
        out += [
            "Control: a trained model against its own initial weights, and against other "
            "untrained models (mean debiased CKA over the claim layers):",
            "",
            "| side | own initialisation | other initialisations | difference |",
            "|---|---|---|---|",
        ]
        for side, row in control.items():
            out.append(
                f"| {side} | {iv(row.get('own_init'))} | {iv(row.get('other_init'))} | "
                f"{iv(row.get('difference'))} |"
            )
    return [*out, ""]


def _depth_lines(tables: Mapping[str, Any]) -> list[str]:
    if not tables.get("depth_matched"):
        return []
    out = [
        "At matched depth (layers at the same distance from the latent bottleneck; depth 1 is "
        "next to it):",
        "",
        "| depth | encoder layer | G | decoder layer | G | encoder − decoder |",
        "|---|---|---|---|---|---|",
    ]
    for row in tables["depth_matched"]:
        out.append(
            f"| {row['depth']} | `{row['encoder_layer']}` | {iv(row.get('encoder_G'))} | "
            f"`{row['decoder_layer']}` | {iv(row.get('decoder_G'))} | "
            f"{iv(row.get('difference'))} |"
        )
    return [*out, ""]


def visual_details(ev: Mapping[str, Any]) -> list[str]:
    """Claim 4: per target its ρ beside its scratch spread and the spread of its gains, the
    definitions, and the secondary readings (kept here, out of the summary)."""
    spread = ev.get("target_spread", {})
    seeds = ev.get("n_source_seeds")
    out = [
        (
            f"Each point is a (source, target) pair; score and gain are means over {seeds} "
            "source seeds"
            + (f" ({', '.join(map(str, ev['source_seeds']))})" if ev.get("source_seeds") else "")
            if seeds
            else "Each point is a (source, target) pair, from one source model"
        )
        + (
            ". Per target, the scratch models' spread is the noise a gain carries:"
            if spread
            else ":"
        ),
        "",
    ]
    if spread:
        out += [
            "| target | sources | within-target ρ | scratch models | scratch SD | SD of gains "
            "between sources | between / noise |",
            "|---|---|---|---|---|---|---|",
        ]
    else:
        out += ["| target | sources | within-target ρ |", "|---|---|---|"]
    for t, rho in ev.get("per_target_rho", {}).items():
        row = f"| {t} | {ev.get('n_sources_per_target', {}).get(t, '?')} | {fmt(rho)} |"
        s = spread.get(t)
        if s:
            row += (
                f" {s.get('n_scratch', '?')} | {fmt(s.get('scratch_sd'), '.4f')} | "
                f"{fmt(s.get('gain_sd_between_sources'), '.4f')} | "
                f"{fmt(s.get('between_over_noise'), '.2f')} |"
            )
        out.append(row)
    out += ["", *_visual_definitions(ev), *_visual_secondary(ev)]
    return out


def _visual_definitions(ev: Mapping[str, Any]) -> list[str]:
    parts = [
        f"*Visual score (primary, pre-registered):* {ev.get('score_definition', NOT_RECORDED)}.",
        f"*Gain:* {ev.get('gain_definition', NOT_RECORDED)}.",
    ]
    if ev.get("spread_definition"):
        parts.append(f"*Spread:* {ev['spread_definition']}.")
    return [" ".join(parts), ""]


def _visual_secondary(ev: Mapping[str, Any]) -> list[str]:
    sec = ev.get("secondary", {})
    label = sec.get("label_score_vs_probe_gain", {})
    loss = sec.get("score_vs_loss_gain", {})
    out = [
        "*Secondary readings* (they decide nothing): the label-based score "
        f"({ev.get('label_score_definition', NOT_RECORDED)}) gives mean within-target ρ = "
        f"{fmt(label.get('rho'))}, {pvalue_text(label)}; the primary score against "
        f"the relative test-loss gain gives ρ = {fmt(loss.get('rho'))}, "
        f"{pvalue_text(loss)}. Post hoc, for comparison with version 1: the pooled "
        f"ρ over all pairs, targets mixed, is {fmt(ev.get('pooled_rho_post_hoc'))}.",
        "",
    ]
    per_seed = sec.get("per_source_seed", {})
    if per_seed:
        out += [
            "The primary test on each source seed alone (what one seed would have said):",
            "",
            "| source seed | mean within-target ρ | p |",
            "|---|---|---|",
        ]
        for seed, test in per_seed.items():
            out.append(f"| {seed} | {fmt(test.get('rho'))} | {fmt(test.get('pvalue'), '.4f')} |")
        out.append("")
    return out


def long_curve_gains(ev: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """The long curves' gain over scratch per pair, recipe and budget, (s − r) / s:
    ``ev["long_curves"]["per_pair"]`` (rules version 4), or computed from version 3's
    ``test_losses`` (scratch inside each pair). Budget 0 is left out."""
    long = ev.get("long_curves", {})
    if long.get("per_pair"):
        return long["per_pair"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for pair, per in ev.get("test_losses", {}).items():
        base = per.get("scratch", {})
        out[pair] = {
            recipe: {b: (base[b] - v) / base[b] for b, v in record.items() if b in base and int(b)}
            for recipe, record in per.items()
            if recipe != "scratch"
        }
    return out


def where_it_lost(
    gains: Mapping[str, Mapping[str, Mapping[str, float]]], recipe: str
) -> tuple[list[str], int]:
    """Where ``recipe`` lost to scratch in the long curves: ``"mnist → digits at 2400 steps
    (−0.005)"`` for each (pair, budget) with a negative gain, and the number of cells."""
    lost: list[str] = []
    cells = 0
    for pair, per in gains.items():
        for budget, gain in sorted(per.get(recipe, {}).items(), key=lambda kv: int(kv[0])):
            cells += 1
            if gain < 0:
                lost.append(f"{pair.replace('->', ' → ')} at {budget} steps ({gain:+.3f})")
    return lost, cells


def retrain_details(ev: Mapping[str, Any]) -> list[str]:
    """Claim 3: per pair the G profile, unresolved blocks, predicted, best and second-best
    depth and the tie band; the test's power; the long curves (secondary)."""
    pairs = ev.get("pairs")
    if not pairs:
        return _retrain_v3(ev)
    band = ev.get("tie_band", {})
    out = [
        f"Graded test at {ev.get('graded_budget', '?')} steps on {ev.get('n_pairs', len(pairs))} "
        "ordered pairs (pairs per target: "
        + ", ".join(f"{t} {n}" for t, n in ev.get("group_sizes", {}).items())
        + "; scratch models per target: "
        + ", ".join(f"{t} {n}" for t, n in ev.get("scratch_models_per_target", {}).items())
        + f"). Tie band: {fmt(band.get('tie_sds'), '.0f')} x the pooled seed SD "
        f"{fmt(band.get('pooled_sd'), '.4f')} of a recipe's relative loss = "
        f"{fmt(band.get('band'), '.4f')} ({band.get('dof', '?')} degrees of freedom, from "
        f"{len(band.get('group_sizes', {}))} groups of seeds).",
        "",
        "| pair | pair-level G per encoder block | unresolved | predicted | best | second | "
        "gap (relative loss) | in tie band |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, row in pairs.items():
        profile = row.get("profile", {})
        out.append(
            f"| {key.replace('->', ' → ')} | "
            f"{', '.join(fmt(g, '.2f') for g in profile.get('G', []))} | "
            f"{', '.join(f'`{b}`' for b in profile.get('unresolved', [])) or '-'} | "
            f"{row.get('predicted_depth')} | {row.get('best_depth')} | "
            f"{row.get('second_best_depth')} | {fmt(row.get('gap'), '.4f')} | "
            f"{'yes' if row.get('in_tie_band') else 'no'} |"
        )
    inside = band.get("pairs_inside", [])
    out += [
        "",
        f"{len(inside)} of {len(pairs)} pairs have their two best depths within the tie band, "
        "so their best depth is not resolved by seed noise"
        + (f": {', '.join(p.replace('->', ' → ') for p in inside)}." if inside else "."),
        "",
        *_power(ev.get("power")),
        *_long_table(ev),
    ]
    return out


def _power(power: Mapping[str, Any] | None) -> list[str]:
    if not power:
        return []
    return [
        f"Power of the test: it holds in {fmt(100 * power['power'], '.0f')} % "
        f"(standard error {fmt(100 * power['standard_error'], '.1f')} %) of "
        f"{power.get('simulations', '?')} simulated runs when {power.get('alternative', '?')}.",
        "",
    ]


def _long_table(ev: Mapping[str, Any]) -> list[str]:
    """The long curves' gain over scratch, mean over pairs and per pair (secondary)."""
    gains = long_curve_gains(ev)
    if not gains:
        return []
    long = ev.get("long_curves", {})
    mean = long.get("gain_over_scratch") or ev.get("gain_over_scratch", {})
    budgets = sorted({b for per in gains.values() for r in per.values() for b in r}, key=int)
    out = [
        "*Long curves (secondary):* gain over scratch, (loss_scratch − loss_recipe) / "
        f"loss_scratch, on {len(gains)} pair(s) up to {long.get('steps', budgets[-1])} steps"
        + (
            "; one run per recipe and one scratch run per target, no seed replicate"
            if long.get("single_runs", True)
            else ""
        )
        + " (negative: worse than scratch; 'best freeze depth' chosen after the fact):",
        "",
        "| recipe | pair | " + " | ".join(f"{b} steps" for b in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for recipe, per in mean.items():
        out.append(
            f"| {recipe} | mean of {len(gains)} | "
            + " | ".join(fmt(per.get(b), "+.3f") for b in budgets)
            + " |"
        )
        for pair, lines in gains.items():
            if recipe in lines:
                out.append(
                    f"| | {pair.replace('->', ' → ')} | "
                    + " | ".join(fmt(lines[recipe].get(b), "+.3f") for b in budgets)
                    + " |"
                )
    return [*out, ""]


def _retrain_v3(ev: Mapping[str, Any]) -> list[str]:
    """Claim 3 of rules version 3: the sweep pairs' hits."""
    out = [
        "| sweep pair | pair-level G per encoder block | predicted depth | best depths | hit |",
        "|---|---|---|---|---|",
    ]
    for pair, profile in ev.get("g_profiles", {}).items():
        out.append(
            f"| {pair} | {', '.join(fmt(g, '.2f') for g in profile)} | "
            f"{ev.get('predicted_depth', {}).get(pair)} | {ev.get('best_depths', {}).get(pair)} "
            f"| {'yes' if ev.get('hits', {}).get(pair) else 'no'} |"
        )
    return [*out, "", *_long_table(ev)]


def paper_details(ev: Mapping[str, Any]) -> list[str]:
    """The paper's recipe line: the gain per pair and the scratch baseline per target."""
    per_pair = ev.get("per_pair_gain", {})
    out = [
        f"*Gain:* {ev.get('gain_definition', NOT_RECORDED)}; interval: "
        f"{ev.get('resamples', '?')} resamples of the targets and, within each, of its scratch "
        f"models ({', '.join(f'{t} {n}' for t, n in ev.get('scratch_models_per_target', {}).items())}).",
        "",
    ]
    if per_pair:
        worse = sum(g < 0 for g in per_pair.values())
        out += [
            f"The recipe lost to scratch in {worse} of {len(per_pair)} pairs.",
            "",
            "| pair | gain over scratch |",
            "|---|---|",
            *(f"| {p.replace('->', ' → ')} | {fmt(g, '+.3f')} |" for p, g in per_pair.items()),
            "",
        ]
    return out


def depth_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
    """Encoder − decoder G per matched depth, bottleneck first: ``−0.28 [...] at depth 1
    (encoder.dense / decoder.dense1), ...``."""
    return "; ".join(
        f"{iv(r.get('difference'), '.2f')} at depth {r['depth']} "
        f"(`{r['encoder_layer']}` / `{r['decoder_layer']}`)"
        for r in rows
    )
