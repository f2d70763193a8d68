r"""Exact full-data linear CKA over batches: :class:`~cka_sim.StreamingCKA`, :class:`~cka_sim.StreamingCKAMatrix`.

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
to the global mean before one ``all_reduce`` of sums (:meth:`StreamingCKA.all_reduce`). These
statistics and their shifts are declared once, in :data:`cka_sim._core.moments.FIELDS`.

Precision: float64 batches give :func:`linear_cka` to about 1e-12; float32 batches with feature
means of 1000 to about 1e-7.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._core.backend import Array, namespace, present
from .._core.check import (
    as_matrix,
    check_accumulator_layer,
    check_batch_layers,
    check_confounder,
    check_pair,
    check_same_place,
)
from .._core.measures import (
    Measure,
    check_confounder_given,
    check_measure,
    nuclear_norm,
)
from .._core.moments import Moments
from .._core.prepare import Centred, PreparedGram, centre
from .._core.ratio import CONSTANT, ratio, warn_undefined
from ..deconfounded import (
    DCKA_PAIRS,
    dcka_pair,
)
from .base import Accumulator, CentredMoments
from .rowbuffer import RowBuffer

_LABEL = {"cka": "CKA", "dcka": "deconfounded CKA", "procrustes": "Procrustes"}


def _check_count(n: int, debiased: bool, what: str) -> None:
    need = 4 if debiased else 2
    if n < need:
        raise ValueError(
            f"{what} has seen {n} example(s); {'debiased ' if debiased else ''}CKA needs at least "
            f"{need}. Call update() with more data first."
        )


def _confounder_matrix(like: Any, confounder: Any, rows: int) -> Array:
    """One batch of the confounder, validated against the batch's rows and library."""
    if hasattr(confounder, "detach"):
        confounder = confounder.detach()
    zm = check_confounder(like, confounder, min_rows=1)
    if isinstance(zm, np.ndarray):  # scanned for NaN and infinity, as x_batch and y_batch are
        zm = as_matrix(zm, "confounder", min_rows=1)
    if int(zm.shape[0]) != rows:
        raise ValueError(
            f"confounder must have one row per example of the batch; got {zm.shape[0]} rows and "
            f"{rows}"
        )
    return check_accumulator_layer(zm, namespace(zm), "confounder")


def _checked(acc: Any, what: str) -> Moments:
    """The state, after checking that it holds enough finite data to compute CKA from."""
    acc._flush()
    _check_count(acc.n_examples, acc.debiased, what)
    assert acc._m is not None
    acc._m.check_finite(f"{what}.compute")
    return acc._m


def _pair_units(x_batch: Any, y_batch: Any) -> list[Array | Centred]:
    """The two validated units of a :meth:`StreamingCKA.update` batch."""
    if isinstance(x_batch, (Centred, PreparedGram)) or isinstance(y_batch, (Centred, PreparedGram)):
        return check_batch_layers([("x", x_batch), ("y", y_batch)], "batch", exact=True)[0]
    x_batch, y_batch = (a.detach() if hasattr(a, "detach") else a for a in (x_batch, y_batch))
    names, on_numpy = ("x_batch", "y_batch"), isinstance(x_batch, np.ndarray)
    xm, ym, xp = check_pair(x_batch, y_batch, names=names, min_rows=1, check_values=on_numpy)
    return [check_accumulator_layer(xm, xp, names[0]), check_accumulator_layer(ym, xp, names[1])]


