"""Output of the suite: the text table, the JSON record and the log-log plot of time vs n."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .cases import Row

CASE_TITLES = {
    "linear": "linear_cka vs the GEMM floor and peers (float32, feature means 10)",
    "accuracy": "accuracy: debiased linear CKA of float32 input vs the float64 truth",
    "rbf": "RBF kernel_cka vs ckatorch (biased, threshold 1)",
    "streaming": "StreamingCKA.update per batch vs that batch's GEMM floor (float32)",
    "memory": "StreamingCKA fed in batches: peak memory above the start",
    "compare_models": "compare_models vs pytorch-cka compute_cka (debiased minibatch CKA)",
    "procrustes": "procrustes_similarity vs one GEMM + one p x p SVD (float32, feature means 10)",
}

RATIO_LEGEND = (
    "ratio: /floor = time over the library's own floor (its plain matmuls of the same data on "
    "the same device; compare_models: forward + GEMM Grams); "
    "/cka_sim (db) = time over cka_sim's (debiased) time on the same data; "
    "/state = peak memory over the float64 state 8·3p² bytes. "
    "vs fastest: time over the machine's fastest floor (each product in the faster of torch and "
    "NumPy, SYRK where symmetric; compare_models: forward + the faster of the measured symmetric "
    "Grams and the half-flop Grams)"
)


def _ratio(r: Row, key: str = "ratio") -> str:
    value = r.get(key)
    return "" if value is None else f"{value:.2f}x {r.get(key + '_of', '')}".rstrip()


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "s":
        return f"{value:.4g}"
    if kind == "x":
        return f"{value:.2f}x"
    if kind == "e":
        return f"{value:.1e}"
    if kind == "mib":
        return f"{value / 2**20:.1f}"
    return str(value)


def table(rows: list[Row], machine: str) -> str:
    """The whole table as text, one block per case, naming the machine."""
    lines = [f"machine: {machine}"]
    for case, title in CASE_TITLES.items():
        block = [r for r in rows if r["case"] == case]
        if not block:
            continue
        lines += ["", f"== {title}"]
        lines.append(
            f"{'params':<46} {'contender':<26} {'seconds':>9} {'ratio':>18} {'vs fastest':>16} "
            f"{'|error|':>8} {'peak MiB':>9}  note"
        )
        for r in block:
            params = " ".join(f"{k}={v}" for k, v in r["params"].items())
            lines.append(
                f"{params:<46} {r['contender']:<26} {_fmt(r['seconds'], 's'):>9} "
                f"{_ratio(r) or '-':>18} {_ratio(r, 'ratio2') or '-':>16} "
                f"{_fmt(r['error'], 'e'):>8} {_fmt(r['peak_bytes'], 'mib'):>9}  {r['note']}"
            )
    lines += ["", RATIO_LEGEND]
    return "\n".join(lines)


def _cells(r: Row) -> list[str]:
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
    return [
        params,
        r["contender"],
        _fmt(r["seconds"], "s"),
        _ratio(r),
        _ratio(r, "ratio2"),
        _fmt(r["error"], "e"),
        _fmt(r["peak_bytes"], "mib"),
        r["note"].replace("|", "\\|"),
    ]


def markdown(rows: list[Row], machine: str) -> str:
    """The table as Markdown, one table per case."""
    lines = [f"Machine: {machine}"]
    for case, title in CASE_TITLES.items():
        block = [r for r in rows if r["case"] == case]
        if not block:
            continue
        lines += [
            "",
            f"**{title}**",
            "",
            "| params | contender | seconds | ratio | vs fastest | abs error | peak MiB | note |",
            "|---|---|---:|---:|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in block]
    lines += ["", RATIO_LEGEND]
    return "\n".join(lines)


def before_after(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown table of the ratios of two runs (e.g. before and after an optimisation)."""

    def key(r: Row) -> tuple[str, str, str]:
        return (r["case"], json.dumps(r["params"], sort_keys=True), r["contender"])

    old = {key(r): r for r in before["rows"] if r["ratio"] is not None}
    lines = [
        f"Before: {before['meta']['cka_sim']['path']} ({before['meta']['date_utc']}); "
        f"after: {after['meta']['cka_sim']['path']} ({after['meta']['date_utc']}); "
        f"machine: {after['meta']['machine']}",
        "",
        "| case | params | contender | ratio before | ratio after | vs fastest before "
        "| vs fastest after | seconds before | seconds after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in after["rows"]:
        b = old.get(key(r))
        if b is None or r["contender"].startswith("GEMM") or r["contender"] == "forward only":
            continue
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        lines.append(
            f"| {r['case']} | {params} | {r['contender']} | {_ratio(b)} | {_ratio(r)} | "
            f"{_ratio(b, 'ratio2')} | {_ratio(r, 'ratio2')} | {_fmt(b['seconds'], 's')} | "
            f"{_fmt(r['seconds'], 's')} |"
        )
    return "\n".join(lines)


def side_by_side(rows: list[Row], baseline: str) -> str:
    """Markdown table pairing each ``cka_sim`` row with the ``baseline`` row of the same run.

    ``baseline`` is the label of the older package (``cka_sim@REV``): its rows are named like the
    current ones with ``cka_sim`` replaced by the label (the streaming case names the current
    contender ``StreamingCKA.update`` and the baseline's ``cka_sim@REV update``). "after/before"
    is the ratio of the two times, measured in the same interleaved rounds.
    """

    def key(r: Row, name: str) -> tuple[str, str, str]:
        return (r["case"], json.dumps(r["params"], sort_keys=True), name)

    old = {key(r, r["contender"]): r for r in rows if r["contender"].startswith(baseline)}
    lines = [
        "| case | params | contender | seconds before | seconds after | after/before "
        "| ratio before | ratio after | vs fastest before | vs fastest after "
        "| abs error before | abs error after |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r["contender"]
        if name.startswith(baseline) or not name.startswith(("cka_sim", "StreamingCKA")):
            continue
        twin = baseline + (" update" if name == "StreamingCKA.update" else name[len("cka_sim") :])
        b = old.get(key(r, twin))
        if b is None:
            continue
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        change = (
            f"{r['seconds'] / b['seconds']:.2f}"
            if r["seconds"] is not None and b["seconds"]
            else ""
        )
        lines.append(
            f"| {r['case']} | {params} | {name} | {_fmt(b['seconds'], 's')} | "
            f"{_fmt(r['seconds'], 's')} | {change} | {_ratio(b)} | {_ratio(r)} | "
            f"{_ratio(b, 'ratio2')} | {_ratio(r, 'ratio2')} | {_fmt(b['error'], 'e')} | "
            f"{_fmt(r['error'], 'e')} |"
        )
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")


def plot(path: Path, rows: list[Row], machine: str) -> bool:
    """Log-log plot of time vs n for the linear case, one panel per p. False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    linear = [r for r in rows if r["case"] == "linear" and r["seconds"] is not None]
    # one panel per width measured at two n or more (single goal points are in the table only)
    widths = sorted(
        p
        for p in {r["params"]["p"] for r in linear}
        if len({r["params"]["n"] for r in linear if r["params"]["p"] == p}) > 1
    )
    if not widths:
        return False
    fig, axes = plt.subplots(1, len(widths), figsize=(5.5 * len(widths), 4.2), squeeze=False)
    for ax, p in zip(axes[0], widths, strict=True):
        at_p = [r for r in linear if r["params"]["p"] == p]
        for contender in dict.fromkeys(r["contender"] for r in at_p):
            points = sorted(
                (r["params"]["n"], r["seconds"]) for r in at_p if r["contender"] == contender
            )
            if len(points) < 1:
                continue
            ns, ts = zip(*points, strict=True)
            style = "--" if contender.startswith("GEMM") else "-"
            ax.loglog(ns, ts, style, marker="o", label=contender)
        ax.set_title(f"linear CKA, p = {p}")
        ax.set_xlabel("n (examples)")
        ax.set_ylabel("seconds (best of interleaved runs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(machine, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":  # python -m benchmarks.report [BEFORE.json] AFTER.json
    import sys

    if len(sys.argv) not in (2, 3):
        raise SystemExit(
            "usage: python -m benchmarks.report BEFORE.json AFTER.json (two runs), or "
            "python -m benchmarks.report RUN.json (a run with --baseline: both side by side)"
        )
    runs = [json.loads(Path(arg).read_text()) for arg in sys.argv[1:]]
    if len(runs) == 2:
        print(before_after(*runs))
    else:
        for label in runs[0]["meta"].get("baseline", {}):
            print(side_by_side(runs[0]["rows"], label))
