"""Command line: ``python -m vae_zoo.datasets [--preview PNG] [--build NAME --size S]``.

Without options it prints which datasets load on this machine and how to fix the others.
"""

from __future__ import annotations

import argparse
import time

from .registry import DATASETS, available, load


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vae_zoo.datasets`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m vae_zoo.datasets",
        description=(
            "Without options, print which datasets load on this machine and how to fix the "
            "others. --build fills the cache of one dataset; --preview draws a sample grid."
        ),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data and cache directory (default: $VAE_ZOO_DATA or ~/.cache/vae_zoo)",
    )
    parser.add_argument("--preview", metavar="PNG", help="write a sample grid to this PNG file")
    parser.add_argument("--build", choices=DATASETS, help="load (and cache) both splits")
    parser.add_argument(
        "--size",
        type=int,
        default=64,
        choices=(28, 32, 64),
        help="image side for --build (default 64)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.preview:
        from .preview import save_preview

        save_preview(args.preview, args.data_dir)
        print(f"wrote {args.preview}")
    if args.build:
        for split in ("train", "test"):
            start = time.perf_counter()
            ds = load(args.build, split=split, size=args.size, data_dir=args.data_dir)
            took = time.perf_counter() - start
            print(f"{args.build} {split}: {ds.images.shape} in {took:.1f} s")
    if not (args.preview or args.build):
        for name, (ok, detail) in available(args.data_dir).items():
            print(f"{name:14s} {'ok     ' if ok else 'MISSING'} {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
