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

from typing import Any

import numpy as np

from ._backend import (
    _RESIDUAL_TOLERANCE,
    Array,
    centre_float32,
    compute_dtype,
    gram,
    is_torch,
    namespace,
    spread,
    to_float64,
    to_scalar,
)
from ._layers import as_layers, check_names, ratio_matrix, to_numpy
from ._validation import as_matrix
from .kernels import _device, centered
from .result import CKAResult, default_metadata

_FORMAT_VERSION = 1


def _translated(x: Array, xp: Any) -> Array:
    """``x`` minus its float32 (or float64) column means, in ``x``'s floating dtype.

    Both HSIC estimators of a batch are invariant to translating the features, so the mean need
    not be exact: the (m, m) Gram is centred (or U-centred) in float64 afterwards, which removes
    what is left of it exactly. The subtraction only has to bring the features near zero, so that
    the float32 Gram keeps the digits of their spread rather than of their offset. One reduction
    and one subtraction in the input dtype; no float64 pass over the (m, p) activations.
    """
    dtype = compute_dtype(x, xp)
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    centre = xp.mean(x, axis=0)
    xc = x - centre
    if x.dtype == xp.float32:
        # A float32 mean of m values is off by at most about m·ε·|mean|. Only when that bound is
        # not small next to the spread can the leftover offset cost the float32 Gram its digits
        # (feature means hundreds of times their spread); then centre as linear_cka does.
        bound = (
            x.shape[0]
            * float(np.finfo(np.float32).eps)
            * to_scalar(xp.sum(to_float64(centre, xp) ** 2)) ** 0.5
        )
        if bound > _RESIDUAL_TOLERANCE * spread(xc, xp):
            xc = centre_float32(x, xp)[0]
    return xc


