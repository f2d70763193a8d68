"""The Markdown table of a :func:`benchmarks.published.run.run` result."""

from __future__ import annotations

from typing import Any


def _identification(result: dict[str, Any]) -> list[str]:
    found = result["layer_identification"]
    published = found["published"]
    lines = [
        "## 1. Layer identification (Kornblith et al. 2019, Table 2)",
        "",
        f"{len(found['tiny10']['test_accuracy'])} networks per architecture, "
        f"{result['meta']['dataset']}; published: CIFAR-10.",
        "",
        "| measure | published (CIFAR-10, Tiny-10) | ours, Tiny-10 | ours, MLP | checks |",
        "|---|---|---|---|---|",
    ]
    for name, ours in found["tiny10"]["measures"].items():
        mlp = found["mlp"]["measures"][name]["accuracy"]
        paper = published.get(name, "-")
        paper = f"{paper} %" if paper != "-" else paper
        lines.append(
            f"| {name} | {paper} | {100 * ours['accuracy']:.1f} % | {100 * mlp:.1f} % "
            f"| {ours['checks']} |"
        )
    lines.append(f"| CCA family | {published['CCA family (R², ρ̄, SVCCA, PWCCA)']} % | - | - | |")
    for arch in ("tiny10", "mlp"):
        accuracy = found[arch]["test_accuracy"]
        lines.append("")
        lines.append(
            f"{arch}: test accuracy {min(accuracy):.3f}-{max(accuracy):.3f}; training "
            f"{found[arch]['train_seconds']:.0f} s, comparisons {found[arch]['compare_seconds']:.0f} s."
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """Render ``result`` as Markdown.

    Parameters
    ----------
    result : dict
        As returned by :func:`benchmarks.published.run.run`.

    Returns
    -------
    str
        The page.
    """
    meta = result["meta"]
    lines = [
        f"# Published checks, {meta['date']} (cka_sim {meta['cka_sim']}, {meta['machine']})",
        "",
        f"Run time {meta['seconds']:.0f} s.",
        "",
        *_identification(result),
        "",
        "## 2. Bias at p >> n (Murphy et al. 2024): independent Gaussians",
        "",
        "| p / n | biased (mean ± sd) | debiased (mean ± sd) |",
        "|---|---|---|",
    ]
    bias = result["bias"]
    for i, ratio in enumerate(bias["p_over_n"]):
        b, d = bias["biased"], bias["debiased"]
        lines.append(
            f"| {ratio:g} | {b['mean'][i]:.3f} ± {b['sd'][i]:.3f} "
            f"| {d['mean'][i]:+.3f} ± {d['sd'][i]:.3f} |"
        )
    t = result["translation"]
    lines += [
        "",
        "## 3. Subset translation (Davari et al. 2023)",
        "",
        f"{100 * t['fraction']:.0f} % of the points shifted; closed-form limit "
        f"{t['limit']:.4f}; accuracy before {t['accuracy_before']:.3f}.",
        "",
        "| shift (rms) | linear CKA | accuracy |",
        "|---|---|---|",
    ]
    lines += [
        f"| {s:g} | {c:.4f} | {a:.3f} |"
        for s, c, a in zip(t["scale"], t["cka"], t["accuracy"], strict=True)
    ]
    r = result["rbf_to_linear"]
    lines += [
        "",
        "## 4. RBF to linear (Alvarez 2021)",
        "",
        f"linear CKA {r['linear']:.6f}",
        "",
        "| threshold | RBF CKA | abs. gap |",
        "|---|---|---|",
    ]
    lines += [
        f"| {s:g} | {v:.6f} | {g:.2e} |"
        for s, v, g in zip(r["threshold"], r["rbf"], r["gap"], strict=True)
    ]
    lines += [
        "",
        "## 5. Triangle inequality (Williams et al. 2021)",
        "",
        "| distance | ordered triples | violations | smallest slack |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {v['triples']} | {v['violations']} | {v['min_slack']:+.2e} |"
        for name, v in result["triangle"].items()
    ]
    return "\n".join(lines) + "\n"
