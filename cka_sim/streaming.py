r"""Exact full-data linear CKA over batches: :class:`StreamingCKA`, :class:`StreamingCKAMatrix`.

Both keep centred sufficient statistics, never examples, and give exactly what
:func:`~cka_sim.linear_cka` gives on all the data seen (biased or debiased), whatever the batch
split. Memory is :math:`O(p_1^2 + p_2^2 + p_1 p_2)`, independent of the number of examples.

State and merge
---------------
For each set of activations ("unit": ``x`` and ``y``, or one layer) the state holds the count
:math:`n`, the float64 mean :math:`\mu` and the centred co-moment
:math:`S = \sum_i (x_i-\mu)(x_i-\mu)^\top`; for each pair of units the centred cross co-moment
:math:`C = \sum_i (y_i-\nu)(x_i-\mu)^\top`. A batch is centred on its own mean (two-pass, so
float32 data with large means keep their digits), its three products run in the input dtype and
are upcast to float64, and it is merged with the pairwise update of Chan, Golub & LeVeque (1979):

.. math:: \delta = \mu_b - \mu_a,\quad \mu = \mu_a + \delta\,n_b/n,\quad
          S = S_a + S_b + \frac{n_a n_b}{n}\,\delta\delta^\top

(never :math:`\sum x x^\top - n\mu\mu^\top`). Biased CKA is then
:math:`\lVert C\rVert_F^2 / (\lVert S_x\rVert_F \lVert S_y\rVert_F)`.

The debiased estimator under a moving mean
------------------------------------------
Debiased CKA also needs, with :math:`r_i = \lVert x_i-\mu\rVert^2`, :math:`q_i = \lVert y_i-\nu
\rVert^2` about the *global* means, the sums :math:`R_{xy} = \sum_i r_i q_i`, :math:`R_{xx}`,
:math:`R_{yy}` (and :math:`s_x = \sum_i r_i = \operatorname{tr} S_x`). These change when the mean
moves, so the state also holds them about the current mean, together with the third-order
vectors :math:`W_{xx} = \sum_i r_i a_i`, :math:`W_{yy} = \sum_i q_i b_i`,
:math:`W_{xy} = \sum_i r_i b_i`, :math:`W_{yx} = \sum_i q_i a_i` (:math:`a_i = x_i-\mu`,
:math:`b_i = y_i-\nu`; memory :math:`O(p_1+p_2)`). Moving the means of a set with
:math:`\sum_i a_i = \sum_i b_i = 0` to :math:`\mu + d`, :math:`\nu + e` gives
:math:`a_i' = a_i - d`, :math:`r_i' = r_i - 2a_i^\top d + D` (:math:`D = \lVert d\rVert^2`,
:math:`E = \lVert e\rVert^2`), and expanding the products, every sum of a single
:math:`a_i` or :math:`b_i` vanishing:

.. math::
   R_{xy}' &= R_{xy} - 2e^\top W_{xy} - 2d^\top W_{yx} + 4e^\top C d + E s_x + D s_y + nDE \\
   R_{xx}' &= R_{xx} - 4d^\top W_{xx} + 2D s_x + 4d^\top S_x d + nD^2 \\
   W_{xy}' &= W_{xy} - s_x e - 2Cd - nDe, \qquad
   W_{yx}'  = W_{yx} - s_y d - 2C^\top e - nEd \\
   W_{xx}' &= W_{xx} - s_x d - 2S_x d - nDd

(old :math:`S, C, s` on the right; :math:`R_{yy}'`, :math:`W_{yy}'` likewise). The set of
statistics is closed under the shift, so it is exact: a merge moves both sides to the merged mean
(:math:`d_a = \delta n_b/n`, :math:`d_b = -\delta n_a/n`) and adds. The debiased feature-form HSIC
is then :math:`\lVert C\rVert_F^2 - \frac{n}{n-2}R_{xy} + \frac{s_x s_y}{(n-1)(n-2)}` (see
:func:`cka_sim.linear_cka`). The same shift takes every process of a ``torch.distributed`` group
to the global mean before one ``all_reduce`` of sums (:meth:`StreamingCKA.all_reduce`).

Precision: float64 batches give :func:`linear_cka` to about 1e-12; float32 batches with feature
means of 1000 to about 1e-7.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ._backend import (
    Array,
    as_output,
    centre_float32,
    frobenius_sq,
    is_torch,
    namespace,
    to_float64,
)
from ._layers import as_layers, check_names, ratio_matrix, to_numpy
from ._validation import as_matrix, check_pair, warn_undefined
from .cka import _ratio, debiased_feature_hsic
from .result import CKAResult, default_metadata

_FORMAT_VERSION = 1


class _Moments:
    """Centred float64 statistics of several units (layers) over the same examples.

    ``pairs[k] = (u, v)``: ``C[k] = Σ b aᵀ`` with ``a`` from unit ``u``, ``b`` from unit ``v``
    (shape ``(p_v, p_u)``). Arrays are never modified in place, so states may share them.
    """

    def __init__(self, widths: list[int], pairs: list[tuple[int, int]], debiased: bool) -> None:
        self.widths = list(widths)
        self.pairs = list(pairs)
        self.debiased = debiased
        self.n = 0
        self.mean: list[Array] = []
        self.S: list[Array] = []
        self.C: list[Array] = []
        self.R_self: list[Array] = []  # Σ r², per unit
        self.W_self: list[Array] = []  # Σ r a, per unit
        self.R_pair: list[Array] = []  # Σ r_u r_v, per pair
        self.W_uv: list[Array] = []  # Σ r_u b (in v's space), per pair
        self.W_vu: list[Array] = []  # Σ r_v a (in u's space), per pair
        # a fresh batch keeps S, C about its rounded centre until finalise() or a merge removes
        # the residual mean (rank-one terms, fused into the merge's own rank-one update)
        self.residual: list[Array] | None = None

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def zeros(
        cls, widths: list[int], pairs: list[tuple[int, int]], debiased: bool, xp: Any, device: Any
    ) -> _Moments:
        m = cls(widths, pairs, debiased)

        def z(*shape: int) -> Array:
            return xp.zeros(shape, dtype=xp.float64, device=device)

        m.mean = [z(p) for p in widths]
        m.S = [z(p, p) for p in widths]
        m.C = [z(widths[v], widths[u]) for u, v in pairs]
        if debiased:
            m.R_self = [z() for _ in widths]
            m.W_self = [z(p) for p in widths]
            m.R_pair = [z() for _ in pairs]
            m.W_uv = [z(widths[v]) for _, v in pairs]
            m.W_vu = [z(widths[u]) for u, _ in pairs]
        return m

    @classmethod
    def from_batch(
        cls, units: list[Array], pairs: list[tuple[int, int]], debiased: bool, xp: Any
    ) -> _Moments:
        """Statistics of one batch: validated (m, p_u) matrices, one per unit.

        Each unit is centred once, in its own dtype: ``xc = x - c`` with ``c`` its column mean
        computed in that dtype (float64 input: the exact float64 mean, and nothing more to do).
        For float32, the residual mean ``res`` = mean of ``xc`` is summed from ``xc`` itself,
        which lies near zero, so that float32 sum is accurate to the spread of the data, not to
        its offset (for data with mean 1000 ``c`` is off by about 1e-4 and ``res`` recovers it);
        the batch mean is ``c + res`` in float64. ``res`` is then removed in float64: from the
        products by the rank-one correction ``xcᵀxc - m res resᵀ`` (no cancellation: ``res`` is
        small next to the spread) and from the rows where the debiased terms need them. This is
        the corrected two-pass algorithm of :func:`~cka_sim._backend.center_columns`, with its
        second pass done on the statistics instead of the data, and without any float64 pass
        over the batch (two reductions and one subtraction in the input dtype).
        """
        t = xp.matrix_transpose
        m = cls([int(u.shape[1]) for u in units], pairs, debiased)
        n = m.n = int(units[0].shape[0])
        centred, residual = [], []
        for x in units:
            if x.dtype == xp.float64:
                mean = xp.sum(x, axis=0) / n
                centre = mean
                xc = x - centre
                res = mean - centre
            else:
                # float32: centre on the float32 mean; what it misses is the mean of xc, summed
                # in float32 too (xc is near zero, so that sum is accurate to the spread)
                xc, centre, res = centre_float32(x, xp)
                mean = to_float64(centre, xp) + res
            m.mean.append(mean)
            centred.append(xc)
            residual.append(res)
            m.S.append(_fresh_float64(t(xc) @ xc, xp))
        for u, v in pairs:
            a, b = centred[u], centred[v]
            if a.dtype != b.dtype:
                common = xp.result_type(a, b)
                a, b = xp.astype(a, common), xp.astype(b, common)
            m.C.append(_fresh_float64(t(b) @ a, xp))
        m.residual = residual
        if debiased:
            m._batch_debiasing(centred, residual, xp)
            m.finalise()
        return m

    def finalise(self) -> _Moments:
        """Remove a fresh batch's residual mean from S and C, in place (``S -= m res resᵀ``)."""
        if self.residual is not None:
            res, n = self.residual, self.n
            for i, r in enumerate(res):
                self.S[i] -= n * (r[:, None] * r[None, :])
            for k, (u, v) in enumerate(self.pairs):
                self.C[k] -= n * (res[v][:, None] * res[u][None, :])
            self.residual = None
        return self

    def _batch_debiasing(self, centred: list[Array], residual: list[Array], xp: Any) -> None:
        """Fourth- and third-order sums of one batch, rows ``a = xc - res`` (see from_batch).

        ``r_i = ‖a_i‖²`` is summed in the input dtype (a relative error of about 1e-7 per row,
        the same as the float32 GEMMs' own, and averaged out over the rows of ``Σ r q``) and
        corrected for the residual in float64; the products with ``r`` (one (U, m) @ (m, p)
        product per unit for all the ``Σ r_w a`` it needs) run in the input dtype with the
        residual removed in float64 afterwards. They only enter through the mean-shift
        corrections, where a relative error of 1e-7 is harmless.
        """
        t = xp.matrix_transpose
        r = []
        for xc, res in zip(centred, residual, strict=True):
            # ‖xc - res‖² = ‖xc‖² - 2 xc·res + ‖res‖²
            cross = to_float64(xc @ xp.astype(res, xc.dtype), xp)
            r.append(to_float64(xp.sum(xc * xc, axis=1), xp) - 2 * cross + xp.sum(res * res))
        r_all = xp.stack(r, axis=1)  # (m, U)
        r_sum = xp.sum(r_all, axis=0)
        r_rows = t(r_all)  # (U, m): the product below is then (U, m) @ (m, p), a row-major
        # pass over the batch (torch runs (p, m) @ (m, U) about ten times slower)
        w = []
        for xc, res in zip(centred, residual, strict=True):
            # Σ_i r_w,i (xc_i - res) for every unit w: (p, U)
            rw = to_float64(xp.astype(r_rows, xc.dtype) @ xc, xp)
            w.append(t(rw) - res[:, None] * r_sum)
        self.R_self = [xp.sum(ri * ri) for ri in r]
        self.W_self = [w[u][:, u] for u in range(len(r))]
        self.R_pair = [xp.sum(r[u] * r[v]) for u, v in self.pairs]
        self.W_uv = [w[v][:, u] for u, v in self.pairs]
        self.W_vu = [w[u][:, v] for u, v in self.pairs]

    # -- algebra -------------------------------------------------------------------------------
    def _shifted_higher(self, d: list[Array], xp: Any) -> tuple[list, list, list, list, list]:
        """Debiasing statistics about means moved by ``d`` (one shift vector per unit)."""
        n = self.n
        s = [xp.linalg.trace(S) for S in self.S]
        D = [xp.sum(di * di) for di in d]
        Sd = [S @ di for S, di in zip(self.S, d, strict=True)]
        R_self, W_self = [], []
        for i, di in enumerate(d):
            R_self.append(
                self.R_self[i]
                - 4 * xp.sum(di * self.W_self[i])
                + 2 * D[i] * s[i]
                + 4 * xp.sum(di * Sd[i])
                + n * D[i] * D[i]
            )
            W_self.append(self.W_self[i] - s[i] * di - 2 * Sd[i] - n * D[i] * di)
        R_pair, W_uv, W_vu = [], [], []
        for k, (u, v) in enumerate(self.pairs):
            C, du, dv = self.C[k], d[u], d[v]
            Cd = C @ du
            Cte = xp.matrix_transpose(C) @ dv
            R_pair.append(
                self.R_pair[k]
                - 2 * xp.sum(dv * self.W_uv[k])
                - 2 * xp.sum(du * self.W_vu[k])
                + 4 * xp.sum(dv * Cd)
                + D[v] * s[u]
                + D[u] * s[v]
                + n * D[u] * D[v]
            )
            W_uv.append(self.W_uv[k] - s[u] * dv - 2 * Cd - n * D[u] * dv)
            W_vu.append(self.W_vu[k] - s[v] * du - 2 * Cte - n * D[v] * du)
        return R_self, W_self, R_pair, W_uv, W_vu

    def combined(self, other: _Moments, xp: Any, *, consume: bool = False) -> _Moments:
        """Statistics of the union of two disjoint sets of examples (Chan–Golub–LeVeque).

        ``consume=True`` lets it accumulate into ``other``'s arrays (a fresh batch nobody else
        holds), saving a pass over every p x p matrix.
        """
        if other.n == 0:
            return self
        if self.n == 0:
            return other.finalise() if consume else _copy_finalised(other)
        na, nb = self.n, other.n
        n = na + nb
        out = _Moments(self.widths, self.pairs, self.debiased)
        out.n = n
        delta = [mb - ma for ma, mb in zip(self.mean, other.mean, strict=True)]
        out.mean = [ma + dl * (nb / n) for ma, dl in zip(self.mean, delta, strict=True)]
        if self.debiased:
            ha = self._shifted_higher([dl * (nb / n) for dl in delta], xp)
            hb = other._shifted_higher([dl * (-na / n) for dl in delta], xp)
            out.R_self, out.W_self, out.R_pair, out.W_uv, out.W_vu = (
                [p + q for p, q in zip(fa, fb, strict=True)] for fa, fb in zip(ha, hb, strict=True)
            )
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
            term = lo @ xp.matrix_transpose(ro)
            if consume:
                theirs += mine
                theirs += term
                return theirs
            return mine + theirs + term

        out.S = [
            update(Sa, Sb, left[i], right[i])
            for i, (Sa, Sb) in enumerate(zip(self.S, other.S, strict=True))
        ]
        out.C = [
            update(Ca, Cb, left[v], right[u])
            for Ca, Cb, (u, v) in zip(self.C, other.C, self.pairs, strict=True)
        ]
        if consume:
            other.residual = None
        return out

    def recentred(self, new_mean: list[Array], xp: Any) -> _Moments:
        """The same examples' sums about ``new_mean`` (used before an all-reduce of sums)."""
        out = _Moments(self.widths, self.pairs, self.debiased)
        out.n = self.n
        out.mean = list(new_mean)
        if self.n == 0:
            for name in ("S", "C", "R_self", "W_self", "R_pair", "W_uv", "W_vu"):
                setattr(out, name, list(getattr(self, name)))
            return out
        d = [mu - m for mu, m in zip(new_mean, self.mean, strict=True)]
        if self.debiased:
            out.R_self, out.W_self, out.R_pair, out.W_uv, out.W_vu = self._shifted_higher(d, xp)
        n = self.n
        out.S = [S + n * (di[:, None] * di[None, :]) for S, di in zip(self.S, d, strict=True)]
        out.C = [
            C + n * (d[v][:, None] * d[u][None, :])
            for C, (u, v) in zip(self.C, self.pairs, strict=True)
        ]
        return out

    # -- (de)serialisation ---------------------------------------------------------------------
    def sum_fields(self) -> list[tuple[str, list[Array]]]:
        """The additive fields (everything but n and the means), in a fixed order."""
        fields = [("S", self.S), ("C", self.C)]
        if self.debiased:
            fields += [
                ("R_self", self.R_self),
                ("W_self", self.W_self),
                ("R_pair", self.R_pair),
                ("W_uv", self.W_uv),
                ("W_vu", self.W_vu),
            ]
        return fields

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "n": self.n,
            "widths": list(self.widths),
            "pairs": [list(p) for p in self.pairs],
            "debiased": self.debiased,
        }
        for i, mu in enumerate(self.mean):
            d[f"mean.{i}"] = mu
        for name, values in self.sum_fields():
            for i, value in enumerate(values):
                d[f"{name}.{i}"] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Moments:
        widths = [int(w) for w in d["widths"]]
        pairs = [(int(u), int(v)) for u, v in d["pairs"]]
        m = cls(widths, pairs, bool(d["debiased"]))
        m.n = int(d["n"])
        m.mean = [_as_state_array(d[f"mean.{i}"]) for i in range(len(widths))]
        for name, _ in m.sum_fields():
            count = len(pairs) if name in ("C", "R_pair", "W_uv", "W_vu") else len(widths)
            setattr(m, name, [_as_state_array(d[f"{name}.{i}"]) for i in range(count)])
        return m

    def namespace(self) -> Any:
        return namespace(self.mean[0])

    def device(self) -> Any:
        from array_api_compat import device

        return device(self.mean[0])

    def check_finite(self, what: str) -> None:
        xp = self.namespace()
        total = sum(xp.sum(mu) for mu in self.mean) + sum(xp.linalg.trace(S) for S in self.S)
        if not bool(xp.isfinite(total)):
            raise ValueError(
                f"{what}: a batch given to update() held NaN or infinity, so the accumulated "
                "statistics are not finite; remove or impute those values and start again "
                "(reset())"
            )


