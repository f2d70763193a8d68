r"""The sums stage: centred float64 moments of several units (layers) over the same examples.

Every exact estimator holds a :class:`Moments`: the count ``n``, the float64 means and the centred
sums declared once in :data:`FIELDS` (their shifts are derived in the :mod:`cka_sim.accumulators.streaming`
module docstring). :meth:`Moments.of_batch` forms them for one batch — for
:func:`~cka_sim.linear_cka`'s feature form, :func:`~cka_sim.cka_matrix`, the deconfounded and
Procrustes measures and every :meth:`~cka_sim.StreamingCKA.update` alike — and the one reduction
is the Chan–Golub–LeVeque one: move every set of sums to the shared mean (each field's exact
shift), then add (:meth:`Moments.combined`, :meth:`Moments.recentred` with
:func:`cka_sim.accumulators.distributed.all_reduce_moments` for ``torch.distributed``).

One batch, one pass
-------------------
Each unit arrives with a centre ``c`` (:func:`~cka_sim._core.prepare.centre`). The pass forms,
in the input dtype, the products of the translated rows ``ã = x - c`` and, when debiased, their
squared row norms ``q``: ``S̃ = Σ ã ãᵀ``, ``C̃ = Σ b̃ ãᵀ``, the column sums ``Σ ã = n δ``,
``Σ q_u q_v`` and ``G[w][v] = Σ q_w b̃`` (one (U, m) @ (m, p) product per unit). Large CPU batches
are done a block of rows at a time (:data:`WORKSPACE_BYTES`), so that no centred copy of the
layer is ever formed. :func:`_about_mean` then moves these sums, exactly, from ``c`` to the batch
mean ``μ = c + δ``: with ``d = ‖δ‖²``, ``t = tr S̃`` and ``a = ã - δ``, ``r = ‖a‖²``,

.. math::
   S &= \tilde S - n\,\delta\delta^\top, \qquad C = \tilde C - n\,\delta_v\delta_u^\top \\
   \textstyle\sum r_u r_v &= \textstyle\sum q_u q_v - 2(G_{uv}\cdot\delta_v + G_{vu}\cdot\delta_u)
       + 4\,\delta_v^\top \tilde C\,\delta_u + d_v t_u + d_u t_v - 3n\,d_u d_v \\
   \textstyle\sum r_u b &= G_{uv} - 2\,\tilde C\,\delta_u - t_u\,\delta_v + 2n\,d_u\,\delta_v

(the self terms are the case ``u = v``). Every term involves rows about their (nearly exact)
centre only, so no digit is lost to the offset of the data, however large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from array_api_compat import array_namespace, device, is_torch_array

from .backend import Array, gram
from .prepare import Centred
from .rounding import EPSILON, rounding_bound, term_magnitude

#: Bytes of the pass's workspace (one block of rows of every unit): a few MiB stay in the cache.
WORKSPACE_BYTES = 8 * 2**20
#: Fewest rows of a block; narrower layers get more (up to the workspace).
MIN_BLOCK_ROWS = 256
#: Fewest rows of a block per feature of the widest layer: adding a block's p x p products into
#: the running ones reads and writes them once per block, which rows of 4 p keep to a few per
#: cent of the block's own products (at n = 20000, p = 1024, float32, one thread: 1024-row
#: blocks took 1.10-1.16x the time of in-place BLAS accumulation, 4096-row blocks 0.97-1.01x).
ROWS_PER_FEATURE = 4
#: A batch is done by blocks only when it spans at least this many of them.
MIN_BLOCKS = 4
#: The pass is done again about ``c + δ`` when ``n‖δ‖²`` exceeds this share of ``tr S̃``: the
#: products of ``ã = a + δ`` round relative to ``‖a‖² + ‖δ‖²``, so a residual within a tenth of
#: the spread makes them at most 1 % coarser (an unrepresentative sample of rows, on the host).
RESIDUAL_SHARE = 0.01


def _add_outer(a: Array, left: Array, right: Array) -> Array:
    """``a += left @ rightᵀ`` in place, for (p, k) factors of a rank-k update; returns ``a``.

    torch runs it as one ``addmm_`` (no (p, q) temporary); NumPy forms the product, then adds.
    """
    if is_torch_array(a):
        return a.addmm_(left, right.mT)
    a += left @ right.T
    return a


class _Shift:
    """What the shifts of one set of centred moments by ``d`` (one vector per unit) share:
    ``tr S``, ``‖d‖²``, ``S d``, ``C d`` and ``Cᵀ e``, formed once."""

    def __init__(self, m: Moments, d: list[Array], xp: Any) -> None:
        t = xp.matrix_transpose
        self.m, self.d = m, d
        self.s = [xp.linalg.trace(Si) for Si in m.S]
        self.D = [_dot(di, di) for di in d]
        self.Sd = [Si @ di for Si, di in zip(m.S, d, strict=True)]
        self.Cd = [Ck @ d[u] for Ck, (u, _) in zip(m.C, m.pairs, strict=True)]
        self.Cte = [t(Ck) @ d[v] for Ck, (_, v) in zip(m.C, m.pairs, strict=True)]


def _dot(a: Array, b: Array) -> Array:
    return (a * b).sum()


def _shift_S(t: _Shift, i: int, u: int, v: int) -> Array:
    return t.m.S[i] + t.m.n * (t.d[u][:, None] * t.d[u][None, :])


def _shift_C(t: _Shift, k: int, u: int, v: int) -> Array:
    return t.m.C[k] + t.m.n * (t.d[v][:, None] * t.d[u][None, :])


def _shift_R_self(t: _Shift, i: int, u: int, v: int) -> Array:
    m, d, D = t.m, t.d[u], t.D[u]
    return (
        m.R_self[i] - 4 * _dot(d, m.W_self[i]) + 2 * D * t.s[u] + 4 * _dot(d, t.Sd[u]) + m.n * D * D
    )


def _shift_W_self(t: _Shift, i: int, u: int, v: int) -> Array:
    d, D = t.d[u], t.D[u]
    return t.m.W_self[i] - t.s[u] * d - 2 * t.Sd[u] - t.m.n * D * d


def _shift_R_pair(t: _Shift, k: int, u: int, v: int) -> Array:
    m, du, dv = t.m, t.d[u], t.d[v]
    return (
        m.R_pair[k]
        - 2 * _dot(dv, m.W_uv[k])
        - 2 * _dot(du, m.W_vu[k])
        + 4 * _dot(dv, t.Cd[k])
        + t.D[v] * t.s[u]
        + t.D[u] * t.s[v]
        + m.n * t.D[u] * t.D[v]
    )


def _shift_W_uv(t: _Shift, k: int, u: int, v: int) -> Array:
    return t.m.W_uv[k] - t.s[u] * t.d[v] - 2 * t.Cd[k] - t.m.n * t.D[u] * t.d[v]


def _shift_W_vu(t: _Shift, k: int, u: int, v: int) -> Array:
    return t.m.W_vu[k] - t.s[v] * t.d[u] - 2 * t.Cte[k] - t.m.n * t.D[v] * t.d[u]


@dataclass(frozen=True)
class Field:
    """One declared statistic: a centred sum per unit or per pair, and how a mean shift moves it.

    ``shape(p_u, p_v)`` gives its shape (``p_v == p_u`` for a unit); ``shift(t, k, u, v)`` its
    value about means moved by ``t.d`` (exact, from the old fields); ``order`` 2 fields are merged
    with the fused rank-one update, the others by shift-then-sum.
    """

    name: str
    per: Literal["unit", "pair"]
    shape: Callable[[int, int], tuple[int, ...]]
    shift: Callable[[_Shift, int, int, int], Array]
    order: int
    debiased_only: bool
    doc: str


# a = x - μ, b = y - ν (rows of units u, v), r = ‖a‖², q = ‖b‖²
FIELDS: tuple[Field, ...] = (
    Field("S", "unit", lambda pu, pv: (pu, pu), _shift_S, 2, False, "Σ a aᵀ"),
    Field("C", "pair", lambda pu, pv: (pv, pu), _shift_C, 2, False, "Σ b aᵀ"),
    Field("R_self", "unit", lambda pu, pv: (), _shift_R_self, 4, True, "Σ r²"),
    Field("W_self", "unit", lambda pu, pv: (pu,), _shift_W_self, 3, True, "Σ r a"),
    Field("R_pair", "pair", lambda pu, pv: (), _shift_R_pair, 4, True, "Σ r q"),
    Field("W_uv", "pair", lambda pu, pv: (pv,), _shift_W_uv, 3, True, "Σ r b"),
    Field("W_vu", "pair", lambda pu, pv: (pu,), _shift_W_vu, 3, True, "Σ q a"),
)


@dataclass
class _PassSums:
    """The sums of one pass over the translated rows ``ã = x - c`` (see the module docstring)."""

    S: list[Array]
    C: list[Array]
    col: list[Array]
    qq: Array | None
    G: list[Array] | None  # G[v]: (U, p_v), row w = Σ q_w b̃_v


def _pass(
    units: list[Centred],
    centres: list[Array],
    pairs: list[tuple[int, int]],
    debiased: bool,
    xp: Any,
) -> _PassSums:
    """One pass over the rows of ``x - c``, a block at a time; products in the input dtype."""
    n, t = int(units[0].x.shape[0]), xp.matrix_transpose
    rows, x = n, units[0].x
    if not is_torch_array(x) or (x.device.type == "cpu" and not x.requires_grad):
        row_bytes, widest = 0, 0  # a large CPU batch: blocks (see MIN_BLOCKS)
        for u in units:
            row_bytes += int(u.x.shape[1]) * int(u.x.dtype.itemsize)
            widest = max(widest, int(u.x.shape[1]))
        block = max(MIN_BLOCK_ROWS, WORKSPACE_BYTES // row_bytes, ROWS_PER_FEATURE * widest)
        rows = block if n >= MIN_BLOCKS * block else n
    sums = _PassSums([], [], [], None, None)
    for start in range(0, n, rows):
        blocks = []
        for u, c in zip(units, centres, strict=True):
            blocks.append(u.x[start : start + rows] - c)
        products = []
        for a in blocks:  # NumPy runs aᵀa as the symmetric rank-k update
            products.append(gram(t(a), xp) if is_torch_array(a) else a.T @ a)
        for u, v in pairs:
            a, b = blocks[u], blocks[v]
            if a.dtype != b.dtype:
                a, b = xp.astype(a, xp.float64), xp.astype(b, xp.float64)
            products.append(t(b) @ a)
        col = []
        for a in blocks:
            col.append(xp.astype(xp.sum(a, axis=0), xp.float64))
        qq, G = _row_norm_sums(blocks, xp) if debiased else (None, None)
        if start == 0:
            sums = _PassSums(products[: len(blocks)], products[len(blocks) :], col, qq, G)
        else:
            _accumulate(sums, products, col, qq, G)
    return sums


def _row_norm_sums(blocks: list[Array], xp: Any) -> tuple[Array, list[Array]]:
    """``Σ q_u q_v`` (U x U, float64) and ``G[v] = Σ q_w b̃_v`` ((U, p_v) per unit) of one block."""
    q = []
    for a in blocks:
        q.append(
            np.einsum("ij,ij->i", a, a)
            if isinstance(a, np.ndarray)
            else xp.linalg.vector_norm(a, axis=1) ** 2
        )
    mixed = len({str(a.dtype) for a in blocks}) > 1  # a float32 layer promoted beside float32
    if mixed:  # ones: the products in float64
        q, blocks = (
            [xp.astype(v, xp.float64) for v in q],
            [xp.astype(b, xp.float64) for b in blocks],
        )
    q_rows = xp.stack(q, axis=0)  # (U, m): (U, m) @ (m, p) is a row-major pass over the block
    q64 = xp.astype(q_rows, xp.float64)
    G = []
    for b in blocks:
        G.append(xp.astype(xp.astype(q_rows, b.dtype) @ b, xp.float64))
    return q64 @ xp.matrix_transpose(q64), G


def _accumulate(
    sums: _PassSums, products: list[Array], col: list[Array], qq: Array | None, G: Any
) -> None:
    """Add one block's sums into the running ones, in place (blocks need no gradient)."""
    units = len(sums.S)
    for i in range(units):
        sums.S[i] += products[i]
        sums.col[i] += col[i]
    for k in range(len(sums.C)):
        sums.C[k] += products[units + k]
    if qq is not None:
        sums.qq += qq
        for v in range(units):
            sums.G[v] += G[v]


