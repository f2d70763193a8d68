"""Centred Kernel Alignment: from Gram matrices, from activations (linear), and with kernels."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from ._backend import (
    Array,
    as_float64_tensor,
    as_output,
    numpy_views,
    power_of_two_scaled,
    to_float64,
    to_scalar,
)
from ._batch import all_rows_equal, prepare_finite, prepare_finite_all
from ._moments import Moments
from ._validation import (
    check_choice,
    check_finite,
    check_gram_pair,
    check_kernel_name,
    check_pair,
    check_positive,
    warn_undefined,
)
from .hsic import gram_inner
from .kernels import centered, gram_linear, gram_polynomial, gram_rbf

Method = Literal["auto", "features", "gram"]
METHODS = ("auto", "features", "gram")
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
    k, l, xp = check_gram_pair(gram_x, gram_y, min_size=4 if debiased else 2)
    return as_output(_cka_of_grams(k, l, xp, debiased=debiased, names=("gram_x", "gram_y")))


def _cka_of_grams(k: Array, l: Array, xp: Any, *, debiased: bool, names: tuple[str, str]) -> Array:
    """CKA of validated float64 Grams (each scaled by a power of two first when needed)."""
    k, l = power_of_two_scaled(k, xp)[0], power_of_two_scaled(l, xp)[0]
    kc = centered(k, xp, unbiased=debiased)
    lc = centered(l, xp, unbiased=debiased)
    n = k.shape[0]
    tolerance = 64 * n * np.finfo(np.float64).eps
    for name, raw, cent in ((names[0], k, kc), (names[1], l, lc)):
        if to_scalar(xp.max(xp.abs(cent))) <= tolerance * to_scalar(xp.max(xp.abs(raw))):
            warn_undefined(name, "its centred Gram matrix is zero (all features constant)", 4)
            return xp.sum(kc * lc) * float("nan")
    h_xy, h_xx, h_yy = gram_inner(kc, lc, xp), gram_inner(kc, kc, xp), gram_inner(lc, lc, xp)
    return _ratio(h_xy, h_xx, h_yy, n, names, debiased)


def _ratio(
    h_xy: Array, h_xx: Array, h_yy: Array, n: int, names: tuple[str, str], debiased: bool
) -> Array:
    """HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)), NaN with a warning where undefined."""
    for name, value in ((names[0], h_xx), (names[1], h_yy)):
        if debiased and to_scalar(value) <= 0.0:
            warn_undefined(
                name,
                f"its debiased self-HSIC estimate is not positive ({to_scalar(value):.3g}, n={n}); "
                "use more examples or debiased=False",
                4,
            )
            return h_xy * float("nan")
    return h_xy / (h_xx**0.5 * h_yy**0.5)  # roots first: h_xx * h_yy can leave float64's range


def _check_not_constant(x: Array, y: Array, xp: Any) -> str | None:
    """Warn and return the name of a constant input (None if neither is).

    NaN or infinity in either input is an error first (scanned only when one is constant).
    """
    for name, value in (("x", x), ("y", y)):
        if all_rows_equal(value, xp):
            check_finite(x, "x", xp)
            check_finite(y, "y", xp)
            warn_undefined(name, "all of its features are constant (zero self-HSIC)", 5)
            return name
    return None


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
        ``"features"`` uses the p x p products (O(n p²) time, O(p²) memory), ``"gram"`` the
        n x n Grams (O(n² p) time, O(n²) memory); ``"auto"`` picks the one with fewer flops.
        Both give the same number.

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
    workspace, :mod:`cka_sim._blocked`), so the feature form needs no centred copy of ``x`` or
    ``y``. torch CPU tensors that need no gradient (with torch on more than one thread) are
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
    check_choice(method, "method", METHODS)
    xm, ym, xp = check_pair(x, y, min_rows=4 if debiased else 2, check_values=False)
    n, p1, p2 = xm.shape[0], xm.shape[1], ym.shape[1]
    if method == "auto":
        method = "features" if p1 * p1 + p2 * p2 + p1 * p2 <= n * (p1 + p2) else "gram"
    if xm.dtype != ym.dtype:  # products need one dtype; promote (float32 with float64 -> float64)
        common = xp.result_type(xm, ym)
        xm, ym = xp.astype(xm, common), xp.astype(ym, common)
    views = numpy_views(xm, ym)  # torch CPU tensors without gradient: computed by NumPy
    if views is not None:
        xm, ym, xp = views[0], views[1], np
    as_result = as_output if views is None else as_float64_tensor
    named = [(xm, "x"), (ym, "y")]  # NaN raises in the preparation; large CPU layers of the
    # feature form are left to be centred block by block inside the products (cka_sim._blocked)
    if method == "gram":
        units = [prepare_finite(a, name, xp) for a, name in named]
    else:
        units = prepare_finite_all(named, xp)
    if _check_not_constant(xm, ym, xp) is not None:
        return as_result(xp.sum(xm[:1, :1]) * 0.0 * float("nan"))
    if method == "gram":
        # The float64 re-centring of the Grams in _cka_of_grams removes the residual means.
        t = xp.matrix_transpose
        k, l = (to_float64(u.data @ t(u.data), xp) for u in units)
        return as_result(_cka_of_grams(k, l, xp, debiased=debiased, names=("x", "y")))
    # the feature form is one batch of StreamingCKA: the same statistics, the same code
    one_batch = Moments.from_batch(units, [(0, 1)], debiased, xp, mergeable=False)
    (h_xx, h_yy), (h_xy,) = one_batch.finalise().hsic_terms()
    return as_result(_ratio(h_xy, h_xx, h_yy, n, ("x", "y"), debiased))


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
    r"""CKA with a kernel applied to each set of activations.

    Builds a Gram matrix for ``x`` and one for ``y`` and returns :func:`cka` of the two.

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
        infinite values; for an unknown kernel name, a
        non-positive bandwidth, a zero median distance (pass ``sigma``), or a callable kernel
        that does not return a valid (n, n) Gram matrix.

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
    check_kernel_name(kernel, ("rbf", "linear", "polynomial"))
    sigmas = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    if len(sigmas) != 2:
        raise ValueError(f"sigma must be a number or a pair of numbers; got {sigma!r}")
    xm, ym, xp = check_pair(x, y, min_rows=4 if debiased else 2)
    if _check_not_constant(xm, ym, xp) is not None:
        return as_output(xp.sum(xm[:1, :1]) * 0.0 * float("nan"))
    if callable(kernel):
        grams = [_call_kernel(kernel, a, name, xp) for a, name in ((xm, "x"), (ym, "y"))]
    else:
        grams = [
            _builtin_gram(a, kernel, threshold, s, degree, gamma, coef0, xp)
            for a, s in zip((xm, ym), sigmas, strict=True)
        ]
    if callable(kernel):  # the caller's Grams get the full checks; built-in ones are valid
        k, l, xp = check_gram_pair(*grams, min_size=4 if debiased else 2)
    else:
        k, l = (to_float64(g, xp) for g in grams)
    return as_output(_cka_of_grams(k, l, xp, debiased=debiased, names=("x", "y")))


