r"""The orthogonal Procrustes similarity and distance between two sets of activations.

With :math:`\bar X`, :math:`\bar Y` the column-centred activations, each scaled to unit Frobenius
norm, the best orthogonal alignment of one onto the other leaves the squared distance

.. math:: d^2(X, Y) = \min_{Q^\top Q = I} \Bigl\lVert \frac{\bar X}{\lVert\bar X\rVert_F}
          - \frac{\bar Y Q}{\lVert\bar Y\rVert_F}\Bigr\rVert_F^2
          = 2 - 2\,\frac{\lVert \bar X^\top\bar Y\rVert_*}{\lVert\bar X\rVert_F\lVert\bar Y\rVert_F}

(:math:`\lVert\cdot\rVert_*` the nuclear norm, the sum of singular values; the narrower of the
two is padded with zero columns, which changes nothing). Everything comes from the cross product
:math:`\bar X^\top\bar Y` and the two norms.
"""

from __future__ import annotations

import math
from typing import Any

from ._core.backend import Array, frobenius_sq, present, to_float64, to_scalar
from ._core.check import check_pair
from ._core.prepare import centred, scaled
from ._core.ratio import warn_undefined


def procrustes_similarity(x: Any, y: Any) -> Any:
    r"""Orthogonal Procrustes similarity of two sets of activations, in [0, 1].

    .. math:: s(X, Y) = \frac{\lVert \bar X^\top\bar Y\rVert_*}
              {\lVert\bar X\rVert_F\,\lVert\bar Y\rVert_F}

    the largest correlation :math:`\langle \bar X, \bar Y Q\rangle /
    (\lVert\bar X\rVert_F\lVert\bar Y\rVert_F)` over orthogonal :math:`Q`. It is 1 exactly when
    one centred representation is a rotation (or reflection) and scaling of the other.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, p1, ...)
        Activations of the first representation, one row per example (flattened to (n, p1)).
    y : array_like or torch.Tensor, shape (n, p2, ...)
        Activations of the second representation for the same examples.

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input; a 0-dim float64 tensor on the input's device for torch
        (differentiable where the singular values are distinct). NaN with a
        :class:`~cka_sim.exceptions.CKAUndefinedWarning` when ``x`` or ``y`` is constant.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not numeric, or they are of different libraries.
    ValueError
        If they differ in rows, have fewer than 2, no features, or NaN or infinite values.

    Notes
    -----
    Invariant to orthogonal transforms, isotropic scaling and translation of either input. Costs
    one :math:`p_1 \times p_2` product (:math:`O(n p_1 p_2)`) and its singular values
    (:math:`O(p_1 p_2 \min(p_1, p_2))`); a side with more features than examples is first reduced
    to an n x n triangular factor with a QR decomposition (:math:`\bar X = R^\top Q^\top`), which
    leaves the singular values unchanged. Numerics follow :func:`~cka_sim.linear_cka`: centre
    first, products in the input dtype, singular values and norms in float64; float32 activations
    with feature means of 1000 give the float64 answer to about 1e-7.

    References
    ----------
    Ding, Denain & Steinhardt (2021), *Grounding Representation Similarity with Statistical
    Testing*, NeurIPS. Schönemann (1966), *A generalized solution of the orthogonal Procrustes
    problem*, Psychometrika 31.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import procrustes_similarity
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 20))
    >>> q, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    >>> round(procrustes_similarity(x, 3 * x @ q + 1), 6)
    1.0
    """
    x, y, xp = check_pair(x, y, one_dtype=True)
    xc, yc = (centred(scaled(a, xp)[0], xp) for a in (x, y))  # constant: exact zeros
    norms = []
    for name, a in (("x", xc), ("y", yc)):
        norms.append(frobenius_sq(a, xp))
        if to_scalar(norms[-1]) == 0.0:
            reason = "all of its features are constant (zero norm)"
            warn_undefined(name, reason, 3, measure="Procrustes")
            return present(norms[-1] * float("nan"))
    return present(_nuclear_norm(xc, yc, xp) / (norms[0] * norms[1]) ** 0.5)


def procrustes_distance(x: Any, y: Any, *, angular: bool = False) -> Any:
    r"""Orthogonal Procrustes distance between two sets of activations.

    By default the squared distance of Ding et al. (2021), in [0, 2]:

    .. math:: d^2(X, Y) = 2 - 2\,s(X, Y), \qquad s(X, Y) =
              \frac{\lVert \bar X^\top\bar Y\rVert_*}{\lVert\bar X\rVert_F\lVert\bar Y\rVert_F}

    (:func:`procrustes_similarity`), the squared Frobenius distance between the unit-norm centred
    representations after the best orthogonal alignment. Its square root is a metric. With
    ``angular=True``, the angle :math:`\arccos s(X, Y)` in :math:`[0, \pi/2]` (Williams et al.,
    2021), also a metric.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, p1, ...)
        Activations of the first representation, one row per example.
    y : array_like or torch.Tensor, shape (n, p2, ...)
        Activations of the second representation for the same examples.
    angular : bool, default False
        Return the angle instead of the squared distance.

    Returns
    -------
    float or torch.Tensor
        As :func:`procrustes_similarity`. Rounding can carry the similarity of (near-)identical
        inputs a few units in the last place above 1; the distance uses :math:`\min(s, 1)` so that
        it is never negative and the angle never NaN.

    Raises
    ------
    TypeError
        If ``x`` or ``y`` is not numeric, or they are of different libraries.
    ValueError
        If they differ in rows, have fewer than 2, no features, or NaN or infinite values.

    References
    ----------
    Ding, Denain & Steinhardt (2021), *Grounding Representation Similarity with Statistical
    Testing*, NeurIPS. Williams, Kunz, Kornblith & Linderman (2021), *Generalized Shape Metrics on
    Neural Representations*, NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import procrustes_distance
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((500, 20))
    >>> procrustes_distance(x, -2 * x)
    0.0
    """
    similarity = procrustes_similarity(x, y)
    if isinstance(similarity, float):
        capped = min(similarity, 1.0)
        return math.acos(capped) if angular else 2.0 - 2.0 * capped
    capped = similarity.clamp(max=1.0)  # torch
    return capped.arccos() if angular else 2.0 - 2.0 * capped


def _nuclear_norm(xc: Array, yc: Array, xp: Any) -> Array:
    r"""Float64 :math:`\lVert \bar X^\top\bar Y\rVert_*` of centred data."""
    a, b = _reduced(xc, xp), _reduced(yc, xp)
    return xp.sum(xp.linalg.svdvals(to_float64(xp.matrix_transpose(b) @ a, xp)))


def _reduced(ac: Array, xp: Any) -> Array:
    r"""An (n, min(n, p)) matrix with the same Gram as the centred ``ac``.

    For p > n, :math:`\bar A^\top = QR` gives :math:`\bar A = R^\top Q^\top`, and
    :math:`\bar A^\top \bar B` has the singular values of :math:`R\,\bar B`: the factor replaces
    :math:`\bar A`. Narrow sides are returned unchanged.
    """
    if ac.shape[1] <= ac.shape[0]:
        return ac
    return xp.matrix_transpose(xp.linalg.qr(xp.matrix_transpose(ac)).R)
