"""Batched CKA on many row subsets or row permutations of the same activations.

A layer is prepared once as a :class:`Representation`: centred features (linear kernel, few
features) or a raw Gram matrix (any kernel, or many features). The permutation test and the
bootstrap then evaluate HSIC terms for a whole batch of index arrays with a few BLAS calls, in
float64, instead of recomputing CKA from the data for each index array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._core.backend import namespace
from .._core.moments import debiased_feature_hsic
from ..hsic import gram_inner
from ..kernels import centered

Form = Literal["features", "gram"]

# Why CKA is undefined (the CKAUndefinedWarning's reason) for a constant input, or when a
# self-HSIC of the full data is not positive.
CONSTANT = "all of its features are constant (zero self-HSIC)"
NOT_POSITIVE = "a self-HSIC is not positive (constant features or too few examples)"

# Largest number of float64 entries a batch may gather at once (about 32 MiB).
_BATCH_ENTRIES = 1 << 22


@dataclass(frozen=True)
class Representation:
    """One layer ready for repeated CKA evaluation.

    ``data`` holds the column-centred (n, p) features when ``form == "features"`` and the raw,
    uncentred (n, n) Gram matrix when ``form == "gram"``.
    """

    form: Form
    data: np.ndarray

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        """Entries gathered per row: p for features, n for a Gram matrix."""
        return int(self.data.shape[1])


def choose_form(n: int, widths: list[int], kernel: Any) -> Form:
    """Features when the kernel is linear and the p x p products are cheaper than n x n Grams.

    A batched GEMM costs about ``m p1 p2`` multiply-adds per evaluation, a Gram evaluation about
    ``m^2`` randomly gathered entries; measured on one core, a gathered entry costs about as much
    as 100 GEMM multiply-adds, so the break-even is near ``p1 p2 = 100 m``.
    """
    if kernel != "linear":
        return "gram"
    mean_width = float(np.mean(widths))
    return "features" if mean_width * mean_width <= 100.0 * n else "gram"


def represent(x: np.ndarray, form: Form, *, gram: np.ndarray | None = None) -> Representation:
    """Prepare validated float64 activations ``x`` (n, p) in the given form.

    ``gram``: the raw Gram matrix of a non-linear kernel (checked by
    :func:`~cka_sim.stats._checks.kernel_gram`); without it the linear kernel's is formed.
    """
    xc = x - x.mean(axis=0)
    if form == "features":
        return Representation("features", xc)
    return Representation("gram", xc @ xc.T if gram is None else gram)


@dataclass(frozen=True)
class Terms:
    """A layer restricted to a batch of b index arrays of length m, centred per index array.

    ``data`` is (b, m, p) centred features or (b, m, m) centred (debiased: U-centred) Grams;
    ``row_sq`` holds the squared row norms of the features (debiased feature form only);
    ``constant`` (b,) is True where the layer's rows on that index array are all equal, so that
    CKA is undefined there (found exactly, before centring: see :func:`constant_rows`).
    """

    form: Form
    data: np.ndarray
    row_sq: np.ndarray | None
    constant: np.ndarray | None = None


def restrict(rep: Representation, idx: np.ndarray, *, debiased: bool) -> Terms:
    """Gather the rows (and columns, for a Gram) ``idx`` (b, m) of a layer and centre them."""
    if rep.form == "features":
        xs = rep.data[idx]
        constant = constant_rows(xs, "features")
        xs = xs - xs.mean(axis=1, keepdims=True)
        row_sq = np.einsum("bmp,bmp->bm", xs, xs) if debiased else None
        return Terms("features", xs, row_sq, constant)
    grams = gather_grams(rep.data, idx)
    constant = constant_rows(grams, "gram")
    return Terms("gram", centered(grams, namespace(grams), unbiased=debiased), None, constant)


def constant_rows(gathered: np.ndarray, form: Form) -> np.ndarray:
    r"""(b,) True where the gathered rows of a layer are all equal (a dead layer on that subset).

    Features: every row equals the first. Gram: every entry of the (m, m) block equals the first,
    which for the linear and RBF kernels holds exactly when the rows are equal
    (:math:`\lVert a_i - a_j\rVert^2 = K_{ii} + K_{jj} - 2K_{ij}`). The test is exact, so the
    rounding of a mean of equal values can neither hide a constant subset nor leave a CKA of
    rounding noise in its place.
    """
    first = gathered[:, :1, :] if form == "features" else gathered[:, :1, :1]
    return np.all(gathered == first, axis=(1, 2))


def gather_grams(k: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``k[i][:, i]`` for each row ``i`` of ``idx`` (b, m): rows first, then columns.

    Two one-axis ``take`` calls run about twice as fast as one broadcast fancy index.
    """
    out = np.empty((idx.shape[0], idx.shape[1], idx.shape[1]))
    for b, rows in enumerate(idx):
        np.take(np.take(k, rows, axis=0), rows, axis=1, out=out[b])
    return out


