r"""Centred float64 moments of several units (layers) over the same examples.

The exact accumulators (:class:`~cka_sim.StreamingCKA`, :class:`~cka_sim.StreamingCKAMatrix`)
and the feature form of :func:`~cka_sim.linear_cka` hold a :class:`Moments`: the count ``n``,
the float64 means and the centred sums declared once in :data:`FIELDS` (derivation in
:mod:`cka_sim.streaming`). Their one reduction is the Chan–Golub–LeVeque one: move every set of
sums to the shared mean (each field's exact shift), then add. :meth:`Moments.combined` (merge),
:meth:`Moments.recentred` with :func:`all_reduce_moments` (``torch.distributed``), the zero
state, the copy and the flat ``state_dict`` form are all derived from :data:`FIELDS`. A new
statistic is one more :class:`Field` line with its shift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._backend import (
    Array,
    add_outer,
    frobenius_sq,
    gram,
    is_torch,
    namespace,
    to_float64,
)
from ._batch import Prepared
from ._blocked import Deferred, centred_sums
from .hsic import debiased_feature_hsic, row_sq_norms


class _Shift:
    """What the shifts of one set of moments by ``d`` (one vector per unit) share, formed once.

    ``tr S``, ``S d`` and ``C d`` of the moments about their mean. A fresh batch may still hold
    ``S``, ``C`` about its rounded centre (``m.residual`` = ``ρ``, see :meth:`Moments.finalise`):
    the true ``S = S̃ - n ρρᵀ`` then enters through O(p) corrections (``S d = S̃ d - n ρ (ρ·d)``),
    so that the batch need not be finalised before its merge, which removes ``ρ`` from ``S̃``
    itself in its own rank-two update.
    """

    def __init__(self, m: Moments, d: list[Array], xp: Any) -> None:
        t, S, C, n = xp.matrix_transpose, m.S, m.C, m.n
        self.m, self.d = m, d
        self.s = [xp.linalg.trace(Si) for Si in S]  # tr S per unit
        self.D = [_dot(di, di) for di in d]  # ‖d‖² per unit
        self.Sd = [Si @ di for Si, di in zip(S, d, strict=True)]
        self.Cd = [Ck @ d[u] for Ck, (u, _) in zip(C, m.pairs, strict=True)]
        self.Cte = [t(Ck) @ d[v] for Ck, (_, v) in zip(C, m.pairs, strict=True)]
        if m.residual is not None:
            rho = m.residual
            rd = [_dot(r, di) for r, di in zip(rho, d, strict=True)]  # ρ·d per unit
            self.s = [si - n * _dot(r, r) for si, r in zip(self.s, rho, strict=True)]
            self.Sd = [v - (n * rd[u]) * rho[u] for u, v in enumerate(self.Sd)]
            self.Cd = [v - (n * rd[u]) * rho[w] for v, (u, w) in zip(self.Cd, m.pairs, strict=True)]
            self.Cte = [
                v - (n * rd[w]) * rho[u] for v, (u, w) in zip(self.Cte, m.pairs, strict=True)
            ]


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


class Moments:
    """Centred float64 statistics of several units over the same examples.

    ``pairs[k] = (u, v)``: pair fields relate unit ``u`` (``a``) and unit ``v`` (``b``), e.g.
    ``C[k] = Σ b aᵀ`` of shape ``(p_v, p_u)``. Arrays are never modified in place once held by a
    state, so states may share them.
    """

    def __init__(self, widths: list[int], pairs: list[tuple[int, int]], debiased: bool) -> None:
        self.widths = list(widths)
        self.pairs = [(int(u), int(v)) for u, v in pairs]
        self.debiased = debiased
        self.n = 0
        self.mean: list[Array] = []
        for f in FIELDS:
            setattr(self, f.name, [])
        # a fresh batch keeps S, C about its rounded centre until finalise() or a merge removes
        # the residual mean (rank-one terms, fused into the merge's own rank-one update)
        self.residual: list[Array] | None = None
        self.mergeable = True  # False: a one-shot state without the third-order sums

    # -- the declaration, read ------------------------------------------------------------------
    def fields(self) -> list[Field]:
        """The fields this state holds (the debiased ones only when ``debiased``)."""
        return [f for f in FIELDS if self.debiased or not f.debiased_only]

    def index(self, f: Field) -> list[tuple[int, int]]:
        """``(u, v)`` of each entry of field ``f``: ``(u, u)`` per unit, the pairs per pair."""
        return [(u, u) for u in range(len(self.widths))] if f.per == "unit" else self.pairs

    def _like(self, n: int, mean: list[Array]) -> Moments:
        out = Moments(self.widths, self.pairs, self.debiased)
        out.n, out.mean = n, mean
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
    def from_batch(
        cls,
        units: list[Prepared] | list[Deferred],
        pairs: list[tuple[int, int]],
        debiased: bool,
        xp: Any,
        *,
        mergeable: bool = True,
    ) -> Moments:
        """Statistics of one batch of prepared units (see :func:`~cka_sim._batch.prepare_layer`).

        Each unit arrives centred in its own dtype, ``xc = x - c``, with its float64 mean and the
        residual ``res`` = mean of ``xc`` (None for float64). The products run in the input dtype
        and are upcast; ``res`` is removed in float64 afterwards, from the products by the
        rank-one correction ``xcᵀxc - m res resᵀ`` (:meth:`finalise`, or fused into the next
        merge) and from the rows where the debiased terms need them: the corrected two-pass
        algorithm with its second pass done on the statistics instead of the data.

        ``mergeable=False`` (one-shot :func:`~cka_sim.linear_cka`) skips the third-order sums,
        which only serve mean shifts; such a state can give its HSIC terms but not be merged.
        One-shot callers may pass :class:`~cka_sim._blocked.Deferred` layers instead (large CPU
        layers, see :func:`~cka_sim._batch.prepare_finite_all`): their statistics are formed
        block by block, without a centred copy.
        """
        if isinstance(units[0], Deferred):
            return cls._from_deferred(units, pairs, debiased, xp, mergeable=mergeable)
        m = cls([int(u.data.shape[1]) for u in units], pairs, debiased)
        m.n = int(units[0].data.shape[0])
        m.mean = [u.mean for u in units]
        if any(u.residual is not None for u in units):
            m.residual = [u.mean * 0.0 if u.residual is None else u.residual for u in units]
        m.mergeable = mergeable
        centred = [u.data for u in units]
        # xcᵀxc by the symmetric product (block rows on torch CPU, SYRK in NumPy)
        m.S = [_fresh_float64(gram(xp.matrix_transpose(xc), xp), xp) for xc in centred]
        for u, v in m.pairs:
            a, b = centred[u], centred[v]
            if a.dtype != b.dtype:
                common = xp.result_type(a, b)
                a, b = xp.astype(a, common), xp.astype(b, common)
            m.C.append(_fresh_float64(_matmul_t(b, a, xp), xp))
        if debiased:
            m._batch_debiasing(centred, xp)
        return m

    @classmethod
    def _from_deferred(
        cls,
        units: list[Deferred],
        pairs: list[tuple[int, int]],
        debiased: bool,
        xp: Any,
        *,
        mergeable: bool,
    ) -> Moments:
        """:meth:`from_batch` of layers centred block by block (:mod:`cka_sim._blocked`).

        Only for one-shot states: the third-order sums a merge needs are not formed.
        """
        if mergeable:
            raise ValueError("deferred layers make one-shot statistics only (mergeable=False)")
        sums = centred_sums(units, pairs, fourth_order=debiased)
        back = _to_library(units[0].from_torch)
        m = cls([int(u.shape[1]) for u in units], pairs, debiased)
        m.n, m.mergeable = int(units[0].shape[0]), False
        m.mean, m.S, m.C = back(sums.mean), back(sums.S), back(sums.C)  # about the exact mean
        if debiased:
            assert sums.R_self is not None and sums.R_pair is not None
            m.R_self, m.R_pair = back(sums.R_self), back(sums.R_pair)
        return m

    def _batch_debiasing(self, centred: list[Array], xp: Any) -> None:
        """Fourth- and third-order sums of one batch, rows ``a = xc - res`` (see from_batch).

        ``r_i = ‖a_i‖²`` comes from :func:`~cka_sim.hsic.row_sq_norms`; the products with ``r``
        (one (U, m) @ (m, p) product per unit for all the ``Σ r_w a`` it needs) run in the input
        dtype with the residual removed in float64 afterwards. They only enter through the
        mean-shift corrections, where a relative error of 1e-7 is harmless.
        """
        residual = self.residual or [None] * len(centred)
        r = [row_sq_norms(xc, res, xp) for xc, res in zip(centred, residual, strict=True)]
        self.R_self = [xp.sum(ri * ri) for ri in r]
        self.R_pair = [xp.sum(r[u] * r[v]) for u, v in self.pairs]
        if not self.mergeable:
            return
        t = xp.matrix_transpose
        r_all = xp.stack(r, axis=1)  # (m, U)
        r_sum = xp.sum(r_all, axis=0)
        r_rows = t(r_all)  # (U, m): the product below is then (U, m) @ (m, p), a row-major
        # pass over the batch (torch runs (p, m) @ (m, U) about ten times slower)
        w = []
        mixed = len({str(xc.dtype) for xc in centred}) > 1  # a float64 unit's r may not fit
        for xc, res in zip(centred, residual, strict=True):
            # Σ_i r_w,i (xc_i - res) for every unit w: (p, U)
            if mixed:  # float32 (see prepare_layer), so float64 here
                rw = t(r_rows @ to_float64(xc, xp))
            else:
                rw = t(to_float64(xp.astype(r_rows, xc.dtype) @ xc, xp))
            w.append(rw if res is None else rw - res[:, None] * r_sum)
        self.W_self = [w[u][:, u] for u in range(len(r))]
        self.W_uv = [w[v][:, u] for u, v in self.pairs]
        self.W_vu = [w[u][:, v] for u, v in self.pairs]

    def finalise(self) -> Moments:
        """Remove a fresh batch's residual mean from S and C, in place (``S -= m res resᵀ``)."""
        if self.residual is not None:
            res, n = self.residual, self.n
            for i, r in enumerate(res):
                add_outer(self.S[i], r[:, None], r[:, None], -n)
            for k, (u, v) in enumerate(self.pairs):
                add_outer(self.C[k], res[v][:, None], res[u][:, None], -n)
            self.residual = None
        return self

    # -- the reduction: shift to the shared mean, then sum ---------------------------------------
    def _shifted(self, d: list[Array], xp: Any, order: int | None = None) -> dict[str, list]:
        """Every field (but those of ``order``, when given) about means moved by ``d``."""
        fields = [f for f in self.fields() if order is None or f.order != order]
        if not fields:
            return {}
        # the second-order shifts read S and C themselves: a fresh batch is finalised first
        assert self.residual is None or all(f.order != 2 for f in fields)
        t = _Shift(self, d, xp)
        return {
            f.name: [f.shift(t, k, u, v) for k, (u, v) in enumerate(self.index(f))] for f in fields
        }

    def combined(self, other: Moments, xp: Any, *, consume: bool = False) -> Moments:
        """Statistics of the union of two disjoint sets of examples (Chan–Golub–LeVeque).

        Both sides move to the merged mean (``d_a = δ n_b/n``, ``d_b = -δ n_a/n``) and add. For
        the second-order fields the two shifts add up to one rank-one term,
        ``S_a + S_b + (n_a n_b/n) δδᵀ``, into which a fresh batch's residual is fused.
        ``consume=True`` lets it accumulate into ``other``'s arrays (a fresh batch nobody else
        holds), saving a pass over every p x p matrix.
        """
        assert self.mergeable and other.mergeable, "a one-shot state cannot be merged"
        if other.n == 0:
            return self
        if self.n == 0:
            return other.finalise() if consume else _copy_finalised(other)
        na, nb = self.n, other.n
        n = na + nb
        delta = [mb - ma for ma, mb in zip(self.mean, other.mean, strict=True)]
        out = self._like(n, [ma + dl * (nb / n) for ma, dl in zip(self.mean, delta, strict=True)])
        higher_a = self._shifted([dl * (nb / n) for dl in delta], xp, order=2)
        higher_b = other._shifted([dl * (-na / n) for dl in delta], xp, order=2)
        for name, values in higher_a.items():
            setattr(out, name, [p + q for p, q in zip(values, higher_b[name], strict=True)])
        coef = na * nb / n
        res = other.residual
        if res is None:
            left = [dl[:, None] for dl in delta]
            right = [coef * dl[:, None] for dl in delta]
        else:  # fuse the batch's residual: coef δδᵀ - nb res resᵀ, one rank-2 product
            left = [xp.stack([dl, r], axis=1) for dl, r in zip(delta, res, strict=True)]
            right = [
                xp.stack([coef * dl, -nb * r], axis=1) for dl, r in zip(delta, res, strict=True)
            ]

        def update(mine: Array, theirs: Array, lo: Array, ro: Array) -> Array:
            if consume:
                theirs += mine
                return add_outer(theirs, lo, ro)
            return add_outer(mine + theirs, lo, ro)

        out.S = [
            update(a, b, left[i], right[i])
            for i, (a, b) in enumerate(zip(self.S, other.S, strict=True))
        ]
        out.C = [
            update(a, b, left[v], right[u])
            for a, b, (u, v) in zip(self.C, other.C, self.pairs, strict=True)
        ]
        if consume:
            other.residual = None
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
        m.mean = [_as_state_array(d[f"mean.{i}"]) for i in range(len(widths))]
        for f in m.fields():
            count = len(m.index(f))
            setattr(m, f.name, [_as_state_array(d[f"{f.name}.{i}"]) for i in range(count)])
        return m

    # -- reading --------------------------------------------------------------------------------
    def namespace(self) -> Any:
        return namespace(self.mean[0])

    def device(self) -> Any:
        from array_api_compat import device

        return device(self.mean[0])

    def library(self) -> str:
        return "torch" if is_torch(self.mean[0]) else "NumPy"

    def check_finite(self, what: str) -> None:
        xp = self.namespace()
        total = sum(xp.sum(mu) for mu in self.mean) + sum(xp.linalg.trace(S) for S in self.S)
        if not bool(xp.isfinite(total)):
            raise ValueError(
                f"{what}: a batch given to update() held NaN or infinity, so the accumulated "
                "statistics are not finite; remove or impute those values and start again "
                "(reset())"
            )

    def check_same_device(self, other: Moments, what: str) -> None:
        """Raise unless ``other`` lives in the same array library and on the same device."""
        check_same_place(self.mean[0], other.mean[0], what)

    def hsic_terms(self) -> tuple[list[Array], list[Array]]:
        """Feature-form (debiased: ∝ HSIC₁) self terms per unit and cross terms per pair."""
        assert self.residual is None, "finalise() a fresh batch before reading its HSIC terms"
        xp, n = self.namespace(), self.n
        selfs = [frobenius_sq(S, xp) for S in self.S]
        cross = [frobenius_sq(C, xp) for C in self.C]
        if self.debiased:
            s = [xp.linalg.trace(S) for S in self.S]
            selfs = [
                debiased_feature_hsic(h, R, si, si, n)
                for h, R, si in zip(selfs, self.R_self, s, strict=True)
            ]
            cross = [
                debiased_feature_hsic(h, R, s[u], s[v], n)
                for h, R, (u, v) in zip(cross, self.R_pair, self.pairs, strict=True)
            ]
        return selfs, cross