def _fresh_float64(a: Array, xp: Any) -> Array:
    """``a`` as a float64 array that nothing else references (a new product or its upcast)."""
    return xp.astype(a, xp.float64) if a.dtype != xp.float64 else a


def _copy_finalised(m: _Moments) -> _Moments:
    """``m`` with its residual removed, without touching ``m``'s arrays."""
    if m.residual is None:
        return m
    out = _Moments(m.widths, m.pairs, m.debiased)
    for name in ("mean", "S", "C", "R_self", "W_self", "R_pair", "W_uv", "W_vu"):
        setattr(out, name, list(getattr(m, name)))
    out.n = m.n
    xp = m.namespace()
    out.S = [xp.asarray(S, copy=True) for S in m.S]
    out.C = [xp.asarray(C, copy=True) for C in m.C]
    out.residual = m.residual
    return out.finalise()


def _as_state_array(value: Any) -> Array:
    if is_torch(value):
        return value.double()
    return np.asarray(value, dtype=np.float64)


def _check_device(state: _Moments, batch: _Moments, what: str) -> None:
    if is_torch(state.mean[0]) != is_torch(batch.mean[0]):
        raise TypeError(
            f"{what}: this accumulator holds {_library(state)} statistics but got "
            f"{_library(batch)} data; feed one kind (NumPy arrays or torch tensors) throughout"
        )
    if is_torch(state.mean[0]) and state.device() != batch.device():
        raise ValueError(
            f"{what}: the accumulator lives on {state.device()} but the data is on "
            f"{batch.device()}; move the data (or load the state_dict on that device)"
        )


