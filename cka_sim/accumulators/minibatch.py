r"""Minibatch CKA (Nguyen, Raghu & Kornblith, 2021) for all layer pairs of two models.

This is **a different estimator from full-data CKA**. For minibatches :math:`t = 1..T` of sizes
:math:`m_t` with Grams :math:`K^{(t)}_i` of layer :math:`i`, it averages an HSIC estimate over the
minibatches, in the numerator and in both denominators:

.. math:: \mathrm{CKA}_{\text{mb}}(i, j) =
          \frac{\tfrac1T\sum_t \mathrm{HSIC}(K^{(t)}_i, L^{(t)}_j)}
          {\sqrt{\tfrac1T\sum_t \mathrm{HSIC}(K^{(t)}_i, K^{(t)}_i)\;
                 \tfrac1T\sum_t \mathrm{HSIC}(L^{(t)}_j, L^{(t)}_j)}}

With ``debiased=True`` the HSIC is the unbiased HSIC₁ of Song et al. (2012), each batch with its
own :math:`1/(m_t(m_t-3))` factor (so ragged batches are weighted right). Its numerator and
denominators are then unbiased estimates of the population HSICs, so the estimate converges to the
population CKA as the number of batches grows, for any fixed batch size; it does not equal
:func:`~cka_sim.cka_matrix` of the same data (which compares all n² pairs of examples), and the
biased variant (``debiased=False``) depends on the batch size. Memory is O((La + Lb) m²), whatever
the layer widths: the estimator for wide convolutional layers and long data streams. For the
exact full-data value use :class:`~cka_sim.StreamingCKAMatrix` or :func:`~cka_sim.cka_matrix`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._core.backend import Array, device_of, gram, is_torch, to_numpy
from .._core.check import as_layers, check_batch_layers, check_names
from .._core.prepare import Centred, PreparedGram, translated
from .._core.ratio import ratio_matrix
from .._core.rounding import epsilon, gram_magnitude
from ..kernels import centered
from ..result import CKAResult, default_metadata
from .base import Accumulator, Agree, Count, Sum


class MinibatchCKA(Accumulator):
    r"""Minibatch CKA of Nguyen, Raghu & Kornblith (2021) between the layers of two models.

    Per batch, for every layer: flatten to (m, p), subtract the mean of 32 of its rows in the
    input dtype (HSIC is invariant to translating the features, so this only has to bring them
    near zero for float32 precision; see :func:`cka_sim._core.prepare.translated`), form the (m, m)
    Gram in the input dtype (symmetric: about 5/8 of a GEMM's flops on torch CPU tensors, half on
    NumPy), write it into a float64 (L, m, m) buffer and U-centre it (debiased) or centre it
    (biased) there, in place and exactly; get every cross HSIC with one (La, m²) @ (m², Lb)
    product, no loop over layer pairs and no host synchronisation. Cross and self sums
    accumulate in float64 on the input's device. See :mod:`cka_sim.accumulators.minibatch` for how this estimator differs from full-data
    CKA.

    Parameters
    ----------
    debiased : bool, default True
        HSIC₁ per batch (batches of at least 4 examples); ``False``: the biased HSIC
        :math:`\operatorname{tr}(KHLH)/(m-1)^2` per batch (batches of at least 2).

    Raises
    ------
    ValueError
        From :meth:`update`, for a batch smaller than 4 (2 when biased), layers that differ from
        earlier batches', or invalid values; from :meth:`compute`, before any batch or when a
        batch held NaN or infinity.

    References
    ----------
    Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same Things?
    Uncovering How Neural Network Representations Vary with Width and Depth*, ICLR.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import MinibatchCKA
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((512, 32))
    >>> acc = MinibatchCKA()
    >>> for start in range(0, 512, 64):
    ...     batch = x[start:start + 64]
    ...     _ = acc.update({"x": batch, "x2": 2 * batch}, {"x": batch})
    >>> acc.compute().values.round(6).tolist()
    [[1.0], [1.0]]
    """

    _EXACT: ClassVar[bool] = False
    _STATE: ClassVar = {
        "_names_a": Agree("acts_a"),
        "_names_b": Agree("acts_b"),
        "_cross": Sum(),
        "_self_a": Sum(),
        "_self_b": Sum(),
        "_bound_a": Sum(),
        "_bound_b": Sum(),
        "n_batches": Count(),
        "n_examples": Count(),
    }

    def __init__(self, debiased: bool = True) -> None:
        self.debiased = bool(debiased)
        self.reset()

    def _prepared(self, x: Array, xp: Any) -> PreparedGram:
        """The layer's (m, m) Gram, formed now: it keeps no reference to the caller's array (and
        is smaller than the activations whenever the layer has more features than examples)."""
        data, scale = translated(x, xp)
        return PreparedGram(gram(data, xp), scale)

    def update(self, acts_a: Any, acts_b: Any) -> MinibatchCKA:
        """Add one batch: two mappings {layer: (m, ...) activations} of the same examples.

        Passing the same mapping object twice compares a model's layers with each other and forms
        each Gram once.

        Parameters
        ----------
        acts_a : mapping of str to array_like or torch.Tensor
            The first model's layers (rows of the result, in this order), or their
            :meth:`prepare` results; a sequence is named ``"0"``, ``"1"``, ...
        acts_b : mapping of str to array_like or torch.Tensor
            The second model's layers (columns), for the same examples.

        Returns
        -------
        MinibatchCKA
            The accumulator itself, so that calls chain.

        Raises
        ------
        ValueError
            For a batch smaller than 4 examples (2 when biased), layers whose names or order
            differ from earlier batches', or layers of different row counts.
        """
        batch = self._check_batch(acts_a, acts_b)
        units_a, units_b, names_a, names_b, m, xp = batch
        grams_a, bound_a = self._centred_grams(units_a, m, xp)
        grams_b, bound_b = (
            (grams_a, bound_a) if units_b is units_a else self._centred_grams(units_b, m, xp)
        )
        # one batch's HSIC terms, each with its own 1/(m(m-3)) (or 1/(m-1)²) factor
        scale = 1.0 / (m * (m - 3)) if self.debiased else 1.0 / ((m - 1) ** 2)
        cross = (grams_a @ xp.matrix_transpose(grams_b)) * scale
        self_a = xp.sum(grams_a * grams_a, axis=1) * scale
        self_b = self_a if units_b is units_a else xp.sum(grams_b * grams_b, axis=1) * scale
        terms = (cross, self_a, self_b, bound_a * scale, bound_b * scale)
        for attr, value in zip(
            ("_cross", "_self_a", "_self_b", "_bound_a", "_bound_b"), terms, strict=True
        ):
            setattr(self, attr, self._STATE[attr].merge(getattr(self, attr), value, "update"))
        self._names_a, self._names_b = names_a, names_b
        self.n_batches += 1
        self.n_examples += m
        return self

    def _check_batch(self, acts_a: Any, acts_b: Any) -> tuple[list, list, list, list, int, Any]:
        """The check of :meth:`update`, before any Gram is formed: ``(units_a, units_b, names_a,
        names_b, m, xp)`` (``units_b is units_a`` when one mapping is passed twice)."""
        shared = acts_a is acts_b
        layers_a = as_layers(acts_a, "acts_a")
        layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
        names_a = [name for name, _ in layers_a]
        names_b = [name for name, _ in layers_b]
        if self.n_batches:
            check_names(self._names_a, names_a, "acts_a")
            check_names(self._names_b, names_b, "acts_b")
        units_a, xp = check_batch_layers(layers_a, "acts_a", exact=False)
        m = int(units_a[0].shape[0])
        if m < (4 if self.debiased else 2):
            raise ValueError(
                f"MinibatchCKA got a batch of {m} example(s); "
                + (
                    "the debiased HSIC₁ needs batches of at least 4 (drop the last, short batch, "
                    "e.g. DataLoader(..., drop_last=True), or use debiased=False)"
                    if self.debiased
                    else "the biased HSIC needs batches of at least 2"
                )
            )
        units_b = (
            units_a if shared else check_batch_layers(layers_b, "acts_b", exact=False, rows=m)[0]
        )
        first_a, first_b = _array_of(units_a[0]), _array_of(units_b[0])
        if is_torch(first_a) != is_torch(first_b):
            kinds = ["torch tensors" if is_torch(g) else "NumPy arrays" for g in (first_a, first_b)]
            raise TypeError(
                f"acts_a holds {kinds[0]} but acts_b holds {kinds[1]}; pass one kind for both "
                "models, e.g. torch.as_tensor(array) or tensor.detach().cpu().numpy()"
            )
        if is_torch(first_a) and first_a.device != first_b.device:
            raise ValueError(
                f"acts_a is on {first_a.device} but acts_b is on {first_b.device}; move both "
                "models' activations to one device"
            )
        if self._cross is not None and (
            is_torch(first_a) != is_torch(self._cross)
            or (is_torch(first_a) and first_a.device != self._cross.device)
        ):
            raise ValueError(
                "MinibatchCKA.update: this batch is not on the device (or array library) "
                "of earlier batches"
            )
        return units_a, units_b, names_a, names_b, m, xp

    def _centred_grams(self, units: list[Any], m: int, xp: Any) -> tuple[Array, Array]:
        """(L, m²) float64 stack of the (U-)centred Grams of one model's checked layers, and
        the (L,) rounding bounds of their debiased self terms (:mod:`cka_sim._core.rounding`,
        in the units of ``⟨U(K), U(K)⟩``; zeros when biased)."""
        # One float64 (L, m, m) buffer filled layer by layer (no list of Grams and no stack copy).
        where = device_of(_array_of(units[0]))
        stack = xp.empty((len(units), m, m), dtype=xp.float64, device=where)
        eps = []
        for i, unit in enumerate(units):
            if isinstance(unit, Centred):
                unit = unit.x - unit.centre
            if not isinstance(unit, PreparedGram):
                unit = self._prepared(unit, xp)
            eps.append(epsilon(unit.gram.dtype))
            stack[i, ...] = unit.gram
            if unit.scale is not None:  # back to the batch's units (see prepare.translated)
                stack[i, ...] *= unit.scale
        stack = centered(stack, xp, unbiased=False, overwrite=True)
        bounds = xp.zeros((len(units),), dtype=xp.float64, device=where)
        if self.debiased:  # the bound n ε T of each layer, then the U-centring of M = HKH
            factor = xp.asarray([m * e for e in eps], dtype=xp.float64, device=where)
            bounds = factor * gram_magnitude(stack, xp)
            stack = centered(stack, xp, unbiased=True, overwrite=True)
        return xp.reshape(stack, (len(units), m * m)), bounds

    def compute(self) -> CKAResult:
        """Return the minibatch CKA of every layer pair over the batches seen.

        Returns
        -------
        CKAResult
            La x Lb values (rows in ``acts_a`` order, columns in ``acts_b`` order); NaN, with a
            :class:`~cka_sim.CKAUndefinedWarning` naming the layer, where a layer's averaged
            self-HSIC is not positive.

        Raises
        ------
        ValueError
            Before any batch, or when a batch held NaN or infinity.
        """
        if self._cross is None:
            raise ValueError("MinibatchCKA has seen no batch; call update() first")
        cross, self_a, self_b = (to_numpy(a) for a in (self._cross, self._self_a, self._self_b))
        if not all(np.all(np.isfinite(a)) for a in (cross, self_a, self_b)):
            raise ValueError(
                "MinibatchCKA.compute: a batch given to update() held NaN or infinity, or float64 "
                "values beyond about 2**±200, whose fourth powers leave the float64 range (multiply "
                "every batch of such a layer by one power of two: CKA does not change); fix the "
                "input and start again (reset())"
            )
        bounds = tuple(
            np.zeros(len(names)) if b is None else to_numpy(b)  # a state saved without bounds
            for b, names in ((self._bound_a, self._names_a), (self._bound_b, self._names_b))
        )
        values = ratio_matrix(
            cross,
            self_a,
            self_b,
            self._names_a,
            self._names_b,
            debiased=self.debiased,
            n=self.n_examples,
            bounds=bounds,
        )
        return CKAResult(
            values=values,
            row_names=self._names_a,
            col_names=self._names_b,
            estimator="minibatch-debiased" if self.debiased else "minibatch-biased",
            n_examples=self.n_examples,
            metadata=default_metadata(n_batches=self.n_batches),
        )

    def __repr__(self) -> str:
        return (
            f"MinibatchCKA({len(self._names_a)} x {len(self._names_b)} layers, "
            f"debiased={self.debiased}, n_batches={self.n_batches}, n_examples={self.n_examples})"
        )


def _array_of(unit: Any) -> Array:
    """The array a checked layer holds (its Gram, once prepared)."""
    if isinstance(unit, PreparedGram):
        return unit.gram
    return unit.x if isinstance(unit, Centred) else unit