def _about_mean(
    sums: _PassSums,
    centres: list[Array],
    n: int,
    pairs: list[tuple[int, int]],
    debiased: bool,
    xp: Any,
) -> Moments:
    """The batch's :class:`Moments` about its mean ``c + δ``, from the pass's sums about ``c``
    (the module docstring gives the algebra)."""
    widths = []
    for c in centres:
        widths.append(int(c.shape[0]))
    m = Moments(widths, pairs, debiased)
    m.n, f64 = n, xp.float64
    for i, c in enumerate(centres):  # the products' precision, by dtype
        m.eps[i] = EPSILON.get(str(c.dtype).removeprefix("torch."), EPSILON["float32"])
    delta, S, C = [], [], []
    for c, col in zip(centres, sums.col, strict=True):
        delta.append(col / n)
        m.mean.append(xp.astype(c, f64) + col / n)
    for St, dl in zip(sums.S, delta, strict=True):
        S.append(_add_outer(xp.astype(St, f64, copy=True), dl[:, None], -n * dl[:, None]))
    for Ct, (u, v) in zip(sums.C, pairs, strict=True):
        C.append(
            _add_outer(xp.astype(Ct, f64, copy=True), delta[v][:, None], -n * delta[u][:, None])
        )
    m.S, m.C = S, C
    if debiased:
        _debiasing_about_mean(m, sums, delta, xp)
    return m