def _library(m: _Moments) -> str:
    return "torch" if is_torch(m.mean[0]) else "NumPy"


def _detach(a: Any) -> Any:
    return a.detach() if is_torch(a) else a


def _hsic_terms(m: _Moments, n: int) -> tuple[list[Array], list[Array]]:
    """Feature-form (debiased: ∝ HSIC₁) self terms per unit and cross terms per pair."""
    xp = m.namespace()
    selfs = [frobenius_sq(S, xp) for S in m.S]
    cross = [frobenius_sq(C, xp) for C in m.C]
    if m.debiased:
        s = [xp.linalg.trace(S) for S in m.S]
        selfs = [
            debiased_feature_hsic(h, R, si, si, n)
            for h, R, si in zip(selfs, m.R_self, s, strict=True)
        ]
        cross = [
            debiased_feature_hsic(h, R, s[u], s[v], n)
            for h, R, (u, v) in zip(cross, m.R_pair, m.pairs, strict=True)
        ]
    return selfs, cross


def _check_count(n: int, debiased: bool, what: str) -> None:
    need = 4 if debiased else 2
    if n < need:
        raise ValueError(
            f"{what} has seen {n} example(s); {'debiased ' if debiased else ''}CKA needs at least "
            f"{need}. Call update() with more data first."
        )


