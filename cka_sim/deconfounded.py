r"""Deconfounded CKA (Cui et al., 2022): CKA after regressing out the input's similarity structure.

Every layer of a network inherits part of the similarity structure of its input, so two networks
(even two random ones) look similar under CKA partly because they see the same inputs. Deconfounded
CKA removes that shared part: each centred Gram :math:`K` is regressed, over its :math:`n^2`
entries, on the centred Gram :math:`K_Z` of a confounder (typically the flattened inputs), and CKA
is computed from the residuals.

With column-centred data every row and column of :math:`K` and :math:`K_Z` sums to zero, so the
least-squares fit of :math:`\operatorname{vec}(K)` on :math:`[\mathbf 1, \operatorname{vec}(K_Z)]`
has intercept exactly zero and slope :math:`\hat\alpha = \langle K, K_Z\rangle/\langle K_Z,
K_Z\rangle`. Every inner product of the residuals :math:`R = K - \hat\alpha K_Z` then follows from
inner products of the original Grams, which in feature form are Frobenius norms of p x q products
(:math:`\langle \bar X\bar X^\top, \bar Z\bar Z^\top\rangle = \lVert \bar Z^\top\bar X\rVert_F^2`):

.. math:: \langle R_X, R_Y\rangle_h = h(K, L) - \hat\alpha_Y h(K, K_Z) - \hat\alpha_X h(L, K_Z)
          + \hat\alpha_X\hat\alpha_Y h(K_Z, K_Z)

for :math:`h` the biased (:math:`\langle HKH, HLH\rangle`) or the unbiased (U-centred) HSIC,
both linear in each argument. Biased, this is :math:`h(K,L) - h(K,K_Z)h(L,K_Z)/h(K_Z,K_Z)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._core.backend import Array, frobenius_sq, present, to_scalar
from ._core.check import check_deconfounded, check_deconfounded_grams, constant_confounder_error
from ._core.moments import Moments
from ._core.prepare import prepare_one_shot, scaled
from ._core.ratio import CONSTANT, ratio, warn_undefined
from .cka import Method, cka_of_grams
from .hsic import gram_inner
from .kernels import centered

# When the regression leaves less than this share of a Gram's squared norm, the residual is
# rounding noise of float32 products (relative error about 1e-7 each, squared norms 1e-7 apart):
# the representation is, to the precision of the statistics, a multiple of the confounder's Gram.
RESIDUAL_SHARE = 1e-4

# The unit pairs of the feature form: x-y, x-confounder, y-confounder.
DCKA_PAIRS = [(0, 1), (0, 2), (1, 2)]


def deconfounded_cka(
    x: Any, y: Any, confounder: Any, *, debiased: bool = False, method: Method = "auto"
) -> Any:
    r"""Deconfounded linear CKA (dCKA) of two sets of activations, adjusted for a confounder.

    With :math:`K = \bar X\bar X^\top`, :math:`L = \bar Y\bar Y^\top` and
    :math:`K_Z = \bar Z\bar Z^\top` the linear Grams of the column-centred activations and
    confounder, each of :math:`K`, :math:`L` is regressed on :math:`[\mathbf 1, K_Z]` by ordinary
    least squares over all :math:`n^2` entries, and dCKA is CKA of the residual Grams
    :math:`R_X = K - \hat\alpha_X K_Z - \hat c_X \mathbf 1\mathbf 1^\top` (here
    :math:`\hat c_X = 0` exactly and :math:`\hat\alpha_X = \lVert \bar Z^\top\bar X\rVert_F^2 /
    \lVert \bar Z^\top\bar Z\rVert_F^2`):

    .. math:: \mathrm{dCKA}(X, Y; Z) = \frac{\mathrm{HSIC}(R_X, R_Y)}
              {\sqrt{\mathrm{HSIC}(R_X, R_X)\,\mathrm{HSIC}(R_Y, R_Y)}}

    Biased, this is a partial correlation of Grams:
    :math:`(a_{XY} - a_{XZ}a_{YZ}/a_{ZZ}) / \sqrt{(a_{XX} - a_{XZ}^2/a_{ZZ})(a_{YY} -
    a_{YZ}^2/a_{ZZ})}` with :math:`a_{UV} = \lVert \bar V^\top \bar U\rVert_F^2`.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape (n, p1, ...)
        Activations of the first representation, one row per example (flattened to (n, p1)).
    y : array_like or torch.Tensor, shape (n, p2, ...)
        Activations of the second representation for the same examples.
    confounder : array_like or torch.Tensor, shape (n, q, ...)
        What to adjust for, for the same examples: typically the inputs, flattened.
    debiased : bool, default False
        Use the unbiased HSIC₁ (Song et al., 2012) of the residual Grams (needs ``n >= 4``); the
        regression is the same.
    method : {"auto", "features", "gram"}, default "auto"
        ``"features"`` uses p x p, p x q and q x q products (O(n (p + q)²) time,
        O((p + q)²) memory), ``"gram"`` the n x n Grams; ``"auto"`` picks the one with fewer
        flops. Both give the same number.

    Returns
    -------
    float or torch.Tensor
        A Python float for NumPy input; a 0-dim float64 tensor on the input's device for torch.
        NaN with a :class:`~cka_sim.exceptions.CKAUndefinedWarning` when ``x`` or ``y`` is
        constant, when the regression leaves less than 1e-4 of its Gram's squared norm (the
        Gram is, to the precision of float32 products, a multiple of the confounder's), or when
        a debiased residual self-HSIC is not positive.

    Raises
    ------
    ValueError
        If the confounder is constant (there is nothing to adjust for), besides every error of
        :func:`~cka_sim.linear_cka`.

    Notes
    -----
    dCKA is invariant to orthogonal transforms and isotropic scaling of ``x``, ``y`` and
    ``confounder``, and to translations of each. Only the part of a Gram that is linear in
    :math:`K_Z` is removed: a representation that is a non-linear function of the input keeps the
    rest. Numerics follow :func:`~cka_sim.linear_cka` (centre first, products in the input
    dtype, reductions in float64). The residual's share of a Gram sets the precision: float32
    input gives about 1e-7 / (1 - R²) where R² is the share of :math:`\lVert K\rVert_F^2`
    explained by :math:`K_Z`.

    References
    ----------
    Cui, Kumar, Marttinen & Kaski (2022), *Deconfounded Representation Similarity for Comparison
    of Neural Networks*, NeurIPS. Kornblith, Norouzi, Lee & Hinton (2019), ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import deconfounded_cka, linear_cka
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((2000, 8))
    >>> q, _ = np.linalg.qr(rng.standard_normal((32, 8)))
    >>> x = z @ q.T + 0.3 * rng.standard_normal((2000, 32))  # the input, embedded, plus noise
    >>> y = z @ q.T + 0.3 * rng.standard_normal((2000, 32))
    >>> round(linear_cka(x, y), 2), abs(deconfounded_cka(x, y, z)) < 0.05
    (0.82, True)
    """
    x, y, z, xp, method = check_deconfounded(x, y, confounder, debiased=debiased, method=method)
    return present(_dcka(x, y, z, xp, method, debiased))


def _dcka(x: Array, y: Array, z: Array, xp: Any, method: str, debiased: bool) -> Array:
    """dCKA of validated activations, in the feature form (one batch of moments, as
    :class:`~cka_sim.StreamingCKA` with ``measure="dcka"``) or the Gram form."""
    units = prepare_one_shot([x, y, z], xp)
    for name, unit in zip(("x", "y"), units, strict=False):
        if unit.constant:
            warn_undefined(name, CONSTANT, 4, measure="deconfounded CKA")
            return xp.sum(x[:1, :1]) * float("nan")
    if method == "gram":
        t = xp.matrix_transpose
        k, l, kz = (xp.astype((u.x - u.centre) @ t(u.x - u.centre), xp.float64) for u in units)
        k, l, kz = (scaled(g, xp)[0] for g in (k, l, kz))  # their products in range
        return _dcka_of_grams(k, l, kz, xp, debiased, ("x", "y"), depth=1)
    one_batch = Moments.of_batch(units, DCKA_PAIRS, debiased, xp)
    return dcka_pair(one_batch, one_batch.n, debiased, ("x", "y"), "confounder", depth=1)


def deconfounded_cka_from_grams(
    gram_x: Any, gram_y: Any, gram_confounder: Any, *, debiased: bool = False
) -> Any:
    r"""Deconfounded CKA of precomputed Gram matrices (any kernels).

    Each Gram is centred first (:math:`HKH`), then :math:`HKH` and :math:`HLH` are regressed on
    :math:`[\mathbf 1, HK_ZH]` over all :math:`n^2` entries, and the result is CKA of the
    residuals, as in :func:`deconfounded_cka` (which this equals for linear Grams
    ``x @ x.T``, ``y @ y.T``, ``z @ z.T``, centred or not).

    Parameters
    ----------
    gram_x, gram_y : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrices of the two representations over the same examples.
    gram_confounder : array_like or torch.Tensor, shape (n, n)
        Symmetric Gram matrix of the confounder over the same examples (for example an RBF Gram
        of the inputs).
    debiased : bool, default False
        Unbiased HSIC₁ of the residuals (needs ``n >= 4``).

    Returns
    -------
    float or torch.Tensor
        As :func:`deconfounded_cka`: NaN with a :class:`~cka_sim.CKAUndefinedWarning` where
        nothing is left after the regression.

    Raises
    ------
    TypeError
        If a Gram is not numeric, or the two are of different libraries.
    ValueError
        If a Gram is not square, not symmetric, not finite, or too small (2 x 2, 4 x 4 when
        debiased), or the Grams differ in size; or
        if the confounder's centred Gram is zero (nothing to adjust for).

    References
    ----------
    Cui, Kumar, Marttinen & Kaski (2022), *Deconfounded Representation Similarity for Comparison
    of Neural Networks*, NeurIPS.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import deconfounded_cka, deconfounded_cka_from_grams
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((300, 5))
    >>> x = z @ rng.standard_normal((5, 20)) + rng.standard_normal((300, 20))
    >>> y = z @ rng.standard_normal((5, 10)) + rng.standard_normal((300, 10))
    >>> from_grams = deconfounded_cka_from_grams(x @ x.T, y @ y.T, z @ z.T)
    >>> bool(np.isclose(from_grams, deconfounded_cka(x, y, z)))
    True
    """
    k, l, kz, xp = check_deconfounded_grams(gram_x, gram_y, gram_confounder, debiased=debiased)
    names = ("gram_x", "gram_y")
    k, l, kz = (scaled(g, xp)[0] for g in (k, l, kz))  # products in range
    return present(_dcka_of_grams(k, l, kz, xp, debiased, names))


def _centred_is_zero(raw: Array, cent: Array, xp: Any) -> bool:
    """True when a centred Gram is rounding noise of its raw Gram (constant features).

    The rule of :func:`cka_sim.cka.cka`: every entry within 64 n float64 units of the largest.
    """
    tolerance = 64 * raw.shape[0] * np.finfo(np.float64).eps
    return to_scalar(xp.max(xp.abs(cent))) <= tolerance * to_scalar(xp.max(xp.abs(raw)))


def residual_share(a_self: Array, explained: Array) -> float:
    """Share of a Gram's squared norm that the regression leaves: 1 - explained / total."""
    total = to_scalar(a_self)
    return float("nan") if total == 0.0 else to_scalar(a_self - explained) / total


