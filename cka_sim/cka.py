"""Centred Kernel Alignment: from Gram matrices, from activations (linear), and with kernels."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from ._core.backend import Array, present, to_float64, to_scalar
from ._core.check import (
    check_gram_pair,
    check_kernel_cka,
    check_linear,
)
from ._core.moments import Moments
from ._core.prepare import (
    Centred,
    all_rows_equal,
    prepare_one_shot,
    scaled,
    unit_scaled,
)
from ._core.ratio import CONSTANT, ratio, warn_undefined
from ._core.rounding import EPSILON, epsilon, gram_magnitude, rounding_bound
from .hsic import gram_inner
from .kernels import centered, gram_linear, gram_polynomial, gram_rbf

Method = Literal["auto", "features", "gram"]
KernelName = Literal["rbf", "linear", "polynomial"]


def cka(gram_x: Any, gram_y: Any, *, debiased: bool = False) -> Any:
    r"""CKA of two precomputed Gram matrices.

    .. math:: \mathrm{CKA}(K, L) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}

    with the biased HSIC, or with the unbiased HSIC₁ of Song et al. (2012) everywhere when
    ``debiased=True`` (Kornblith et al.'s ``debiased`` option). Debiased CKA can be negative, and
    above 1 for tiny ``n``; it is returned as it is.

    Parameters
    ----------
    gram_x, gram_y : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrices over the same examples (``n >= 4`` when ``debiased``).
    debiased : bool, default False
        Use the unbiased HSIC₁ everywhere (Kornblith et al.'s ``debiased`` option).

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input; a 0-dim float64 tensor on the input's device for torch.
        NaN, with a :class:`~cka_sim.exceptions.CKAUndefinedWarning`, when a centred Gram is zero
        (constant features) or a debiased self-HSIC is not positive.

    Raises
    ------
    TypeError
        If a Gram is not numeric, or the two are of different libraries.
    ValueError
        If a Gram is not square, not symmetric, not finite, or too small (2 x 2, 4 x 4 when
        debiased), or the Grams differ in size.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import cka, gram_linear, linear_cka
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal((50, 4)), rng.standard_normal((50, 6))
    >>> bool(np.isclose(cka(gram_linear(x), gram_linear(y)), linear_cka(x, y)))
    True
    """
    eps = max(epsilon(getattr(g, "dtype", "float64")) for g in (gram_x, gram_y))
    k, l, xp = check_gram_pair(gram_x, gram_y, min_size=4 if debiased else 2)
    names = ("gram_x", "gram_y")
    return present(cka_of_grams(k, l, xp, debiased=debiased, names=names, eps=eps))


def cka_of_grams(
    k: Array,
    l: Array,
    xp: Any,
    *,
    debiased: bool,
    names: tuple[str, str],
    depth: int = 0,
    eps: float = EPSILON["float64"],
) -> Array:
    """CKA of validated float64 Grams (each scaled by a power of two first when needed).

    A centred Gram within rounding of zero (``64 n ε`` of the largest entry) is a constant
    representation: NaN with a warning naming it. Debiased, a self-HSIC at or below its
    rounding bound (:mod:`cka_sim._core.rounding`; ``eps``: the machine epsilon of the dtype
    the Grams' products ran in) is NaN with a warning too.
    """
    k, l = scaled(k, xp)[0], scaled(l, xp)[0]
    kc, lc = centered(k, xp, unbiased=False), centered(l, xp, unbiased=False)
    n = k.shape[0]
    tolerance = 64 * n * np.finfo(np.float64).eps
    for name, raw, cent in ((names[0], k, kc), (names[1], l, lc)):
        if to_scalar(xp.max(xp.abs(cent))) <= tolerance * to_scalar(xp.max(xp.abs(raw))):
            warn_undefined(
                name, "its centred Gram matrix is zero (all features constant)", 4 + depth
            )
            return xp.sum(kc * lc) * float("nan")
    bounds = (0.0, 0.0)
    if debiased:
        bounds = tuple(rounding_bound(to_scalar(gram_magnitude(g, xp)), n, eps) for g in (kc, lc))
        kc, lc = centered(kc, xp, unbiased=True), centered(lc, xp, unbiased=True)
    h_xy, h_xx, h_yy = gram_inner(kc, lc, xp), gram_inner(kc, kc, xp), gram_inner(lc, lc, xp)
    return ratio(
        h_xy, h_xx, h_yy, n=n, debiased=debiased, names=names, stacklevel=5 + depth, bounds=bounds
    )


def _linear_grams(units: list[Centred], xp: Any, debiased: bool) -> Array:
    """Linear CKA in Gram form: the float64 Grams of the rows about their centres, centred
    again in float64 by :func:`cka_of_grams` (which removes what the centres missed)."""
    t = xp.matrix_transpose
    k, l = (to_float64((u.x - u.centre) @ t(u.x - u.centre), xp) for u in units)
    if units[0].constant or units[1].constant:
        name = "x" if units[0].constant else "y"
        warn_undefined(name, CONSTANT, 5)
        return xp.sum(k[:1, :1]) * float("nan")
    eps = max(epsilon(u.x.dtype) for u in units)
    return cka_of_grams(k, l, xp, debiased=debiased, names=("x", "y"), depth=1, eps=eps)


def linear_cka(x: Any, y: Any, *, debiased: bool = False, method: Method = "auto") -> Any:
    r"""Linear CKA between two sets of activations of the same examples.

    .. math:: \mathrm{CKA}(X, Y) = \frac{\lVert \bar Y^\top \bar X\rVert_F^2}
              {\lVert \bar X^\top \bar X\rVert_F\,\lVert \bar Y^\top \bar Y\rVert_F}

    with :math:`\bar X` the column-centred activations. With ``debiased=True`` every HSIC is the
    unbiased HSIC₁ (Song et al., 2012), in feature form (up to the common factor
    :math:`1/(n(n-3))`), with :math:`r_X` the squared row norms of :math:`\bar X` and
    :math:`s_X = \sum_i r_{X,i}`:

    .. math:: \lVert \bar Y^\top \bar X\rVert_F^2 - \frac{n}{n-2} r_X^\top r_Y
              + \frac{s_X s_Y}{(n-1)(n-2)}

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, p1, ...)
        Activations of the first representation, one row per example (flattened to (n, p1)).
    y : array_like or torch.Tensor, shape (n, p2, ...)
        Activations of the second representation for the same examples.
    debiased : bool, default False
        Use the unbiased HSIC₁ (needs ``n >= 4``). Prefer it when features outnumber examples:
        biased CKA of independent data approaches 1 as ``p / n`` grows.
    method : {"auto", "features", "gram"}, default "auto"
        The same number by the p x p products (``"features"``: O(n p²) time, O(p²) memory) or
        the n x n Grams (``"gram"``: O(n² p), O(n²)); ``"auto"`` picks the one of fewer flops.

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input; for torch input a 0-dim float64 tensor on the input's
        device, differentiable with autograd. NaN with a
        :class:`~cka_sim.exceptions.CKAUndefinedWarning` when ``x`` or ``y`` is constant, or a
        debiased self-HSIC is not positive.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not numeric, or they are of different libraries.
    ValueError
        If they differ in rows, have fewer than 2 rows (4 when debiased), no features, or NaN or
        infinite values.

    Notes
    -----
    Features are centred before any product (what the float32 mean misses is summed and removed
    in float64), the products run in the input's floating dtype, and every reduction runs in
    float64: float32 activations with feature means of 1000 give the float64 answer to about
    1e-7. Large CPU inputs are centred block by block inside the products (a few MiB of
    workspace, :mod:`cka_sim._core.moments`), so the feature form needs no centred copy of ``x``
    or ``y``. torch CPU tensors that need no gradient (with torch on more than one thread) are
    computed by NumPy on zero-copy views, whose BLAS has the symmetric product torch lacks; the
    result is again a 0-dim float64 tensor. Tensors that need a gradient, and CUDA tensors, keep
    the torch path. The feature form is computed by the code of :class:`~cka_sim.StreamingCKA`,
    from the statistics of one batch.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Song, Smola, Gretton, Bedo & Borgwardt (2012), JMLR 13.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import linear_cka
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 20))
    >>> round(linear_cka(x, 3 * x + 1), 6)
    1.0
    """
    x, y, xp, method, from_view = check_linear(x, y, debiased=debiased, method=method)
    units = prepare_one_shot([x, y], xp)  # each in range, with the centre its rows are taken about
    if method == "gram":
        return present(_linear_grams(units, xp, debiased), from_torch_view=from_view)
    moments = Moments.of_batch(units, [(0, 1)], debiased, xp)
    (h_xx, h_yy), (h_xy,) = moments.hsic_terms()
    flat = (units[0].constant, units[1].constant)
    bounds = tuple(moments.self_bounds()) if debiased else (0.0, 0.0)
    h = ratio(h_xy, h_xx, h_yy, n=moments.n, debiased=debiased, constant=flat, bounds=bounds)
    return present(h, from_torch_view=from_view)


def kernel_cka(
    x: Any,
    y: Any,
    *,
    kernel: KernelName | Callable[[Any], Any] = "rbf",
    threshold: float = 1.0,
    sigma: float | tuple[float, float] | None = None,
    debiased: bool = False,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> Any:
    r"""CKA with a kernel applied to each set of activations: :func:`cka` of their Grams.

    Parameters
    ----------
    x, y : array_like or torch.Tensor, shape (n, ...)
        Activations of the same examples, one row per example.
    kernel : {"rbf", "linear", "polynomial"} or callable, default "rbf"
        ``"rbf"``: :func:`~cka_sim.gram_rbf` with Kornblith's median bandwidth,
        :math:`\sigma^2 = \text{threshold}^2 \cdot \operatorname{median}\lVert x_i-x_j\rVert^2`.
        ``"linear"``: :func:`~cka_sim.gram_linear`. ``"polynomial"``:
        :func:`~cka_sim.kernels.gram_polynomial`. A callable receives the (n, p) activations and
        returns their (n, n) Gram matrix.
    threshold : float, default 1.0
        RBF bandwidth as a multiple of the median distance (Kornblith's demo uses 0.5).
    sigma : float or (float, float), optional
        Explicit RBF bandwidth, for both inputs or one for each; overrides ``threshold``.
    debiased : bool, default False
        Use the unbiased HSIC₁ (needs ``n >= 4``).
    degree : int, default 3
        Exponent of the polynomial kernel.
    gamma : float, optional
        Scale of the polynomial kernel; ``1 / p`` by default.
    coef0 : float, default 1.0
        Offset of the polynomial kernel.

    Returns
    -------
    float or torch.Tensor
        As :func:`linear_cka`: NaN with a :class:`~cka_sim.CKAUndefinedWarning` when ``x`` or
        ``y`` is constant, or a centred Gram is zero.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not numeric, or they are of different libraries.
    ValueError
        If they differ in rows, have fewer than 2 rows (4 when debiased), no features, or NaN or
        infinite values; for an unknown kernel name, a non-positive bandwidth, a zero median
        distance (pass ``sigma``), or a callable kernel that gives no valid (n, n) Gram.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import kernel_cka
    >>> np.random.seed(1337)
    >>> x = np.random.randn(100, 10)
    >>> y = np.random.randn(100, 10) + x
    >>> round(kernel_cka(x, y, threshold=0.5), 5)  # Kornblith et al.'s demo value
    0.65483
    """
    xm, ym, xp, sigmas = check_kernel_cka(x, y, kernel, sigma, gamma, debiased=debiased)
    for name, a in (("x", xm), ("y", ym)):
        if all_rows_equal(a, xp):
            warn_undefined(name, CONSTANT, 3)
            return present(xp.sum(xm[:1, :1]) * float("nan"))
    if callable(kernel):  # the caller's Grams get the full checks; built-in ones are valid
        grams = [_call_kernel(kernel, a, name) for a, name in ((xm, "x"), (ym, "y"))]
        k, l, xp = check_gram_pair(*grams, min_size=4 if debiased else 2)
    else:
        p = (threshold, degree, gamma, coef0)
        k, l = (_builtin_gram(a, kernel, s, *p, xp) for a, s in zip((xm, ym), sigmas, strict=True))
    eps = max(epsilon(getattr(a, "dtype", None)) for a in (grams if callable(kernel) else (xm, ym)))
    return present(cka_of_grams(k, l, xp, debiased=debiased, names=("x", "y"), eps=eps))


def _builtin_gram(
    a: Array,
    kernel: str,
    sigma: float | None,
    threshold: float,
    degree: int,
    gamma: float | None,
    coef0: float,
    xp: Any,
) -> Array:
    """The float64 Gram of a built-in kernel, of ``a`` scaled by ``2**-e`` with the kernel
    adjusted to it.

    The scaling keeps the products in range (:func:`~cka_sim._core.prepare.scaled`; to unit
    size for the polynomial kernel, whose powers leave any window); an explicit RBF bandwidth
    is scaled by the same power of two and the polynomial ``gamma`` by its square, so the Gram
    is the one of the unscaled data (exactly: powers of two).
    """
    a, e = unit_scaled(a, xp) if kernel == "polynomial" else scaled(a, xp)
    if kernel == "rbf":
        bandwidth = None if sigma is None else math.ldexp(sigma, -e)
        return to_float64(gram_rbf(a, threshold=threshold, sigma=bandwidth), xp)
    if kernel == "linear":
        return to_float64(gram_linear(a), xp)
    factor = math.ldexp(1.0 / a.shape[1] if gamma is None else gamma, 2 * e)
    return to_float64(gram_polynomial(a, degree=degree, gamma=factor, coef0=coef0), xp)


def _call_kernel(kernel: Callable[[Any], Any], a: Array, name: str) -> Array:
    gram = kernel(a)
    shape = tuple(getattr(gram, "shape", ()))
    n = a.shape[0]
    if shape != (n, n):
        raise ValueError(
            f"the kernel callable returned shape {shape} for {name}; it must return the "
            f"({n}, {n}) Gram matrix of the rows"
        )
    return gram