class MinibatchCKA:
    r"""Minibatch CKA of Nguyen, Raghu & Kornblith (2021) between the layers of two models.

    Per batch, for every layer: flatten to (m, p), subtract the column means in the input dtype
    (HSIC is invariant to translating the features, so this only has to bring them near zero for
    float32 precision), form the (m, m) Gram in the input dtype (symmetric: about 5/8 of a
    GEMM's flops on torch CPU tensors, half on NumPy), write it into a float64 (L, m, m) buffer
    and U-centre it (debiased) or centre it (biased) there, exactly; get every cross HSIC with
    one (La, m²) @ (m², Lb) product, no loop over layer pairs and no host synchronisation. Cross and self sums accumulate in float64 on the
    input's device. See :mod:`cka_sim.minibatch` for how this estimator differs from full-data
    CKA.

    Parameters
    ----------
    debiased : bool, default True
        HSIC₁ per batch (batches of at least 4 examples); ``False``: the biased HSIC
        :math:`\operatorname{tr}(KHLH)/(m-1)^2` per batch (batches of at least 2).

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

    References
    ----------
    Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same Things?
    Uncovering How Neural Network Representations Vary with Width and Depth*, ICLR.
    """

    def __init__(self, debiased: bool = True) -> None:
        self.debiased = bool(debiased)
        self.reset()

    def reset(self) -> MinibatchCKA:
        """Forget all batches (and the layer names)."""
        self._cross: Array | None = None
        self._self_a: Array | None = None
        self._self_b: Array | None = None
        self._names_a: list[str] = []
        self._names_b: list[str] = []
        self.n_batches = 0
        self.n_examples = 0
        return self

    def update(self, acts_a: Any, acts_b: Any) -> MinibatchCKA:
        """Add one batch: two mappings {layer: (m, ...) activations} (or sequences), same examples.

        Passing the same mapping object twice compares a model's layers with each other and forms
        each Gram once.
        """
        return self._update(acts_a, acts_b, translated=False)

    def _update(self, acts_a: Any, acts_b: Any, *, translated: bool) -> MinibatchCKA:
        """:meth:`update`; ``translated=True``: every layer is already an (m, p) matrix in its
        compute dtype with its column means subtracted (as :func:`_translated` does)."""
        shared = acts_a is acts_b
        layers_a = as_layers(acts_a, "acts_a")
        layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
        names_a = [name for name, _ in layers_a]
        names_b = [name for name, _ in layers_b]
        if self._cross is not None:
            check_names(self._names_a, names_a, "acts_a")
            check_names(self._names_b, names_b, "acts_b")
        grams_a, m, xp = self._centred_grams(layers_a, "acts_a", None, translated)
        grams_b = grams_a if shared else self._centred_grams(layers_b, "acts_b", m, translated)[0]
        scale = 1.0 / (m * (m - 3)) if self.debiased else 1.0 / ((m - 1) ** 2)
        cross = (grams_a @ xp.matrix_transpose(grams_b)) * scale
        self_a = xp.sum(grams_a * grams_a, axis=1) * scale
        self_b = self_a if shared else xp.sum(grams_b * grams_b, axis=1) * scale
        if self._cross is None:
            self._cross, self._self_a, self._self_b = cross, self_a, self_b
            self._names_a, self._names_b = names_a, names_b
        else:
            if is_torch(cross) != is_torch(self._cross) or (
                is_torch(cross) and cross.device != self._cross.device
            ):
                raise ValueError(
                    "MinibatchCKA.update: this batch is not on the device (or array library) "
                    "of earlier batches"
                )
            self._cross = self._cross + cross
            self._self_a = self._self_a + self_a
            self._self_b = self._self_b + self_b
        self.n_batches += 1
        self.n_examples += m
        return self

    def _centred_grams(
        self, layers: list[tuple[str, Any]], side: str, rows: int | None, translated: bool
    ) -> tuple[Array, int, Any]:
        """(L, m²) float64 stack of the (U-)centred Grams of one model's layers."""
        mats = []
        for name, value in layers:
            if is_torch(value):
                value = value.detach()
            mats.append(
                as_matrix(value, f"{side}[{name!r}]", min_rows=1, check_values=not is_torch(value))
            )
        counts = {int(x.shape[0]) for x in mats} | ({rows} if rows is not None else set())
        if len(counts) != 1:
            raise ValueError(
                f"all layers of one batch must have the same number of examples; got {sorted(counts)}"
            )
        m = counts.pop()
        need = 4 if self.debiased else 2
        if m < need:
            raise ValueError(
                f"MinibatchCKA got a batch of {m} example(s); "
                + (
                    "the debiased HSIC₁ needs batches of at least 4 (drop the last, short batch, "
                    "e.g. DataLoader(..., drop_last=True), or use debiased=False)"
                    if self.debiased
                    else "the biased HSIC needs batches of at least 2"
                )
            )
        xp = namespace(*mats)
        # One float64 (L, m, m) buffer filled layer by layer (no list of Grams and no stack copy).
        stack = xp.empty((len(mats), m, m), dtype=xp.float64, device=_device(mats[0]))
        for i, x in enumerate(mats):
            stack[i, ...] = gram(x if translated else _translated(x, xp), xp)
        stack = centered(stack, xp, unbiased=self.debiased)
        return xp.reshape(stack, (len(mats), m * m)), m, xp

    def compute(self) -> CKAResult:
        """The La x Lb :class:`~cka_sim.CKAResult` (rows: ``acts_a`` order, columns: ``acts_b``)."""
        if self._cross is None:
            raise ValueError("MinibatchCKA has seen no batch; call update() first")
        cross, self_a, self_b = (to_numpy(a) for a in (self._cross, self._self_a, self._self_b))
        if not (np.all(np.isfinite(cross)) and np.all(np.isfinite(self_a))):
            raise ValueError(
                "MinibatchCKA.compute: a batch given to update() held NaN or infinity; remove or "
                "impute those values and start again (reset())"
            )
        values = ratio_matrix(
            cross,
            self_a,
            self_b,
            self._names_a,
            self._names_b,
            debiased=self.debiased,
            n=self.n_examples,
        )
        return CKAResult(
            values=values,
            row_names=self._names_a,
            col_names=self._names_b,
            estimator="minibatch-debiased" if self.debiased else "minibatch-biased",
            n_examples=self.n_examples,
            metadata=default_metadata(n_batches=self.n_batches),
        )

    def merge(self, other: MinibatchCKA) -> MinibatchCKA:
        """Add the batches of ``other`` (same layers and settings); returns ``self``."""
        if not isinstance(other, MinibatchCKA):
            raise TypeError(f"cannot merge a {type(other).__name__} into a MinibatchCKA")
        if other.debiased != self.debiased:
            raise ValueError(
                f"cannot merge accumulators with debiased={self.debiased} and "
                f"debiased={other.debiased}"
            )
        if other._cross is None:
            return self
        if self._cross is None:
            self.load_state_dict(other.state_dict())
            return self
        check_names(self._names_a, other._names_a, "the other accumulator's acts_a")
        check_names(self._names_b, other._names_b, "the other accumulator's acts_b")
        self._cross = self._cross + other._cross
        self._self_a = self._self_a + other._self_a
        self._self_b = self._self_b + other._self_b
        self.n_batches += other.n_batches
        self.n_examples += other.n_examples
        return self

    def all_reduce(self, group: Any = None) -> MinibatchCKA:
        """Sum the accumulators of every process of a ``torch.distributed`` group, in place."""
        from .distributed import all_reduce_sum, gather_names

        names = gather_names(
            (self._names_a, self._names_b, False) if self._cross is not None else None, group
        )
        if not names[0]:
            return self  # no process saw a batch
        self._names_a, self._names_b = names[0], names[1]
        la, lb = len(self._names_a), len(self._names_b)
        if self._cross is None:
            zeros = np.zeros
            self._cross, self._self_a, self._self_b = zeros((la, lb)), zeros(la), zeros(lb)
        counts = np.array([self.n_batches, self.n_examples], dtype=np.float64)
        like = self._cross
        self._cross, self._self_a, self._self_b, counts = all_reduce_sum(
            [self._cross, self._self_a, self._self_b, counts], group, like
        )
        counts = to_numpy(counts)
        self.n_batches, self.n_examples = round(float(counts[0])), round(float(counts[1]))
        return self

    def state_dict(self) -> dict[str, Any]:
        """The state as a flat dict of arrays and plain values."""
        d: dict[str, Any] = {
            "kind": "MinibatchCKA",
            "format_version": _FORMAT_VERSION,
            "debiased": self.debiased,
            "names_a": list(self._names_a),
            "names_b": list(self._names_b),
            "n_batches": self.n_batches,
            "n_examples": self.n_examples,
        }
        if self._cross is not None:
            d.update(cross=self._cross, self_a=self._self_a, self_b=self._self_b)
        return d

    def load_state_dict(self, state: dict[str, Any]) -> MinibatchCKA:
        """Restore a state from :meth:`state_dict`."""
        if state.get("kind") != "MinibatchCKA":
            raise ValueError(f"this state_dict is from {state.get('kind')!r}, not MinibatchCKA")
        if int(state.get("format_version", -1)) != _FORMAT_VERSION:
            raise ValueError(
                f"unsupported MinibatchCKA state format {state.get('format_version')!r}"
            )
        if bool(state["debiased"]) != self.debiased:
            raise ValueError(
                f"the state_dict has debiased={bool(state['debiased'])} but this MinibatchCKA "
                f"has debiased={self.debiased}"
            )
        self.reset()
        self._names_a = [str(s) for s in state["names_a"]]
        self._names_b = [str(s) for s in state["names_b"]]
        self.n_batches = int(state["n_batches"])
        self.n_examples = int(state["n_examples"])
        if "cross" in state:
            self._cross, self._self_a, self._self_b = (
                state["cross"],
                state["self_a"],
                state["self_b"],
            )
        return self

    def __repr__(self) -> str:
        return (
            f"MinibatchCKA({len(self._names_a)} x {len(self._names_b)} layers, "
            f"debiased={self.debiased}, n_batches={self.n_batches}, n_examples={self.n_examples})"
        )