def warn_no_residual(name: str, share: float, stacklevel: int) -> None:
    """Warn that a representation's Gram is (to rounding) a multiple of the confounder's."""
    warn_undefined(
        name,
        "its Gram matrix is a multiple of the confounder's Gram to within rounding, so nothing "
        f"is left after deconfounding (residual share {max(share, 0.0):.2g} <= "
        f"{RESIDUAL_SHARE:g})",
        stacklevel + 1,
        measure="deconfounded CKA",
    )


def residual_hsic(
    h_xy: Array, h_xz: Array, h_yz: Array, h_zz: Array, alpha_x: Array, alpha_y: Array
) -> Array:
    r"""HSIC of residual Grams from HSICs of the originals (HSIC is bilinear).

    :math:`h(K - \alpha_X K_Z, L - \alpha_Y K_Z)` for the biased or the unbiased ``h``.
    """
    return h_xy - alpha_y * h_xz - alpha_x * h_yz + alpha_x * (alpha_y * h_zz)  # in range


@dataclass
class Residuals:
    """HSIC terms of the residual Grams of every unit but the confounder (see :func:`residuals`).

    ``selfs[u]``: HSIC(R_u, R_u); ``cross[k]``: HSIC(R_u, R_v) for ``pairs[k] = (u, v)``;
    ``shares[u]``: the share of ``‖K_u‖²`` left after the regression (NaN for a zero Gram).
    """

    selfs: list[Array]
    cross: list[Array]
    pairs: list[tuple[int, int]]
    shares: list[float]


