"""The Hilbert-Schmidt Independence Criterion (HSIC) of two Gram matrices."""

from __future__ import annotations

from typing import Any

from ._backend import Array, as_output
from ._validation import check_gram_pair
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

    Parameters
    ----------
    gram_x, gram_y : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrices; ``n >= 2`` (``n >= 4`` when ``unbiased``).
    unbiased : bool, default False

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input, a 0-dim float64 tensor for torch input.

    References
    ----------
    Gretton, Bousquet, Smola & Schölkopf (2005), *Measuring statistical dependence with
    Hilbert-Schmidt norms*. Song, Smola, Gretton, Bedo & Borgwardt (2012), *Feature selection via
    dependence maximization*, JMLR 13.
    """
    k, l, xp = check_gram_pair(gram_x, gram_y, min_size=4 if unbiased else 2)
    return as_output(hsic_of_valid(k, l, xp, unbiased=unbiased))


def hsic_of_valid(k: Array, l: Array, xp: Any, *, unbiased: bool) -> Array:
    """HSIC of validated float64 Grams (no checks)."""
    n = k.shape[0]
    product = xp.sum(centered(k, xp, unbiased=unbiased) * centered(l, xp, unbiased=unbiased))
    return product / (n * (n - 3)) if unbiased else product / (n - 1) ** 2
