"""A model's layers with their output shapes, widths and the memory each estimator would need.

:func:`layer_table` runs the model once on an example batch and returns a list of rows, one per
module that ran (name, kind, shape, samples, width, exact_bytes, minibatch_bytes), that prints as
a table: to choose the layers and the estimator of :func:`~cka_sim.torch.compare_models` before
spending any memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .._core.memory import format_bytes
from .inputs import InputKey
from .layers import LayerSpec, _check_module, _resolve_layers
from .probe import probe_outputs
from .samples import SampleMode, batch_mask, sample_rule


@dataclass(frozen=True)
class _LayerInfo:
    """One layer of :func:`layer_table`.

    Attributes
    ----------
    name : str
        The module's fully qualified name.
    kind : str
        The module's class name.
    shape : tuple of int
        The shape of its output (the first tensor) on the example batch.
    samples : int
        Rows this batch gives the estimators under the sample mode.
    width : int
        Features per sample: what the exact estimator's memory grows with, squared.
    exact_bytes : int
        The exact accumulator's memory for this layer compared with itself
        (``StreamingCKAMatrix.estimate_memory``).
    minibatch_bytes : int
        The minibatch estimator's memory for this layer at this batch size (its samples x
        samples Gram, float64 and a copy in the input dtype).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    samples: int
    width: int
    exact_bytes: int
    minibatch_bytes: int


class _LayerTable(list):
    """The rows of :func:`layer_table` (a list of :class:`_LayerInfo`), printed as a table."""

    def __str__(self) -> str:
        header = ("layer", "module", "output shape", "samples", "width", "exact", "minibatch")
        rows = [header] + [
            (
                info.name or "(model)",
                info.kind,
                "x".join(map(str, info.shape)),
                f"{info.samples:,}",
                f"{info.width:,}",
                _short(info.exact_bytes),
                _short(info.minibatch_bytes),
            )
            for info in self
        ]
        sizes = [max(len(row[i]) for row in rows) for i in range(len(header))]
        return "\n".join(
            "  ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
            for row in rows
        )


def _short(n: int) -> str:
    return format_bytes(n).split("(")[-1].rstrip(")") if n >= 1024 else f"{n} B"


def layer_table(
    model: nn.Module,
    batch: Any,
    layers: Iterable[LayerSpec] | None = None,
    *,
    samples: SampleMode = "examples",
    input_key: InputKey | None = None,
    grid: int | tuple[int, ...] | None = None,
) -> list:
    """List a model's layers with output shapes, widths and the memory of each estimator.

    The model runs once on ``batch`` (eval mode, ``torch.inference_mode()``; modes restored).

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    batch : Any
        One batch, as the loader of :func:`compare_models` yields it.
    layers : sequence of str or int, optional
        The layers to list; default every module that runs (the root ``""`` included).
    samples : {"examples", "tokens", "positions", "pooled"}, default "examples"
        The sample mode the widths and sample counts are given for; a layer whose output does
        not fit it is listed under ``"examples"``.
    input_key : int, str or callable, optional
        As in :func:`compare_models`.
    grid : int or tuple of int, optional
        As in :func:`compare_models`, for ``samples="positions"``.

    Returns
    -------
    list
        One row per layer that ran (its ``name``, ``kind``, ``shape``, ``samples``, ``width``,
        ``exact_bytes``, ``minibatch_bytes``), in the order of ``layers``; prints as a table.

    Raises
    ------
    ValueError
        For an unknown layer name or sample mode.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same
    Things?*, ICLR (the minibatch estimator).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from cka_sim.torch import layer_table
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))
    >>> table = layer_table(net, torch.randn(16, 3, 8, 8))
    >>> [(info.name, info.width) for info in table]
    [('', 2), ('0', 288), ('1', 288), ('2', 288), ('3', 2)]
    >>> layer_table(net, torch.randn(16, 3, 8, 8), ["0"], samples="positions")[0].width
    8
    """
    _check_module(model, "model")
    chosen = [n for n, _ in model.named_modules()] if layers is None else layers
    names = [name for name, _ in _resolve_layers(model, chosen, "layers")]
    rule = sample_rule(samples, "mean", grid)
    outputs, _ = probe_outputs(model, batch, names, input_key)
    if rule.uses_mask:
        rule.mask = batch_mask("auto", batch, batch if isinstance(batch, dict) else {})
    modules = dict(model.named_modules(remove_duplicate=False))
    return _LayerTable(
        _row(name, type(modules[name]).__name__, outputs[name], rule)
        for name in names
        if name in outputs
    )


def _row(name: str, kind: str, output: Any, rule: Any) -> _LayerInfo:
    """One layer's row: its samples and width under ``rule`` (else as examples), its memory."""
    from ..accumulators import StreamingCKAMatrix

    try:
        rows = rule.rows(output, name)
    except ValueError:
        rows = output.reshape(output.shape[0], -1) if output.dim() else output.reshape(1, 1)
    m = int(rows.shape[0])
    width = int(rows[0].numel()) if m else 0
    return _LayerInfo(
        name=name,
        kind=kind,
        shape=tuple(int(d) for d in output.shape),
        samples=m,
        width=width,
        exact_bytes=StreamingCKAMatrix.estimate_memory([width], shared=True),
        minibatch_bytes=16 * m * m,
    )
