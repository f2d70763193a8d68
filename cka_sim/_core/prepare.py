"""The prepare stage: a layer's magnitude brought into range, and the centre its rows are taken about.

Magnitude
---------
One window per dtype, :data:`WINDOW`: a layer whose largest magnitude lies within ``2**±W`` of 1
is used as it is. Outside it, no product or reduction downstream could be trusted: float32
centred data down to ``2**-(16+24)`` still square to a normal float32, and float64 fourth powers
of centred data down to ``2**-(200+53)`` stay normal. What happens outside the window is one rule:

- one-shot functions (:func:`~cka_sim.linear_cka`, :func:`~cka_sim.cka_matrix`, ...) multiply
  the layer by an exact power of two (:func:`scaled`): CKA is invariant to scaling each
  representation, and a power of two changes no digit;
- accumulators merge many batches in one set of units, so they cannot rescale one batch:
  float32 is promoted to float64, float64 beyond its window is refused
  (:func:`~cka_sim._core.check.check_accumulator_layer`).

Centring
--------
:func:`centre` is the one centring routine of the exact estimators. It returns the layer with
the centre its rows are taken about: the float64 mean of at most :data:`SAMPLE_ROWS` rows spread
over the layer, rounded to the layer's dtype (no pass over the data), or the first row of a
constant layer, so that a constant layer's centred rows are exact zeros. The centred rows are
formed by the moments' pass (:mod:`cka_sim._core.moments`), block by block for large CPU layers,
which also sums what the centre missed (the residual mean) and removes it in float64: the
corrected two-pass algorithm with its second pass done on the statistics.
:func:`centred` gives the centred copy itself, for the Gram builders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import is_torch_array as is_torch

from .backend import Array, on_host, to_float64

#: Largest binary exponent of a layer's magnitude used without rescaling, per dtype.
WINDOW = {"float32": 16, "float64": 200}
#: Rows whose mean is a layer's centre: it misses the column mean by about σ/√1024 = 0.03 σ.
SAMPLE_ROWS = 1024
#: Rows whose mean translates a minibatch layer (:func:`translated`): its Gram is U-centred in
#: float64 afterwards, so the centre only brings the features near zero (about σ/√32).
MINIBATCH_SAMPLE_ROWS = 32


def exponent(x: Array, xp: Any) -> int | None:
    """Binary exponent ``e`` of the largest ``|x|`` (``2**(e-1) <= max|x| < 2**e``).

    None when ``x`` is all zero or holds a non-finite value. NumPy: two reductions; torch: one
    pass (``torch.aminmax``) and one device synchronisation.
    """
    if is_torch(x):
        import torch

        low, high = torch.aminmax(x.detach())
        largest = float(torch.maximum(high, -low))
    else:
        largest = max(float(x.max()), -float(x.min()))
    if largest == 0.0 or not math.isfinite(largest):
        return None
    return math.frexp(largest)[1]


def times_power_of_two(x: Array, power: int, xp: Any) -> Array:
    """``x * 2**power``, exact unless the result leaves the normal range (applied in steps that
    are themselves normal numbers of ``x``'s dtype)."""
    step = 100 if x.dtype == xp.float32 else 1000
    while power:
        part = max(-step, min(step, power))
        x = x * (2.0**part)
        power -= part
    return x


def scaled(x: Array, xp: Any) -> tuple[Array, int]:
    """``(x * 2**-e, e)`` with ``max|x * 2**-e|`` in [0.5, 1) when ``x`` lies outside its
    :data:`WINDOW`, else ``(x, 0)``: the one-shot functions' magnitude rule."""
    e = exponent(x, xp)
    if e is None or abs(e) <= WINDOW[str(x.dtype).removeprefix("torch.")]:
        return x, 0
    return times_power_of_two(x, -e, xp), e


def unit_scaled(x: Array, xp: Any) -> tuple[Array, int]:
    """``(x * 2**-e, e)`` with ``max|x * 2**-e|`` in [0.5, 1) whatever the magnitude: for
    estimators that raise entries to higher powers than the window allows for (polynomial
    kernels, the resampling statistics' products of Grams), at the cost of one pass."""
    e = exponent(x, xp)
    return (x, 0) if e is None else (times_power_of_two(x, -e, xp), e)


def all_rows_equal(x: Array, xp: Any) -> bool:
    """True when every row of ``x`` equals the first (all features constant); comparing the
    first two rows settles almost every real input at O(p) cost."""
    if x.shape[0] > 1 and not bool(xp.all(x[1:2, :] == x[0:1, :])):
        return False
    return bool(xp.all(x == x[0:1, :]))


@dataclass(frozen=True)
class Centred:
    """One layer of one batch, with the centre its rows are taken about.

    Attributes
    ----------
    x : Array, shape (m, p)
        The validated layer in its compute dtype (its magnitude in range).
    centre : Array, shape (p,)
        In ``x``'s dtype, subtracted from every row before any product.
    constant : bool
        Every row equals the first (``centre`` is that row, so the centred rows are zeros).
    """

    x: Array
    centre: Array
    constant: bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape)

    @property
    def dtype(self) -> Any:
        return self.x.dtype

    def to(self, device: Any) -> Centred:
        """The same layer on another torch device."""
        if not is_torch(self.x):
            return self
        return Centred(self.x.to(device), self.centre.to(device), self.constant)


