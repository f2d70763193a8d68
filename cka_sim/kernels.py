"""Kernel (Gram) matrices and their centring.

Every function accepts NumPy arrays or torch tensors and returns the same kind, on the same
device. Activations of shape ``(n, ...)`` are flattened to ``(n, p)``: rows are examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._core.backend import (
    Array,
    device_of,
    is_torch,
    median,
    namespace,
    to_float64,
    to_numpy,
    to_scalar,
)
from ._core.check import as_matrix, check_gram, check_positive
from ._core.prepare import centred
from ._core.rounding import epsilon


def gram_linear(x: Any) -> Array:
    r"""Linear Gram matrix of centred features, :math:`\bar X \bar X^\top`.

    The features are centred first (:math:`\bar X = X - \mathbf{1}\mu^\top`), so the result equals
    ``center_gram(x @ x.T)`` in exact arithmetic; HSIC and CKA are unchanged by this, but the
    product no longer loses every significant digit when features have large means.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, ...)
        Activations, one row per example.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n, n)
        In ``x``'s floating dtype (float16/bfloat16 upcast to float32, integers to float64), of
        ``x``'s library and device.

    Raises
    ------
    TypeError
        If ``x`` is not numeric (or complex).
    ValueError
        If ``x`` has fewer than 2 rows, no features, or NaN or infinite values.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML (the linear kernel of linear CKA).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import gram_linear
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]) + 1000.0  # the offset does not matter
    >>> np.round(gram_linear(x), 3)
    array([[ 0.556, -0.444, -0.111],
           [-0.444,  0.556, -0.111],
           [-0.111, -0.111,  0.222]])
    """
    xm = as_matrix(x, "x")
    xp = namespace(xm)
    xc = centred(xm, xp)
    return xc @ xp.matrix_transpose(xc)


def squared_distances(x: Array, xp: Any) -> Array:
    """Float64 matrix of squared Euclidean distances between the rows of a validated ``x``.

    Computed from the Gram matrix of centred rows (distances do not depend on the origin), so
    rounding error scales with the spread of the data rather than its offset. Tiny negative values
    from rounding are set to zero and the diagonal is exactly zero.
    """
    xc = centred(x, xp)
    gram = to_float64(xc @ xp.matrix_transpose(xc), xp)
    sq_norms = xp.sum(xc * xc, axis=1, dtype=xp.float64)
    if is_torch(gram):  # out of place, so that autograd can differentiate through it
        dist = xp.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram, xp.zeros_like(gram))
    else:  # NumPy: in place on the fresh float64 product; n x n temporaries dominate the time
        dist = gram
        dist *= -2.0
        dist += sq_norms[:, None]
        dist += sq_norms[None, :]
        np.maximum(dist, 0.0, out=dist)
    return _with_zero_diagonal(dist, xp)


def _with_zero_diagonal(a: Array, xp: Any) -> Array:
    """``a`` (n, n), a fresh array of this module's, with its diagonal set to zero in place."""
    if is_torch(a):
        return a.fill_diagonal_(0.0)
    np.fill_diagonal(a, 0.0)
    return a