def residuals(m: Moments, confounder: str) -> Residuals:
    r"""Deconfounded HSIC terms from centred moments whose last unit is the confounder.

    ``m`` holds the units and, for every unit ``u``, the pair ``(u, Z)`` with the
    confounder ``Z``. The slopes come from the biased terms, :math:`\hat\alpha_u = \lVert
    C_{uZ}\rVert_F^2 / \lVert S_Z\rVert_F^2`; the residual HSICs from the biased or the
    debiased terms (:meth:`~cka_sim._core.moments.Moments.hsic_terms`) by :func:`residual_hsic`.
    ``confounder`` names it in the error raised when it is constant.
    """
    xp = m.namespace()
    z = len(m.widths) - 1
    a_self = [frobenius_sq(S, xp) for S in m.S]
    a_cross = [frobenius_sq(C, xp) for C in m.C]
    h_self, h_cross = m.hsic_terms() if m.debiased else (a_self, a_cross)
    if to_scalar(a_self[z]) == 0.0:
        raise constant_confounder_error(confounder)
    to_z = {u: k for k, (u, v) in enumerate(m.pairs) if v == z}
    alpha = [a_cross[to_z[u]] / a_self[z] for u in range(z)]
    selfs = [
        residual_hsic(h_self[u], h_cross[to_z[u]], h_cross[to_z[u]], h_self[z], alpha[u], alpha[u])
        for u in range(z)
    ]
    shares = [residual_share(a_self[u], alpha[u] * a_cross[to_z[u]]) for u in range(z)]
    pairs, cross = [], []
    for k, (u, v) in enumerate(m.pairs):
        if v != z:
            pairs.append((u, v))
            h_uz, h_vz = h_cross[to_z[u]], h_cross[to_z[v]]
            cross.append(residual_hsic(h_cross[k], h_uz, h_vz, h_self[z], alpha[u], alpha[v]))
    return Residuals(selfs, cross, pairs, shares)


