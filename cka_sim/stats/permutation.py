"""Permutation test of independence with CKA as the statistic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from .._core.check import check_choice, check_count
from .._core.measures import Measure
from .._core.ratio import warn_undefined
from ._checks import activations_pair, check_kernel, constant_argument, scaled_for_kernel
from ._engine import choose_form, represent
from ._measures import (
    check_measure_options,
    confounder_matrix,
    measure_function,
    permuted_values,
)
from ._resampling import generator, permutations
from ._results import PermutationTestResult, estimator_name
from ._tables import observed_table, permutation_pvalues, permutation_table

FORMS = ("auto", "features", "gram")


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
    x : array_like or torch.Tensor, shape (n, p1, ...)
        Activations of the first representation, one row per example.
    y : array_like or torch.Tensor, shape (n, p2, ...)
        Activations of the second representation for the same examples.
    n_permutations : int, default 1000
        Number of random permutations ``B`` (at least 1). The smallest attainable p-value is
        ``1 / (B + 1)``.
    debiased : bool, default False
        Use debiased CKA (unbiased HSIC₁) as the statistic (needs ``n >= 4``).
    kernel : {"linear", "rbf"} or callable, default "linear"
        Kernel applied to each representation; a callable maps (n, p) activations to their
        (n, n) Gram matrix.
    threshold : float, default 1.0
        RBF bandwidth as a multiple of the median distance, as in :func:`~cka_sim.kernel_cka`.
        It is computed once from the data: permuting the rows does not change it.
    sigma : float, optional
        Explicit RBF bandwidth; overrides ``threshold``.
    method : {"auto", "features", "gram"}, default "auto"
        How the permuted numerators are computed (linear kernel only; other kernels use
        ``"gram"``). ``"features"``: one GEMM :math:`\bar X^\top \bar Y_\pi`, O(n p1 p2) per
        permutation. ``"gram"``: :math:`\sum_{ij}\bar K_{ij}\bar L_{\pi_i\pi_j}`, O(n²) per
        permutation. ``"auto"`` picks the cheaper.
    seed : None, int or numpy.random.Generator, optional
        Source of the permutations; the same seed gives the same result.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        The statistic: CKA, deconfounded CKA (:func:`~cka_sim.deconfounded_cka`, adjusted for
        ``confounder``) or the Procrustes similarity (:func:`~cka_sim.procrustes_similarity`).
        For the last two the rows of ``y`` are permuted while ``x`` and the confounder stay
        paired, and the measure is recomputed from the data for each permutation (one call's
        cost each); they are linear (``kernel="linear"``, ``method="auto"``).
    confounder : array_like or torch.Tensor, shape (n, q, ...), optional
        What ``measure="dcka"`` adjusts for; refused for the other measures.

    Returns
    -------
    PermutationTestResult
        ``statistic`` (CKA of the data), ``pvalue`` and ``null_distribution`` (shape (B,)).
        When CKA is undefined (a constant representation) all three are NaN, with a
        :class:`~cka_sim.exceptions.CKAUndefinedWarning`.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not numeric, or they are of different libraries.
    ValueError
        If they differ in rows or have too few (2; 4 when debiased, 8 for half-samples), no
        features or NaN or infinite values; for a count or level out of range, an unknown
        choice, or a ``confounder`` missing for ``measure="dcka"`` or given for another measure.

    Notes
    -----
    Permuting the rows of ``y`` permutes its centred Gram matrix, :math:`\bar L \mapsto P\bar L
    P^\top` (for the debiased estimator the U-centred matrix likewise), so the self-HSIC terms in
    the denominator of CKA never change: only the numerator is recomputed, for a batch of
    permutations at a time. Everything runs in float64 on NumPy; torch tensors are converted with
    ``.detach().cpu().numpy()``.

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
    n_permutations = check_count(n_permutations, "n_permutations")
    check_kernel(kernel, threshold, sigma)
    check_choice(method, "method", FORMS)
    measure = check_measure_options(measure, confounder, debiased, kernel, "permutation_test")
    xm, ym = activations_pair(x, y, min_rows=4 if debiased else 2)
    n = xm.shape[0]
    if measure != "cka":
        if method != "auto":
            raise ValueError(f"method={method!r} applies to measure='cka' only; drop it")
        zm = None if confounder is None else confounder_matrix(confounder, n)
        fn, name = measure_function(measure, debiased), estimator_name(measure, debiased)
        return _measure_test(fn, xm, ym, zm, n_permutations, seed, name)
    if method == "auto":
        form = choose_form(n, [xm.shape[1], ym.shape[1]], kernel)
    elif method == "features" and kernel != "linear":
        raise ValueError("method='features' needs kernel='linear'; use method='gram' or 'auto'")
    else:
        form = method
    name = estimator_name(kernel, debiased)
    if constant_argument({"x": xm, "y": ym}) is not None:
        return PermutationTestResult(np.nan, np.nan, np.full(n_permutations, np.nan), name)
    (xm, sigma_x), (ym, sigma_y) = (scaled_for_kernel(a, kernel, sigma) for a in (xm, ym))
    options = {"kernel": kernel, "threshold": threshold}
    rep_x = represent(xm, form, sigma=sigma_x, **options)
    rep_y = represent(ym, form, sigma=sigma_y, **options)
    observed = observed_table([rep_x], [rep_y], debiased=debiased)
    if np.isnan(observed[0, 0]):
        warn_undefined(
            "x or y", "a self-HSIC is not positive (constant features or too few examples)"
        )
        return PermutationTestResult(np.nan, np.nan, np.full(n_permutations, np.nan), name)
    blocks = permutations(generator(seed), n, n_permutations)
    null = permutation_table([rep_x], [rep_y], blocks, debiased=debiased)[0, 0]
    pvalue = permutation_pvalues(observed, null[None, None, :])[0, 0]
    return PermutationTestResult(float(observed[0, 0]), float(pvalue), null, name)


def _measure_test(
    fn: Any,
    xm: np.ndarray,
    ym: np.ndarray,
    zm: np.ndarray | None,
    count: int,
    seed: Any,
    name: str,
) -> PermutationTestResult:
    """The test for a measure recomputed from the data (see :mod:`cka_sim.stats._measures`)."""
    observed = fn(xm, ym, zm)
    if np.isnan(observed):  # the measure has warned why
        return PermutationTestResult(np.nan, np.nan, np.full(count, np.nan), name)
    null = permuted_values(fn, xm, ym, zm, permutations(generator(seed), xm.shape[0], count))
    pvalue = permutation_pvalues(np.array([[observed]]), null[None, None, :])[0, 0]
    return PermutationTestResult(observed, float(pvalue), null, name)
