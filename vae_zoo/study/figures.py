"""Figures of the study (matplotlib, Agg backend, small PNGs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cka_sim import CKAResult

from ..models import ENCODER_LAYERS
from ..storage import atomic_path
from .analysis import GROUP_LABELS, GROUPS

COLOURS = {"cross": "tab:red", "same": "tab:blue", "random": "tab:grey"}
RECIPE_COLOURS = {
    "decoder": "tab:green",
    "encoder": "tab:orange",
    "all": "tab:purple",
    "paper": "tab:red",
    "scratch": "black",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:  # a full disk leaves no half-written figure
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def short(layer: str) -> str:
    """``encoder.conv1`` -> ``enc.conv1``."""
    return layer.replace("encoder.", "enc.").replace("decoder.", "dec.")


def _unit_positions(units: Sequence[tuple[str, str]], mode: str) -> list[int]:
    return [i for i, (layer, m) in enumerate(units) if m == mode or layer in ENCODER_LAYERS]


def _depth_axis(ax: Any, units: Sequence[tuple[str, str]], keep: Sequence[int]) -> None:
    x = np.arange(len(keep))
    boundary = sum(1 for i in keep if units[i][0] in ENCODER_LAYERS) - 0.5
    ax.axvline(boundary, color="k", lw=0.8, ls=":")
    ax.set_xticks(
        x, [short(units[i][0]) for i in keep], rotation=60, ha="right", rotation_mode="anchor",
        fontsize=9,
    )  # fmt: skip
    ax.tick_params(axis="y", labelsize=9)
    ax.grid(alpha=0.3)


def _group_label(group: str, n_pairs: int) -> str:
    """A group's legend entry with its size; a single pair says that it has no band."""
    if n_pairs == 1:
        return f"{GROUP_LABELS[group]}: a single pair per evaluation set (markers, no band)"
    return f"{GROUP_LABELS[group]}: {n_pairs} pairs per evaluation set"


def layer_curves(panels: Sequence[tuple[str, Any, str]], level: float, path: Path) -> Path:
    """Same-layer CKA of two models along depth, per comparison group, with interval bands.

    ``panels``: (title, :class:`~vae_zoo.study.analysis.GroupStats`, decode mode) per panel.
    Lines: group means over model pairs and evaluation sets; bands: model-level bootstrap
    intervals; dotted line: the latent bottleneck (encoder left, decoder right). The legend
    gives each group's pairs per evaluation set; a group resting on a single pair is drawn as
    markers only, without a band, and its label says so.
    """
    from .bootstrap import percentile_interval

    plt = _pyplot()
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.0 * ncols, 4.4 * nrows), sharey=True, squeeze=False
    )
    axes = axes.ravel()
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    for ax, (title, stats, mode) in zip(axes, panels, strict=False):
        keep = _unit_positions(stats.units, mode)
        x = np.arange(len(keep))
        for group in GROUPS:
            est = stats.point[group][keep]
            n = int(stats.n_pairs.get(group, 0))
            style = {"ls": "none", "marker": "D", "ms": 5} if n == 1 else {"marker": "o", "ms": 3}
            ax.plot(x, est, color=COLOURS[group], label=_group_label(group, n), **style)
            if n == 1:
                continue
            bands = [percentile_interval(stats.replicates[group][:, i], level) for i in keep]
            ax.fill_between(
                x, [b[0] for b in bands], [b[1] for b in bands], color=COLOURS[group],
                alpha=0.2, lw=0,
            )  # fmt: skip
        _depth_axis(ax, stats.units, keep)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("CKA of the same layer in two models", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return _save(fig, path)


def g_curves(panels: Sequence[tuple[str, Any, str]], level: float, path: Path) -> Path:
    """G = (cross − random) / (same − random) per layer, with its model-level interval.

    The legend gives the pairs per evaluation set that each G rests on (cross / same / floor);
    where one of them is a single pair, the curve is drawn as markers only, without a band.
    """
    from .bootstrap import percentile_interval

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    styles = ["-", "--"]
    for (title, stats, mode), style in zip(panels, styles, strict=False):
        keep = _unit_positions(stats.units, mode)
        keep = [i for i in keep if stats.units[i][0] not in ("input", "output")]
        x = np.arange(len(keep))
        est, low, high = [], [], []
        for i in keep:
            g, reps = stats.g_index([i])
            lo, hi = percentile_interval(reps, level)
            est.append(g)
            low.append(lo)
            high.append(hi)
        sizes = [int(stats.n_pairs.get(g, 0)) for g in GROUPS]
        single = min(sizes) == 1
        label = f"{title} ({' / '.join(map(str, sizes))} cross / same / floor pairs per set"
        label += "; a single pair: markers, no band)" if single else ")"
        kwargs = (
            {"ls": "none", "marker": "D", "ms": 5}
            if single
            else {"ls": style, "marker": "o", "ms": 3}
        )
        line = ax.plot(x, est, label=label, **kwargs)[0]
        if not single:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, lw=0)
        _depth_axis(ax, stats.units, keep)
    ax.axhline(1, color="tab:blue", lw=0.8)
    ax.axhline(0, color="tab:grey", lw=0.8)
    ax.set_ylim(-0.6, 1.6)
    ax.set_ylabel("G: 0 = untrained floor, 1 = same-dataset ceiling", fontsize=10)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def _shared_limits(values: Sequence[np.ndarray]) -> tuple[float, float]:
    """One colour scale for every panel: 0..1, or -v..v (v = max(1, max |value|)) when a finite
    value is negative (debiased CKA), as :func:`cka_sim.plot.heatmap` picks for one matrix."""
    finite = [v[np.isfinite(v)] for v in values]
    low = min((float(f.min()) for f in finite if f.size), default=0.0)
    if low >= 0:
        return 0.0, 1.0
    v = max(1.0, max(float(np.abs(f).max()) for f in finite if f.size))
    return -v, v


