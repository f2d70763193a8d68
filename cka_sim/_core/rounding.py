r"""When a debiased self-HSIC is zero within rounding: the one rule every estimator uses.

In exact arithmetic the debiased self-HSIC of a representation is a sum of squares, the squared
Frobenius norm of its U-centred Gram :math:`U(K)` (Song et al. 2012), so it is zero exactly when
:math:`U(K)` is (for example when all rows but one are equal), and debiased CKA is then 0/0. The
feature form computes it as a difference of three non-negative terms (with :math:`M = HKH` the
centred Gram, :math:`s = \operatorname{tr} M`, :math:`R = \sum_i M_{ii}^2`):

.. math:: n(n-3)\,\mathrm{HSIC}_1(K, K) = \underbrace{\lVert M\rVert_F^2}_{A}
          - \underbrace{\tfrac{n}{n-2} R}_{B} + \underbrace{\tfrac{s^2}{(n-1)(n-2)}}_{C}

and near zero the difference is rounding noise of :math:`A` and :math:`B`, of either sign. Each
term is a sum over the ``n`` examples of products formed in the input's dtype, whose floating
point error is at most :math:`\gamma_n = nu/(1-nu)` times the sum of the magnitudes summed
(Higham 2002, §3.1; :math:`u = \varepsilon/2` the unit roundoff); the squares in :math:`A` and
:math:`C` double it, so :math:`|\hat h - h| \le 2\gamma_n (A + B + C) \approx n\varepsilon T`
with :math:`T = A + B + C`. The rule is therefore

.. math:: \hat h \le \mathrm{bound} = n\,\varepsilon\,T

(:func:`rounding_bound`): the self-HSIC is then zero within rounding, and CKA is NaN with a
:class:`~cka_sim.CKAUndefinedWarning`. ``ε`` is the machine epsilon of the dtype the products
ran in (float32 input: ``2**-23``; float64: ``2**-52``). The same ``T`` and the same bound serve
the Gram form (where :math:`A`, :math:`R`, :math:`s` are read off :math:`M`), the feature form,
the accumulators (``T`` from their merged statistics) and :class:`~cka_sim.MinibatchCKA` (the
sum over batches of each batch's bound, in the units of its averaged self-HSIC), so every path
takes the same decision on the same data; only values within their own rounding of the bound
could be decided differently. Measured on data with an exactly zero self-HSIC, the computed
value stays below about ``0.15 n ε T`` on every path (NumPy and torch, float32 and float64,
``n`` up to 60000), a margin of about 7.

The biased self-HSIC :math:`A` has no cancellation (its rounding is relative): it is zero only
for a constant representation, which the prepare stage detects exactly. The price of the rule:
float32 products over more than about ``1/ε ≈ 8e6`` examples cannot resolve a debiased
self-HSIC at all (``n ε T ≥ T``); use float64 input there.

References
----------
Higham (2002), *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM, §3.1 (the
:math:`\gamma_n` bound on a computed sum). Song, Smola, Gretton, Bedo & Borgwardt (2012),
*Feature Selection via Dependence Maximization*, JMLR 13.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Machine epsilon of the dtype the products ran in, by dtype name.
EPSILON = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}


def epsilon(dtype: Any) -> float:
    """Machine epsilon of the products of ``dtype`` (NumPy or torch; float16/bfloat16 inputs
    are upcast to float32 before any product, integers to float64)."""
    name = str(dtype).removeprefix("torch.")
    if name in ("float16", "bfloat16"):
        name = "float32"
    return EPSILON.get(name, EPSILON["float64"])


def term_magnitude(a: Any, r: Any, s_x: Any, s_y: Any, n: int) -> Any:
    r"""The sum of the magnitudes of the three terms of a debiased feature-form HSIC.

    .. math:: T = |A| + \frac{n}{n-2}|R| + \frac{|s_X s_Y|}{(n-1)(n-2)}

    with :math:`A = \lVert \bar Y^\top\bar X\rVert_F^2` (or :math:`\langle M_X, M_Y\rangle`),
    :math:`R = r_X^\top r_Y`, :math:`s` the traces; works elementwise on arrays and tensors.
    """
    return abs(a) + (n / (n - 2)) * abs(r) + abs(s_x * s_y) / ((n - 1) * (n - 2))


def rounding_bound(magnitude: float, n: int, eps: float) -> float:
    r"""The rounding bound of a debiased self-HSIC: :math:`n\,\varepsilon\,T`.

    ``magnitude`` is :math:`T` (:func:`term_magnitude`, in the units of the self-HSIC it
    bounds), ``n`` the examples summed, ``eps`` the products' machine epsilon
    (:func:`epsilon`). A self-HSIC at or below the bound is zero within rounding (module
    docstring).
    """
    return float(n) * float(eps) * float(magnitude)


def gram_magnitude(m: Any, xp: Any) -> Any:
    r""":math:`T` of the debiased self-HSIC of a centred float64 Gram :math:`M = HKH` (or a
    stack (..., n, n)), in the units of :math:`\langle U(K), U(K)\rangle`: :math:`A = \lVert
    M\rVert_F^2`, :math:`R = \sum_i M_{ii}^2`, :math:`s = \operatorname{tr} M`."""
    n = m.shape[-1]
    diagonal = xp.linalg.diagonal(m)
    a = xp.sum(xp.reshape(m * m, (*m.shape[:-2], n * n)), axis=-1)
    r = xp.sum(diagonal * diagonal, axis=-1)
    s = xp.sum(diagonal, axis=-1)
    return term_magnitude(a, r, s, s, n)
