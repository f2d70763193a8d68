"""What one sample (one row of the CKA data) is: an example, a token, a spatial position, a pool.

A layer output is turned into a (samples, features) matrix before any estimator sees it:

- ``"examples"``: one row per example, every other dimension flattened (a 1-D output of
  ``(batch,)`` is one feature per example);
- ``"tokens"``: every non-padded token of a ``(batch, tokens, features)`` output is a row, in
  (example, position) order, the padding cut with the ``(batch, tokens)`` attention mask (left or
  right padding alike: the mask says which tokens count);
- ``"positions"``: every spatial position of an ``(N, C, H, W)`` (or ``(N, C, L)``) map is a row
  of C features, after adaptive average pooling to ``grid`` when one is given;
- ``"pooled"``: one row per example, pooled over its non-padded tokens: their mean, the first
  (a CLS token under right padding), the last (a causal model's summary token), or a callable.

Both models must give every layer the same number of rows per batch; where they do not (two
tokenisers, two map sizes) the error says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from .._core.check import check_choice

SampleMode = Literal["examples", "tokens", "positions", "pooled"]
Pooling = Literal["mean", "first", "last"] | Callable[[torch.Tensor, torch.Tensor | None], Any]
MaskSource = Literal["auto"] | str | Callable[[Any], Any] | torch.Tensor | None

SAMPLE_MODES = ("examples", "tokens", "positions", "pooled")
POOLINGS = ("mean", "first", "last")
MASK_KEY = "attention_mask"


@dataclass
class SampleRule:
    """How a layer output becomes a (samples, features) matrix; ``mask`` is the current batch's.

    Made by :func:`sample_rule`; :func:`~cka_sim.torch.compare_models` (or the recording's call
    hook) sets ``mask`` before each forward pass.
    """

    mode: str = "examples"
    pooling: Any = "mean"
    grid: tuple[int, ...] | None = None
    mask: torch.Tensor | None = None

    @property
    def uses_mask(self) -> bool:
        return self.mode in ("tokens", "pooled")

    def rows(self, output: torch.Tensor, layer: str) -> torch.Tensor:
        """The (samples, features) matrix of one layer output (a view where reshaping suffices)."""
        if output.dim() == 0:
            raise ValueError(
                f"layer {layer!r}: its output is a scalar (shape ()), with no batch dimension; "
                "choose another layer, or select= a tensor with one"
            )
        if self.mode == "examples":
            return output.reshape(output.shape[0], -1)
        if self.mode == "positions":
            return _positions(output, self.grid, layer)
        tokens = _token_output(output, layer, self.mode)
        mask = _checked_mask(self.mask, tokens, layer)
        if self.mode == "tokens":
            return tokens.reshape(-1, tokens.shape[-1]) if mask is None else tokens[mask]
        return _pooled(tokens, mask, self.pooling, layer)


def sample_rule(samples: Any, pooling: Any = "mean", grid: Any = None) -> SampleRule:
    """The checked :class:`SampleRule` of ``samples``, ``pooling`` and ``grid``."""
    check_choice(samples, "samples", SAMPLE_MODES)
    if not callable(pooling):
        check_choice(pooling, "pooling", POOLINGS)
    if grid is not None:
        if samples != "positions":
            raise ValueError(f"grid= applies to samples='positions' only; got samples={samples!r}")
        grid = (grid,) if isinstance(grid, int) else tuple(grid)
        if not grid or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid):
            raise ValueError(
                f"grid must be a positive int or a tuple of positive ints (the pooled map size, "
                f"e.g. (7, 7)); got {grid!r}"
            )
    return SampleRule(mode=samples, pooling=pooling, grid=grid)


def check_mask_source(source: Any, rule: SampleRule) -> None:
    """Refuse a mask where the mode has no tokens, and a mask source of the wrong kind."""
    if source is None or (isinstance(source, str) and source == "auto"):
        return
    if not rule.uses_mask:
        raise ValueError(
            f"mask= applies to samples='tokens' or 'pooled'; samples={rule.mode!r} uses no "
            "token mask (leave mask='auto')"
        )
    if not (isinstance(source, (str, torch.Tensor)) or callable(source)):
        raise TypeError(
            "mask must be 'auto', None (every token counts), a key of the dict batch, a "
            f"(batch, tokens) tensor or a callable batch -> tensor; got {type(source).__name__}"
        )


def batch_mask(source: Any, batch: Any, call_kwargs: Mapping[str, Any]) -> torch.Tensor | None:
    """The (batch, tokens) boolean mask of one batch from ``source`` (see ``compare_models``).

    ``"auto"``: the ``attention_mask`` keyword argument the model is called with, else
    ``batch["attention_mask"]`` of a dict batch, else None (every token counts).
    """
    if source is None:
        return None
    if isinstance(source, str):
        if source == "auto":
            found = call_kwargs.get(MASK_KEY)
            if found is None and isinstance(batch, Mapping):
                found = batch.get(MASK_KEY)
            return None if found is None else as_mask(found)
        if not isinstance(batch, Mapping) or source not in batch:
            keys = list(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(
                f"mask={source!r} names a key of a dict batch, but the batch has {keys}; pass "
                "mask=callable(batch) returning the (batch, tokens) mask"
            )
        return as_mask(batch[source])
    if isinstance(source, torch.Tensor):
        return as_mask(source)
    return as_mask(source(batch))


def as_mask(value: Any) -> torch.Tensor:
    """A (batch, tokens) boolean tensor: nonzero entries are tokens that count."""
    mask = torch.as_tensor(value)
    if mask.dim() != 2:
        raise ValueError(
            f"the token mask must have shape (batch, tokens); got shape {tuple(mask.shape)}"
        )
    return mask if mask.dtype == torch.bool else mask != 0


def _token_output(output: torch.Tensor, layer: str, mode: str) -> torch.Tensor:
    if output.dim() != 3:
        raise ValueError(
            f"layer {layer!r}: samples={mode!r} needs a (batch, tokens, features) output; got "
            f"shape {tuple(output.shape)}. Pick that tensor with select= (for a sequence-first "
            "module, select=lambda out: out[0].transpose(0, 1)), or use samples='examples'"
        )
    return output


def _checked_mask(
    mask: torch.Tensor | None, tokens: torch.Tensor, layer: str
) -> torch.Tensor | None:
    if mask is None:
        return None
    if tuple(mask.shape) != tuple(tokens.shape[:2]):
        raise ValueError(
            f"layer {layer!r} gives {tuple(tokens.shape[:2])} (batch, tokens) but the token mask "
            f"is {tuple(mask.shape)}: this layer does not see the tokens of the mask (two "
            "models that tokenise differently cannot be compared token by token; compare them "
            "with samples='pooled', or give the layers that share the tokens)"
        )
    return mask.to(tokens.device)


def _positions(output: torch.Tensor, grid: tuple[int, ...] | None, layer: str) -> torch.Tensor:
    if output.dim() not in (3, 4):
        raise ValueError(
            f"layer {layer!r}: samples='positions' needs an (N, C, H, W) or (N, C, L) map; got "
            f"shape {tuple(output.shape)}. For a ViT's (N, tokens, D) output, select= the patch "
            "tokens as a map, e.g. lambda out: out[:, 1:].transpose(1, 2).unflatten(2, (h, w))"
        )
    spatial = output.dim() - 2
    if grid is not None:
        size = grid * spatial if len(grid) == 1 else grid
        if len(size) != spatial:
            raise ValueError(
                f"layer {layer!r}: grid={grid} has {len(grid)} sizes for a map with {spatial} "
                "spatial dimension(s)"
            )
        pool = (
            torch.nn.functional.adaptive_avg_pool2d
            if spatial == 2
            else (torch.nn.functional.adaptive_avg_pool1d)
        )
        output = pool(output, size)
    channels = output.shape[1]
    return output.movedim(1, -1).reshape(-1, channels)


def _pooled(
    tokens: torch.Tensor, mask: torch.Tensor | None, pooling: Any, layer: str
) -> torch.Tensor:
    if callable(pooling):
        pooled = pooling(tokens, mask)
        if not isinstance(pooled, torch.Tensor) or pooled.dim() < 1:
            raise TypeError(
                f"layer {layer!r}: the pooling callable must return a (batch, ...) tensor; got "
                f"{type(pooled).__name__}"
            )
        return pooled.reshape(pooled.shape[0], -1)
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    counts = mask.sum(dim=1)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"layer {layer!r}: example(s) {empty} of this batch have no token in the mask, so "
            "there is nothing to pool; drop them from the batch"
        )
    if pooling == "mean":
        weights = mask.to(tokens.dtype).unsqueeze(-1)
        return (tokens * weights).sum(dim=1) / counts.to(tokens.dtype).unsqueeze(-1)
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(mask)
    if pooling == "first":  # the first token in the mask (the CLS token under right padding)
        index = torch.where(mask, positions, tokens.shape[1]).min(dim=1).values
    else:  # the last token in the mask (left or right padding alike)
        index = torch.where(mask, positions, -1).max(dim=1).values
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), index]