class StreamingCKA:
    r"""Exact linear CKA of two representations, accumulated over batches.

    ``compute()`` equals :func:`~cka_sim.linear_cka` (``debiased`` as given) of all the examples
    passed to :meth:`update`, whatever the batch sizes (1 and 2 included), to about 1e-12 for
    float64 data and 1e-7 for float32 data with large feature means. No example is stored: the
    state is the count, the means and the centred co-moments :math:`S_{xx}` (p1 x p1),
    :math:`S_{yy}` (p2 x p2), :math:`S_{yx}` (p2 x p1), in float64, merged with the pairwise
    update of Chan, Golub & LeVeque; debiased adds :math:`O(p_1 + p_2)` for the fourth-order terms
    (derivation in the :mod:`cka_sim.streaming` module docstring). Memory
    :math:`8(p_1^2 + p_2^2 + p_1 p_2)` bytes, independent of the number of examples.

    Parameters
    ----------
    debiased : bool, default False
        Use the unbiased HSIC₁ (Song et al., 2012) as :func:`linear_cka` does (needs 4 examples).

    Notes
    -----
    torch tensors stay on their device (CPU or CUDA): the products run there in the input dtype,
    the statistics accumulate there in float64, and nothing is copied to the host per batch (the
    NaN check of torch input happens once, in :meth:`compute`). Inputs are detached: the result
    is not differentiable (use :func:`linear_cka` for gradients).

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import StreamingCKA, linear_cka
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.standard_normal((1000, 20)), rng.standard_normal((1000, 30))
    >>> acc = StreamingCKA()
    >>> for start in range(0, 1000, 128):
    ...     _ = acc.update(x[start:start + 128], y[start:start + 128])
    >>> bool(abs(acc.compute() - linear_cka(x, y)) < 1e-12)
    True
    """

    _PAIRS: ClassVar[list[tuple[int, int]]] = [(0, 1)]

    def __init__(self, debiased: bool = False) -> None:
        self.debiased = bool(debiased)
        self._m: _Moments | None = None

    @property
    def n_examples(self) -> int:
        """Number of examples seen."""
        return 0 if self._m is None else self._m.n

    def update(self, x_batch: Any, y_batch: Any) -> StreamingCKA:
        """Add a batch: ``x_batch`` (m, p1, ...) and ``y_batch`` (m, p2, ...) of the same examples."""
        x_batch, y_batch = _detach(x_batch), _detach(y_batch)
        torch_input = is_torch(x_batch)
        xm, ym, xp = check_pair(
            x_batch, y_batch, names=("x_batch", "y_batch"), min_rows=1, check_values=not torch_input
        )
        if self._m is not None and [xm.shape[1], ym.shape[1]] != self._m.widths:
            raise ValueError(
                f"x_batch and y_batch have {xm.shape[1]} and {ym.shape[1]} features, but earlier "
                f"batches had {self._m.widths[0]} and {self._m.widths[1]}"
            )
        batch = _Moments.from_batch([xm, ym], self._PAIRS, self.debiased, xp)
        if self._m is None:
            self._m = batch.finalise()
        else:
            _check_device(self._m, batch, "StreamingCKA.update")
            self._m = self._m.combined(batch, xp, consume=True)
        return self

    def compute(self) -> Any:
        """Linear CKA of all data seen: a Python float (NumPy input) or a 0-dim float64 tensor."""
        m = self._m
        _check_count(self.n_examples, self.debiased, "StreamingCKA")
        assert m is not None
        m.check_finite("StreamingCKA.compute")
        xp = m.namespace()
        for name, S in zip(("x", "y"), m.S, strict=True):
            if float(xp.linalg.trace(S)) == 0.0:
                warn_undefined(name, "all of its features are constant (zero self-HSIC)", 3)
                return as_output(xp.sum(S) * float("nan"))
        (h_xx, h_yy), (h_xy,) = _hsic_terms(m, m.n)
        return as_output(_ratio(h_xy, h_xx, h_yy, m.n, ("x", "y"), self.debiased))

    def reset(self) -> StreamingCKA:
        """Forget all data seen."""
        self._m = None
        return self

    def merge(self, other: StreamingCKA) -> StreamingCKA:
        """Add the statistics of ``other`` (disjoint data) to this accumulator; returns ``self``."""
        _check_mergeable(self, other)
        self._m = _merge_moments(self._m, other._m, "StreamingCKA.merge")
        return self

    def all_reduce(self, group: Any = None) -> StreamingCKA:
        """Combine the accumulators of every process of a ``torch.distributed`` group, in place.

        Afterwards every process holds the statistics of the union of all processes' data (see
        :func:`cka_sim.distributed.all_reduce_moments`). Call it on every process of ``group``.
        """
        from .distributed import all_reduce_moments

        self._m = all_reduce_moments(self._m, self._signature(), group)
        return self

    def _signature(self) -> dict[str, Any] | None:
        if self._m is None:
            return {"debiased": self.debiased, "pairs": self._PAIRS, "widths": None}
        return {"debiased": self.debiased, "pairs": self._PAIRS, "widths": self._m.widths}

    def state_dict(self) -> dict[str, Any]:
        """The state as a flat dict of arrays and plain values (``torch.save``/``np.savez``-able)."""
        d: dict[str, Any] = {
            "kind": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "debiased": self.debiased,
        }
        if self._m is not None:
            d.update(self._m.to_dict())
        return d

    def load_state_dict(self, state: dict[str, Any]) -> StreamingCKA:
        """Restore a state from :meth:`state_dict` (arrays may be NumPy or torch)."""
        _check_state_header(state, type(self).__name__, self.debiased)
        self._m = _Moments.from_dict(state) if "n" in state else None
        return self

    def __repr__(self) -> str:
        return f"StreamingCKA(debiased={self.debiased}, n_examples={self.n_examples})"


