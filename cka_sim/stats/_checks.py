"""Every argument and array check of the statistics functions, and every message they raise.

Each public function opens with one check routine (``_bootstrap_iv``, ``_permutation_iv``,
``_layerwise_iv``) built from the checks here; it returns the validated, normalised arguments,
and nothing after it raises ``ValueError`` or ``TypeError`` for bad input. The counts, choices and
ranges are declared once, here. A half-sample or jackknife group on which a layer or the
confounder happens to be constant, which no check of the full data can foresee, is not an
error: the statistic is undefined there, and :mod:`~cka_sim.stats._redraw` redraws it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._core.backend import is_torch
from .._core.check import (
    as_matrix,
    check_count,
    check_kernel_name,
    check_pair,
    check_positive,
    constant_confounder_error,
)
from .._core.measures import check_confounder_given, check_measure
from .._core.prepare import all_rows_equal
from .._core.prepare import unit_scaled as power_of_two_scaled
from ..kernels import gram_rbf
from ._measures import MeasureFn, measure_function
from ._results import estimator_name

KERNELS = ("linear", "rbf")
FORMS = ("auto", "features", "gram")  # permutation_test's method=
MIN_RESAMPLES = 2  # the replicates need a standard deviation


def min_rows(debiased: bool) -> int:
    """Examples CKA needs: 2, or 4 for debiased CKA (unbiased HSIC₁)."""
    return 4 if debiased else 2


def to_numpy(value: Any) -> Any:
    """Torch tensors become NumPy arrays (``.detach().cpu().numpy()``); others pass through.

    bfloat16, which NumPy lacks, is converted to float32 first (exactly); meta tensors pass
    through, for the validation to refuse them by name.
    """
    if is_torch(value) and value.device.type != "meta":
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


def activations_pair(x: Any, y: Any, *, debiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate two activation matrices and return them as float64 NumPy (n, p) arrays."""
    xm, ym, _ = check_pair(to_numpy(x), to_numpy(y), min_rows=min_rows(debiased))
    return np.asarray(xm, dtype=np.float64), np.asarray(ym, dtype=np.float64)


def scaled_for_kernel(
    x: np.ndarray, kernel: str | Callable[[np.ndarray], Any], sigma: float | None
) -> tuple[np.ndarray, float | None]:
    """``x`` scaled by an exact power of two (see ``power_of_two_scaled``), and ``sigma`` with it.

    Linear and RBF CKA do not change (an explicit RBF ``sigma`` is scaled by the same power of
    two), while float64 inputs of magnitude 1e±150 no longer overflow or underflow in the
    products. A callable kernel gets ``x`` as given: its scale may matter to it.
    """
    if callable(kernel):
        return x, sigma
    scaled, e = power_of_two_scaled(x, np)
    return scaled, None if sigma is None else float(np.ldexp(sigma, -e))


def first_constant(arrays: Mapping[str, np.ndarray]) -> str | None:
    """The name of the first array whose rows are all equal (CKA undefined); None if none is.

    The test is exact (row equality), so rounding can neither hide nor invent a constant layer.
    """
    return next((name for name, x in arrays.items() if all_rows_equal(x, np)), None)


def check_confidence_level(value: Any) -> float:
    """A confidence level strictly between 0 and 1."""
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"confidence_level must be a number in (0, 1); got {value!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(
            f"confidence_level must lie strictly between 0 and 1 (e.g. 0.95); got {value!r}"
        )
    return level


def check_resamples(value: Any, *, optional: bool) -> int:
    """A number of half-samples: at least :data:`MIN_RESAMPLES`, or 0 (none) when ``optional``."""
    if not optional:
        return check_count(value, "n_resamples", minimum=MIN_RESAMPLES)
    count = check_count(value, "n_resamples", minimum=0)
    if 0 < count < MIN_RESAMPLES:
        raise ValueError(
            f"n_resamples must be 0 (no intervals) or at least {MIN_RESAMPLES}; got {count}"
        )
    return count


def check_kernel(
    kernel: str | Callable[[np.ndarray], Any], threshold: float, sigma: float | None
) -> None:
    """Accept ``"linear"``, ``"rbf"`` (with a positive threshold or sigma) or a callable."""
    check_kernel_name(kernel, KERNELS)
    if callable(kernel):
        return
    check_positive(threshold, "threshold")
    check_positive(sigma, "sigma")


def check_half_samples(n: int, debiased: bool) -> None:
    """Raise when half-samples of ``n`` examples (``n // 2`` each) are too few for CKA."""
    rows, minimum = n // 2, min_rows(debiased)
    if rows < minimum:
        raise ValueError(
            f"half-sampling with n={n} examples leaves {rows} per evaluation; "
            f"{'debiased' if debiased else 'biased'} CKA needs at least {minimum}. "
            "Use more examples."
        )


def check_measure_options(
    measure: Any, confounder: Any, debiased: bool, kernel: Any, what: str
) -> str:
    """Validate ``measure`` with its options; the measures other than CKA are linear."""
    measure = check_measure(measure, debiased=debiased)
    check_confounder_given(measure, confounder, what)
    if measure != "cka" and (callable(kernel) or kernel != "linear"):
        raise ValueError(
            f"{what}: measure={measure!r} is linear; drop kernel= (got {kernel!r}) or use "
            "measure='cka'"
        )
    return measure