class _ExactAccumulator(Accumulator):
    """What the exact accumulators share: batches gathered into blocks, whose centred moments
    (``_m``) are absorbed into the state.

    ``update`` validates a batch (so that bad input is refused by the call that passed it) and
    hands its units to :meth:`_feed`; batches of up to half a block wait in a
    :class:`~cka_sim.accumulators.rowbuffer.RowBuffer` until a block is full or the state is read
    (:meth:`_flush`, called by ``compute``, ``merge``, ``state_dict`` and ``all_reduce``).
    Subclasses define :meth:`_pairs`, the unit pairs of the layout.
    """

    _m: Moments | None

    def reset(self) -> Any:
        """Forget all data seen (and the layer names).

        Returns
        -------
        object
            The accumulator itself, so that calls chain.
        """
        super().reset()
        self._pending = RowBuffer()
        return self

    @property
    def n_examples(self) -> int:
        """Number of examples seen."""
        return (0 if self._m is None else self._m.n) + self._pending.rows

    def _pairs(self) -> list[tuple[int, int]]:
        raise NotImplementedError

    def _known_widths(self) -> list[int] | None:
        """The unit widths of the data seen so far (``None`` before any)."""
        return self._m.widths if self._m is not None else self._pending.widths

    def _feed(self, units: list[Array | Centred]) -> None:
        held = self._m.mean[0] if self._m is not None else self._pending.held
        if held is not None:
            first = units[0]
            data = first.x if isinstance(first, Centred) else first
            check_same_place(held, data, f"{type(self).__name__}.update")
        if any(isinstance(u, Centred) for u in units):  # prepared by the caller: no copy
            self._flush()
            self._absorb(units)
            return
        for block in self._pending.blocks(units):
            self._absorb(block)

    def _flush(self) -> None:
        for block in self._pending.drain():
            self._absorb(block)

    def _absorb(self, units: list[Array | Centred]) -> None:
        """Form one block's statistics and add them to the state."""
        xp = namespace(*[u.x if isinstance(u, Centred) else u for u in units])
        prepared = [u if isinstance(u, Centred) else centre(u, xp) for u in units]
        batch = Moments.of_batch(prepared, self._pairs(), self.debiased, xp)
        self._m = CentredMoments.absorb(self._m, batch, f"{type(self).__name__}.update")