def _builtin_gram(
    a: Array,
    kernel: str,
    threshold: float,
    sigma: float | None,
    degree: int,
    gamma: float | None,
    coef0: float,
    xp: Any,
) -> Array:
    """The Gram of a built-in kernel, with ``a`` scaled by ``2**-e`` and the kernel adjusted to it.

    The scaling keeps the products in range (see :func:`~cka_sim._backend.power_of_two_scaled`);
    an explicit RBF bandwidth is scaled by the same power of two and the polynomial ``gamma`` by
    its square, so the Gram is the one of the unscaled data (exactly: powers of two).
    """
    scaled, e = power_of_two_scaled(a, xp)
    if kernel == "rbf":
        if sigma is not None:
            check_positive(sigma, "sigma")
            sigma = math.ldexp(sigma, -e)
        return gram_rbf(scaled, threshold=threshold, sigma=sigma)
    if kernel == "linear":
        return gram_linear(scaled)
    if gamma is not None:
        check_positive(gamma, "gamma")
    factor = math.ldexp(1.0 / a.shape[1] if gamma is None else gamma, 2 * e)
    return gram_polynomial(scaled, degree=degree, gamma=factor, coef0=coef0)


def _call_kernel(kernel: Callable[[Any], Any], a: Array, name: str, xp: Any) -> Array:
    gram = kernel(a)
    shape = tuple(getattr(gram, "shape", ()))
    n = a.shape[0]
    if shape != (n, n):
        raise ValueError(
            f"the kernel callable returned shape {shape} for {name}; it must return the "
            f"({n}, {n}) Gram matrix of the rows"
        )
    return gram