def dcka_pair(
    m: Moments, n: int, debiased: bool, names: tuple[str, str], what: str, depth: int = 0
) -> Array:
    """dCKA of units 0 and 1 of ``m`` (units x, y, confounder; pairs (0,1), (0,2), (1,2));
    ``depth``: calls between the public function and this one (for the warnings' stack level)."""
    r = residuals(m, what)
    for name, share in zip(names, r.shares, strict=True):
        if share <= RESIDUAL_SHARE:
            warn_no_residual(name, share, 3 + depth)
            return r.cross[0] * float("nan")
    return ratio(
        r.cross[0],
        r.selfs[0],
        r.selfs[1],
        n=n,
        debiased=debiased,
        names=names,
        stacklevel=5 + depth,
    )


def _dcka_of_grams(
    k: Array, l: Array, kz: Array, xp: Any, debiased: bool, names: Any, depth: int = 0
) -> Array:
    """dCKA of validated float64 Grams: centre, regress on the confounder's Gram, CKA."""
    kc, lc, zc = (centered(g, xp, unbiased=False) for g in (k, l, kz))
    for name, raw, cent in ((names[0], k, kc), (names[1], l, lc)):
        if _centred_is_zero(raw, cent, xp):
            reason = "its centred Gram matrix is zero (all features constant)"
            warn_undefined(name, reason, 4 + depth, measure="deconfounded CKA")
            return xp.sum(kc) * float("nan")
    if _centred_is_zero(kz, zc, xp):
        raise constant_confounder_error("gram_confounder" if names[0] == "gram_x" else "confounder")
    a_zz = gram_inner(zc, zc, xp)
    residual = []
    for name, g in zip(names, (kc, lc), strict=True):
        a_self, a_z = gram_inner(g, g, xp), gram_inner(g, zc, xp)
        share = residual_share(a_self, a_z * a_z / a_zz)
        if share <= RESIDUAL_SHARE:
            warn_no_residual(name, share, 3 + depth)
            return a_zz * float("nan")
        residual.append(g - (a_z / a_zz) * zc)
    return cka_of_grams(
        residual[0], residual[1], xp, debiased=debiased, names=names, depth=depth + 1
    )
