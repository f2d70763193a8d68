"""Run the cka-sim benchmark suite: a table, a JSON record and a log-log plot.

Usage::

    python -m benchmarks [--quick] [--device cpu|cuda] [--out DIR] [--case NAME ...]
    python benchmarks/run.py [same options]

Cases: ``linear`` (``linear_cka`` vs the three-GEMM floor and the peers), ``accuracy`` (float32
with feature means 0, 10, 100 vs the float64 truth, every library), ``rbf`` (``kernel_cka`` vs
ckatorch), ``streaming`` (``StreamingCKA.update`` vs the batch's floor), ``memory``
(``StreamingCKA`` fed 200k examples in batches) and ``compare_models`` (vs pytorch-cka's
``compute_cka``). Every ratio is of two times measured side by side in this run. Results go to
``DIR/<machine>-<date>.json``, a Markdown copy of the table (``.md``) and the plot (``.png``)
(default DIR: ``benchmarks/results``; presets other than ``full`` add their name to the stem).

``--device cuda`` runs the same code with torch tensors on the GPU (the floor is then the
device's own torch GEMMs); it stops with a message when torch sees no CUDA device.

``--baseline REV`` (a git revision, or a folder holding a ``cka_sim`` package) times that older
``cka_sim`` beside the current one in every round of the ``linear``, ``accuracy``, ``streaming``
and ``compare_models`` cases: before/after ratios measured side by side in one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    # Appended, not prepended: a ``cka_sim`` on PYTHONPATH (e.g. an older revision, for
    # before/after figures) takes precedence over the checkout's own.
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks import baseline, case_compare, case_measures, cases, report
from benchmarks.peers import peers
from benchmarks.timing import CLOCKS, machine

CASES = ("linear", "accuracy", "rbf", "streaming", "memory", "compare_models", "procrustes")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


@dataclass
class Config:
    """Sizes of every case. :meth:`full`, :meth:`quick` and :meth:`tiny` are the presets."""

    name: str
    linear_sizes: list[tuple[int, int]]
    peer_max_n: int
    accuracy_n: int
    accuracy_p: int
    rbf_sizes: list[int]
    rbf_p: int
    streaming_shapes: list[tuple[int, int, int]]
    memory_totals: list[int]
    memory_p: int
    memory_batch: int
    compare_n: int
    compare_batch: int
    compare_rounds: int = 1
    procrustes_sizes: list[tuple[int, int]] = field(default_factory=lambda: [(20000, 1024)])
    repeats: int = 5
    budget_s: float = 10.0
    #: pause before each timed call on the CPU, longer than OpenBLAS's and OpenMP's idle threads
    #: keep spinning (see :func:`benchmarks.timing.interleaved_best`)
    settle_s: float = 0.3
    means: list[float] = field(default_factory=lambda: [0.0, 10.0, 100.0])

    @classmethod
    def full(cls) -> Config:
        grid = [(n, p) for p in (256, 1024) for n in (1000, 4000, 16000, 64000)]
        return cls(
            name="full",
            linear_sizes=[*grid, (4000, 512), (20000, 1024)],
            peer_max_n=4000,
            accuracy_n=2000,
            accuracy_p=256,
            rbf_sizes=[1000, 2000, 4000],
            rbf_p=256,
            streaming_shapes=[
                (4096, 256, 256),
                (2048, 512, 512),
                (1024, 1024, 512),
                (512, 256, 128),
            ],
            memory_totals=[50_000, 200_000],
            memory_p=1024,
            memory_batch=4096,
            compare_n=10_000,
            compare_batch=256,
            compare_rounds=2,
            repeats=5,
            budget_s=8.0,
        )

    @classmethod
    def quick(cls) -> Config:
        return cls(
            name="quick",
            linear_sizes=[(1000, 256), (4000, 256), (4000, 512)],
            peer_max_n=4000,
            accuracy_n=500,
            accuracy_p=64,
            rbf_sizes=[500, 1000],
            rbf_p=64,
            streaming_shapes=[(2048, 256, 256)],
            memory_totals=[20_000],
            memory_p=256,
            memory_batch=2048,
            compare_n=1024,
            compare_batch=128,
            procrustes_sizes=[(4000, 256)],
            repeats=3,
            budget_s=2.0,
        )

    @classmethod
    def goals(cls) -> Config:
        """Only the sizes the goals name (for before/after runs of an optimisation)."""
        full = cls.full()
        full.name = "goals"
        full.linear_sizes = [(4000, 512), (20000, 1024)]
        full.rbf_sizes = [4000]
        full.memory_totals = [200_000]
        full.budget_s = 20.0  # more contenders per round (floors per library, --baseline)
        return full

    @classmethod
    def tiny(cls) -> Config:
        """Seconds-long sizes, for the test that keeps the machinery from rotting."""
        return cls(
            name="tiny",
            linear_sizes=[(64, 8), (256, 8)],
            peer_max_n=64,
            accuracy_n=32,
            accuracy_p=4,
            rbf_sizes=[32],
            rbf_p=4,
            streaming_shapes=[(32, 8, 4)],
            memory_totals=[256],
            memory_p=8,
            memory_batch=64,
            compare_n=32,
            compare_batch=16,
            procrustes_sizes=[(64, 8)],
            repeats=1,
            budget_s=0.1,
            settle_s=0.0,
        )


def check_device(device: str) -> None:
    """Raise ``SystemExit`` with a clear message when ``device`` cannot be used."""
    if device == "cpu":
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            f"--device {device}: torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False). Run on a machine with a GPU and a CUDA build "
            "of torch, or use --device cpu."
        )


def run_suite(
    config: Config,
    *,
    device: str = "cpu",
    out: Path = DEFAULT_OUT,
    selected: tuple[str, ...] = CASES,
    threads: int | None = None,
    log: callable = print,  # type: ignore[valid-type]
    baseline_spec: str | None = None,
    clock: str = "wall",
) -> dict:
    """Run the selected cases; print and write the results. Returns the JSON record.

    ``baseline_spec``: a git revision or a folder holding an older ``cka_sim``, timed beside the
    current one (see :mod:`benchmarks.baseline`).
    """
    import torch

    import cka_sim

    check_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    host = machine(device, torch.get_num_threads())
    found = peers()
    for peer in found.values():
        if not peer.available:
            log(f"peer skipped: {peer.missing}")
    libs = {"cka_sim": cka_sim}
    if baseline_spec is not None:
        label, package = baseline.load(baseline_spec)
        libs[label] = package
        log(f"baseline {label}: {Path(package.__file__).parent}")
    # on the CPU every timed call starts after the thread pools of the previous one have parked
    # (see timing.interleaved_best); a GPU call is synchronised instead
    settle = 0.0 if device.startswith("cuda") else config.settle_s
    ctx = cases.Context(
        device, config.repeats, config.budget_s, found, log, libs, CLOCKS[clock], settle
    )
    rows: list[cases.Row] = []
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for case in selected:
        if case not in CASES:
            raise ValueError(f"unknown case {case!r}; cases are {CASES}")
        log(f"case {case} ...")
        begin = time.perf_counter()
        try:  # a case that fails is reported; the others' results are still written
            rows += _run_case(case, ctx, config)
        except Exception as error:
            failed[case] = f"{type(error).__name__}: {error}"
            log(f"case {case} FAILED: {failed[case]}")
            rows.append(cases.row(case, {}, "(case failed)", note=failed[case]))
        seconds[case] = time.perf_counter() - begin
    stamp = datetime.datetime.now(datetime.timezone.utc)
    meta = {
        "machine": host.description,
        "cka_sim": {"version": cka_sim.__version__, "path": str(Path(cka_sim.__file__).parent)},
        "baseline": {
            label: str(Path(package.__file__).parent)
            for label, package in libs.items()
            if label != "cka_sim"
        },
        "machine_info": host.info,
        "clock": clock,
        "config": asdict(config),
        "cases": list(selected),
        "failed": failed,
        "peers": {name: {"version": p.version, "missing": p.missing} for name, p in found.items()},
        "date_utc": stamp.isoformat(timespec="seconds"),
        "case_seconds": seconds,
        "total_seconds": time.perf_counter() - started,
    }
    text = report.table(rows, host.description)
    log(text)
    stem = f"{host.slug}-{stamp.strftime('%Y-%m-%d')}" + (
        "" if config.name == "full" else f"-{config.name}"
    )
    json_path = Path(out) / f"{stem}.json"
    report.write_json(json_path, rows, meta)
    text_md = report.markdown(rows, host.description)
    for label in meta["baseline"]:
        pairs = report.side_by_side(rows, label)
        log(f"\nbefore ({label}) and after (cka_sim), side by side:\n{pairs}")
        text_md += f"\n\n**before ({label}) and after (cka_sim), side by side**\n\n{pairs}"
    (Path(out) / f"{stem}.md").write_text(text_md + "\n")
    png_path = Path(out) / f"{stem}.png"
    plotted = report.plot(png_path, rows, host.description)
    log(
        f"wrote {json_path}, .md"
        + (f" and {png_path}" if plotted else " (no plot: no linear rows)")
    )
    return {
        "meta": meta,
        "rows": rows,
        "json": str(json_path),
        "png": str(png_path) if plotted else None,
    }


def _run_case(case: str, ctx: cases.Context, config: Config) -> list[cases.Row]:
    if case == "linear":
        return cases.linear(ctx, config.linear_sizes, config.peer_max_n)
    if case == "accuracy":
        return cases.accuracy(ctx, config.accuracy_n, config.accuracy_p, config.means)
    if case == "rbf":
        return cases.rbf(ctx, config.rbf_sizes, config.rbf_p, threshold=1.0)
    if case == "streaming":
        return cases.streaming(ctx, config.streaming_shapes)
    if case == "memory":
        return cases.streaming_memory(
            ctx, config.memory_totals, config.memory_p, config.memory_batch
        )
    if case == "compare_models":
        return case_compare.compare(
            ctx, config.compare_n, config.compare_batch, config.compare_rounds
        )
    return case_measures.procrustes(ctx, config.procrustes_sizes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--preset",
        choices=("full", "quick", "goals", "tiny"),
        default=None,
        help="sizes: full (default), quick (= --quick), goals (only the sizes the goals name), "
        "tiny (seconds, to check the machinery)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:index]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument(
        "--case", action="append", choices=CASES, help="run only this case (repeatable)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall (default) or cpu: CPU time of the process, for a machine shared with other "
        "jobs (use with --threads 1 and OPENBLAS_NUM_THREADS=1)",
    )
    parser.add_argument(
        "--compare-rounds",
        type=int,
        default=None,
        metavar="N",
        help="rounds of the compare_models case (default: the preset's); each contender keeps "
        "its best, and the notes give the median over rounds of cka_sim's time over each peer's",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also time the cka_sim of this git revision (or folder) side by side",
    )
    args = parser.parse_args(argv)
    if args.compare_rounds is not None and args.compare_rounds < 1:
        parser.error(f"--compare-rounds must be at least 1; got {args.compare_rounds}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        parser.error(f"--device must be cpu or cuda[:index]; got {args.device!r}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    preset = args.preset or ("quick" if args.quick else "full")
    presets = {
        "full": Config.full,
        "quick": Config.quick,
        "goals": Config.goals,
        "tiny": Config.tiny,
    }
    config = presets[preset]()
    if args.compare_rounds is not None:
        config.compare_rounds = args.compare_rounds
    record = run_suite(
        config,
        device=args.device,
        out=args.out,
        selected=tuple(args.case) if args.case else CASES,
        threads=args.threads,
        baseline_spec=args.baseline,
        clock=args.clock,
    )
    if record["meta"]["failed"]:
        raise SystemExit(
            f"cases failed (results of the others written): {record['meta']['failed']}"
        )


if __name__ == "__main__":
    main()