def gram_rbf(x: Any, *, threshold: float = 1.0, sigma: float | None = None) -> Array:
    r"""Gaussian (RBF) Gram matrix with Kornblith's median bandwidth.

    .. math:: K_{ij} = \exp\!\left(-\frac{\lVert x_i - x_j\rVert^2}{2\sigma^2}\right),
              \qquad \sigma^2 = \text{threshold}^2 \cdot \operatorname{median}_{i,j} \lVert x_i - x_j\rVert^2

    The median runs over all :math:`n^2` entries of the squared-distance matrix, zero diagonal
    included, as in Kornblith et al. (2019)'s reference code.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, ...)
        Activations, one row per example.
    threshold : float, default 1.0
        Multiple of the median distance used as bandwidth.
    sigma : float, optional
        Explicit bandwidth; overrides ``threshold``.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n, n)
        In float64, of ``x``'s library and device; ones on the diagonal.

    Raises
    ------
    TypeError
        If ``x`` is not numeric (or complex).
    ValueError
        If ``x`` has fewer than 2 rows, no features, or NaN or infinite values; if ``threshold``
        or ``sigma`` is not a positive finite number; or if the median squared distance is zero
        within rounding (more than half of the n² distances, the diagonal included, are at or
        below :math:`2\sqrt p\,\varepsilon\,(r_i + r_j)`, :math:`r` the squared norms of the
        centred rows: identical rows), so ``sigma=`` must be given.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import gram_rbf
    >>> k = gram_rbf(np.random.default_rng(0).standard_normal((5, 3)), threshold=0.5)
    >>> k.shape, bool(np.allclose(np.diag(k), 1.0)), bool(np.allclose(k, k.T))
    ((5, 5), True, True)
    """
    check_positive(threshold, "threshold")
    check_positive(sigma, "sigma")
    xm = as_matrix(x, "x")
    xp = namespace(xm)
    dist = squared_distances(xm, xp)
    if sigma is None:
        sigma_sq = threshold**2 * median(dist, xp)
        if to_scalar(sigma_sq) == 0.0 or _median_is_rounding(dist, xm, xp):
            raise ValueError(
                "the median squared distance between rows of x is zero (more than half of the "
                "pairs are identical), so the median bandwidth is zero; pass sigma= explicitly"
            )
    else:
        sigma_sq = sigma**2
    if is_torch(dist):
        return xp.exp(-dist / (2.0 * sigma_sq))
    dist *= -1.0 / (2.0 * float(sigma_sq))
    return np.exp(dist, out=dist)


#: Multiple of ``√p ε (r_i + r_j)`` within which a squared distance is rounding noise: measured
#: on identical rows (NumPy and torch, float32 and float64, p up to 10000), the computed
#: distances stay below 0.31 of it, a margin of about 6.
DISTANCE_ROUNDING = 2.0


def _median_is_rounding(dist: Array, x: Array, xp: Any) -> bool:
    r"""True when more than half of the squared distances are zero within rounding.

    A squared distance ``r_i + r_j - 2 x̄_iᵀx̄_j`` (``r`` the squared norms of the centred rows)
    of two identical rows is the rounding of a dot product of ``p`` terms in ``x``'s dtype:
    about :math:`\sqrt p\,arepsilon\,(r_i + r_j)` (Higham & Mary 2019). An entry at or below
    ``DISTANCE_ROUNDING √p ε (r_i + r_j)`` is counted as zero; the median is zero when more than
    half are (NumPy and torch decide alike, whether their noise is positive or clamped to 0).
    """
    n, p = int(x.shape[0]), int(x.shape[1])
    d = to_numpy(dist)
    xc = to_numpy(centred(x.detach() if is_torch(x) else x, xp))
    r = np.einsum("ij,ij->i", xc, xc)
    tolerance = DISTANCE_ROUNDING * np.sqrt(p) * epsilon(x.dtype)
    if float(np.median(d)) > tolerance * 2.0 * float(r.max()):
        return False  # a median above any pair's bound (the usual case: no n² pass)
    return int(np.count_nonzero(d <= tolerance * (r[:, None] + r[None, :]))) > n * n / 2