def _debiasing_about_mean(m: Moments, sums: _PassSums, delta: list[Array], xp: Any) -> None:
    """The third- and fourth-order fields of ``m`` from the pass's sums (module docstring)."""
    n, qq, G, f64 = m.n, sums.qq, sums.G, xp.float64
    St = [xp.astype(s, f64) for s in sums.S]
    Ct = [xp.astype(c, f64) for c in sums.C]
    d = [_dot(dl, dl) for dl in delta]
    t = [xp.linalg.trace(s) for s in St]

    def fourth(u: int, v: int, product_vu: Array) -> Array:
        return (
            qq[u, v]
            - 2.0 * (_dot(G[v][u], delta[v]) + _dot(G[u][v], delta[u]))
            + 4.0 * _dot(delta[v], product_vu @ delta[u])
            + d[v] * t[u]
            + d[u] * t[v]
            - 3.0 * n * d[u] * d[v]
        )

    def third(u: int, v: int, product_vu: Array) -> Array:  # Σ r_u b_v
        return G[v][u] - 2.0 * (product_vu @ delta[u]) - t[u] * delta[v] + 2.0 * n * d[u] * delta[v]

    units = range(len(St))
    m.R_self = [fourth(u, u, St[u]) for u in units]
    m.W_self = [third(u, u, St[u]) for u in units]
    m.R_pair = [fourth(u, v, Ct[k]) for k, (u, v) in enumerate(m.pairs)]
    m.W_uv = [third(u, v, Ct[k]) for k, (u, v) in enumerate(m.pairs)]
    m.W_vu = [third(v, u, xp.matrix_transpose(Ct[k])) for k, (u, v) in enumerate(m.pairs)]


