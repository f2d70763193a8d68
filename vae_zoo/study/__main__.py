"""``python -m vae_zoo.study``: reproduce the paper's claims with measured verdicts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import StudyConfig, quick_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_zoo.study",
        description=(
            "Train a zoo of VAEs on several datasets, compare them with CKA, transfer them "
            "between datasets and test the claims of Bonheme & Grześ (2023). Resumable: "
            "run the same command again to continue an interrupted study."
        ),
        epilog=(
            "examples:\n"
            "  python -m vae_zoo.study --quick                 # the whole pipeline at toy size\n"
            "  python -m vae_zoo.study --out runs/study        # the full study\n"
            "  python -m vae_zoo.study --size 64 --device cuda # the paper's resolution on a GPU\n"
            "\n"
            "How long each takes (measured, with the machine and load): README.md, section\n"
            "'How long it takes'."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out",
        default=None,
        help="study directory (default runs/study, or runs/study-quick with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the whole pipeline at toy size: its verdicts test the pipeline, not the paper "
        "(the committed full run's verdicts are shown beside them)",
    )
    parser.add_argument("--size", type=int, choices=(32, 64), help="image size (default 32)")
    parser.add_argument("--datasets", nargs="+", help="datasets of the zoo")
    parser.add_argument("--seeds", type=int, nargs="+", help="zoo seeds (at least two)")
    parser.add_argument(
        "--random-models", type=int, help="untrained baseline models, the floor (at least two)"
    )
    parser.add_argument("--objective", help="beta_vae, beta_tcvae, annealed_vae or dip_vae_ii")
    parser.add_argument("--beta", type=float, help="β of beta_vae / beta_tcvae (default 1)")
    parser.add_argument(
        "--steps", type=int, dest="train_steps", help="training steps per zoo model"
    )
    parser.add_argument(
        "--transfer-steps", type=int, help="largest step budget of the freeze-depth sweep"
    )
    parser.add_argument("--cka-examples", type=int, help="held-out examples fed to every model")
    parser.add_argument("--workers", type=int, help="training processes (one thread each)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where to train and run models")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output (in a terminal a bar per stage; in a log, a line per job)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> StudyConfig:
    overrides = {
        key: getattr(args, key)
        for key in (
            "size",
            "random_models",
            "objective",
            "train_steps",
            "transfer_steps",
            "cka_examples",
            "workers",
            "device",
        )
        if getattr(args, key) is not None
    }
    if args.datasets:
        overrides["datasets"] = tuple(args.datasets)
    if args.seeds:
        overrides["seeds"] = tuple(args.seeds)
        overrides["transfer_source_seed"] = args.seeds[0]
        preset = quick_config() if args.quick else StudyConfig()
        kept = tuple(s for s in preset.check_source_seeds if s in args.seeds)
        overrides["check_source_seeds"] = kept or tuple(args.seeds)
    if args.train_steps is not None:
        # the training-length check at a quarter, a half and all of the steps (two doublings)
        n = args.train_steps
        overrides["training_lengths"] = tuple(sorted({max(1, n // 4), max(1, n // 2), n}))
    if args.beta is not None:
        overrides["objective_params"] = {"beta": args.beta}
    elif args.objective not in (None, "beta_vae", "beta_tcvae"):
        overrides["objective_params"] = {}
    if args.transfer_steps is not None:
        t = args.transfer_steps
        overrides["transfer_budgets"] = tuple(sorted({0, t // 8, t // 4, t // 2, t}))
    if args.datasets:
        base = quick_config() if args.quick else StudyConfig()
        if not all(set(pair) <= set(args.datasets) for pair in base.sweep_pairs):
            d = args.datasets
            overrides["sweep_pairs"] = ((d[-1], d[0]), (d[0], d[1]))
    return quick_config(**overrides) if args.quick else StudyConfig(**overrides)


def _line_buffered_log() -> None:
    """In a log that is not a terminal (stdout redirected to a file or a pipe), write every
    line when it is printed, not when a block buffer fills: the stage messages and progress
    lines then show as the study goes."""
    stdout = sys.stdout
    if not stdout.isatty() and hasattr(stdout, "reconfigure"):
        try:
            stdout.reconfigure(line_buffering=True)
        except (OSError, ValueError):  # a stream that cannot change its buffering
            pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _line_buffered_log()
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as err:
        print(f"vae_zoo.study: error: {err}", file=sys.stderr)
        return 2
    out = args.out or ("runs/study-quick" if args.quick else "runs/study")
    from ..storage import DirectoryLockedError, describe_os_error
    from ..zoo import ZooError
    from .run import run_study

    try:
        run_study(config, out, progress=not args.quiet)
    except (ValueError, DirectoryLockedError, ZooError) as err:
        print(f"vae_zoo.study: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # read-only --out, full disk: nothing half-written is left behind
        print(f"vae_zoo.study: error: {describe_os_error(err, '--out')}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
