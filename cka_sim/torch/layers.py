"""Which modules of a model are compared: exact names or indices, the default list, suggestions.

A layer is the fully qualified name of a module in ``model.named_modules()`` (``"encoder.0"``,
``"layer1.0.conv2"``; ``""`` is the model itself) or an index into that list. An unknown name is
refused with the names that come closest; no short-name or suffix matching is done.
"""

from __future__ import annotations

import difflib
import operator
import warnings
from collections.abc import Iterable
from typing import Any

from torch import nn

LayerSpec = str | int


def _check_module(model: Any, argument: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{argument} must be a torch.nn.Module; got {type(model).__name__}")


def _module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules()]


def _unknown_layer_message(model: nn.Module, name: str, argument: str) -> str:
    names = [n for n, _ in model.named_modules(remove_duplicate=False)]
    suffix = [n for n in names if n.endswith("." + name)]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(suffix + close))[:6]
    hint = (
        f"close matches: {suggestions}"
        if suggestions
        else f"no close match; the first names are {names[:8]}"
    )
    return (
        f"{argument}: {type(model).__name__} has no module named {name!r}; {hint}. Layers are the "
        "fully qualified names of model.named_modules() (the root is ''); list them with "
        "[name for name, _ in model.named_modules()]"
    )


def _resolve_layers(
    model: nn.Module, layers: LayerSpec | Iterable[LayerSpec], argument: str
) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for each requested layer, in the order given."""
    ordered = list(model.named_modules())
    by_name = dict(model.named_modules(remove_duplicate=False))
    if isinstance(layers, (str, int)):
        layers = [layers]
    try:
        specs = list(layers)
    except TypeError:
        raise TypeError(
            f"{argument} must be a sequence of module names (str) or indices (int); got "
            f"{type(layers).__name__}"
        ) from None
    if not specs:
        raise ValueError(f"{argument} is empty; name at least one module of the model")
    resolved: list[tuple[str, nn.Module]] = []
    seen: set[str] = set()
    for spec in specs:
        if isinstance(spec, str):
            if spec not in by_name:
                raise ValueError(_unknown_layer_message(model, spec, argument))
            name, module = spec, by_name[spec]
        else:
            if isinstance(spec, bool):
                raise TypeError(f"{argument} holds the bool {spec!r}; give a name or an int index")
            try:
                index = operator.index(spec)
            except TypeError:
                raise TypeError(
                    f"{argument} entries must be module names (str) or indices (int) into "
                    f"model.named_modules(); got {type(spec).__name__} {spec!r}"
                ) from None
            if not -len(ordered) <= index < len(ordered):
                raise ValueError(
                    f"{argument}: index {index} is out of range; {type(model).__name__} has "
                    f"{len(ordered)} modules in named_modules() order (index 0 is the root '')"
                )
            name, module = ordered[index]
        if name in seen:
            raise ValueError(
                f"{argument} names the module {name!r} twice; each layer may appear once"
            )
        seen.add(name)
        resolved.append((name, module))
    return resolved


def default_layers(model: nn.Module, batch: Any = None, *, input_key: Any = None) -> list[str]:
    """The layers :func:`compare_models` uses when none are given: the block outputs.

    A block is a child, itself with submodules, of an ``nn.Sequential`` or ``nn.ModuleList``
    that holds at least two children of its class: the residual blocks of a ResNet
    (``layer1.0``), the transformer layers of BERT (``encoder.layer.3``), GPT-2 (``h.3``) or a
    ViT (``blocks.3``). Where blocks nest, the innermost are taken. A model without such blocks
    (a plain stack of layers) gets every leaf module that owns parameters instead: convolutions,
    linear and normalisation layers, embeddings, in ``named_modules()`` order.

    With an example ``batch`` the model runs once on it, and layers whose output has no batch
    dimension (its first dimension is not the batch's example count, such as BERT's
    ``embeddings.position_embeddings``) are left out, with a warning naming them.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    batch : Any, optional
        An example batch, as the loader of :func:`compare_models` yields it.
    input_key : int, str or callable, optional
        How to find the model input in ``batch``, as in :func:`compare_models`.

    Returns
    -------
    list of str
        Fully qualified module names (``""`` when the model itself is such a leaf).

    Raises
    ------
    TypeError
        If ``model`` is not a ``torch.nn.Module``.

    Warns
    -----
    UserWarning
        Naming the layers left out because their output has no batch dimension.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML (block outputs, the layers compared there).

    Examples
    --------
    >>> from torch import nn
    >>> from cka_sim.torch import default_layers
    >>> default_layers(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)))
    ['0', '3']
    >>> block = lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    >>> default_layers(nn.Sequential(nn.Linear(2, 4), block(), block(), nn.Linear(4, 1)))
    ['1', '2']
    """
    _check_module(model, "model")
    names = _block_names(model) or [
        name
        for name, module in model.named_modules()
        if next(module.children(), None) is None
        and next(module.parameters(recurse=False), None) is not None
    ]
    if batch is None or not names:
        return names
    from .probe import probe_outputs

    outputs, n = probe_outputs(model, batch, names, input_key)
    skipped = {
        name: tuple(t.shape)
        for name, t in outputs.items()
        if n is not None and (t.dim() == 0 or int(t.shape[0]) != n)
    }
    if skipped:
        warnings.warn(
            f"default_layers({type(model).__name__}): left out {list(skipped)}, whose outputs "
            f"{list(skipped.values())} have no batch dimension of {n} examples",
            UserWarning,
            stacklevel=2,
        )
    return [name for name in names if name not in skipped]


def _block_names(model: nn.Module) -> list[str]:
    """The innermost repeated blocks of ``model`` (see :func:`default_layers`), in order."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Sequential, nn.ModuleList)):
            continue
        children = list(module.named_children())
        classes = [type(child) for _, child in children]
        for child_name, child in children:
            if classes.count(type(child)) >= 2 and next(child.children(), None) is not None:
                found.append(f"{name}.{child_name}" if name else child_name)
    return [name for name in found if not any(other.startswith(name + ".") for other in found)]


def _or_default(
    model: nn.Module,
    layers: Iterable[LayerSpec] | None,
    batch: Any = None,
    input_key: Any = None,
) -> Iterable[LayerSpec]:
    if layers is not None:
        return layers
    found = default_layers(model, batch, input_key=input_key)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no leaf module with parameters, so there is no default "
            "layer list; pass the layers to compare by name"
        )
    return found
