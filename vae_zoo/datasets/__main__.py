"""Command line: ``python -m vae_zoo.datasets [--preview PNG] [--build NAME --size S]``.

Without options it prints which datasets load on this machine and how to fix the others.
"""

from __future__ import annotations

import argparse
import time

from .registry import DATASETS, available, load


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m vae_zoo.datasets", description=__doc__)
    parser.add_argument("--data-dir", default=None, help="data/cache directory")
    parser.add_argument("--preview", metavar="PNG", help="write a sample grid to this PNG file")
    parser.add_argument("--build", choices=DATASETS, help="load (and cache) both splits")
    parser.add_argument("--size", type=int, default=64, help="image size for --build")
    args = parser.parse_args(argv)
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
