"""Which tensor of a module's output is recorded: the first one found, or the one selected.

A module may return a tensor, a tuple (an LSTM's ``(output, (h, c))``), a dict, a dataclass or a
Hugging Face ``ModelOutput``; :func:`first_tensor` is the default rule, and ``select=`` (an index,
a key or a callable, per layer if need be) overrides it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

Selector = int | str | Callable[[Any], torch.Tensor]


def first_tensor(output: Any) -> torch.Tensor | None:
    """The first tensor of a module output, searched depth-first; None when there is none.

    A tensor is itself; a mapping (``dict``, ``OrderedDict``, a Hugging Face ``ModelOutput``) is
    searched in value order, which for ``ModelOutput`` skips the ``None`` fields; a dataclass in
    field order; a tuple or list (``NamedTuple`` included) in element order. So an LSTM's
    ``(output, (h, c))`` gives ``output`` and a ``ModelOutput`` gives its first set field
    (``last_hidden_state`` or ``logits``).

    Parameters
    ----------
    output : Any
        What a module's forward returned.

    Returns
    -------
    torch.Tensor or None
        The tensor found, or None when there is none (the caller then says which layer).

    References
    ----------
    Wolf et al. (2020), *Transformers: State-of-the-Art Natural Language Processing*, EMNLP
    (``ModelOutput``, the output type of Hugging Face models).

    Examples
    --------
    >>> import torch
    >>> from cka_sim.torch import first_tensor
    >>> h = torch.zeros(2, 3)
    >>> first_tensor((None, {"hidden": h, "cell": torch.ones(1)})) is h
    True
    """
    if isinstance(output, torch.Tensor):
        return output
    items: Iterable[Any]
    if isinstance(output, Mapping):
        items = output.values()
    elif dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = (getattr(output, field.name) for field in dataclasses.fields(output))
    elif isinstance(output, (tuple, list)):
        items = output
    else:
        return None
    for item in items:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


def _select(output: Any, selector: Selector | None, layer: str) -> torch.Tensor:
    if selector is None:
        chosen = first_tensor(output)
        how = "the default rule (first tensor, depth-first)"
    elif callable(selector):
        chosen = selector(output)
        how = f"the selector {selector!r}"
    elif isinstance(selector, str):
        how = f"the key {selector!r}"
        if isinstance(output, Mapping):
            if selector not in output:
                raise ValueError(
                    f"layer {layer!r}: the selector {selector!r} is not a key of its output; keys "
                    f"are {list(output.keys())}"
                )
            chosen = output[selector]
        elif hasattr(output, selector):
            chosen = getattr(output, selector)
        else:
            raise ValueError(
                f"layer {layer!r}: its output ({type(output).__name__}) has no key or attribute "
                f"{selector!r}"
            )
    else:
        how = f"the index {selector!r}"
        if not isinstance(output, (tuple, list)):
            raise ValueError(
                f"layer {layer!r}: an int selector needs a tuple or list output; got "
                f"{type(output).__name__}"
            )
        chosen = output[selector]
    if not isinstance(chosen, torch.Tensor):
        raise TypeError(
            f"layer {layer!r}: {how} gave {type(chosen).__name__} from an output of type "
            f"{type(output).__name__}, not a tensor; pass select= (an index, a key or a callable "
            "returning a tensor) for this layer"
        )
    return chosen


def _selectors(
    select: Selector | Mapping[str, Selector] | None, names: Sequence[str]
) -> dict[str, Selector | None]:
    if isinstance(select, Mapping):
        unknown = [key for key in select if key not in names]
        if unknown:
            raise ValueError(
                f"select has entries for {unknown}, which are not recorded layers; recorded "
                f"layers are {list(names)}"
            )
        return {name: select.get(name) for name in names}
    if select is not None and not (callable(select) or isinstance(select, (str, int))):
        raise TypeError(
            "select must be None, an int index, a str key, a callable returning a tensor, or a "
            f"mapping from layer name to one of those; got {type(select).__name__}"
        )
    return dict.fromkeys(names, select)
