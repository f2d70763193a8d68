"""Docstring sections that the statistics functions share, written once.

In a docstring decorated with :func:`shared_doc`, a line holding only ``{name}`` is replaced by
``SECTIONS[name]``, indented as that line is (the device of SciPy's ``doccer`` and
``scipy.ndimage``'s ``docfiller``). ``help()``, Sphinx and the doctests see the filled text.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

SECTIONS = {
    "x_y": r"""x : array_like or torch.Tensor, shape (n, p1, ...)
    Activations of the first representation, one row per example.
y : array_like or torch.Tensor, shape (n, p2, ...)
    Activations of the second representation for the same examples. Everything runs in
    float64 on NumPy; torch tensors are converted with ``.detach().cpu().numpy()``.""",
    "level": r"""confidence_level : float, default 0.95
    Two-sided level of the intervals, strictly between 0 and 1.""",
    "method": r"""method : {"bca", "percentile", "basic"}, default "bca"
    How the interval is formed from the replicates :math:`\theta^*` of the estimate
    :math:`\hat\theta`. ``"percentile"``: their quantiles :math:`\alpha/2, 1-\alpha/2`.
    ``"basic"``: :math:`[2\hat\theta - q_{1-\alpha/2},\ 2\hat\theta - q_{\alpha/2}]`.
    ``"bca"``: bias-corrected and accelerated percentiles (Efron, 1987), the acceleration
    from a jackknife over at most 50 interleaved groups of examples. Where BCa is undefined
    (every replicate on one side of the estimate) or excludes the estimate (its bias
    correction exceeds the half-width), the basic interval, widened to contain the
    estimate, is returned instead, recorded as such in the result, and a ``RuntimeWarning``
    is raised. So the default always gives a finite interval that contains the estimate on
    well-defined data. This happens with biased CKA when features are many: its
    half-samples are biased upwards by more than their spread.""",
    "kernel": r"""kernel : {"linear", "rbf"} or callable, default "linear"
    Kernel applied to each representation; a callable maps (n, p) activations to their
    (n, n) Gram matrix.
threshold : float, default 1.0
    RBF bandwidth as a multiple of the median distance, as in :func:`~cka_sim.kernel_cka`.
    It is computed once from all the data and held fixed across permutations and
    half-samples.
sigma : float, optional
    Explicit RBF bandwidth; overrides ``threshold``.""",
    "confounder": r"""confounder : array_like or torch.Tensor, shape (n, q, ...), optional
    What ``measure="dcka"`` adjusts for; refused for the other measures.""",
    "raises": r"""TypeError
    If ``x`` or ``y`` is not numeric, or they are of different libraries.
ValueError
    If they differ in rows or have too few (CKA needs 2 examples, debiased CKA 4, and
    half-samples twice as many), no features or NaN or infinite values; for a count or level
    out of range, an unknown choice, a ``confounder`` missing for ``measure="dcka"``, given for
    another measure or constant; or when a callable kernel does not return the (n, n) Gram
    matrix or the RBF median bandwidth is zero.""",
}

_PLACEHOLDER = re.compile(r"^( *)\{(\w+)\}$", re.MULTILINE)


def shared_doc(func: F) -> F:
    """Fill the ``{name}`` lines of ``func``'s docstring from :data:`SECTIONS`."""
    if func.__doc__:  # None under python -OO
        func.__doc__ = _PLACEHOLDER.sub(
            lambda m: textwrap.indent(SECTIONS[m[2]], m[1]), func.__doc__
        )
    return func
