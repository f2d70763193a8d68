"""The command line, ``python -m vae_zoo.train``, and the options it shares with
``python -m vae_zoo.zoo``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import CheckpointError
from ..objectives import OBJECTIVES
from ..storage import DirectoryLockedError, describe_os_error
from .config import TrainConfig
from .loop import train

__all__ = ["HelpFormatter", "add_param_argument", "add_schedule_arguments", "build_parser", "main"]


def _parse_param(text: str) -> tuple[str, float | int]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, int(value)
    except ValueError:
        pass
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not a number") from None


def add_param_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--param KEY=VALUE`` option for objective hyper-parameters."""
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        type=_parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="objective hyper-parameter, e.g. -p beta=4",
    )


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except the uninformative ones (None, False, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_schedule_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``vae_zoo.train`` and ``vae_zoo.zoo``, with TrainConfig's defaults."""
    d = TrainConfig()
    parser.add_argument(
        "--objective",
        default=d.objective,
        choices=sorted(OBJECTIVES),
        help="VAE objective (its hyper-parameters: --param)",
    )
    add_param_argument(parser)
    parser.add_argument(
        "--size", type=int, default=32, choices=(32, 64), help="image side in pixels"
    )
    parser.add_argument("--steps", type=int, default=d.steps, help="optimisation steps per run")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between checkpoints (a killed run loses at most this many)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help="steps between test-loss evaluations (0: only at the end)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vae_zoo.train`` argument parser."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m vae_zoo.train",
        description="Train the paper's conv VAE on one dataset (resumes when --out has a run).",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--dataset", required=True, help="dsprites, mnist, fashion_mnist, animals, shapes3d, digits"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds init, batches and noise")
    add_schedule_arguments(p)
    p.add_argument("--latent-dim", type=int, default=d.latent_dim, help="latent size d")
    p.add_argument(
        "--log-every", type=int, default=d.log_every, help="steps between train-loss lines"
    )
    p.add_argument(
        "--eval-examples",
        type=int,
        default=d.eval_examples,
        help="test examples per test-loss evaluation",
    )
    p.add_argument(
        "--keep-checkpoints",
        type=int,
        nargs="+",
        default=[],
        metavar="STEP",
        help="also keep the checkpoint of these steps (checkpoint-stepSTEP.pt), with test loss",
    )
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads")
    p.add_argument("--device", default=d.device, help="cpu (bit-exact resume) or cuda")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="dataset cache directory (default: $VAE_ZOO_DATA or ~/.cache/vae_zoo)",
    )
    p.add_argument("--no-test", action="store_true", help="skip the test-loss evaluations")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m vae_zoo.train``: train one model from the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``); ``--help`` lists them.

    Returns
    -------
    int
        The exit status: 0 on success, 2 for an error, which is printed as one line.

    Examples
    --------
    >>> import tempfile
    >>> from vae_zoo.train import main
    >>> main(["--dataset", "dsprites", "--size", "32", "--steps", "1", "--no-progress",
    ...       "--out", tempfile.mkdtemp()])  # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    from ..datasets import load  # lazily: loading is only needed when run as a program

    try:
        config = TrainConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            objective=args.objective,
            objective_params=dict(args.param),
            latent_dim=args.latent_dim,
            log_every=args.log_every,
            eval_every=args.eval_every,
            eval_examples=args.eval_examples,
            checkpoint_every=args.checkpoint_every,
            keep_checkpoints=tuple(args.keep_checkpoints),
            threads=args.threads,
            device=args.device,
        )
        data = load(args.dataset, split="train", size=args.size, data_dir=args.data_dir)
        test = (
            None
            if args.no_test
            else load(args.dataset, split="test", size=args.size, data_dir=args.data_dir)
        )
        result = train(data, args.out, config, test_data=test, progress=not args.no_progress)
    except (ValueError, CheckpointError, DirectoryLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing dataset, a full disk, a read-only --out
        print(f"error: {describe_os_error(exc, '--out')}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": str(result.out_dir),
                "step": result.step,
                "train": result.train,
                "test": result.test,
            },
            indent=2,
        )
    )
    return 0