def group_heatmaps(
    matrices: Mapping[str, tuple[np.ndarray, list[str]]],
    path: Path,
    title: str,
) -> Path:
    """Layer x layer CKA heatmaps, one per entry of ``matrices`` (name -> (values, layer names)),
    side by side on one colour scale, so that a panel (the floor: trained against untrained) can
    be read against the others."""
    plt = _pyplot()
    from cka_sim.plot import heatmap

    vmin, vmax = _shared_limits([values for values, _ in matrices.values()])
    fig, axes = plt.subplots(1, len(matrices), figsize=(7.4 * len(matrices), 6.4))
    fig.subplots_adjust(wspace=0.45)
    for ax, (name, (values, names)) in zip(np.atleast_1d(axes), matrices.items(), strict=True):
        result = CKAResult(
            values, [short(n) for n in names], [short(n) for n in names], "linear-debiased", 0
        )
        heatmap(result, ax=ax, title=name, colorbar=True, vmin=vmin, vmax=vmax)
        ax.tick_params(labelsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _sweep_colours(n: int) -> list[Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _recipe_colour(name: str) -> Any:
    """``freeze{k}`` on the viridis scale by k (0 dark, 6 light); other recipes by name."""
    if name.startswith("freeze"):
        from .config import SWEEP_RECIPES

        return _sweep_colours(len(SWEEP_RECIPES))[int(name[len("freeze") :])]
    return RECIPE_COLOURS.get(name, "tab:grey")


def transfer_curves(
    runs: Mapping[tuple[str, str], Mapping[str, Mapping[int, float]]],
    scratch: Mapping[str, Mapping[int, float]],
    config: Any,
    path: Path,
) -> Path:
    """Claim 3's long curves relative to scratch, one panel per pair.

    At each budget after 0: 100 (loss_recipe − loss_scratch) / loss_scratch, the target test
    loss of each recipe against the target's scratch run at the same budget (0: as good as
    scratch; below: better). Every line and the scratch reference are single runs (one
    training seed each, no band): drawn with markers, and labelled so.
    """
    plt = _pyplot()
    pairs = list(runs)
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.2 * len(pairs), 4.0), squeeze=False)
    for ax, (source, target) in zip(axes[0], pairs, strict=True):
        base = scratch[target]
        for name, record in runs[(source, target)].items():
            steps = [b for b in sorted(record) if b > 0]
            rel = [100 * (record[b] - base[b]) / base[b] for b in steps]
            style = "--" if name in ("paper", "all") else "-"
            ax.plot(steps, rel, style, marker="o", ms=4, color=_recipe_colour(name), label=name)
        ax.axhline(0, color="black", lw=1, label="scratch (= 0)")
        ax.set_xticks([b for b in sorted(base) if b > 0])
        ax.set_title(f"{source} → {target}", fontsize=10)
        ax.set_xlabel("fine-tuning steps", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("target test loss vs scratch (%)", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.suptitle(
        "Long curves: each point is a single run (one training seed), scratch too; below 0 "
        "beats scratch",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def freeze_depth_curves(evidence: Mapping[str, Any], path: Path) -> Path:
    """Claim 3's graded test per target: loss against freeze depth beside the G profiles.

    Top, one line per source (single runs, markers): 100 (loss − m) / m at freeze depth k, m the
    mean of the target's scratch models; a star marks the predicted depth (at 5 when it is 6,
    the whole encoder with its heads). Bottom: the pair-level G of each block, the bar at k
    showing block k (the deepest block frozen at depth k); hatched bars are unresolved blocks
    (passed over by the prediction); the dashed line is the fall threshold.
    """
    from .config import ENCODER_BLOCKS, GRADED_DEPTHS
    from .criteria import G_FALL

    plt = _pyplot()
    rows = list(evidence["pairs"].values())
    targets = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(
        2, len(targets), figsize=(3.6 * len(targets), 5.8), squeeze=False, sharex=True
    )
    depths = np.array(GRADED_DEPTHS)
    blocks = np.arange(1, len(ENCODER_BLOCKS) + 1)
    for col, target in enumerate(targets):
        ax, gax = axes[0, col], axes[1, col]
        mine = [r for r in rows if r["target"] == target]
        width = 0.8 / len(mine)
        for i, r in enumerate(mine):
            rel = [100 * (r["relative_losses"][f"freeze{k}"] - 1) for k in depths]
            ax.plot(depths, rel, marker="o", ms=3, color=f"C{i}", label=f"from {r['source']}")
            k = min(r["predicted_depth"], int(depths[-1]))
            ax.plot(k, rel[k], marker="*", ms=11, color=f"C{i}", mec="black", mew=0.5, ls="")
            g = np.nan_to_num(np.asarray(r["profile"]["G"], dtype=float), nan=0.0)
            hatch = [b in r["profile"]["unresolved"] for b in r["profile"]["blocks"]]
            for x, value, h in zip(blocks, g, hatch, strict=True):
                gax.bar(x - 0.4 + width * (i + 0.5), value, width=width, color=f"C{i}",
                        alpha=0.35 if h else 0.8, hatch="///" if h else None,
                        edgecolor="black" if h else None, lw=0.4)  # fmt: skip
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"target {target}", fontsize=10)
        ax.legend(fontsize=7)
        gax.axhline(G_FALL, color="tab:red", lw=0.8, ls="--")
        gax.set_xlabel("freeze depth k", fontsize=10)
        for a in (ax, gax):
            a.grid(alpha=0.3)
            a.tick_params(labelsize=9)
    axes[1, 0].set_xticks(np.arange(len(ENCODER_BLOCKS) + 1))
    axes[0, 0].set_ylabel("loss vs scratch mean (%)", fontsize=10)
    axes[1, 0].set_ylabel("pair-level G of block k", fontsize=10)
    fig.suptitle(
        "Graded test: single runs per (source, depth); star: predicted depth; hatched: "
        "unresolved block",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def graded_test(evidence: Mapping[str, Any], path: Path, *, seed: int = 0) -> Path:
    """Claim 3's graded test: best against predicted freeze depth over every pair.

    Points are jittered (±0.15, seeded) so pairs at the same depths stay visible; one colour
    per target; open markers are pairs whose best and second-best depth lie inside the tie
    band. The dashed diagonal is a perfect prediction.
    """
    plt = _pyplot()
    rows = list(evidence["pairs"].values())
    targets = list(dict.fromkeys(r["target"] for r in rows))
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for i, target in enumerate(targets):
        for inside in (False, True):
            mine = [r for r in rows if r["target"] == target and r["in_tie_band"] is inside]
            if not mine:
                continue
            x = np.array([r["predicted_depth"] for r in mine]) + rng.uniform(-0.15, 0.15, len(mine))
            y = np.array([r["best_depth"] for r in mine]) + rng.uniform(-0.15, 0.15, len(mine))
            ax.scatter(x, y, s=36, color=f"C{i}" if not inside else "none", edgecolors=f"C{i}",
                       label=f"target {target}" if not inside else f"{target}, inside tie band")  # fmt: skip
    ax.plot([0, 6], [0, 6], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("predicted depth (leading blocks with G ≥ threshold)", fontsize=10)
    ax.set_ylabel("best freeze depth (lowest target loss)", fontsize=10)
    ax.set_xticks(range(7))
    ax.set_yticks(range(6))
    test, power, band = evidence["permutation"], evidence["power"], evidence["tie_band"]
    kind = "exact" if test["exact"] else f"Monte Carlo ± {test['standard_error']:.4f}"
    ax.set_title(
        f"{evidence['n_pairs']} pairs, single runs: Spearman ρ = {evidence['rho']:.2f}, "
        f"p = {test['pvalue']:.4f} ({kind})\npower {power['power']:.2f} "
        f"(± {power['standard_error']:.2f}); tie band {100 * band['band']:.2f} % of scratch, "
        f"{len(band['pairs_inside'])} pairs inside",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


@torch.inference_mode()
def reconstructions(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Reconstructions (decoder driven by the posterior mean) as float images in [0, 1]."""
    batch = torch.from_numpy(np.asarray(images)).float() / 255
    return model(batch, decode_from="mean").recon.numpy()


def visual_check(
    target: str,
    rows: Sequence[dict[str, Any]],
    originals: np.ndarray,
    units: Sequence[tuple[str, str]],
    path: Path,
) -> Path:
    """The before-transfer panel for one target dataset: one row per source.

    Each row: the CKA profile (source vs target-trained encoder, on target images, against the
    same-dataset-other-seed level; the mean over source seeds, each seed's profile thin where
    the row has ``seed_profiles``), the CKA of each encoder layer with the target's labels, and
    target images reconstructed by the source model (of seed ``reconstruction_seed``). Score and
    gain in the titles are means over the source seeds.
    """
    plt = _pyplot()
    enc = [i for i, (layer, _) in enumerate(units) if layer in ENCODER_LAYERS and layer != "input"]
    fig, axes = plt.subplots(
        len(rows),
        3,
        figsize=(11, 2.4 * len(rows)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.2, 1.2, 2.0]},
    )
    names = [short(units[i][0]) for i in enc]
    for (ax_cka, ax_label, ax_img), row in zip(axes, rows, strict=True):
        x = np.arange(len(enc))
        for seed_profile in row.get("seed_profiles", []):
            ax_cka.plot(x, np.asarray(seed_profile)[enc], color="tab:red", lw=0.6, alpha=0.35)
        ax_cka.plot(
            x,
            row["profile"][enc],
            marker="o",
            ms=3,
            color="tab:red",
            label="source vs target model (thin: per seed)",
        )
        ax_cka.plot(
            x, row["same_profile"][enc], ls="--", color="tab:blue", label="target model, other seed"
        )
        ax_cka.set_ylim(-0.05, 1.05)
        ax_cka.set_xticks(x, names, rotation=60, fontsize=8)
        ax_cka.set_ylabel(f"from {row['source']}", fontsize=9)
        ax_cka.set_title(f"encoder CKA; score {row['score']:.2f}", fontsize=8)
        ax_label.plot(
            x, row["label_profile"][enc], marker="o", ms=3, color="tab:green", label="source"
        )
        ax_label.plot(
            x, row["target_label_profile"][enc], ls="--", color="tab:blue", label="target model"
        )
        ax_label.set_ylim(-0.05, 1.05)
        ax_label.set_xticks(x, names, rotation=60, fontsize=8)
        ax_label.set_title(f"CKA with target labels; probe gain {row['gain']:+.2f}", fontsize=8)
        grid = np.concatenate([originals, row["reconstructions"]], axis=2)  # originals above
        tiles = np.concatenate(list(grid[:, 0]), axis=1)
        ax_img.imshow(tiles, cmap="gray", vmin=0, vmax=1)
        ax_img.set_axis_off()
        seed = row.get("reconstruction_seed")
        by = "the source model" if seed is None else f"the source model of seed {seed}"
        ax_img.set_title(f"target images (top) reconstructed by {by} (bottom)", fontsize=8)
    axes[0, 0].legend(fontsize=8, loc="lower left")
    axes[0, 1].legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"Before transferring to {target}: does the source model already see it?", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, path)


def visual_validation(
    points: Sequence[dict[str, Any]], evidence: Mapping[str, Any], path: Path
) -> Path:
    """Visual score against the gain of real transfer, one colour per target.

    Large markers: the (source, target) points, means over the source seeds (what claim 4
    reads); small faint markers: each source seed's own (score, gain), where the points carry
    ``per_seed``. Claim 4 is read within targets: the legend gives each target's Spearman ρ,
    the title the mean ρ and its permutation p (exact, or Monte Carlo ± its standard error).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    targets = sorted({p["target"] for p in points})
    per_target = evidence.get("per_target_rho", {})
    for i, t in enumerate(targets):
        rows = [p for p in points if p["target"] == t]
        seeds = [s for r in rows for s in r.get("per_seed", [])]
        if seeds:
            ax.scatter(
                [s["score"] for s in seeds], [s["gain"] for s in seeds], color=f"C{i}", s=8,
                alpha=0.35, marker="x",
            )  # fmt: skip
        rho = per_target.get(t, float("nan"))
        ax.scatter(
            [r["score"] for r in rows], [r["gain"] for r in rows], color=f"C{i}", s=30,
            label=f"target {t} (ρ = {rho:.2f})",
        )  # fmt: skip
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("visual score: encoder CKA, source vs target models", fontsize=10)
    ax.set_ylabel("probe accuracy gain over scratch", fontsize=10)
    exact = evidence.get("pvalue_exact", False)
    error = evidence.get("pvalue_standard_error", float("nan"))
    if not np.isfinite(evidence["pvalue"]):
        p_text = "undefined"
    else:
        p_text = "exact" if exact else f"Monte Carlo ± {error:.4f}"
    n_seeds = evidence.get("n_source_seeds", 1)
    ax.set_title(
        f"mean within-target ρ = {evidence['rho_within_targets']:.2f}, "
        f"permutation p = {evidence['pvalue']:.4f} ({p_text}); "
        f"means over {n_seeds} source seed{'s' if n_seeds != 1 else ''} (x: each seed)",
        fontsize=9,
    )
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def sample_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Test images (top) and their reconstructions (bottom) for each zoo model."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.6 * len(rows)), squeeze=False)
    for ax, (name, originals, recon) in zip(axes[:, 0], rows, strict=True):
        grid = np.concatenate([originals, recon], axis=2)
        ax.imshow(np.concatenate(list(grid[:, 0]), axis=1), cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(name, fontsize=8)
    return _save(fig, path)