class StreamingCKA(_ExactAccumulator):
    r"""Exact linear CKA of two representations, accumulated over batches.

    ``compute()`` equals :func:`~cka_sim.linear_cka` (``debiased`` as given) of all the examples
    passed to :meth:`update`, whatever the batch sizes (1 and 2 included), to about 1e-12 for
    float64 data and 1e-7 for float32 data with large feature means. No example is stored: the
    state is the count, the means and the centred co-moments :math:`S_{xx}` (p1 x p1),
    :math:`S_{yy}` (p2 x p2), :math:`S_{yx}` (p2 x p1), in float64, merged with the pairwise
    update of Chan, Golub & LeVeque; debiased adds :math:`O(p_1 + p_2)` for the fourth-order terms
    (derivation in the :mod:`cka_sim.accumulators.streaming` module docstring). Memory
    :math:`8(p_1^2 + p_2^2 + p_1 p_2)` bytes, independent of the number of examples.

    Parameters
    ----------
    debiased : bool, default False
        Use the unbiased HSIC₁ (Song et al., 2012) as :func:`linear_cka` does (needs 4 examples).
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        What :meth:`compute` returns: linear CKA; deconfounded CKA (Cui et al. 2022), for which
        every :meth:`update` passes the ``confounder`` batch and the state also holds the
        confounder's moments and its cross moments with ``x`` and ``y`` (q x q, q x p1, q x p2);
        or the orthogonal Procrustes similarity (Ding et al. 2021) from the same state as CKA
        (no debiased form).

    Raises
    ------
    ValueError
        If ``measure`` is not one of the three, or is ``"procrustes"`` with ``debiased=True``.
        :meth:`update` raises it for a batch whose widths differ from the earlier ones, a
        missing or unexpected ``confounder``, or invalid values; :meth:`compute` before enough
        examples (2, or 4 when debiased) or when the statistics are not finite.

    Notes
    -----
    torch tensors stay on their device (CPU or CUDA): the products run there in the input dtype,
    the statistics accumulate there in float64, and nothing is copied to the host per batch (the
    NaN check of torch input happens once, in :meth:`compute`). Inputs are detached: the result
    is not differentiable (use :func:`linear_cka` for gradients).

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Chan, Golub & LeVeque (1979), *Updating formulae and a pairwise algorithm
    for computing sample variances*, Stanford technical report STAN-CS-79-773. Song, Smola,
    Gretton, Bedo & Borgwardt (2012), *Feature Selection via Dependence Maximization*, JMLR 13.

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

    _STATE: ClassVar = {"_m": CentredMoments()}
    _SETTINGS: ClassVar[tuple[str, ...]] = ("debiased", "measure")

    def __init__(self, debiased: bool = False, *, measure: Measure = "cka") -> None:
        self.debiased = bool(debiased)
        self.measure = check_measure(measure, debiased=self.debiased)
        self.reset()

    def _pairs(self) -> list[tuple[int, int]]:
        return DCKA_PAIRS if self.measure == "dcka" else [(0, 1)]

    def update(self, x_batch: Any, y_batch: Any, confounder: Any = None) -> StreamingCKA:
        """Add a batch: ``x_batch`` (m, p1, ...) and ``y_batch`` (m, p2, ...) of the same examples.

        Parameters
        ----------
        x_batch : array_like or torch.Tensor, shape (m, p1, ...)
            Activations of the first representation, or the result of :meth:`prepare`.
        y_batch : array_like or torch.Tensor, shape (m, p2, ...)
            Activations of the second representation for the same examples, likewise.
        confounder : array_like or torch.Tensor, shape (m, q, ...), optional
            The confounder of the same examples, which ``measure="dcka"`` needs in every batch
            (and the other measures refuse).

        Returns
        -------
        StreamingCKA
            The accumulator itself, so that calls chain.

        Raises
        ------
        ValueError
            If the batches differ in rows, the widths differ from earlier batches', a value is
            not finite (NumPy input), or ``confounder`` is missing or unexpected.
        """
        check_confounder_given(self.measure, confounder, "StreamingCKA.update")
        units = _pair_units(x_batch, y_batch)
        if confounder is not None:
            first = units[0]
            like = first.x if isinstance(first, Centred) else first
            units.append(_confounder_matrix(like, confounder, int(first.shape[0])))
        widths = [int(u.shape[1]) for u in units]
        known = self._known_widths()
        if known is not None and widths != known:
            raise ValueError(
                f"the batch has {widths} features (x_batch, y_batch[, confounder]), but earlier "
                f"batches had {known}"
            )
        self._feed(units)
        return self

    def compute(self) -> Any:
        """Return the measure on all data seen.

        Linear CKA, deconfounded CKA or the Procrustes similarity (``measure``), equal to
        :func:`~cka_sim.linear_cka`, :func:`~cka_sim.deconfounded_cka` or
        :func:`~cka_sim.procrustes_similarity` of all the data.

        Returns
        -------
        float or torch.Tensor
            A Python float for NumPy input, a 0-dim float64 tensor on the input's device for
            torch. NaN with a :class:`~cka_sim.CKAUndefinedWarning` when ``x`` or ``y`` is
            constant, or a debiased self-HSIC is not positive.

        Raises
        ------
        ValueError
            With fewer than 2 examples (4 when debiased), or when the statistics are not finite
            (NaN or infinite input).
        """
        m = _checked(self, "StreamingCKA")
        xp = m.namespace()
        traces = [xp.linalg.trace(S) for S in m.S[:2]]
        for name, trace in zip(("x", "y"), traces, strict=True):
            if float(trace) == 0.0:
                warn_undefined(name, CONSTANT, 3, measure=_LABEL[self.measure])
                return present(trace * float("nan"))
        if self.measure == "procrustes":
            return present(nuclear_norm(m.C[0], xp) / (traces[0] * traces[1]) ** 0.5)
        if self.measure == "dcka":
            return present(dcka_pair(m, m.n, self.debiased, ("x", "y"), "the confounder"))
        (h_xx, h_yy), (h_xy,) = m.hsic_terms()
        bounds = tuple(m.self_bounds()[:2])
        return present(ratio(h_xy, h_xx, h_yy, n=m.n, debiased=self.debiased, bounds=bounds))

    def __repr__(self) -> str:
        return (
            f"StreamingCKA(debiased={self.debiased}, measure={self.measure!r}, "
            f"n_examples={self.n_examples})"
        )
