"""Command line: ``python -m cka_sim`` (also installed as ``cka-sim``).

Compares two saved activation files and prints CKA, optionally with a permutation p-value and a
confidence interval; ``.npz`` files with one array per layer give a layer x layer matrix.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._core.measures import MEASURES, estimator_name
from ._core.npyfile import open_activations
from .exceptions import CKAUndefinedWarning

EXAMPLES = """\
examples:
  python -m cka_sim --demo
      a self-contained demonstration on synthetic data (no files needed)
  python -m cka_sim a.npy b.npy
      linear CKA of two (n_examples, n_features) arrays
  python -m cka_sim a.npy b.npy --debiased --permutations 999 --bootstrap 1000 --seed 0
      debiased CKA with a permutation p-value and a 95% interval
  python -m cka_sim a.npy b.npy --kernel rbf --threshold 0.5 --json
      RBF CKA, printed as JSON
  python -m cka_sim model_a.npz model_b.npz --plot cka.png --save cka_result.npz
      every layer of model_a (one array per layer in the .npz) against every layer of model_b
  python -m cka_sim a.npy b.npy --measure dcka --confounder inputs.npy --permutations 999
      deconfounded CKA (adjusted for the inputs' similarity structure), with a p-value
  python -m cka_sim a.npy b.npy --measure procrustes --bootstrap 1000
      the orthogonal Procrustes similarity and distance, with a 95% interval

Rows of every array are examples, in the same order in both files; trailing dimensions are
flattened. Exit status: 0 on success, 1 when CKA is undefined for the two arrays (a constant
input: the reason is printed), 2 on unreadable or mismatched input.
"""


#: The most permutations or bootstrap resamples one run may ask for.
MAX_DRAWS = 1_000_000


class InputError(Exception):
    """A problem with the user's files or options: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog="python -m cka_sim",
        description="Centred Kernel Alignment (CKA) between two sets of activations.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("x", nargs="?", help="first activations: .npy array or .npz of layers")
    parser.add_argument("y", nargs="?", help="second activations, same examples, same kind")
    parser.add_argument("--debiased", action="store_true", help="debiased CKA (unbiased HSIC)")
    parser.add_argument(
        "--measure",
        choices=MEASURES,
        default="cka",
        help="cka (default), dcka (deconfounded CKA: needs --confounder) or procrustes",
    )
    parser.add_argument(
        "--confounder",
        metavar="Z.npy",
        help="--measure dcka: what to adjust for (e.g. the flattened inputs), same examples",
    )
    parser.add_argument(
        "--kernel", choices=("linear", "rbf"), default="linear", help="kernel (default linear)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=1.0,
        help="RBF bandwidth as a multiple of the median distance (default 1.0)",
    )
    parser.add_argument(
        "--permutations",
        default="0",
        metavar="N",
        help=f"permutation test with N draws (at most {MAX_DRAWS:,}; default 0: none)",
    )
    parser.add_argument(
        "--bootstrap",
        default="0",
        metavar="N",
        help=f"confidence interval from N resamples (at most {MAX_DRAWS:,}; default 0: none)",
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="interval level (default 0.95)"
    )
    parser.add_argument(
        "--ci-method",
        choices=("bca", "percentile", "basic"),
        default="bca",
        help="interval method (default bca)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--plot", metavar="PATH", help=".npz mode: write a heatmap (png/pdf)")
    parser.add_argument("--save", metavar="PATH", help=".npz mode: save the CKAResult (.npz)")
    parser.add_argument("--demo", action="store_true", help="run a demonstration on synthetic data")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    try:
        if args.demo:
            return _demo(args.seed)
        if args.x is None or args.y is None:
            raise InputError("give two activation files (or --demo); see --help")
        _check_options(args)
        if Path(args.x).suffix == ".npz" or Path(args.y).suffix == ".npz":
            return _layers(args)
        return _pair(args)
    except InputError as err:
        print(f"cka-sim: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as err:
        message = " ".join(str(err).split())
        print(f"cka-sim: error: {message}", file=sys.stderr)
        return 2


def _draws(text: str, option: str) -> int:
    """The count given to ``option``: a whole number (``1000`` or ``1e3``) from 0 to MAX_DRAWS."""
    try:
        value = float(text)
        count = int(value) if math.isfinite(value) and value == int(value) else None
    except ValueError:
        count = None
    if count is None:
        raise InputError(f"{option} must be a whole number of draws, e.g. 999; got {text!r}")
    if count < 0:
        raise InputError(f"{option} must be 0 or more; got {count}")
    if count > MAX_DRAWS:
        raise InputError(
            f"{option} must be at most {MAX_DRAWS:,} (each draw recomputes the measure; a "
            f"p-value resolution of 1e-6 is far below any test's need); got {count:,}"
        )
    return count


def _check_options(args: argparse.Namespace) -> None:
    args.permutations = _draws(str(args.permutations), "--permutations")
    args.bootstrap = _draws(str(args.bootstrap), "--bootstrap")
    if args.bootstrap == 1:
        raise InputError(f"--bootstrap must be 0 or at least 2; got {args.bootstrap}")
    if args.plot:  # before any work: a missing matplotlib is a one-line error, not a traceback
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            from .plot import _MISSING

            raise InputError(_MISSING) from None
    if not 0.0 < args.confidence < 1.0:
        raise InputError(f"--confidence must lie strictly between 0 and 1; got {args.confidence}")
    if args.threshold <= 0 or not math.isfinite(args.threshold):
        raise InputError(f"--threshold must be a positive number; got {args.threshold}")
    if args.measure == "dcka" and args.confounder is None:
        raise InputError("--measure dcka needs --confounder Z.npy (e.g. the flattened inputs)")
    if args.measure != "dcka" and args.confounder is not None:
        raise InputError("--confounder is used by --measure dcka only")
    if args.measure != "cka" and args.kernel != "linear":
        raise InputError(f"--measure {args.measure} is linear; drop --kernel {args.kernel}")
    if args.measure == "procrustes" and args.debiased:
        raise InputError("--measure procrustes has no debiased form; drop --debiased")


def _confounder(args: argparse.Namespace) -> np.ndarray | None:
    if args.confounder is None:
        return None
    z = _load(args.confounder)
    if not isinstance(z, np.ndarray):
        raise InputError(f"{args.confounder}: the confounder must be one .npy array, not a .npz")
    return z


def _load(path: str) -> np.ndarray | dict[str, np.ndarray]:
    """A .npy file's array (memory-mapped, read in blocks) or a .npz file's {name: array}."""
    return open_activations(path)


def _pair(args: argparse.Namespace) -> int:
    x, y = _load(args.x), _load(args.y)
    if args.plot or args.save:
        raise InputError("--plot and --save need .npz files of layers (a layer x layer matrix)")
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    z = _confounder(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CKAUndefinedWarning)
        value, estimator, options = _pair_value(args, x, y, z)
    _rewarn_others(caught)
    if math.isnan(value):
        return _report_undefined(args, caught)
    out: dict[str, Any] = {
        "measure": args.measure,
        "value": value,
        "estimator": estimator,
        "n_examples": int(x.shape[0]),
    }
    if args.measure == "cka":
        out["cka"] = value
    if args.measure == "procrustes":
        out["procrustes_distance"] = 2.0 - 2.0 * min(value, 1.0)
    _add_uncertainty(args, x, y, options, out)
    if args.json:
        print(json.dumps({k: _jsonable(v) for k, v in out.items()}))
    else:
        _print_pair(args, out)
    return 0


def _pair_value(
    args: argparse.Namespace, x: np.ndarray, y: np.ndarray, z: np.ndarray | None
) -> tuple[float, str, dict[str, Any]]:
    """The measure of one pair of arrays, its estimator name, and the options that computed it.

    The options are passed on to the permutation test and the bootstrap, so they compute the same
    measure.
    """
    from .cka import kernel_cka, linear_cka
    from .deconfounded import deconfounded_cka
    from .procrustes import procrustes_similarity

    options: dict[str, Any] = {"debiased": args.debiased}
    estimator = args.kernel + ("-debiased" if args.debiased else "")
    if args.kernel == "rbf":
        options.update(kernel="rbf", threshold=args.threshold)
        value = kernel_cka(x, y, threshold=args.threshold, debiased=args.debiased)
    elif args.measure == "cka":
        value = linear_cka(x, y, debiased=args.debiased)
    else:
        options.update(measure=args.measure, confounder=z)
        estimator = estimator_name(args.measure, args.debiased)
        if args.measure == "dcka":
            value = deconfounded_cka(x, y, z, debiased=args.debiased)
        else:
            value = procrustes_similarity(x, y)
    return value, estimator, options


def _rewarn_others(caught: list[warnings.WarningMessage]) -> None:
    """Issue again the recorded warnings other than CKAUndefinedWarning (reported as a reason)."""
    for record in caught:
        if not issubclass(record.category, CKAUndefinedWarning):
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


def _report_undefined(args: argparse.Namespace, caught: list[warnings.WarningMessage]) -> int:
    """Print why the measure is undefined (also as JSON with ``--json``); exit status 1."""
    reasons = [str(r.message) for r in caught if issubclass(r.category, CKAUndefinedWarning)]
    reason = reasons[0] if reasons else f"{args.measure} is undefined for these inputs"
    if args.json:
        print(json.dumps({"measure": args.measure, "value": None, "undefined": reason}))
    print(f"cka-sim: {reason}", file=sys.stderr)
    return 1


def _add_uncertainty(
    args: argparse.Namespace,
    x: np.ndarray,
    y: np.ndarray,
    options: dict[str, Any],
    out: dict[str, Any],
) -> None:
    """Add the permutation p-value and the bootstrap interval to ``out``, where asked for."""
    from .stats import bootstrap_ci, permutation_test

    if args.permutations:
        test = permutation_test(x, y, n_permutations=args.permutations, seed=args.seed, **options)
        out.update(pvalue=test.pvalue, n_permutations=args.permutations)
    if args.bootstrap:
        boot = bootstrap_ci(
            x,
            y,
            n_resamples=args.bootstrap,
            confidence_level=args.confidence,
            method=args.ci_method,
            seed=args.seed,
            **options,
        )
        out.update(
            ci_low=boot.confidence_interval.low,
            ci_high=boot.confidence_interval.high,
            standard_error=boot.standard_error,
            confidence_level=args.confidence,
            ci_method=args.ci_method,
            n_resamples=args.bootstrap,
        )


def _print_pair(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Print the summary of one pair for people (the ``--json`` form is one line of JSON)."""
    label = {"cka": "CKA", "dcka": "dCKA", "procrustes": "Procrustes similarity"}[args.measure]
    print(f"{label} ({out['estimator']}, n={out['n_examples']}) = {out['value']:.4f}")
    if args.measure == "procrustes":
        print(f"Procrustes distance 2 - 2s = {out['procrustes_distance']:.4f}")
    if args.permutations:
        print(f"permutation p-value = {out['pvalue']:.4g} ({args.permutations} permutations)")
    if args.bootstrap:
        print(
            f"{100 * args.confidence:g}% interval = [{out['ci_low']:.4f}, {out['ci_high']:.4f}] "
            f"({args.ci_method}, {args.bootstrap} half-samples; s.e. {out['standard_error']:.4f})"
        )


def _layers(args: argparse.Namespace) -> int:
    acts_a, acts_b = _load(args.x), _load(args.y)
    if not (isinstance(acts_a, dict) and isinstance(acts_b, dict)):
        raise InputError(
            "give two .npz files (one array per layer) or two .npy files, not one each"
        )
    if args.kernel != "linear":
        raise InputError("layer x layer matrices use the linear kernel; drop --kernel rbf")
    if args.permutations or args.bootstrap:
        from .stats import cka_matrix_with_uncertainty

        result = cka_matrix_with_uncertainty(
            acts_a,
            acts_b,
            debiased=args.debiased,
            n_resamples=args.bootstrap,
            n_permutations=args.permutations,
            confidence_level=args.confidence,
            method=args.ci_method,
            seed=args.seed,
            measure=args.measure,
            confounder=_confounder(args),
        )
    else:
        from .matrix import cka_matrix

        result = cka_matrix(
            acts_a,
            acts_b,
            debiased=args.debiased,
            measure=args.measure,
            confounder=_confounder(args),
        )
    result.metadata.update(source_x=str(args.x), source_y=str(args.y))
    if args.save:
        result.save(args.save)
    if args.plot:
        from .plot import heatmap

        heatmap(result, annotate=max(result.shape) <= 12, save=args.plot)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(_table(result.values, result.row_names, result.col_names))
    if result.pvalues is not None:
        print("\npermutation p-values")
        print(_table(result.pvalues, result.row_names, result.col_names))
    if result.ci_low is not None and result.ci_high is not None:
        print(f"\n{100 * args.confidence:g}% intervals (low / high)")
        print(_table(result.ci_low, result.row_names, result.col_names))
        print(_table(result.ci_high, result.row_names, result.col_names))
    return 0


def _table(values: np.ndarray, rows: list[str], cols: list[str]) -> str:
    width = max(8, *(len(c) for c in cols))
    first = max(len(r) for r in rows)
    lines = [" " * first + "".join(f" {c:>{width}}" for c in cols)]
    for name, row in zip(rows, values, strict=True):
        lines.append(f"{name:<{first}}" + "".join(f" {v:>{width}.4f}" for v in row))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _demo(seed: int | None) -> int:
    from .cka import linear_cka
    from .stats import bootstrap_ci, permutation_test

    rng = np.random.default_rng(0 if seed is None else seed)
    n, p, q, b = 60, 2000, 50, 199
    z = rng.standard_normal((n, 5))  # 5 latent factors that both representations encode
    x = z @ rng.standard_normal((5, p)) + 2.0 * rng.standard_normal((n, p))
    cases = {
        "independent of x (true CKA 0)": rng.standard_normal((n, q)),
        "noisy read-out of x's 5 latent factors": z @ rng.standard_normal((5, q))
        + 2.0 * rng.standard_normal((n, q)),
    }
    print(f"x: n = {n} examples, p = {p} features (p >> n); y: {q} features.\n")
    print(f"{'y is':<44}{'biased':>8}{'debiased':>10}{'p-value':>9}  95% interval (debiased)")
    for label, y in cases.items():
        biased = linear_cka(x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = permutation_test(x, y, n_permutations=b, debiased=True, seed=1)
            ci = bootstrap_ci(x, y, n_resamples=400, debiased=True, seed=1).confidence_interval
        print(
            f"{label:<44}{biased:>8.3f}{test.statistic:>+10.3f}{test.pvalue:>9.3f}  "
            f"[{ci.low:+.3f}, {ci.high:+.3f}]"
        )
    print(
        f"\nWith p >> n, biased CKA is large even for independent data; debiased CKA is near 0 "
        f"there.\nThe permutation test ({b} permutations, smallest p-value 1/{b + 1} = "
        f"{1 / (b + 1):.3f}) and\nthe interval say whether a similarity is more than chance and "
        "how precisely it is known."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
