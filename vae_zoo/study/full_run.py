"""The committed full run's verdicts, packaged, and the caveat of a run with other settings.

``python -m vae_zoo.study --quick`` runs the whole pipeline at toy size, and its verdicts can
contradict the full run's: they test that the pipeline works, not the paper. The full run's own
``results.json`` lives in ``docs/study/`` and is not installed with the package, so its verdicts
are kept in a small packaged file, ``vae_zoo/study/full_run.json`` (rules version, commit, date,
and per claim the verdict with a one-line evidence), which the terminal and the report show
beside a toy run's verdicts. Regenerate it from a full run's ``results.json`` with::

    python -m vae_zoo.study.full_run docs/study/results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .config import StudyConfig, quick_config
from .criteria import RULES_VERSION
from .report_claims import SHORT, measurement

__all__ = [
    "PACKAGED",
    "caveat_lines",
    "load_full_run",
    "main",
    "run_kind",
    "summarise",
    "verdict_rows",
]

#: The packaged file's path inside the source tree (what :func:`main` writes by default).
PACKAGED = Path(__file__).with_name("full_run.json")


def summarise(results: Mapping[str, Any], source: str | Path | None = None) -> dict[str, Any]:
    """The packaged summary of a full run: rules version, commit, date and per claim the verdict
    with a one-line evidence (:func:`vae_zoo.study.report_claims.measurement`).

    Parameters
    ----------
    results : mapping
        A full run's ``results.json``.
    source : str or Path, optional
        Where it was read from: its date falls back on the git commit date of that file, then on
        its modification time, when the provenance records none.

    Returns
    -------
    dict
        ``{"rules_version", "git_commit", "uncommitted_changes", "date", "total_wall_seconds",
        "claims": [{"id", "holds", "verdict", "evidence"}]}``.
    """
    prov = results.get("provenance", {})
    return {
        "rules_version": str(results.get("rules_version", prov.get("rules_version", "?"))),
        "git_commit": prov.get("git_commit", "unknown"),
        "uncommitted_changes": bool(prov.get("uncommitted_changes")),
        "date": _date(prov, source),
        "total_wall_seconds": results.get("timings", {}).get("total_wall_seconds"),
        "claims": [
            {
                "id": claim["id"],
                "holds": claim["holds"],
                "verdict": SHORT[claim["holds"]],
                "evidence": measurement(claim),
            }
            for claim in results["claims"]
        ],
    }


def _date(prov: Mapping[str, Any], source: str | Path | None) -> str | None:
    """The run's date: its provenance's ``finished`` (ISO), else the commit date of ``source``
    in its git checkout, else ``source``'s modification date."""
    if prov.get("finished"):
        return str(prov["finished"])[:10]
    if source is None:
        return None
    path = Path(source).resolve()
    try:
        stamp = subprocess.run(
            ["git", "-C", str(path.parent), "log", "-1", "--format=%cs", "--", path.name],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        stamp = ""
    if stamp:
        return stamp
    return datetime.date.fromtimestamp(path.stat().st_mtime).isoformat() if path.exists() else None


def load_full_run() -> dict[str, Any] | None:
    """The packaged summary of the committed full run, or None when it is not installed."""
    try:
        text = resources.files("vae_zoo.study").joinpath("full_run.json").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)


def run_kind(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Whether ``config`` (a ``results.json`` ``config``) is the full study, the quick one, or
    another: ``("full" | "quick" | "other", settings that differ from the full study's)``."""
    saved = json.loads(json.dumps(dict(config)))  # tuples as results.json holds them: lists
    differs = StudyConfig().differs_from(saved)
    if not differs:
        return "full", []
    if not quick_config().differs_from(saved):
        return "quick", differs
    return "other", differs


def caveat_lines(
    config: Mapping[str, Any], full_run: Mapping[str, Any] | None, *, at_start: bool = False
) -> list[str]:
    """The caveat of a run that is not the full study, as plain sentences (none for the full
    study): toy-size verdicts test the pipeline, not the paper; where the committed full run's
    verdicts are (``at_start``: before this run has any); whether its rules version is this
    code's."""
    kind, differs = run_kind(config)
    if kind == "full":
        return []
    if kind == "quick":
        lines = [
            "This is the toy-size study (--quick): its verdicts test that the pipeline runs end "
            "to end, not the paper's claims, and they can contradict the full run's."
        ]
    else:
        shown = ", ".join(differs[:8]) + (", ..." if len(differs) > 8 else "")
        lines = [
            f"These settings differ from the full study's (in {shown}): the verdicts are this "
            "configuration's, not the committed full run's."
        ]
    if full_run is None:
        return [*lines, "The committed full run's verdicts are not installed with this copy."]
    where = "will be shown beside this run's at the end" if at_start else "are shown beside them"
    lines.append(f"The committed full run's verdicts ({_about(full_run)}) {where}.")
    return lines


def _about(full_run: Mapping[str, Any]) -> str:
    """``rules version 3, commit 0dfabc59c3, 2026-11-30`` (and the version this code applies
    where it differs)."""
    version = str(full_run.get("rules_version", "?"))
    text = f"rules version {version}, commit {str(full_run.get('git_commit', 'unknown'))[:10]}"
    if full_run.get("date"):
        text += f", {full_run['date']}"
    if version != RULES_VERSION:
        text += (
            f"; this code applies rules version {RULES_VERSION}, so a claim's rule there may "
            "not be the rule here"
        )
    return text


def verdict_rows(
    claims: Sequence[Mapping[str, Any]], full_run: Mapping[str, Any] | None
) -> list[tuple[str, str, str, str]]:
    """``(claim id, this run's verdict, the full run's verdict, the full run's evidence)`` for
    every claim of either (``-`` where one has no such claim)."""
    full = {c["id"]: c for c in (full_run or {}).get("claims", [])}
    ids = [c["id"] for c in claims] + [i for i in full if i not in {c["id"] for c in claims}]
    mine = {c["id"]: SHORT[c["holds"]] for c in claims}
    return [
        (
            claim_id,
            mine.get(claim_id, "-"),
            full[claim_id]["verdict"] if claim_id in full else "-",
            full[claim_id]["evidence"] if claim_id in full else "-",
        )
        for claim_id in ids
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vae_zoo.study.full_run RESULTS [--out PATH]``: write the packaged summary."""
    parser = argparse.ArgumentParser(
        prog="python -m vae_zoo.study.full_run",
        description="Write the packaged summary of a full run's verdicts (vae_zoo/study/"
        "full_run.json) from its results.json.",
    )
    parser.add_argument("results", help="a full run's results.json, e.g. docs/study/results.json")
    parser.add_argument("--out", default=str(PACKAGED), help=f"where to write (default {PACKAGED})")
    args = parser.parse_args(argv)
    try:
        results = json.loads(Path(args.results).read_text())
        summary = summarise(results, args.results)
    except (OSError, ValueError, KeyError) as err:
        print(f"vae_zoo.study.full_run: error: cannot read {args.results}: {err}", file=sys.stderr)
        return 2
    kind, differs = run_kind(results.get("config", {}))
    if kind != "full":
        print(
            f"vae_zoo.study.full_run: note: {args.results} differs from this code's full study in "
            f"{', '.join(differs)}",
            file=sys.stderr,
        )
    Path(args.out).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(
        f"wrote {args.out}: rules version {summary['rules_version']}, "
        f"{len(summary['claims'])} claims"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
