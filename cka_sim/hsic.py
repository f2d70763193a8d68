"""The Hilbert-Schmidt Independence Criterion (HSIC) of two Gram matrices."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._core.backend import Array, is_torch, present, to_scalar
from ._core.check import check_gram_pair
from ._core.prepare import scaled, times_power_of_two
from .kernels import centered


def hsic(gram_x: Any, gram_y: Any, *, unbiased: bool = False) -> Any:
    r"""HSIC of two Gram matrices over the same ``n`` examples.

    Biased (Gretton et al., 2005):

    .. math:: \mathrm{HSIC}_0(K, L) = \frac{\operatorname{tr}(KHLH)}{(n-1)^2}

    Unbiased (Song et al., 2012), with :math:`\tilde K, \tilde L` the Grams with zero diagonal:

    .. math:: \mathrm{HSIC}_1(K, L) = \frac{1}{n(n-3)}\left[\operatorname{tr}(\tilde K\tilde L)
              + \frac{\mathbf{1}^\top\tilde K\mathbf{1}\,\mathbf{1}^\top\tilde L\mathbf{1}}{(n-1)(n-2)}
              - \frac{2}{n-2}\mathbf{1}^\top\tilde K\tilde L\mathbf{1}\right]

    computed as :math:`\langle U(K), U(L)\rangle/(n(n-3))` with U-centred Grams
    (:func:`~cka_sim.center_gram` with ``unbiased=True``). The unbiased estimate can be negative.
    Each Gram is scaled by an exact power of two before the products and the result scaled back,
    so Grams of any float64 magnitude give the right value, as long as that value itself lies in
    the float64 range (otherwise a ``RuntimeWarning`` says so).

    Parameters
    ----------
    gram_x, gram_y : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrices; ``n >= 2`` (``n >= 4`` when ``unbiased``).
    unbiased : bool, default False
        Use the unbiased HSIC₁ of Song et al. (2012) instead of the biased estimate.

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input, a 0-dim float64 tensor for torch input.

    Raises
    ------
    TypeError
        If a Gram is not numeric, or the two are of different libraries.
    ValueError
        If a Gram is not square, not symmetric, not finite, or too small (2 x 2, 4 x 4 when
        unbiased), or the Grams differ in size.

    References
    ----------
    Gretton, Bousquet, Smola & Schölkopf (2005), *Measuring statistical dependence with
    Hilbert-Schmidt norms*. Song, Smola, Gretton, Bedo & Borgwardt (2012), *Feature selection via
    dependence maximization*, JMLR 13.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import gram_linear, hsic
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((100, 5))
    >>> k = gram_linear(x)
    >>> bool(hsic(k, k) > 0), bool(abs(hsic(k, gram_linear(rng.standard_normal((100, 5))))) < hsic(k, k))
    (True, True)
    """
    k, l, xp = check_gram_pair(gram_x, gram_y, min_size=4 if unbiased else 2)
    (ks, ek), (ls, el) = scaled(k, xp), scaled(l, xp)
    unit = hsic_of_valid(ks, ls, xp, unbiased=unbiased)
    with np.errstate(over="ignore", under="ignore"):  # reported below, in words
        value = times_power_of_two(unit, ek + el, xp)
    if to_scalar(unit) != 0.0 and not 0.0 < abs(to_scalar(value)) < math.inf:
        warnings.warn(
            f"HSIC of gram_x and gram_y is {to_scalar(unit):.6g} * 2**{ek + el}, outside the "
            "float64 range; scale the Gram matrices (CKA, their normalised ratio, is unaffected)",
            RuntimeWarning,
            stacklevel=2,
        )
    return present(value)


def hsic_of_valid(k: Array, l: Array, xp: Any, *, unbiased: bool) -> Array:
    """HSIC of validated float64 Grams (no checks)."""
    n = k.shape[0]
    product = gram_inner(centered(k, xp, unbiased=unbiased), centered(l, xp, unbiased=unbiased), xp)
    return product / (n * (n - 3)) if unbiased else product / (n - 1) ** 2


def gram_inner(kc: Array, lc: Array, xp: Any) -> Array:
    r"""HSIC in Gram form, up to its factor: :math:`\langle \bar K, \bar L\rangle_F`.

    With (U-)centred Grams (:func:`~cka_sim.kernels.centered`) this is
    :math:`(n-1)^2\,\mathrm{HSIC}_0` or :math:`n(n-3)\,\mathrm{HSIC}_1`. Works on stacks
    (..., n, n), pair by pair (NumPy without a temporary).
    """
    if is_torch(kc):
        return xp.sum(kc * lc, axis=(-2, -1))
    return np.einsum("...ij,...ij->...", kc, lc)