def confounder_matrix(confounder: Any, n: int) -> np.ndarray | None:
    """The confounder (or None) as a float64 NumPy (n, q) array with examples that differ."""
    if confounder is None:
        return None
    z = as_matrix(to_numpy(confounder), "confounder")
    if int(z.shape[0]) != n:
        raise ValueError(
            f"confounder must have one row per example, as x; got {z.shape[0]} rows and {n}"
        )
    z = np.asarray(z, dtype=np.float64)
    if all_rows_equal(z, np):
        raise constant_confounder_error("confounder")
    return z


def kernel_gram(
    x: np.ndarray, kernel: str | Callable[[np.ndarray], Any], threshold: float, sigma: float | None
) -> np.ndarray:
    """The raw (n, n) Gram matrix of ``x`` for ``"rbf"`` or a callable, checked.

    Only the kernel's output can be checked, so the check evaluates it: ``gram_rbf`` refuses a
    zero median bandwidth, and a callable must return the Gram matrix of the rows.
    """
    if kernel == "rbf":
        return np.asarray(gram_rbf(x, threshold=threshold, sigma=sigma), dtype=np.float64)
    gram = np.asarray(kernel(x), dtype=np.float64)  # type: ignore[operator]
    if gram.shape != (x.shape[0], x.shape[0]):
        raise ValueError(
            f"the kernel callable returned shape {gram.shape}; it must return the "
            f"({x.shape[0]}, {x.shape[0]}) Gram matrix of the rows"
        )
    return gram


def check_seed(seed: Any) -> np.random.Generator:
    """A NumPy Generator from ``None``, an integer, a SeedSequence or a Generator (returned as is)."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"seed must be None, an integer or a numpy.random.Generator; got {seed!r} ({err})"
        ) from None


@dataclass(frozen=True)
class Pair:
    """The validated, normalised data of :func:`permutation_test` and :func:`bootstrap_ci`.

    ``x``, ``y`` (and the confounder ``z``) are float64 NumPy (n, p) matrices; for CKA with a
    built-in kernel, ``x`` and ``y`` are scaled by exact powers of two (:func:`scaled_for_kernel`).
    ``grams`` holds their raw Gram matrices for ``"rbf"`` or a callable kernel, ``constant`` the
    name of an input whose rows are all equal (CKA undefined: nothing is evaluated for it), ``fn``
    the measure other than CKA (recomputed from the data per replicate), or None for CKA.
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None
    grams: tuple[np.ndarray, np.ndarray] | None
    constant: str | None
    debiased: bool
    kernel: Any
    fn: MeasureFn | None
    name: str
    rng: np.random.Generator

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def checked_pair(
    xm: np.ndarray,
    ym: np.ndarray,
    confounder: Any,
    *,
    measure: str,
    debiased: bool,
    kernel: Any,
    threshold: float,
    sigma: float | None,
    seed: Any,
) -> Pair:
    """The checks after the activations' own, shared by the one-pair functions, in this order:
    the confounder, the kernel's output (unless CKA is undefined) and the seed.
    """
    z = confounder_matrix(confounder, xm.shape[0])
    fn = None if measure == "cka" else measure_function(measure, debiased)
    constant = first_constant({"x": xm, "y": ym}) if fn is None else None
    grams = None
    if fn is None and constant is None:
        (xm, sigma_x), (ym, sigma_y) = (scaled_for_kernel(a, kernel, sigma) for a in (xm, ym))
        if kernel != "linear":
            grams = (
                kernel_gram(xm, kernel, threshold, sigma_x),
                kernel_gram(ym, kernel, threshold, sigma_y),
            )
    name = estimator_name(kernel if fn is None else measure, debiased)
    rng = check_seed(seed)
    return Pair(xm, ym, z, grams, constant, debiased, kernel, fn, name, rng)


def layer_matrices(acts: Any, name: str) -> dict[str, np.ndarray]:
    """A non-empty mapping of layer name to activations, as float64 NumPy (n, p) arrays."""
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError(
            f"{name} must be a non-empty mapping of layer name to activations, e.g. "
            f"{{'conv1': array}}; got {type(acts).__name__}"
        )
    return {
        str(key): np.asarray(as_matrix(to_numpy(value), f"{name}[{key!r}]"), dtype=np.float64)
        for key, value in acts.items()
    }


def common_rows(mats_a: dict[str, np.ndarray], mats_b: dict[str, np.ndarray]) -> int:
    """The number of examples every layer holds (at least :func:`min_rows` is checked apart)."""
    rows = {f"acts_a[{k!r}]": v.shape[0] for k, v in mats_a.items()}
    rows.update({f"acts_b[{k!r}]": v.shape[0] for k, v in mats_b.items()})
    if len(set(rows.values())) != 1:
        listed = ", ".join(f"{k}: {v}" for k, v in rows.items())
        raise ValueError(
            f"every layer must hold the same examples (same number of rows); got {listed}"
        )
    return next(iter(rows.values()))