def _check_mergeable(a: Any, b: Any) -> None:
    if type(a) is not type(b):
        raise TypeError(f"cannot merge a {type(b).__name__} into a {type(a).__name__}")
    if a.debiased != b.debiased:
        raise ValueError(
            f"cannot merge accumulators with debiased={a.debiased} and debiased={b.debiased}"
        )


def _merge_moments(a: _Moments | None, b: _Moments | None, what: str) -> _Moments | None:
    if b is None:
        return a
    if a is None:
        return b
    if a.widths != b.widths or a.pairs != b.pairs:
        raise ValueError(f"{what}: the accumulators saw data of different shapes or layers")
    _check_device(a, b, what)
    return a.combined(b, a.namespace())


def _check_state_header(state: dict[str, Any], kind: str, debiased: bool) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"this state_dict is from {state.get('kind')!r}, not {kind}")
    if int(state.get("format_version", -1)) != _FORMAT_VERSION:
        raise ValueError(f"unsupported {kind} state format {state.get('format_version')!r}")
    if bool(state["debiased"]) != debiased:
        raise ValueError(
            f"the state_dict has debiased={bool(state['debiased'])} but this {kind} has "
            f"debiased={debiased}"
        )


class StreamingCKAMatrix:
    r"""Exact linear CKA between every layer of one model and every layer of another, over batches.

    The multi-layer form of :class:`StreamingCKA`: per layer the mean and the centred co-moment
    (p_i x p_i), per pair of layers the centred cross co-moment (q_j x p_i), all float64 and merged
    with the Chan–Golub–LeVeque update; ``compute()`` equals :func:`cka_matrix` of all the data.
    Pass the same mapping object as both arguments of :meth:`update` to compare a model's layers
    with each other: each self-term is then accumulated once and only the pairs i < j are kept.

    Memory grows with the square of the total width (see :meth:`estimate_memory`): for wide
    layers (convolutional feature maps) use :class:`~cka_sim.MinibatchCKA`, whose memory depends
    on the batch size only.

    Parameters
    ----------
    debiased : bool, default False
        Use the unbiased HSIC₁ (needs 4 examples).
    memory_budget_bytes : int, optional
        Refuse (``MemoryError``) at the first batch when :meth:`estimate_memory` exceeds it.
        ``None``: no limit.
    """

    def __init__(self, debiased: bool = False, memory_budget_bytes: int | None = None) -> None:
        self.debiased = bool(debiased)
        self.memory_budget_bytes = memory_budget_bytes
        self._m: _Moments | None = None
        self._names_a: list[str] = []
        self._names_b: list[str] = []
        self._shared = False

    @property
    def n_examples(self) -> int:
        """Number of examples seen."""
        return 0 if self._m is None else self._m.n

    @staticmethod
    def estimate_memory(
        widths_a: Sequence[int],
        widths_b: Sequence[int] | None = None,
        *,
        debiased: bool = False,
        shared: bool = False,
    ) -> int:
        """Peak bytes of the accumulator: its float64 state plus one batch's statistics.

        ``widths_a``/``widths_b``: features per layer (flattened). ``shared=True`` (or
        ``widths_b=None``) for one model compared with itself.
        """
        wa = [int(w) for w in widths_a]
        if shared or widths_b is None:
            total = sum(wa)
            floats = sum(w * w for w in wa) + sum(
                wa[i] * wa[j] for i in range(len(wa)) for j in range(i + 1, len(wa))
            )
            floats += total
            if debiased:
                floats += 2 * total + len(wa) * (len(wa) + 1) // 2 + (len(wa) - 1) * total
        else:
            wb = [int(w) for w in widths_b]
            total_a, total_b = sum(wa), sum(wb)
            floats = sum(w * w for w in wa) + sum(w * w for w in wb) + total_a * total_b
            floats += total_a + total_b
            if debiased:
                floats += 2 * (total_a + total_b) + len(wa) + len(wb) + len(wa) * len(wb)
                floats += len(wa) * total_b + len(wb) * total_a
        return 2 * 8 * floats

    def update(self, acts_a: Any, acts_b: Any) -> StreamingCKAMatrix:
        """Add one batch: two mappings {layer: (m, ...) activations} (or sequences) of the same examples."""
        shared = acts_a is acts_b
        layers_a = as_layers(acts_a, "acts_a")
        layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
        if self._m is not None:
            check_names(self._names_a, [name for name, _ in layers_a], "acts_a")
            check_names(self._names_b, [name for name, _ in layers_b], "acts_b")
            if shared != self._shared:
                raise ValueError(
                    "the first batch passed "
                    + ("one mapping as both" if self._shared else "two different mappings as")
                    + " acts_a and acts_b; pass them the same way in every batch"
                )
        units = []
        for side, layers in (("acts_a", layers_a), ("acts_b", layers_b)):
            if side == "acts_b" and shared:
                break
            for name, value in layers:
                value = _detach(value)
                units.append(
                    as_matrix(
                        value, f"{side}[{name!r}]", min_rows=1, check_values=not is_torch(value)
                    )
                )
        _check_units(units)
        xp = namespace(*units)
        widths = [int(u.shape[1]) for u in units]
        la = len(layers_a)
        if shared:
            pairs = [(i, j) for i in range(la) for j in range(i + 1, la)]
        else:
            pairs = [(i, la + j) for i in range(la) for j in range(len(layers_b))]
        if self._m is None:
            need = self.estimate_memory(
                widths[:la], None if shared else widths[la:], debiased=self.debiased, shared=shared
            )
            if self.memory_budget_bytes is not None and need > self.memory_budget_bytes:
                raise MemoryError(
                    f"StreamingCKAMatrix needs about {need:,} bytes ({need / 2**30:.2f} GiB) for "
                    f"layers of widths {widths[:la]} x {widths[la:] or widths[:la]}, over the budget of "
                    f"{self.memory_budget_bytes:,} bytes. Compare fewer or narrower layers, or use "
                    "MinibatchCKA, whose memory depends only on the batch size."
                )
        elif widths != self._m.widths:
            raise ValueError(f"layer widths {widths} differ from earlier batches' {self._m.widths}")
        batch = _Moments.from_batch(units, pairs, self.debiased, xp)
        if self._m is None:
            self._m = batch.finalise()
            self._names_a = [name for name, _ in layers_a]
            self._names_b = [name for name, _ in layers_b]
            self._shared = shared
        else:
            _check_device(self._m, batch, "StreamingCKAMatrix.update")
            self._m = self._m.combined(batch, xp, consume=True)
        return self

    def compute(self) -> CKAResult:
        """The La x Lb :class:`~cka_sim.CKAResult` (rows: ``acts_a`` order, columns: ``acts_b``)."""
        m = self._m
        _check_count(self.n_examples, self.debiased, "StreamingCKAMatrix")
        assert m is not None
        m.check_finite("StreamingCKAMatrix.compute")
        selfs, cross = _hsic_terms(m, m.n)
        selfs_np = to_numpy(m.namespace().stack(selfs))
        cross_np = to_numpy(m.namespace().stack(cross)) if cross else np.zeros(0)
        la, lb = len(self._names_a), len(self._names_b)
        if self._shared:
            matrix = np.diag(selfs_np)
            for k, (i, j) in enumerate(m.pairs):
                matrix[i, j] = matrix[j, i] = cross_np[k]
            self_a = self_b = selfs_np
        else:
            matrix = cross_np.reshape(la, lb)
            self_a, self_b = selfs_np[:la], selfs_np[la:]
        values = ratio_matrix(
            matrix, self_a, self_b, self._names_a, self._names_b, debiased=self.debiased, n=m.n
        )
        return CKAResult(
            values=values,
            row_names=self._names_a,
            col_names=self._names_b,
            estimator="linear-debiased" if self.debiased else "linear",
            n_examples=m.n,
            metadata=default_metadata(
                accumulator="StreamingCKAMatrix", library=_library(m), device=str(m.device())
            ),
        )

    def reset(self) -> StreamingCKAMatrix:
        """Forget all data seen (and the layer names)."""
        self._m = None
        self._names_a, self._names_b, self._shared = [], [], False
        return self

    def merge(self, other: StreamingCKAMatrix) -> StreamingCKAMatrix:
        """Add the statistics of ``other`` (disjoint data, same layers); returns ``self``."""
        _check_mergeable(self, other)
        if self._m is not None and other._m is not None:
            check_names(self._names_a, other._names_a, "the other accumulator's acts_a")
            check_names(self._names_b, other._names_b, "the other accumulator's acts_b")
        if self._m is None:
            self._names_a, self._names_b, self._shared = (
                list(other._names_a),
                list(other._names_b),
                other._shared,
            )
        self._m = _merge_moments(self._m, other._m, "StreamingCKAMatrix.merge")
        return self

    def all_reduce(self, group: Any = None) -> StreamingCKAMatrix:
        """Combine the accumulators of every process of a ``torch.distributed`` group, in place."""
        from .distributed import all_reduce_moments, gather_names

        self._names_a, self._names_b, self._shared = gather_names(
            (self._names_a, self._names_b, self._shared) if self._m is not None else None, group
        )
        signature = {
            "debiased": self.debiased,
            "pairs": None if self._m is None else self._m.pairs,
            "widths": None if self._m is None else self._m.widths,
        }
        self._m = all_reduce_moments(self._m, signature, group)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The state as a flat dict of arrays and plain values."""
        d: dict[str, Any] = {
            "kind": type(self).__name__,
            "format_version": _FORMAT_VERSION,
            "debiased": self.debiased,
            "names_a": list(self._names_a),
            "names_b": list(self._names_b),
            "shared": self._shared,
        }
        if self._m is not None:
            d.update(self._m.to_dict())
        return d

    def load_state_dict(self, state: dict[str, Any]) -> StreamingCKAMatrix:
        """Restore a state from :meth:`state_dict`."""
        _check_state_header(state, type(self).__name__, self.debiased)
        self._names_a = [str(s) for s in state["names_a"]]
        self._names_b = [str(s) for s in state["names_b"]]
        self._shared = bool(state["shared"])
        self._m = _Moments.from_dict(state) if "n" in state else None
        return self

    def __repr__(self) -> str:
        return (
            f"StreamingCKAMatrix({len(self._names_a)} x {len(self._names_b)} layers, "
            f"debiased={self.debiased}, n_examples={self.n_examples})"
        )


def _check_units(units: list[Array]) -> None:
    rows = {int(u.shape[0]) for u in units}
    if len(rows) != 1:
        raise ValueError(
            f"all layers of one batch must have the same number of rows (examples); got {sorted(rows)}"
        )
    kinds = {is_torch(u) for u in units}
    if len(kinds) != 1:
        raise TypeError("mix of NumPy arrays and torch tensors in one batch; use one kind")
    if is_torch(units[0]):
        devices = {str(u.device) for u in units}
        if len(devices) != 1:
            raise ValueError(f"the layers of one batch are on several devices: {sorted(devices)}")
