"""Permutation test of independence with CKA as the statistic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._core.check import check_choice, check_count
from .._core.measures import Measure
from .._core.ratio import warn_undefined
from ._checks import (
    FORMS,
    Pair,
    activations_pair,
    check_kernel,
    check_measure_options,
    checked_pair,
)
from ._docs import shared_doc
from ._engine import CONSTANT, NOT_POSITIVE, Form, choose_form, represent
from ._measures import permuted_values
from ._resampling import permutations
from ._results import PermutationTestResult
from ._tables import observed_table, permutation_pvalues, permutation_table


@shared_doc
def permutation_test(
    x: Any,
    y: Any,
    *,
    n_permutations: int = 1000,
    debiased: bool = False,
    kernel: Literal["linear", "rbf"] | Callable[[np.ndarray], Any] = "linear",
    threshold: float = 1.0,
    sigma: float | None = None,
    method: Literal["auto", "features", "gram"] = "auto",
    seed: Any = None,
    measure: Measure = "cka",
    confounder: Any = None,
) -> PermutationTestResult:
    r"""Test whether two representations of the same examples are dependent, with CKA.

    Under the null hypothesis that ``x`` and ``y`` are independent, every pairing of the rows of
    ``y`` with the rows of ``x`` is equally likely. The test draws ``B = n_permutations`` random
    permutations :math:`\pi` of the examples of ``y``, computes
    :math:`\mathrm{CKA}(X, Y_\pi)` for each, and reports

    .. math:: p = \frac{1 + \#\{b : \mathrm{CKA}(X, Y_{\pi_b}) \ge \mathrm{CKA}(X, Y)\}}{1 + B},

    which is never 0 and is a valid p-value for any ``B`` (Phipson & Smyth, 2010).

    Parameters
    ----------
    {x_y}
    n_permutations : int, default 1000
        Number of random permutations ``B`` (at least 1); the smallest p-value is ``1 / (B + 1)``.
    debiased : bool, default False
        Use debiased CKA (unbiased HSIC₁) as the statistic (needs ``n >= 4``).
    {kernel}
    method : {"auto", "features", "gram"}, default "auto"
        How the permuted numerators are computed, a batch of permutations at a time (permuting
        ``y`` permutes its centred Gram, :math:`\bar L \mapsto P\bar L P^\top`, so the self-HSIC
        terms never change). ``"features"``: one GEMM :math:`\bar X^\top \bar Y_\pi`,
        O(n p1 p2) per permutation (linear kernel only). ``"gram"``:
        :math:`\sum_{ij}\bar K_{ij}\bar L_{\pi_i\pi_j}`, O(n²). ``"auto"`` picks the cheaper.
    seed : None, int or numpy.random.Generator, optional
        Source of the permutations; the same seed gives the same result.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        The statistic: CKA, deconfounded CKA (:func:`~cka_sim.deconfounded_cka`, adjusted for
        ``confounder``) or the Procrustes similarity (:func:`~cka_sim.procrustes_similarity`).
        The last two are linear (``kernel="linear"``, ``method="auto"``); each permutation of ``y``
        (``x`` and the confounder stay paired) recomputes them from the data, at one call's cost.
    {confounder}

    Returns
    -------
    PermutationTestResult
        ``statistic`` (CKA of the data), ``pvalue`` and ``null_distribution`` (shape (B,)); all
        three NaN, with a :class:`~cka_sim.exceptions.CKAUndefinedWarning`, when CKA is
        undefined (a constant representation).

    Raises
    ------
    {raises}

    References
    ----------
    Gretton, Fukumizu, Teo, Song, Schölkopf & Smola (2008), *A kernel statistical test of
    independence*, NeurIPS. Phipson & Smyth (2010), *Permutation p-values should never be zero*,
    Stat. Appl. Genet. Mol. Biol. 9(1).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim.stats import permutation_test
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 5))
    >>> y = x @ rng.standard_normal((5, 3)) + rng.standard_normal((200, 3))
    >>> res = permutation_test(x, y, n_permutations=199, seed=1)
    >>> res.pvalue
    0.005
    """
    args = _permutation_iv(
        x, y, n_permutations, debiased, kernel, threshold, sigma, method, seed, measure, confounder
    )
    return _permutation_result(args, *_null_distribution(args))


@dataclass(frozen=True)
class _PermutationArgs:
    """The validated, normalised arguments of :func:`permutation_test`."""

    data: Pair
    n_permutations: int
    form: Form | None  # how CKA's numerators are computed; None for the other measures


def _permutation_iv(
    x: Any,
    y: Any,
    n_permutations: Any,
    debiased: bool,
    kernel: Any,
    threshold: float,
    sigma: float | None,
    method: Any,
    seed: Any,
    measure: Any,
    confounder: Any,
) -> _PermutationArgs:
    """Every check of :func:`permutation_test`, once and in this order; nothing after it raises."""
    n_permutations = check_count(n_permutations, "n_permutations")
    check_kernel(kernel, threshold, sigma)
    check_choice(method, "method", FORMS)
    measure = check_measure_options(measure, confounder, debiased, kernel, "permutation_test")
    xm, ym = activations_pair(x, y, debiased=debiased)
    form: Form | None = None
    if measure != "cka":
        if method != "auto":
            raise ValueError(f"method={method!r} applies to measure='cka' only; drop it")
    elif method == "auto":
        form = choose_form(xm.shape[0], [xm.shape[1], ym.shape[1]], kernel)
    elif method == "features" and kernel != "linear":
        raise ValueError("method='features' needs kernel='linear'; use method='gram' or 'auto'")
    else:
        form = method
    data = checked_pair(
        xm,
        ym,
        confounder,
        measure=measure,
        debiased=debiased,
        kernel=kernel,
        threshold=threshold,
        sigma=sigma,
        seed=seed,
    )
    return _PermutationArgs(data, n_permutations, form)


def _null_distribution(args: _PermutationArgs) -> tuple[float, np.ndarray | None]:
    """The statistic and its ``B`` values under permutations of ``y`` (None when undefined).

    CKA recomputes only the numerators (:func:`~cka_sim.stats._tables.permutation_table`); the
    other measures are recomputed from the data (:mod:`~cka_sim.stats._measures`).
    """
    d, count = args.data, args.n_permutations
    if d.fn is not None:
        observed = d.fn(d.x, d.y, d.z)
        if np.isnan(observed):  # the measure has warned why
            return observed, None
        return observed, permuted_values(d.fn, d.x, d.y, d.z, permutations(d.rng, d.n, count))
    if d.constant is not None:
        warn_undefined(d.constant, CONSTANT, 4)
        return np.nan, None
    assert args.form is not None
    gx, gy = d.grams or (None, None)
    reps = ([represent(d.x, args.form, gram=gx)], [represent(d.y, args.form, gram=gy)])
    observed = observed_table(*reps, debiased=d.debiased)[0, 0]
    if np.isnan(observed):
        warn_undefined("x or y", NOT_POSITIVE, 4)
        return np.nan, None
    blocks = permutations(d.rng, d.n, count)
    return observed, permutation_table(*reps, blocks, debiased=d.debiased)[0, 0]


def _permutation_result(
    args: _PermutationArgs, observed: float, null: np.ndarray | None
) -> PermutationTestResult:
    """The p-value of the statistic against its null distribution (NaN when undefined)."""
    name = args.data.name
    if null is None:
        return PermutationTestResult(np.nan, np.nan, np.full(args.n_permutations, np.nan), name)
    pvalue = permutation_pvalues(np.array([[observed]]), null[None, None, :])[0, 0]
    return PermutationTestResult(float(observed), float(pvalue), null, name)
