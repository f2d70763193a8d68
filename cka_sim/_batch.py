"""The one place where a batch of activations is prepared before its statistics are formed.

Every estimator that forms statistics from activations goes through :func:`prepare_layer`:
:func:`~cka_sim.linear_cka` (its feature form is one batch of :class:`~cka_sim.StreamingCKA`),
:class:`~cka_sim.StreamingCKA`, :class:`~cka_sim.StreamingCKAMatrix` and
:class:`~cka_sim.MinibatchCKA` (also when :func:`cka_sim.torch.compare_models` prepares layer
outputs inside the forward hooks). A layer is validated (shape, dtype, optionally finiteness),
upcast to its compute dtype (half precision to float32, integers to float64) and translated near
zero; what the translation missed is kept as an exact float64 residual where an estimator needs
it. Per-layer numerics (input rescaling, constant-layer detection) belong in
:func:`prepare_layer` and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._backend import (
    Array,
    centre_float32,
    centre_float64,
    is_torch,
    max_abs_exponent,
    namespace,
    power_of_two_scaled,
    sample_centre,
    sample_rows,
    to_float64,
    to_scalar,
    translated_to_unit,
    within_window,
)
from ._blocked import Deferred, deferrable
from ._validation import as_matrix, check_finite


@dataclass(frozen=True)
class Prepared:
    """One layer of one batch, ready for its statistics.

    Attributes
    ----------
    data : Array, shape (m, p)
        The activations in their compute dtype, translated: ``x - centre``.
    mean : Array or None, shape (p,)
        Float64 column means (``exact`` preparation only).
    residual : Array or None, shape (p,)
        Float64 column means of ``data``: what the translation missed (``exact`` float32 only;
        ``None`` when nothing was missed).
    gram_scale : Array or None
        Float64 factor that restores a Gram of ``data`` to the layer's units (``exact=False``
        batches that were scaled, see :func:`prepare_layer`).
    is_gram : bool
        ``data`` is already the (m, m) Gram of the prepared layer
        (:meth:`cka_sim.MinibatchCKA.prepare`), so no reference to the activations is kept.
    """

    data: Array
    mean: Array | None = None
    residual: Array | None = None
    gram_scale: Array | None = None
    is_gram: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    def to(self, device: Any) -> Prepared:
        """The same layer on another torch device."""
        if not is_torch(self.data):
            return self
        mean, residual, scale = (
            None if a is None else a.to(device) for a in (self.mean, self.residual, self.gram_scale)
        )
        return Prepared(self.data.to(device), mean, residual, scale, self.is_gram)


# float32 batches whose largest magnitude lies outside 2**±W are prepared in float64 (see
# prepare_layer); float64 batches outside 2**±W64 are refused by the accumulators.
_WINDOW_FLOAT32 = 16
_WINDOW_FLOAT64 = 200


def prepare_layer(
    x: Array, xp: Any, *, exact: bool, name: str = "x", ranged: bool = False
) -> Prepared:
    """Prepare one validated (m, p) layer (:func:`~cka_sim._validation.as_matrix` upcast it).

    Magnitude: the accumulators merge the statistics of many batches, so every batch of a layer
    must be in the same units and cannot be rescaled on its own. A float32 batch whose largest
    magnitude lies outside ``2**±16`` is converted to float64 (exactly), where products of any
    float32 values neither underflow nor overflow; a float64 batch outside ``2**±200`` (where the
    fourth-order float64 statistics would leave the float64 range) is refused with a
    ``ValueError`` naming it. ``ranged=True``: the caller has already brought the magnitude into
    range (the one-shot functions scale by a power of two, :func:`prepare_finite`).

    Constant: a batch whose rows are all equal (tested exactly: the first two rows, then all) is
    prepared as exact zeros about its first row, so its centred sums are exactly zero, and a
    layer that is constant over all batches has an exactly zero self-HSIC, which the
    estimators report as undefined (NaN with a warning naming it) instead of returning the
    quotient of rounding errors.

    ``exact=True`` (full-data estimators): the layer is centred on its column mean and the float64
    mean is kept. float64: ``xc = x - mean`` with the exact float64 mean (no residual). float32:
    the mean is computed in float32 and what it misses, the mean of ``xc``, is summed from ``xc``
    itself (:func:`~cka_sim._backend.centre_float32`) and kept as ``residual``; callers remove it
    from their float64 products (``xcᵀxc - m δδᵀ``), which is exact.

    ``exact=False`` (:class:`~cka_sim.MinibatchCKA`): HSIC of one batch is invariant to
    translating the features, and its (m, m) Gram is (U-)centred in float64 afterwards, so the
    mean need not be exact: the subtraction only brings the features near zero so that a float32
    Gram keeps the digits of their spread rather than of their offset. The centre is the
    mean of 32 rows spread over the batch (:func:`~cka_sim._backend.sample_centre`), in the
    input dtype: what it misses is a translation (about σ/√32 per feature), removed exactly
    by the float64 centring of the Gram; one subtraction pass over the batch and no host
    synchronisation. On the CPU a float32 batch whose sampled offset is no larger than its
    sampled spread (and whose magnitude needs no scaling) is not translated at all: ``data`` is
    then ``x`` itself, and its float32 Gram rounds at most about twice as coarsely relative to
    the centred Gram (``_offset_is_small``). Callers form the Gram before ``x`` can change
    (:meth:`~cka_sim.MinibatchCKA.prepare` returns the Gram).
    """
    if not exact:
        return _translated(x, xp, name)
    if not ranged:
        x = _in_range(x, xp, name)
    if all_rows_equal(x, xp):
        return Prepared(x * 0.0, to_float64(x[0], xp))
    if x.dtype == xp.float64:
        xc, mean = centre_float64(x, xp.sum(x, axis=0) / x.shape[0], xp)
        return Prepared(xc, mean)
    xc, centre, residual = centre_float32(x, xp)
    return Prepared(xc, to_float64(centre, xp) + residual, residual)


def prepare_finite(x: Array, name: str, xp: Any) -> Prepared:
    """:func:`prepare_layer` (``exact``) for the functional forms, refusing NaN and infinity.

    Non-finite values are found from the float64 means: a column holding NaN or inf cannot have a
    finite mean, so the O(n p) scan runs only when a mean is not finite.
    """
    return _finite_unit(power_of_two_scaled(x, xp)[0], name, xp)


def prepare_finite_all(layers: list[tuple[Array, str]], xp: Any) -> list[Prepared] | list[Deferred]:
    """:func:`prepare_finite` of each ``(layer, name)`` of a one-shot feature form, or, for large
    CPU layers of one dtype, the same layers with their centring left to the products
    (:class:`~cka_sim._blocked.Deferred`, see :mod:`cka_sim._blocked`): no centred copy.
    """
    scaled = [power_of_two_scaled(x, xp)[0] for x, _ in layers]  # each its own power of two
    views = deferrable(scaled)
    if views is None or any(all_rows_equal(v, np) for v in views):
        return [_finite_unit(x, name, xp) for x, (_, name) in zip(scaled, layers, strict=True)]
    torch_like = is_torch(scaled[0])
    return [
        Deferred(v, name, from_torch=torch_like) for v, (_, name) in zip(views, layers, strict=True)
    ]


def _finite_unit(x: Array, name: str, xp: Any) -> Prepared:
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported just below
        unit = prepare_layer(x, xp, exact=True, name=name, ranged=True)
    if not bool(xp.all(xp.isfinite(unit.mean))):
        check_finite(x, name, xp)
    return unit


def centre_finite(x: Array, xp: Any, name: str) -> tuple[Array, Array | None]:
    """``x`` centred by :func:`prepare_finite`, and its float64 residual mean (or None)."""
    unit = prepare_finite(x, name, xp)
    return unit.data, unit.residual


def check_float64_range(x: Array, xp: Any, name: str) -> None:
    """Refuse a float64 layer beyond the accumulators' range by name (see :func:`prepare_layer`);
    other dtypes pass (a float32 layer beyond its window is prepared in float64)."""
    if x.dtype == xp.float64:
        _in_range(x, xp, name)


def _in_range(x: Array, xp: Any, name: str) -> Array:
    """``x``, or float64 ``x`` for float32 beyond ``2**±16``; a ValueError for float64 beyond
    ``2**±200`` (see :func:`prepare_layer`)."""
    window = _WINDOW_FLOAT64 if x.dtype == xp.float64 else _WINDOW_FLOAT32
    if within_window(x, window):  # one BLAS pass settles most NumPy input
        return x
    exponent = max_abs_exponent(x, xp)  # None: all zero, or NaN/inf (reported elsewhere)
    if exponent is None:
        return x
    if x.dtype == xp.float64:
        if abs(exponent) > _WINDOW_FLOAT64:
            raise ValueError(
                f"{name} has values of magnitude about 2**{exponent}; the accumulators' float64 "
                f"statistics (up to fourth powers) hold magnitudes up to 2**±{_WINDOW_FLOAT64} "
                f"only. Multiply every batch of this layer by one power of two, e.g. "
                f"{name} * 2.0**{-exponent} (CKA does not change), or use linear_cka / "
                "cka_matrix, which take any magnitude"
            )
        return x
    if abs(exponent) > _WINDOW_FLOAT32:
        return xp.astype(x, xp.float64)
    return x


def all_rows_equal(x: Array, xp: Any) -> bool:
    """True when every row of ``x`` equals the first (all features constant); comparing the
    first two rows settles almost every real input at O(p) cost."""
    if x.shape[0] > 1 and not bool(xp.all(x[1:2, :] == x[0:1, :])):
        return False
    return bool(xp.all(x == x[0:1, :]))


def _translated(x: Array, xp: Any, name: str) -> Prepared:
    """``x`` minus the mean of a sample of its rows, in ``x``'s dtype (see :func:`prepare_layer`).

    No host synchronisation on an accelerator, and only the 32 sampled rows read beyond the one
    translation pass. The centre is their mean, formed as the first row plus the mean of the
    differences from it (:func:`~cka_sim._backend.sample_centre`): a sample of equal rows gives
    that row exactly, so a constant batch becomes exact zeros (its Gram and self-HSIC exactly
    zero) without a comparison pass. A float32 batch is also scaled by ``2**-e``, ``e`` the
    exponent of the sample's largest translated magnitude, in the same pass
    (:func:`~cka_sim._backend.translated_to_unit`; on the CPU only when ``|e| > 16``), and
    ``gram_scale`` restores its Gram to the batch's units in float64. A float64 batch beyond
    ``2**±200`` is refused by name (one host synchronisation, for float64 input only).
    """
    if x.dtype == xp.float64:
        _in_range(x, xp, name)
    rows = sample_rows(x)  # 32 rows spread over the batch, x[0] first
    centre = sample_centre(rows, xp)
    if x.dtype != xp.float32:
        return Prepared(x - centre)
    probe = rows - centre  # the sample translated
    if _offset_is_small(x, rows, centre, probe, xp):
        return Prepared(x)
    data, restore = translated_to_unit(x, centre, probe, xp, _WINDOW_FLOAT32)
    return Prepared(data, gram_scale=restore)


def _offset_is_small(x: Array, rows: Array, centre: Array, probe: Array, xp: Any) -> bool:
    """True when a float32 CPU batch may skip the translation: its Gram ``x xᵀ`` is then formed
    directly and centred in float64 afterwards, which is exact up to the float32 products.

    Those products round relative to ``‖x_i‖‖x_j‖ ≈ ‖c‖² + s²`` (``c`` the sampled centre,
    ``s²`` the sampled rows' mean squared distance from it, summed from ``probe`` = the rows
    minus ``c``, without cancellation) while the centred Gram is of order ``s²``; with
    ``‖c‖² ≤ s²`` its rounding is at most about twice that of the translated batch. Also
    required: the sample's largest magnitude within ``2**±16`` (no scaling needed; the float32
    squares below then cannot overflow), and a device whose values can be read without a
    synchronisation cost (NumPy, torch on the CPU). The ReLU of a zero-mean pre-activation
    qualifies (per unit, mean² ≈ 0.16 σ² against a variance of ≈ 0.34 σ², so
    ``‖c‖² ≈ 0.47 s²``); offsets larger than the spread keep the translation.
    """
    if is_torch(x) and x.device.type != "cpu":
        return False
    largest = max(to_scalar(xp.max(rows)), -to_scalar(xp.min(rows)))
    if not (math.isfinite(largest) and abs(math.frexp(largest)[1]) <= _WINDOW_FLOAT32):
        return False
    offset_sq = to_scalar(xp.sum(centre * centre))
    flat = xp.reshape(probe, (-1,))  # a new contiguous array: its dot product is one BLAS call
    spread_sq = to_scalar(flat @ flat) / rows.shape[0]
    return 0.0 < spread_sq and offset_sq <= spread_sq


def prepare_layers(
    layers: list[tuple[str, Any]], side: str, *, exact: bool, rows: int | None = None
) -> tuple[list[Prepared], Any]:
    """Validate and prepare every layer of one side of a batch; return them and their namespace.

    ``layers`` are ``(name, activations)`` pairs (``activations`` may already be
    :class:`Prepared`, e.g. by :func:`cka_sim.torch.compare_models`' hooks). torch tensors are
    detached and not scanned for NaN here (that would synchronise the device on every batch; the
    accumulators check their state instead). All layers, and ``rows`` when given, must have the
    same number of examples, one array library and one device.
    """
    labels, values = _labelled(layers, side)
    out = [
        v if isinstance(v, Prepared) else prepare_layer(v, namespace(v), exact=exact, name=label)
        for label, v in zip(labels, values, strict=True)
    ]
    check_same_batch([p.data for p in out], rows)
    return out, namespace(*[p.data for p in out])


def validate_layers(
    layers: list[tuple[str, Any]], side: str, rows: int | None = None
) -> tuple[list[Array | Prepared], Any]:
    """The validation half of :func:`prepare_layers`: each layer as a checked (m, p) matrix.

    Also refuses, by name, a float64 layer beyond the accumulators' range (see
    :func:`prepare_layer`), so that a batch an accumulator keeps for later (see
    :mod:`cka_sim._rowbuffer`) is refused by the call that passed it. Layers already
    :class:`Prepared` are passed through.
    """
    labels, values = _labelled(layers, side)
    for label, value in zip(labels, values, strict=True):
        if isinstance(value, Prepared) and value.is_gram:
            raise TypeError(
                f"{label} was prepared by MinibatchCKA.prepare (it holds the layer's Gram, not "
                "its activations); pass the activations, or prepare them with this "
                "accumulator's own prepare()"
            )
        if not isinstance(value, Prepared):
            check_float64_range(value, namespace(value), label)
    arrays = [v.data if isinstance(v, Prepared) else v for v in values]
    check_same_batch(arrays, rows)
    return values, namespace(*arrays)


def _labelled(layers: list[tuple[str, Any]], side: str) -> tuple[list[str], list[Any]]:
    """Labels ``side['name']`` and the layers as validated matrices (or :class:`Prepared`)."""
    labels, values = [], []
    for name, value in layers:
        label = f"{side}[{name!r}]"
        if not isinstance(value, Prepared):
            if is_torch(value):
                value = value.detach()
            value = as_matrix(value, label, min_rows=1, check_values=not is_torch(value))
        labels.append(label)
        values.append(value)
    return labels, values


def check_same_batch(units: list[Array], rows: int | None = None) -> None:
    """Raise unless ``units`` share one number of rows (and ``rows``), one library, one device."""
    counts = {int(u.shape[0]) for u in units} | ({rows} if rows is not None else set())
    if len(counts) != 1:
        raise ValueError(
            "the layers of one batch must have the same number of rows: the same number of "
            f"examples in every layer; got {sorted(counts)}"
        )
    if len({is_torch(u) for u in units}) != 1:
        raise TypeError("mix of NumPy arrays and torch tensors in one batch; use one kind")
    if is_torch(units[0]):
        devices = {str(u.device) for u in units}
        if len(devices) != 1:
            raise ValueError(f"the layers of one batch are on several devices: {sorted(devices)}")