def check_same_place(held: Array, data: Array, what: str) -> None:
    """Raise unless ``data`` is of the array library and on the device of ``held`` (the state)."""
    libraries = ["torch" if is_torch(a) else "NumPy" for a in (held, data)]
    if libraries[0] != libraries[1]:
        raise TypeError(
            f"{what}: this accumulator holds {libraries[0]} statistics but got {libraries[1]} "
            "data; feed one kind (NumPy arrays or torch tensors) throughout"
        )
    if is_torch(held) and held.device != data.device:
        raise ValueError(
            f"{what}: the accumulator lives on {held.device} but the data is on "
            f"{data.device}; move the data (or load the state_dict on that device)"
        )


def merge_moments(a: Moments | None, b: Moments | None, what: str) -> Moments | None:
    """The union of two states (``None``: no data), refusing different layouts or devices."""
    if b is None:
        return a
    if a is None:
        return b
    if a.widths != b.widths or a.pairs != b.pairs:
        raise ValueError(f"{what}: the accumulators saw data of different shapes or layers")
    a.check_same_device(b, what)
    return a.combined(b, a.namespace())


def all_reduce_moments(m: Moments | None, signature: dict[str, Any], group: Any) -> Any:
    """Exact reduction of a state across a ``torch.distributed`` group (``None``: no data here).

    Gathers every process's count and means, forms the global mean, moves this process's sums
    there (:meth:`Moments.recentred`) and adds them with one ``all_reduce`` of sums.
    """
    from . import distributed

    if m is None:
        xp = distributed.torch_namespace()
        device = distributed.comm_device(group)
        m = Moments.zeros(
            signature["widths"], signature["pairs"], signature["debiased"], xp, device
        )
    like = m.mean[0]
    counts, means = distributed.gather_counts_and_means(m.n, m.mean, group, like)
    total = sum(counts)
    new_mean = [
        sum((mu * (c / total) for mu, c in zip(column, counts, strict=True) if c), m.mean[i] * 0.0)
        for i, column in enumerate(means)
    ]
    shifted = m.recentred(new_mean, m.namespace())
    fields = shifted.sum_fields()
    reduced = distributed.all_reduce_sum([a for _, values in fields for a in values], group, like)
    k = 0
    for name, values in fields:
        setattr(shifted, name, reduced[k : k + len(values)])
        k += len(values)
    shifted.n = total
    return shifted


def _matmul_t(b: Array, a: Array, xp: Any) -> Array:
    return xp.matrix_transpose(b) @ a


def _to_library(torch_like: bool) -> Callable[[list[np.ndarray]], list[Array]]:
    """Turns a list of NumPy results into torch tensors (no copy) when the input was torch."""
    if not torch_like:
        return list
    import torch

    return lambda arrays: [torch.from_numpy(a) for a in arrays]


def _fresh_float64(a: Array, xp: Any) -> Array:
    """``a`` as a float64 array that nothing else references (a new product or its upcast)."""
    return xp.astype(a, xp.float64) if a.dtype != xp.float64 else a


def _copy_finalised(m: Moments) -> Moments:
    """``m`` with its residual removed, without touching ``m``'s arrays."""
    if m.residual is None:
        return m
    out = m._like(m.n, list(m.mean))
    xp = m.namespace()
    for f in m.fields():
        values = getattr(m, f.name)
        setattr(out, f.name, [xp.asarray(a, copy=True) for a in values] if f.order == 2 else values)
    out.residual = m.residual
    return out.finalise()


def _as_state_array(value: Any) -> Array:
    if is_torch(value):
        return value.double()
    return np.asarray(value, dtype=np.float64)