def hsic_terms(a: Terms, b: Terms, *, debiased: bool) -> np.ndarray:
    """Unnormalised HSIC numerators (b,) between two restricted layers on the same index arrays.

    Biased: :math:`\\langle \\bar K, \\bar L\\rangle`. Debiased: the feature form
    :math:`\\lVert \\bar Y^\\top \\bar X\\rVert^2 - \\frac{m}{m-2} r_X^\\top r_Y
    + \\frac{s_X s_Y}{(m-1)(m-2)}` or :math:`\\langle \\tilde K, \\tilde L\\rangle`. Both carry
    the same factor for every pair of layers, which cancels in CKA.
    """
    if a.form == "features":
        prod = np.matmul(a.data.transpose(0, 2, 1), b.data)
        h = gram_inner(prod, prod, np)
        if debiased:
            assert a.row_sq is not None and b.row_sq is not None
            rr = np.einsum("bm,bm->b", a.row_sq, b.row_sq)
            s_a, s_b = a.row_sq.sum(axis=1), b.row_sq.sum(axis=1)
            h = debiased_feature_hsic(h, rr, s_a, s_b, a.data.shape[1])
        return h
    return gram_inner(a.data, b.data, np)


def cka_from_terms(h_xy: np.ndarray, h_xx: np.ndarray, h_yy: np.ndarray) -> np.ndarray:
    """CKA from HSIC terms; NaN where a self term is not positive (CKA undefined there)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(np.where((h_xx > 0) & (h_yy > 0), h_xx * h_yy, np.nan))
        return h_xy / denom


def batch_size(m: int, width: int) -> int:
    """How many index arrays of length ``m`` to gather at once for a layer of this width."""
    return max(1, _BATCH_ENTRIES // max(1, m * width))


class Permuted:
    """Fixed (centred) data of two layers for HSIC numerators under permutations of the rows.

    Permuting the rows of y permutes its centred (or U-centred) Gram, :math:`P\\bar L P^\\top`, so
    the numerator is :math:`\\sum_{ij} \\bar K_{ij} \\bar L_{\\pi_i\\pi_j}`; in feature form it
    is :math:`\\lVert \\bar Y_\\pi^\\top \\bar X\\rVert^2` (plus, debiased, the row-norm terms with
    :math:`r_Y` permuted). Self terms do not change under permutation.
    """

    def __init__(self, rep: Representation, *, debiased: bool) -> None:
        self.form = rep.form
        full = np.arange(rep.n)[None, :]
        terms = restrict(rep, full, debiased=debiased)
        self.terms = terms
        self.debiased = debiased
        self.n = rep.n
        self.self_term = float(hsic_terms(terms, terms, debiased=debiased)[0])

    def gather(self, perms: np.ndarray) -> Terms:
        """The layer with its rows permuted by each row of ``perms`` (b, n)."""
        data = self.terms.data[0]
        if self.form == "features":
            row_sq = None if self.terms.row_sq is None else self.terms.row_sq[0][perms]
            return Terms("features", data[perms], row_sq)
        return Terms("gram", gather_grams(data, perms), None)

    def numerators(self, permuted: Terms) -> np.ndarray:
        """HSIC numerators between this (unpermuted) layer and each permuted copy of another."""
        data = self.terms.data[0]
        if self.form == "features":
            b, n, p2 = permuted.data.shape
            flat = permuted.data.transpose(1, 0, 2).reshape(n, b * p2)
            prod = (data.T @ flat).reshape(data.shape[1], b, p2)
            h = np.einsum("ibj,ibj->b", prod, prod)
            if self.debiased:
                assert self.terms.row_sq is not None and permuted.row_sq is not None
                r_x = self.terms.row_sq[0]
                s_x, s_y = r_x.sum(), permuted.row_sq[0].sum()
                h = debiased_feature_hsic(h, permuted.row_sq @ r_x, s_x, s_y, n)
            return h
        b = permuted.data.shape[0]
        return permuted.data.reshape(b, -1) @ data.ravel()
