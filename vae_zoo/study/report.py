"""``report.md``: for each claim, what the paper says, what we measured, the verdict, and where
and why we differ; every figure once, with a caption that says what to read from it.

The report is generated from ``results.json`` alone (:func:`render`): no number is written
here, and a key that older results lack is skipped with a sentence that says so. A run whose
settings are not the full study's (the toy-size ``--quick`` run above all) opens with a caveat
and the committed full run's verdicts beside its own (:mod:`vae_zoo.study.full_run`). The
per-claim text is in :mod:`vae_zoo.study.report_claims`, the summary in
:mod:`vae_zoo.study.report_summary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..storage import atomic_write
from .report_claims import (
    SHORT,
    VERDICT,
    cka_details,
    measurement,
    paper_details,
    retrain_details,
    visual_details,
)
from .report_summary import summary_lines, training_length_lines

#: :mod:`vae_zoo.study.full_run` is imported where it is used: the package imports this module,
#: and ``python -m vae_zoo.study.full_run`` must find that module not yet imported.
_FULL_RUN = "vae_zoo.study.full_run"

__all__ = ["CAPTIONS", "caveat_section", "final_verdict_lines", "render", "write_report"]

CAPTIONS = {
    "cka_layer_curves": (
        "Same-layer debiased CKA of two models along depth, per comparison group: red, models "
        "trained on different datasets; blue, the same dataset with another seed (the ceiling); "
        "grey, a trained against an untrained model (the floor). Bands: 95 % model-level "
        "bootstrap intervals; the legend gives each group's pairs per evaluation set, and a "
        "group resting on a single pair is drawn with markers only and labelled so. The dotted "
        "line is the latent bottleneck (encoder left, decoder right). One panel per reading: "
        "debiased and biased CKA, the decoder driven by the posterior mean or by a sample "
        "(biased / sample is the paper's setting), and deconfounded CKA (the input images' "
        "similarity regressed out). Read: where the red curve sits between grey and blue."
    ),
    "cka_G_curves": (
        "G = (cross − random) / (same − random) per layer, for debiased and deconfounded CKA, "
        "with 95 % model-level intervals: 1 (blue line) means as alike as two seeds of one "
        "dataset, 0 (grey line) no more alike than an untrained model. Read: whether the encoder "
        "layers (left of the dotted line) sit near 1 and the decoder layers lower."
    ),
    "cka_heatmaps": (
        "Mean debiased CKA between every pair of layers of two models (rows: model A, columns: "
        "model B), decoder driven by the mean; left, two seeds of one dataset (the ceiling); "
        "middle, two datasets; right, where untrained models are among the heatmap models, a "
        "trained model (rows) against an untrained one (columns), the floor (the figure's title "
        "says when it is missing). One colour scale for all panels; each title gives its number "
        "of model pairs. Read: the diagonal is "
        "the same-layer similarity of the curves above; an off-diagonal block as bright in the "
        "floor panel as in the others is inherited from the input, not learnt."
    ),
    "graded_test": (
        "Claim 3's graded test: the best freeze depth (lowest target test loss at the graded "
        "budget) against the depth the pair-level G predicts, one point per ordered pair, one "
        "colour per target, jittered so that pairs at the same depths stay visible; open "
        "markers are pairs whose two best depths lie within the tie band (seed noise). The "
        "dashed diagonal is a perfect prediction. Read: whether the points rise with the "
        "prediction, and how many sit in the tie band."
    ),
    "freeze_depth": (
        "Claim 3 per target. Top: target test loss relative to the mean of the target's "
        "scratch models, 100 (loss − m) / m, against the number of frozen encoder blocks, one "
        "line per source (single runs, markers); a star marks the predicted depth. Bottom: the "
        "pair-level G of each block (the bar at k shows block k); hatched bars are unresolved "
        "blocks, passed over by the prediction; the dashed line is the fall threshold. Read: "
        "whether the lowest point of each line lies near its star."
    ),
    "transfer_curves": (
        "Claim 3's long curves (secondary), one panel per pair: the target test loss of each "
        "recipe relative to the scratch run at the same budget, 100 (loss − scratch) / "
        "scratch, against fine-tuning steps: freeze depths, the paper's recipe (re-initialise "
        "μ, log σ² and the decoder's first dense layer, freeze the rest) and all (fine-tune "
        "everything); 0 is as good as scratch, below is better. Single runs, drawn with "
        "markers and no band. Read: which recipe is lowest at each budget, and whether the "
        "paper's recipe ever gets below 0."
    ),
    "visual_check_validation": (
        "Claim 4: the visual score of each (source, target) pair against the gain of real "
        "transfer (probe accuracy of the transferred and fine-tuned model minus the mean of the "
        "scratch models), one colour per target with its within-target Spearman ρ. Read within "
        "each colour: the claim is that higher scores go with higher gains."
    ),
    "samples": (
        "Stratified test images (top of each row, one per class in turn) and their "
        "reconstructions by the dataset's own model (bottom). Read: how well the zoo models "
        "reconstruct, across classes."
    ),
}

FIGURES = {
    "encoders-generic": ["cka_layer_curves", "cka_G_curves"],
    "decoders-specific": ["cka_heatmaps"],
    "retrain-which": ["graded_test", "freeze_depth", "transfer_curves"],
    "visual-transfer-check": ["visual_check_validation"],
}

PAPER = {
    "encoders-generic": (
        "encoders of VAEs trained on different datasets represent the same images alike"
    ),
    "decoders-specific": "decoders are specific to their training data",
    "retrain-which": (
        "reuse the encoder and retrain (parts of) the decoder; how much to reuse follows from "
        "where the representations stop being similar"
    ),
    "paper-recipe": (
        "its transfer recipe (reuse the encoder, re-initialise μ, log σ² and the decoder's first "
        "layer, freeze the rest) is a good way to transfer"
    ),
    "visual-transfer-check": (
        "a visual check of representational similarity, made before transfer, tells whether "
        "transfer will help a classification task"
    ),
}

DIFFERENCES = {
    "encoders-generic": (
        "The paper reads raw CKA of the same layer in two models. Raw CKA is high even against "
        "an untrained model, because every layer inherits the input's similarity structure, so "
        "we normalise it between that floor and the seed-to-seed ceiling (G), and read it again "
        "with the input regressed out (deconfounded CKA)."
    ),
    "decoders-specific": (
        "We compare encoders and decoders at matched distance from the bottleneck and on the "
        "same normalised scale; the paper compares raw CKA of layers at different depths, where "
        "the input-near encoder layers are similar by construction. With the decoder driven by "
        "a sample, the floor is read twice: an untrained model on its own sample, and the "
        "untrained decoder on the trained model's sample (the same input)."
    ),
    "retrain-which": (
        "The paper fixes one recipe; we test whether the depth at which G falls predicts the "
        "best number of frozen encoder blocks, by a rank correlation over ordered pairs of "
        "datasets in a data-scarce target (few training images), with seed noise measured."
    ),
    "paper-recipe": (
        "The paper does not compare its recipe with training from scratch at the same budget; "
        "we do, on every ordered pair, against several scratch models per target."
    ),
    "visual-transfer-check": (
        "The gain is measured by real transfer (transfer, fine-tune, probe) against scratch "
        "models at the same budget, averaged over several initialisations, and the correlation "
        "is read within targets (pooling targets mixes their baselines)."
    ),
}


def render(results: Mapping[str, Any]) -> str:
    """The report as Markdown text, from the content of ``results.json``."""
    claims = results["claims"]
    lines = [
        "# VAE transfer study: reproduction of Bonheme & Grześ (2023)",
        "",
        *caveat_section(results),
        "*How good are variational autoencoders at transfer learning?* (arXiv 2304.10767) makes "
        "the claims below. Each is re-tested here by a rule fixed in `vae_zoo/study/criteria.py` "
        f"before the run (rules version {results.get('rules_version', '?')}), computed from the "
        "measurements in `results.json`.",
        "",
        "## Summary",
        "",
        *summary_lines(results),
        _setup(results),
        "",
        "| claim | the paper says | we measured | verdict |",
        "|---|---|---|---|",
    ]
    for claim in claims:
        lines.append(
            f"| `{claim['id']}` | {PAPER.get(claim['id'], claim.get('statement', ''))} | "
            f"{measurement(claim)} | {VERDICT[claim['holds']]} |"
        )
    lines.append("")
    shown: set[str] = set()
    for claim in claims:
        lines += _claim_section(claim, results, shown)
    lines += training_length_lines(results)
    lines += _figures(["samples"], results, shown, heading="## Reconstructions")
    lines += _other_figures(results, shown)
    lines += _panels(results)
    lines += _provenance(results)
    return "\n".join(lines)


def caveat_section(results: Mapping[str, Any]) -> list[str]:
    """For a run that is not the full study: the caveat, and this run's verdicts beside the
    committed full run's (claim, verdicts, the full run's one-line evidence)."""
    from .full_run import caveat_lines, load_full_run, run_kind, verdict_rows  # see _FULL_RUN

    full_run = load_full_run()
    caveat = caveat_lines(results.get("config", {}), full_run)
    if not caveat:
        return []
    kind, _ = run_kind(results.get("config", {}))
    title = "Toy-size run" if kind == "quick" else "Not the full study's settings"
    out = [f"> **{title}.** " + " ".join(caveat), ""]
    if full_run is not None:
        out += [
            "| claim | this run | committed full run | the full run's evidence |",
            "|---|---|---|---|",
            *(
                f"| `{c}` | {mine} | {full} | {ev} |"
                for c, mine, full, ev in verdict_rows(results["claims"], full_run)
            ),
            "",
        ]
    return out


def _claim_section(
    claim: Mapping[str, Any], results: Mapping[str, Any], shown: set[str]
) -> list[str]:
    cid = claim["id"]
    lines = [f"## `{cid}`: {VERDICT[claim['holds']]}", ""]
    if cid in PAPER:
        lines += [f"*The paper:* {PAPER[cid]}.", ""]
    lines += [f"*Rule:* {claim['criterion']}.", "", f"*Measured:* {measurement(claim)}.", ""]
    ev = claim.get("evidence", {})
    if cid in ("encoders-generic", "decoders-specific"):
        lines += cka_details(claim, results)
    elif cid == "retrain-which":
        lines += retrain_details(ev)
    elif cid == "paper-recipe":
        lines += paper_details(ev)
    elif cid == "visual-transfer-check":
        lines += visual_details(ev)
    if cid in DIFFERENCES:
        lines += [f"*Where and why we differ:* {DIFFERENCES[cid]}", ""]
    return lines + _figures(FIGURES.get(cid, []), results, shown)


def _setup(results: Mapping[str, Any]) -> str:
    c = results["config"]
    sets = results.get("evaluation_sets", {})
    sizes = ", ".join(f"{k} {v['n']}" for k, v in sets.items())
    return (
        f"Zoo: {', '.join(c['datasets'])} at {c['size']} px; seeds {list(c['seeds'])}, each model "
        f"from its own initialisation; {c['objective']} {c['objective_params']}; "
        f"{c['train_steps']} training steps per model; {c['random_models']} untrained models as "
        "the floor. CKA on a seeded sample of distinct held-out test images of each dataset, "
        f"stratified by label ({sizes}; label counts in `results.json`), fed to every model. "
        f"Intervals are {int(100 * c['confidence_level'])} % bootstrap intervals that resample "
        f"models, not pairs (`vae_zoo/study/bootstrap.py`). {_transfer_setup(c)} Probes: "
        f"logistic regression on the posterior mean, {c['probe_train_examples']} / "
        f"{c['probe_test_examples']} stratified examples."
    )


def _transfer_setup(c: Mapping[str, Any]) -> str:
    """The transfers of the configuration: the graded test (rules version 4) or the sweep."""
    n = len(c["datasets"])
    pairs = ", ".join(f"{s} → {t}" for s, t in c.get("sweep_pairs", []))
    text = f"Transfer: the target has {c['transfer_examples']} training images; "
    if "sweep_steps" in c:
        text += (
            f"claim 3's graded test runs every ordered pair ({n * (n - 1)}) at "
            f"{c['sweep_steps']} steps, its long curves {pairs} up to {c['transfer_steps']} "
            f"steps (losses at {list(c['transfer_budgets'])}); "
        )
    else:
        text += (
            f"claim 3's freeze-depth sweep runs {pairs} up to {c['transfer_steps']} steps "
            f"(losses at {list(c['transfer_budgets'])}); "
        )
    seeds = c.get("check_source_seeds", [c.get("transfer_source_seed", 0)])
    return text + (
        f"claim 4 transfers every source (seeds {list(seeds)}) to every target with `all` for "
        f"{c['check_steps']} steps, against {c['scratch_seeds']} scratch models per target."
    )


def _figures(
    names: list[str], results: Mapping[str, Any], shown: set[str], heading: str | None = None
) -> list[str]:
    """Each named figure that the run made (``results["figures"]``), once, with its caption."""
    made = set(results.get("figures", []))
    out = []
    for name in names:
        if f"figures/{name}.png" in made and name not in shown:
            shown.add(name)
            caption = CAPTIONS.get(name)
            out += [f"![{name}](figures/{name}.png)", ""]
            out += [f"*Figure: {caption}*", ""] if caption else []
    return [heading, "", *out] if (heading and out) else out


def _other_figures(results: Mapping[str, Any], shown: set[str]) -> list[str]:
    """Figures the run made that no claim section showed (the visual-check panels apart)."""
    names = [
        Path(f).stem
        for f in results.get("figures", [])
        if "visual_check_" not in f or "validation" in f
    ]
    rest = [n for n in names if n not in shown]
    return _figures(rest, results, shown, heading="## Other figures")


def _panels(results: Mapping[str, Any]) -> list[str]:
    panels = [
        f for f in results.get("figures", []) if "visual_check_" in f and "validation" not in f
    ]
    if not panels:
        return []
    return [
        "## Visual-check panels",
        "",
        "One per target, one row per source: the encoder CKA profile of the source model against "
        "the target's models on target images (dashed: the target's seeds among themselves), "
        "each encoder layer's CKA with the target's labels, and target images (top) "
        "reconstructed by the source model (bottom). "
        + ", ".join(f"[{Path(f).stem}]({f})" for f in panels),
        "",
    ]


def _provenance(results: Mapping[str, Any]) -> list[str]:
    prov = results.get("provenance", {})
    timings = results.get("timings", {})
    if not prov:
        return []
    text = f"Commit `{prov.get('git_commit')}`" + (
        " (with uncommitted changes)" if prov.get("uncommitted_changes") else ""
    )
    if prov.get("finished"):
        text += f", finished {prov['finished']}"
    if prov.get("packages"):
        text += f"; packages {prov['packages']}"
    if timings.get("total_wall_seconds") is not None:
        text += (
            f"; wall time {timings['total_wall_seconds']} s over "
            f"{timings.get('invocations', '?')} invocation(s)"
        )
        cut = timings.get("interrupted_invocations")
        if cut:
            text += f" ({cut} cut short, counted to their last record)"
        text += f", per stage {timings.get('stage_seconds_total')}"
    lines = ["## Provenance", "", text + ".", ""]
    history = timings.get("per_invocation", [])
    if len(history) > 1:  # a resumed study: which code computed which stage
        lines += [
            "| invocation | commit | wall time (s) | seconds per stage |",
            "|---|---|---|---|",
        ]
        for i, entry in enumerate(history, 1):
            commit = f"`{entry['git_commit'][:10]}`" if entry.get("git_commit") else "not recorded"
            if entry.get("uncommitted_changes"):
                commit += " (with uncommitted changes)"
            stages = ", ".join(f"{k} {v:.0f}" for k, v in entry.get("stages", {}).items())
            for k, v in entry.get("running", {}).items():
                stages += f"{', ' if stages else ''}{k} {v:.0f} (cut short)"
            lines.append(f"| {i} | {commit} | {entry.get('wall_seconds')} | {stages} |")
        lines.append("")
    return lines


def final_verdict_lines(results: Mapping[str, Any]) -> list[str]:
    """The terminal's closing lines: each claim's verdict, and for a run that is not the full
    study the caveat and the committed full run's verdict beside each."""
    from .full_run import caveat_lines, load_full_run, verdict_rows  # see _FULL_RUN

    full_run = load_full_run()
    caveat = caveat_lines(results.get("config", {}), full_run)
    if not caveat:
        return [f"  {c['id']}: {SHORT[c['holds']]}" for c in results["claims"]]
    rows = verdict_rows(results["claims"], full_run)
    width = max(len(r[0]) for r in rows)
    lines = [f"  {'claim':<{width}}  {'this run':<17}  committed full run"]
    for claim_id, mine, full, evidence in rows:
        full_text = f"{full}: {evidence}" if full != "-" else "-"
        lines.append(f"  {claim_id:<{width}}  {mine:<17}  {full_text}")
    return [*lines, *(f"  note: {line}" for line in caveat)]


def start_lines(config: Mapping[str, Any]) -> list[str]:
    """The terminal's opening note for a run that is not the full study (none for the full
    study): the caveat, e.g. that toy-size verdicts test the pipeline, not the paper."""
    from .full_run import caveat_lines, load_full_run  # see _FULL_RUN

    return [f"note: {line}" for line in caveat_lines(config, load_full_run(), at_start=True)]


def write_report(path: Path, results: Mapping[str, Any]) -> None:
    """Write ``report.md`` atomically."""
    text = render(results)
    atomic_write(path, lambda handle: handle.write(text.encode()))