def centre(x: Array, xp: Any, sample: int = SAMPLE_ROWS) -> Centred:
    """The layer and its centre (see the module docstring), the mean of at most ``sample`` rows
    spread over it; no pass over the data but the constant test, which two rows settle for
    almost every real layer."""
    if all_rows_equal(x, xp):
        return Centred(x, x[0], True)
    rows = x[:: max(1, x.shape[0] // sample)][:sample]
    if is_torch(rows):
        rows = rows.detach()
    mean = xp.sum(rows, axis=0, dtype=xp.float64) / rows.shape[0]
    return Centred(x, xp.astype(mean, x.dtype), False)


def centred(x: Array, xp: Any) -> Array:
    """``x`` minus its column means, in ``x``'s dtype, exactly enough for float32.

    The rows are taken about :func:`centre`; the residual mean of the result (which lies near
    zero, so its sum is accurate) is subtracted once more.
    """
    c = centre(x, xp)
    xc = x - c.centre
    if c.constant:
        return xc
    residual = to_float64(xp.sum(xc, axis=0), xp) / x.shape[0]
    return xc - xp.astype(residual, x.dtype)


def translated(x: Array, xp: Any) -> tuple[Array, Array | None]:
    """A minibatch layer near zero, for its float32 Gram: ``((x - c) * 2**-e, 2**(2e))``.

    :class:`~cka_sim.MinibatchCKA` U-centres each batch's Gram in float64, which removes any
    translation exactly, so ``c`` need not be the exact mean: it is the sampled centre of
    :func:`centre` (a constant batch becomes exact zeros). A float32 batch is also scaled by
    ``2**-e``, ``e`` the exponent of the sample's largest translated magnitude, in the same pass,
    and the float64 factor ``2**(2e)`` restores its Gram to the batch's units (``None``: nothing
    to restore). On an accelerator ``e`` stays on the device (no synchronisation) and the scaling
    always runs; on the host it runs only outside the float32 :data:`WINDOW`.
    """
    c = centre(x, xp, MINIBATCH_SAMPLE_ROWS).centre
    if x.dtype != xp.float32:
        return x - c, None
    probe = x[:: max(1, x.shape[0] // MINIBATCH_SAMPLE_ROWS)][:MINIBATCH_SAMPLE_ROWS] - c
    largest = xp.maximum(xp.max(probe), -xp.min(probe))
    if is_torch(x):
        import torch

        e = torch.frexp(largest.detach()).exponent.clamp(-126, 126)
        e = torch.where(torch.isfinite(largest), e, torch.zeros_like(e))
        if on_host(x) and abs(int(e)) <= WINDOW["float32"]:
            return x - c, None
        factor, restore = _power_of_two(-e, x.dtype, x), _power_of_two(2 * e, torch.float64, x)
        return torch.addcmul(-(c * factor), x, factor), restore
    e = int(np.clip(np.frexp(largest)[1], -126, 126)) if np.isfinite(largest) else 0
    if abs(e) <= WINDOW["float32"]:
        return x - c, None
    out = x * np.float32(2.0**-e)
    out -= c * np.float32(2.0**-e)
    return out, np.float64(2.0 ** (2 * e))


def _power_of_two(k: Any, dtype: Any, like: Array) -> Array:
    """``2**k`` for a 0-dim integer tensor ``k``, as a 0-dim tensor of ``dtype`` (float32 or
    float64) on ``like``'s device, built from its bits (no host synchronisation)."""
    import torch

    if dtype == torch.float64:
        return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((k.to(torch.int32) + 127) << 23).view(torch.float32)


def prepare_one_shot(layers: list[Array], xp: Any) -> list[Centred]:
    """The one-shot functions' preparation of validated layers: each scaled by its own power of
    two when outside its :data:`WINDOW` (:func:`scaled`), then given its centre (:func:`centre`)."""
    out = []
    for x in layers:
        e = exponent(x, xp)
        if e is not None and abs(e) > WINDOW[str(x.dtype).removeprefix("torch.")]:
            x = times_power_of_two(x, -e, xp)
        out.append(centre(x, xp))
    return out


@dataclass(frozen=True)
class PreparedGram:
    """One minibatch layer prepared by :meth:`cka_sim.MinibatchCKA.prepare`: its (m, m) Gram in
    the layer's dtype (of :func:`translated` rows) and the float64 factor that restores it to
    the batch's units (``None``: nothing to restore). No reference to the activations is kept."""

    gram: Array
    scale: Array | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.gram.shape)

    @property
    def dtype(self) -> Any:
        return self.gram.dtype

    def to(self, device: Any) -> PreparedGram:
        """The same layer on another torch device."""
        if not is_torch(self.gram):
            return self
        return PreparedGram(
            self.gram.to(device), None if self.scale is None else self.scale.to(device)
        )
