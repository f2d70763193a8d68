"""The confounder of deconfounded CKA in :func:`~cka_sim.torch.compare_models`: what and how wide.

dCKA (Cui et al. 2022) regresses every layer's Gram on the confounder's. The exact accumulator
holds the confounder's q x q co-moment and a q x p cross moment with every layer, so its memory
grows with q: the flattened input of a 64 x 64 x 3 image is 12,288 features, about 1.2 GiB for
the q x q moment alone and 12,288 x 8 x 2 bytes more for every feature of every layer.

The default therefore keeps the input as it is when it has at most :data:`SKETCH_WIDTH` features
and otherwise replaces it by a fixed Gaussian random projection to :data:`SKETCH_WIDTH` features
(Johnson–Lindenstrauss): the linear Gram of ``x R`` with ``R`` of i.i.d. N(0, 1/k) entries is an
unbiased estimate of the input's linear Gram ``x xᵀ``, each entry with a relative error of order
``1/sqrt(k)`` (about 3% at k = 1024). The trade-off: memory O(k²) instead of O(q²), a confounder
that removes almost, not exactly, the same similarity. ``confounder="input"`` keeps the exact one.
The projection is drawn from a fixed seed, the same for every batch and process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .outputs import first_tensor

#: Features of the default confounder's sketch (inputs at most this wide are used as they are).
SKETCH_WIDTH = 1024
_SEED = 0


@dataclass
class ConfounderRule:
    """The confounder of one batch: ``rule(batch, capture)`` -> (samples, q) tensor on model A's
    device, detached; ``description`` goes into the result's metadata."""

    source: Callable[[Any], Any] | str
    description: str
    _projection: torch.Tensor | None = field(default=None, repr=False)

    def __call__(self, batch: Any, capture: Any) -> torch.Tensor:
        if callable(self.source):
            z = self.source(batch)
            z = z if isinstance(z, torch.Tensor) else torch.as_tensor(z)
            return z.detach().to(capture.device_a)
        x = first_tensor(capture.inputs)
        if x is None:
            raise ValueError(
                "measure='dcka' uses the model input as the confounder, but the input of this "
                "batch holds no tensor; pass confounder=callable(batch) returning one"
            )
        x = x.detach().to(capture.device_a).reshape(x.shape[0], -1)
        if self.source == "input" or x.shape[1] <= SKETCH_WIDTH:
            return x
        if not x.is_floating_point():
            x = x.to(torch.float64)
        if self._projection is None or self._projection.shape[0] != x.shape[1]:
            generator = torch.Generator().manual_seed(_SEED)
            r = torch.randn(x.shape[1], SKETCH_WIDTH, generator=generator, dtype=torch.float64)
            self._projection = r / SKETCH_WIDTH**0.5
        return x @ self._projection.to(device=x.device, dtype=x.dtype)


def confounder_rule(measure: str, confounder: Any, mode: str) -> ConfounderRule | None:
    """The checked confounder rule of ``compare_models`` (None unless ``measure="dcka"``)."""
    if measure != "dcka":
        if confounder is not None:
            raise ValueError(
                f"confounder is used by measure='dcka' only; got measure={measure!r}. Leave "
                "confounder as None"
            )
        return None
    if callable(confounder):
        return ConfounderRule(confounder, "callable")
    if confounder is not None and confounder != "input":
        raise ValueError(
            "confounder must be None (the model input, sketched to "
            f"{SKETCH_WIDTH} features when wider), 'input' (the flattened model input) or a "
            f"callable batch -> (samples, ...) tensor; got {confounder!r}"
        )
    if mode in ("tokens", "positions"):
        raise ValueError(
            f"measure='dcka' with samples={mode!r}: the model input has one row per example, "
            "not per sample; pass confounder=callable(batch) returning one row per sample "
            "(e.g. the input embeddings of the non-padded tokens)"
        )
    if confounder == "input":
        return ConfounderRule("input", "model input (flattened)")
    return ConfounderRule(
        "sketch", f"model input, Gaussian sketch to {SKETCH_WIDTH} features when wider"
    )