def gram_polynomial(
    x: Any, *, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> Array:
    r"""Polynomial Gram matrix of centred features, :math:`(\gamma\,\bar x_i^\top \bar x_j + c)^d`.

    Features are centred first so that the kernel, like CKA itself, does not depend on where the
    origin of the representation lies.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, ...)
        Activations, one row per example.
    degree : int, default 3
        The exponent :math:`d`.
    gamma : float, optional
        The scale :math:`\gamma`; defaults to ``1 / p`` (as scikit-learn).
    coef0 : float, default 1.0
        The offset :math:`c`.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n, n)
        In float64, of ``x``'s library and device.

    Raises
    ------
    TypeError
        If ``x`` is not numeric (or complex).
    ValueError
        If ``x`` has fewer than 2 rows, no features, or NaN or infinite values; if ``degree`` is not a positive integer or
        ``gamma`` not a positive finite number.

    References
    ----------
    Schölkopf & Smola (2002), *Learning with Kernels*, MIT Press (the polynomial kernel);
    Kornblith, Norouzi, Lee & Hinton (2019), ICML (kernel CKA).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import gram_linear, gram_polynomial
    >>> x = np.random.default_rng(0).standard_normal((4, 2))
    >>> k = gram_polynomial(x, degree=1, gamma=1.0, coef0=0.0)  # degree 1: the linear Gram
    >>> bool(np.allclose(k, gram_linear(x)))
    True
    """
    if int(degree) != degree or degree < 1:
        raise ValueError(f"degree must be a positive integer; got {degree!r}")
    check_positive(gamma, "gamma")
    xm = as_matrix(x, "x")
    xp = namespace(xm)
    gamma = 1.0 / xm.shape[1] if gamma is None else gamma
    xc = centred(xm, xp)
    gram = to_float64(xc @ xp.matrix_transpose(xc), xp)
    return (gamma * gram + coef0) ** int(degree)


def center_gram(gram: Any, *, unbiased: bool = False) -> Array:
    r"""Centre a Gram matrix: :math:`HKH` with :math:`H = I - \tfrac{1}{n}\mathbf{1}\mathbf{1}^\top`.

    With ``unbiased=True`` it returns the U-centred matrix :math:`\tilde K` of Székely & Rizzo
    (2014) (zero diagonal), for which
    :math:`\langle \tilde K, \tilde L\rangle / (n(n-3))` is the unbiased HSIC of Song et al.
    (2012).

    Parameters
    ----------
    gram : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrix (n >= 4 when ``unbiased``).
    unbiased : bool, default False
        Return the U-centred matrix instead of :math:`HKH`.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (n, n)
        In float64, of the input's library and device: rows and columns sum to zero.

    Raises
    ------
    TypeError
        If ``gram`` is not numeric.
    ValueError
        If ``gram`` is not square, is smaller than 2 x 2 (4 x 4 when ``unbiased``), is not
        symmetric, or has NaN or infinite values.

    References
    ----------
    Székely & Rizzo (2014), *Partial distance correlation with methods for dissimilarities*,
    Annals of Statistics (U-centring). Song, Smola, Gretton, Bedo & Borgwardt (2012), *Feature
    Selection via Dependence Maximization*, JMLR 13 (the unbiased HSIC).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import center_gram
    >>> k = center_gram(np.ones((4, 4)) + np.eye(4))
    >>> bool(np.allclose(k.sum(axis=0), 0.0))
    True
    """
    k = check_gram(gram, "gram", min_size=4 if unbiased else 2)
    return centered(k, namespace(k), unbiased=unbiased)


def centered(k: Array, xp: Any, *, unbiased: bool, overwrite: bool = False) -> Array:
    """Centre a validated float64 Gram matrix (see :func:`center_gram`).

    Also centres a stack of symmetric Grams of shape (..., n, n), each on its own.
    ``overwrite=True`` centres ``k`` in place and returns it (for a buffer the caller owns): the
    same operations in the same order, without the three (..., n, n) temporaries.
    """
    n = k.shape[-1]
    if not overwrite:
        k = xp.asarray(k, copy=True)
    if not unbiased:
        means = xp.mean(k, axis=-2)
        grand = xp.mean(means, axis=-1)[..., None, None]
        k -= means[..., None, :]
        k -= means[..., :, None]
        k += grand
        return k
    diagonal = xp.arange(n, device=device_of(k))
    k[..., diagonal, diagonal] = 0.0
    means = xp.sum(k, axis=-2) / (n - 2)
    means = means - xp.sum(means, axis=-1)[..., None] / (2 * (n - 1))
    k -= means[..., None, :]
    k -= means[..., :, None]
    k[..., diagonal, diagonal] = 0.0
    return k