def debiased_feature_hsic(h: Array, rr: Array, s_x: Array, s_y: Array, n: int) -> Array:
    r"""Debiased linear HSIC in feature form, up to the factor :math:`1/(n(n-3))`.

    ``h`` is :math:`\lVert \bar Y^\top \bar X\rVert_F^2`, ``rr`` is :math:`r_X^\top r_Y` with
    :math:`r` the squared row norms of the centred activations, ``s_x``, ``s_y`` their sums:

    .. math:: h - \frac{n}{n-2} r_X^\top r_Y + \frac{s_X s_Y}{(n-1)(n-2)}

    This equals :math:`\langle U(K), U(L)\rangle` of the U-centred linear Grams exactly
    (Song et al. 2012), so it can be mixed with Gram-form terms in one ratio. Works elementwise
    on arrays of terms.
    """
    return h - (n / (n - 2)) * rr + s_x * s_y / ((n - 1) * (n - 2))


class Moments:
    """Centred float64 statistics of several units over the same examples.

    ``pairs[k] = (u, v)``: pair fields relate unit ``u`` (``a``) and unit ``v`` (``b``), e.g.
    ``C[k] = Σ b aᵀ`` of shape ``(p_v, p_u)``. Arrays are never modified in place once held by a
    state, so states may share them.
    """

    def __init__(self, widths: list[int], pairs: list[tuple[int, int]], debiased: bool) -> None:
        self.widths = list(widths)
        self.pairs = []
        for u, v in pairs:
            self.pairs.append((int(u), int(v)))
        self.debiased = debiased
        self.n = 0
        self.mean: list[Array] = []
        #: Per unit, the machine epsilon of the dtype its products ran in (the coarsest seen).
        self.eps: list[float] = [EPSILON["float64"]] * len(self.widths)
        for f in FIELDS:
            setattr(self, f.name, [])

    # -- the declaration, read ------------------------------------------------------------------
    def fields(self) -> list[Field]:
        """The fields this state holds (the debiased ones only when ``debiased``)."""
        return [f for f in FIELDS if self.debiased or not f.debiased_only]

    def index(self, f: Field) -> list[tuple[int, int]]:
        """``(u, v)`` of each entry of field ``f``: ``(u, u)`` per unit, the pairs per pair."""
        return [(u, u) for u in range(len(self.widths))] if f.per == "unit" else self.pairs

    def _like(self, n: int, mean: list[Array]) -> Moments:
        out = Moments(self.widths, self.pairs, self.debiased)
        out.n, out.mean, out.eps = n, mean, list(self.eps)
        return out

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def zeros(
        cls, widths: list[int], pairs: list[tuple[int, int]], debiased: bool, xp: Any, device: Any
    ) -> Moments:
        m = cls(widths, pairs, debiased)
        m.mean = [xp.zeros((p,), dtype=xp.float64, device=device) for p in widths]
        for f in m.fields():
            shapes = [f.shape(widths[u], widths[v]) for u, v in m.index(f)]
            setattr(m, f.name, [xp.zeros(s, dtype=xp.float64, device=device) for s in shapes])
        return m

    @classmethod
    def of_batch(
        cls, units: list[Centred], pairs: list[tuple[int, int]], debiased: bool, xp: Any
    ) -> Moments:
        """The centred moments of one batch of units, each with its centre
        (:func:`~cka_sim._core.prepare.centre`): one pass, then the exact move to the mean.

        When a residual mean is large next to its unit's spread (an unrepresentative sample of
        rows, see :data:`RESIDUAL_SHARE`) and its value can be read without a device
        synchronisation, the pass is done again about the corrected centre.
        """
        n = int(units[0].x.shape[0])
        centres = []
        for u in units:
            centres.append(u.centre)
        sums = _pass(units, centres, pairs, debiased, xp)
        x = units[0].x
        if not is_torch_array(x) or x.device.type == "cpu":
            moved = False
            for i in range(len(units)):
                col, trace = sums.col[i], xp.linalg.trace(sums.S[i])
                if is_torch_array(col):  # a host tensor, read outside any autograd graph
                    col, trace = col.detach(), trace.detach()
                if float(xp.sum(col * col)) > RESIDUAL_SHARE * n * float(trace):
                    centres[i] = xp.astype(xp.astype(centres[i], xp.float64) + col / n, x.dtype)
                    moved = True
            if moved:
                sums = _pass(units, centres, pairs, debiased, xp)
        return _about_mean(sums, centres, n, pairs, debiased, xp)

    # -- the reduction: shift to the shared mean, then sum ---------------------------------------
    def _shifted(self, d: list[Array], xp: Any, order: int | None = None) -> dict[str, list]:
        """Every field (but those of ``order``, when given) about means moved by ``d``."""
        fields = [f for f in self.fields() if order is None or f.order != order]
        if not fields:
            return {}
        t = _Shift(self, d, xp)
        return {
            f.name: [f.shift(t, k, u, v) for k, (u, v) in enumerate(self.index(f))] for f in fields
        }

    def combined(self, other: Moments, xp: Any, *, reuse_other: bool = False) -> Moments:
        """Statistics of the union of two disjoint sets of examples (Chan–Golub–LeVeque).

        Both sides move to the merged mean (``d_a = δ n_b/n``, ``d_b = -δ n_a/n``) and add; for
        the second-order fields the two shifts add up to one rank-one term,
        ``S_a + S_b + (n_a n_b/n) δδᵀ``. ``reuse_other=True`` accumulates into ``other``'s
        second-order arrays (a fresh batch that nobody else holds), saving an allocation per
        p x p matrix.
        """
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        na, nb = self.n, other.n
        n = na + nb
        delta = [mb - ma for ma, mb in zip(self.mean, other.mean, strict=True)]
        out = self._like(n, [ma + dl * (nb / n) for ma, dl in zip(self.mean, delta, strict=True)])
        out.eps = [max(a, b) for a, b in zip(self.eps, other.eps, strict=True)]
        higher_a = self._shifted([dl * (nb / n) for dl in delta], xp, order=2)
        higher_b = other._shifted([dl * (-na / n) for dl in delta], xp, order=2)
        for name, values in higher_a.items():
            setattr(out, name, [p + q for p, q in zip(values, higher_b[name], strict=True)])
        coef = na * nb / n

        def update(mine: Array, theirs: Array, left: Array, right: Array) -> Array:
            if reuse_other:
                theirs += mine
                return _add_outer(theirs, left[:, None], coef * right[:, None])
            return _add_outer(mine + theirs, left[:, None], coef * right[:, None])

        out.S = [update(a, b, dl, dl) for a, b, dl in zip(self.S, other.S, delta, strict=True)]
        out.C = [
            update(a, b, delta[v], delta[u])
            for a, b, (u, v) in zip(self.C, other.C, self.pairs, strict=True)
        ]
        return out

    def recentred(self, new_mean: list[Array], xp: Any) -> Moments:
        """The same examples' sums about ``new_mean`` (used before an all-reduce of sums)."""
        out = self._like(self.n, list(new_mean))
        if self.n == 0:
            for f in self.fields():
                setattr(out, f.name, list(getattr(self, f.name)))
            return out
        d = [mu - m for mu, m in zip(new_mean, self.mean, strict=True)]
        for name, values in self._shifted(d, xp).items():
            setattr(out, name, values)
        return out

    # -- (de)serialisation ----------------------------------------------------------------------
    def sum_fields(self) -> list[tuple[str, list[Array]]]:
        """The additive fields (everything but n and the means), in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in self.fields()]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n": self.n,
            "widths": list(self.widths),
            "pairs": [list(p) for p in self.pairs],
            "debiased": self.debiased,
            "eps": [float(e) for e in self.eps],
        }
        for name, values in [("mean", self.mean), *self.sum_fields()]:
            for i, value in enumerate(values):
                d[f"{name}.{i}"] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Moments:
        widths = [int(w) for w in d["widths"]]
        m = cls(widths, [(int(u), int(v)) for u, v in d["pairs"]], bool(d["debiased"]))
        m.n = int(d["n"])
        if "eps" in d:  # states saved before the rounding rule: float64 products assumed
            m.eps = [float(e) for e in _as_list(d["eps"])]
        m.mean = [_as_state_array(d[f"mean.{i}"]) for i in range(len(widths))]
        for f in m.fields():
            count = len(m.index(f))
            setattr(m, f.name, [_as_state_array(d[f"{f.name}.{i}"]) for i in range(count)])
        return m

    # -- reading --------------------------------------------------------------------------------
    def namespace(self) -> Any:
        return array_namespace(self.mean[0])

    def device(self) -> Any:
        return device(self.mean[0])

    def library(self) -> str:
        return "torch" if is_torch_array(self.mean[0]) else "NumPy"

    def check_finite(self, what: str) -> None:
        xp = self.namespace()
        total = sum(xp.sum(mu) for mu in self.mean) + sum(xp.linalg.trace(S) for S in self.S)
        if not bool(xp.isfinite(total)):
            raise ValueError(
                f"{what}: a batch given to update() held NaN or infinity, so the accumulated "
                "statistics are not finite; remove or impute those values and start again "
                "(reset())"
            )

    def hsic_terms(self) -> tuple[list[Array], list[Array]]:
        """Feature-form (debiased: ∝ HSIC₁) self terms per unit and cross terms per pair."""
        xp, n = array_namespace(self.mean[0]), self.n
        selfs, cross = [], []
        for S in self.S:
            selfs.append(xp.sum(S * S))
        for C in self.C:
            cross.append(xp.sum(C * C))
        if not self.debiased:
            return selfs, cross
        s = []
        for i, S in enumerate(self.S):
            s.append(xp.linalg.trace(S))
            selfs[i] = selfs[i] - (n / (n - 2)) * self.R_self[i] + s[i] * s[i] / ((n - 1) * (n - 2))
        for k, (u, v) in enumerate(self.pairs):
            cross[k] = cross[k] - (n / (n - 2)) * self.R_pair[k] + s[u] * s[v] / ((n - 1) * (n - 2))
        return selfs, cross

    def self_bounds(self) -> list[float]:
        """Per unit, the rounding bound of its debiased self term
        (:func:`~cka_sim._core.rounding.rounding_bound`, in the units of
        :meth:`hsic_terms`); zeros when biased (its self term has no cancellation)."""
        if not self.debiased:
            return [0.0] * len(self.S)
        xp, bounds = self.namespace(), []
        for S, R, eps in zip(self.S, self.R_self, self.eps, strict=True):
            s = xp.linalg.trace(S)
            magnitude = term_magnitude(xp.sum(S * S), R, s, s, self.n)
            bounds.append(rounding_bound(_host(magnitude), self.n, eps))
        return bounds


def _host(value: Array) -> float:
    return float(value.detach()) if is_torch_array(value) else float(value)


def merge_moments(a: Moments | None, b: Moments | None, what: str) -> Moments | None:
    """The union of two states (``None``: no data), refusing different layouts or devices."""
    from .check import check_same_place

    if b is None:
        return a
    if a is None:
        return b
    if a.widths != b.widths or a.pairs != b.pairs:
        raise ValueError(f"{what}: the accumulators saw data of different shapes or layers")
    check_same_place(a.mean[0], b.mean[0], what)
    return a.combined(b, a.namespace())


def _as_list(value: Any) -> list[Any]:
    """A list saved in a state (a list, or the array ``np.savez`` made of it)."""
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _as_state_array(value: Any) -> Array:
    if is_torch_array(value):
        return value.double()
    return np.asarray(value, dtype=np.float64)
