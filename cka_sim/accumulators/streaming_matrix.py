"""Exact linear CKA of every layer pair of two models over batches: :class:`StreamingCKAMatrix`.

The multi-layer form of :class:`~cka_sim.StreamingCKA` (the statistics and their merge are
derived in :mod:`cka_sim.accumulators.streaming`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .._core.backend import Array, to_numpy
from .._core.check import as_layers, check_batch_layers, check_names, check_same_batch
from .._core.measures import (
    Measure,
    check_confounder_given,
    check_measure,
    estimator_name,
    nuclear_norm,
)
from .._core.moments import Moments
from .._core.prepare import Centred
from .._core.ratio import layer_matrix, ratio_matrix, side_bounds
from ..deconfounded import RESIDUAL_SHARE, residuals, warn_no_residual
from ..result import CKAResult, default_metadata
from .base import Agree, CentredMoments
from .rowbuffer import block_bytes
from .streaming import _checked, _confounder_matrix, _ExactAccumulator


class StreamingCKAMatrix(_ExactAccumulator):
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
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        As for :class:`StreamingCKA`: ``"dcka"`` needs the ``confounder`` batch in every
        :meth:`update` (one confounder for all layers) and holds its moments with every layer.

    Raises
    ------
    ValueError
        If ``measure`` is not one of the three, or is ``"procrustes"`` with ``debiased=True``.
        :meth:`update` raises it for a batch whose widths differ from the earlier ones, a
        missing or unexpected ``confounder``, or invalid values; :meth:`compute` before enough
        examples (2, or 4 when debiased) or when the statistics are not finite.
    MemoryError
        From :meth:`update`, when the state would exceed ``memory_budget_bytes``.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Chan, Golub & LeVeque (1979), *Updating formulae and a pairwise algorithm
    for computing sample variances*, Stanford technical report STAN-CS-79-773. Song, Smola,
    Gretton, Bedo & Borgwardt (2012), *Feature Selection via Dependence Maximization*, JMLR 13.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import StreamingCKAMatrix, cka_matrix
    >>> rng = np.random.default_rng(0)
    >>> a = {"conv": rng.standard_normal((512, 12)), "fc": rng.standard_normal((512, 4))}
    >>> b = {"fc": a["fc"] @ rng.standard_normal((4, 6))}
    >>> acc = StreamingCKAMatrix()
    >>> for start in range(0, 512, 100):
    ...     _ = acc.update({k: v[start:start + 100] for k, v in a.items()},
    ...                    {k: v[start:start + 100] for k, v in b.items()})
    >>> result = acc.compute()
    >>> result.row_names, bool(np.allclose(result.values, cka_matrix(a, b).values))
    (['conv', 'fc'], True)
    """

    _STATE: ClassVar = {
        "_names_a": Agree("acts_a"),
        "_names_b": Agree("acts_b"),
        "_shared": Agree("the way acts_a and acts_b were passed (shared)", bool),
        "_m": CentredMoments(),
    }

    _SETTINGS: ClassVar[tuple[str, ...]] = ("debiased", "measure")

    def __init__(
        self,
        debiased: bool = False,
        memory_budget_bytes: int | None = None,
        *,
        measure: Measure = "cka",
    ) -> None:
        self.debiased = bool(debiased)
        self.measure = check_measure(measure, debiased=self.debiased)
        self.memory_budget_bytes = memory_budget_bytes
        self.reset()

    def _pairs(self) -> list[tuple[int, int]]:
        la, lb = len(self._names_a), len(self._names_b)
        if self._shared:
            pairs = [(i, j) for i in range(la) for j in range(i + 1, la)]
        else:
            pairs = [(i, la + j) for i in range(la) for j in range(lb)]
        if self.measure == "dcka":  # the confounder is the last unit, paired with every layer
            layers = la if self._shared else la + lb
            pairs += [(u, layers) for u in range(layers)]
        return pairs

    @staticmethod
    def estimate_memory(
        widths_a: Sequence[int],
        widths_b: Sequence[int] | None = None,
        *,
        debiased: bool = False,
        shared: bool = False,
        confounder_width: int = 0,
    ) -> int:
        """Return the peak bytes of the accumulator: its float64 state plus one batch's.

        Also counted: the block in which batches of up to half its rows wait to be processed
        together (:mod:`cka_sim.accumulators.rowbuffer`; at most 4096 rows and 64 MiB, here at 8 bytes per
        value).

        Parameters
        ----------
        widths_a : sequence of int
            Features per layer of the first model (flattened).
        widths_b : sequence of int, optional
            Features per layer of the second model; None for one model compared with itself.
        debiased : bool, default False
            Count the debiased estimator's extra terms.
        shared : bool, default False
            One model compared with itself (as when ``widths_b`` is None).
        confounder_width : int, default 0
            The confounder's features (``measure="dcka"``).

        Returns
        -------
        int
            Bytes.
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
        q = int(confounder_width)
        if q:
            layers = wa if shared or widths_b is None else wa + [int(w) for w in widths_b]
            floats += q * q + q * sum(layers) + q
            if debiased:
                floats += 3 * q + 2 * len(layers) + sum(layers) + len(layers) * q
        units = wa if shared or widths_b is None else wa + [int(w) for w in widths_b]
        return 2 * 8 * floats + block_bytes([*units, q] if q else units)

    def update(self, acts_a: Any, acts_b: Any, confounder: Any = None) -> StreamingCKAMatrix:
        """Add one batch: two mappings {layer: (m, ...) activations} of the same examples.

        Parameters
        ----------
        acts_a : mapping of str to array_like or torch.Tensor
            The first model's layers (rows of the result, in this order); a sequence is named
            ``"0"``, ``"1"``, ... Pass the same object as ``acts_b`` to compare a model with
            itself.
        acts_b : mapping of str to array_like or torch.Tensor
            The second model's layers (columns), for the same examples.
        confounder : array_like or torch.Tensor, shape (m, q, ...), optional
            The confounder of the same examples, needed by ``measure="dcka"`` in every batch.

        Returns
        -------
        StreamingCKAMatrix
            The accumulator itself, so that calls chain.

        Raises
        ------
        ValueError
            If the layers differ from earlier batches' (names, order or widths), the batches
            differ in rows, a value is not finite, or ``confounder`` is missing or unexpected.
        MemoryError
            At the first batch, when the state would exceed ``memory_budget_bytes``.
        """
        check_confounder_given(self.measure, confounder, "StreamingCKAMatrix.update")
        shared = acts_a is acts_b
        layers_a = as_layers(acts_a, "acts_a")
        layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
        first = self.n_examples == 0
        if not first:
            self._check_layout(layers_a, layers_b, shared)
        units = check_batch_layers(layers_a, "acts_a", exact=True)[0]
        if not shared:
            units += check_batch_layers(layers_b, "acts_b", exact=True)[0]
        data = [u.x if isinstance(u, Centred) else u for u in units]
        check_same_batch(data)
        widths = [int(u.shape[1]) for u in units]
        la = len(layers_a)
        if confounder is not None:
            units.append(_confounder_matrix(data[0], confounder, int(data[0].shape[0])))
            widths.append(int(units[-1].shape[1]))
        if first:
            layer_widths = widths[: len(widths) - (confounder is not None)]
            self._check_budget(
                layer_widths[:la],
                None if shared else layer_widths[la:],
                shared,
                widths[-1] if confounder is not None else 0,
            )
            self._names_a = [name for name, _ in layers_a]
            self._names_b = [name for name, _ in layers_b]
            self._shared = shared
        elif widths != self._known_widths():
            raise ValueError(
                f"layer widths {widths} differ from earlier batches' {self._known_widths()}"
            )
        self._feed(units)
        return self

    def _check_layout(self, layers_a: list, layers_b: list, shared: bool) -> None:
        check_names(self._names_a, [name for name, _ in layers_a], "acts_a")
        check_names(self._names_b, [name for name, _ in layers_b], "acts_b")
        if shared != self._shared:
            raise ValueError(
                "the first batch passed "
                + ("one mapping as both" if self._shared else "two different mappings as")
                + " acts_a and acts_b; pass them the same way in every batch"
            )

    def _check_budget(
        self, widths_a: list[int], widths_b: list[int] | None, shared: bool, confounder: int
    ) -> None:
        need = self.estimate_memory(
            widths_a, widths_b, debiased=self.debiased, shared=shared, confounder_width=confounder
        )
        if self.memory_budget_bytes is not None and need > self.memory_budget_bytes:
            raise MemoryError(
                f"StreamingCKAMatrix needs about {need:,} bytes ({need / 2**30:.2f} GiB) for "
                f"layers of widths {widths_a} x {widths_b or widths_a}, over the budget of "
                f"{self.memory_budget_bytes:,} bytes. Compare fewer or narrower layers, or use "
                "MinibatchCKA, whose memory depends only on the batch size."
            )

    def compute(self) -> CKAResult:
        """Return the CKA of every layer pair on all data seen.

        Returns
        -------
        CKAResult
            La x Lb values (rows in ``acts_a`` order, columns in ``acts_b`` order); NaN, with a
            :class:`~cka_sim.CKAUndefinedWarning` naming the layer, where a layer is constant.

        Raises
        ------
        ValueError
            With fewer than 2 examples (4 when debiased), or when the statistics are not finite.
        """
        m = _checked(self, "StreamingCKAMatrix")
        selfs, cross, pairs = self._terms(m)
        selfs_np = to_numpy(m.namespace().stack(selfs))
        cross_np = to_numpy(m.namespace().stack(cross)) if cross else np.zeros(0)
        la, lb = len(self._names_a), len(self._names_b)
        matrix, self_a, self_b = layer_matrix(selfs_np, cross_np, pairs, la, lb, self._shared)
        unit_bounds = m.self_bounds() if self.measure == "cka" else [0.0] * len(selfs)
        values = ratio_matrix(
            matrix,
            self_a,
            self_b,
            self._names_a,
            self._names_b,
            debiased=self.debiased,
            n=m.n,
            bounds=side_bounds(unit_bounds, la, self._shared),
        )
        return CKAResult(
            values=values,
            row_names=self._names_a,
            col_names=self._names_b,
            estimator=estimator_name(self.measure, self.debiased),
            n_examples=m.n,
            metadata=default_metadata(
                accumulator="StreamingCKAMatrix",
                library=m.library(),
                device=str(m.device()),
                measure=self.measure,
            ),
        )

    def _terms(self, m: Moments) -> tuple[list[Array], list[Array], list[tuple[int, int]]]:
        """Per layer and per layer pair (and the pairs): the terms of the measure's ratio.

        CKA: HSIC terms. Procrustes: the squared Frobenius norms (traces of S) and the nuclear
        norms of the cross moments, whose ratio ``cross / sqrt(self ⊗ self)`` is the similarity.
        dCKA: the HSIC terms of the residual Grams; a layer with no residual gets NaN (warned).
        """
        xp = m.namespace()
        if self.measure == "cka":
            return (*m.hsic_terms(), m.pairs)
        if self.measure == "procrustes":
            traces = [xp.linalg.trace(S) for S in m.S]
            return traces, [nuclear_norm(C, xp) for C in m.C], m.pairs
        r = residuals(m, "the confounder")
        names = [f"layer {n!r} of acts_a" for n in self._names_a]
        if not self._shared:
            names += [f"layer {n!r} of acts_b" for n in self._names_b]
        selfs = list(r.selfs)
        for u, share in enumerate(r.shares):
            if share <= RESIDUAL_SHARE:  # NaN (a constant layer) is warned by ratio_matrix
                warn_no_residual(names[u], share, 4)
                selfs[u] = selfs[u] * float("nan")
        return selfs, r.cross, r.pairs

    def __repr__(self) -> str:
        return (
            f"StreamingCKAMatrix({len(self._names_a)} x {len(self._names_b)} layers, "
            f"debiased={self.debiased}, measure={self.measure!r}, n_examples={self.n_examples})"
        )
