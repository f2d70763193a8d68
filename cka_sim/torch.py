"""PyTorch model comparison: layer outputs recorded by exact name, CKA of every layer pair.

:func:`record_activations` attaches forward hooks to modules chosen by their fully qualified name in
``model.named_modules()`` (``"encoder.0"``, ``"layer1.0.conv2"``) and keeps each module's latest
output. :func:`compare_models` runs two models over a data loader and feeds those outputs, batch by
batch, to a streaming CKA accumulator, giving the CKA of every (layer of model A, layer of model B)
pair as a :class:`~cka_sim.result.CKAResult`.

This module imports torch; ``import cka_sim`` does not. See ``docs/model_comparison.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import operator
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

try:
    import torch
    from torch import nn
except ImportError as _err:
    raise ModuleNotFoundError(
        'cka_sim.torch needs torch; install the torch extra: pip install "cka-sim[torch]"',
        name="torch",
    ) from _err

from ._measures import Measure, check_measure
from ._validation import check_choice
from .result import CKAResult

__all__ = [
    "ActivationStore",
    "LayerCalledTwiceWarning",
    "compare_models",
    "default_layers",
    "record_activations",
]

LayerSpec = str | int
Selector = int | str | Callable[[Any], torch.Tensor]
InputKey = int | str | Callable[[Any], Any]

# Keys tried, in this order, to find the model input in a dict batch when no ``input_key`` is given.
INPUT_KEYS = ("x", "input", "inputs", "pixel_values", "image", "images", "input_ids")


class LayerCalledTwiceWarning(RuntimeWarning):
    """A recorded module ran more than once in one forward pass of the model.

    Typical causes: one activation module (``nn.ReLU()``) reused at several places, weight
    sharing, or a recurrent loop. The store keeps the output of the last call only, so the CKA of
    that layer describes its last use. Record a module that runs once instead (register separate
    activation modules, or record the enclosing block).
    """


class ActivationStore(Mapping[str, torch.Tensor]):
    """Read-only mapping ``layer name -> output of that layer's latest call``.

    Yielded by :func:`record_activations`. Iteration follows the order in which the layers were
    requested and lists only the layers that have run since the store was created or last
    :meth:`clear`-ed.

    Parameters
    ----------
    layers : sequence of str
        The recorded layer names, in the order requested.

    Raises
    ------
    KeyError
        On reading a layer that is not recorded, or has not run since the last :meth:`clear`;
        the message says which.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from cka_sim.torch import record_activations
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    >>> with record_activations(net, ["0", "1"]) as store:
    ...     before = store.missing()
    ...     _ = net(torch.randn(3, 4))
    >>> before, store.missing(), list(store), store.layers
    (['0', '1'], [], ['0', '1'], ('0', '1'))
    """

    def __init__(self, layers: Sequence[str]) -> None:
        self._layers = tuple(layers)
        self._data: dict[str, torch.Tensor] = {}

    @property
    def layers(self) -> tuple[str, ...]:
        """The recorded layer names, in the order requested."""
        return self._layers

    def missing(self) -> list[str]:
        """Return the recorded layers that have not run since the last :meth:`clear`.

        Returns
        -------
        list of str
            In the order requested; empty after a complete forward pass.
        """
        return [name for name in self._layers if name not in self._data]

    def clear(self) -> None:
        """Forget every stored output (done by :func:`compare_models` before each batch)."""
        self._data.clear()

    def _put(self, name: str, value: torch.Tensor) -> None:
        self._data[name] = value

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._data[name]
        except KeyError:
            if name in self._layers:
                raise KeyError(
                    f"layer {name!r} has not run since the store was created or cleared; call the "
                    "model inside the `with record_activations(...)` block first"
                ) from None
            raise KeyError(
                f"layer {name!r} is not recorded; recorded layers are {list(self._layers)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._layers if name in self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shapes = {name: tuple(self._data[name].shape) for name in self}
        return f"ActivationStore({shapes}, missing={self.missing()})"


# --------------------------------------------------------------------------------------------------
# Layer names


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


def default_layers(model: nn.Module) -> list[str]:
    """The layers :func:`compare_models` uses when none are given.

    Every leaf module (one with no child modules) that owns parameters, in
    ``named_modules()`` order: convolutions, linear layers, normalisation layers with an affine
    part, embeddings. Parameter-free leaves (activations, pooling, dropout, ``Flatten``) are left
    out because they often repeat the previous layer (dropout in eval mode), are reused at several
    places (one ``nn.ReLU()`` called twice), or are functional calls with no module at all. Name
    them explicitly to compare them.

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    list of str
        Fully qualified module names (``""`` when the model itself is such a leaf).

    Raises
    ------
    TypeError
        If ``model`` is not a ``torch.nn.Module``.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML.

    Examples
    --------
    >>> from torch import nn
    >>> from cka_sim.torch import default_layers
    >>> default_layers(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2)))
    ['0', '3']
    """
    _check_module(model, "model")
    return [
        name
        for name, module in model.named_modules()
        if next(module.children(), None) is None
        and next(module.parameters(recurse=False), None) is not None
    ]


# --------------------------------------------------------------------------------------------------
# Output selection


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


# --------------------------------------------------------------------------------------------------
# Hooks


class _ForwardTracker:
    """Counts calls of each recorded layer during one forward pass of the root model."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.active = False
        self.calls: dict[str, int] = {}
        self.warned: set[str] = set()

    def start(self, module: nn.Module, args: Any) -> None:
        self.active = True
        self.calls.clear()

    def stop(self, module: nn.Module, args: Any, output: Any = None) -> None:
        self.active = False

    def called(self, name: str) -> None:
        if not self.active:
            return
        count = self.calls.get(name, 0) + 1
        self.calls[name] = count
        if count == 2 and name not in self.warned:
            self.warned.add(name)
            warnings.warn(
                f"module {name!r} of {self.model_name} ran more than once in one forward pass; "
                "only its last output is kept. Record a module that runs once (e.g. a separate "
                "activation module per use) to compare a specific call.",
                LayerCalledTwiceWarning,
                stacklevel=2,
            )


def _capture_hook(
    store: ActivationStore,
    tracker: _ForwardTracker,
    name: str,
    selector: Selector | None,
    *,
    detach: bool,
    clone: bool,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        tracker.called(name)
        tensor = _select(output, selector, name)
        if detach:
            tensor = tensor.detach()
        if transform is not None:
            tensor = transform(tensor)
        elif clone:
            tensor = tensor.clone()
        store._put(name, tensor)

    return hook


@contextlib.contextmanager
def _restore_training_modes(*models: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit (also on exceptions)."""
    saved = [(module, module.training) for model in models for module in model.modules()]
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag


@contextlib.contextmanager
def record_activations(
    model: nn.Module,
    layers: LayerSpec | Iterable[LayerSpec],
    *,
    select: Selector | Mapping[str, Selector] | None = None,
    detach: bool = True,
    clone: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[ActivationStore]:
    """Record the outputs of named modules while the model runs.

    Inside the ``with`` block every call of a recorded module stores its output under the module's
    fully qualified name, replacing the previous one, so after ``model(x)`` the store holds the
    outputs of that forward pass. On exit, normal or by an exception, the hooks are removed and
    the ``training`` flag of every submodule is restored to its value on entry.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its ``named_modules()`` define the names.
    layers : str, int or sequence of them
        Modules to record. A ``str`` is an exact fully qualified name from
        ``model.named_modules()`` (``""`` is the model itself, so its final output can be
        recorded); no short-name or suffix matching is done. An ``int`` indexes
        ``list(model.named_modules())``, root included at index 0, negative from the end. A module
        registered under several names may be requested by any of them.
    select : int, str, callable or mapping of layer name to one of those, optional
        Which tensor to keep from an output that is not a tensor. Default: the first tensor
        found depth-first (see :func:`first_tensor`): element 0 of a tuple, the first value of a
        dict or ``ModelOutput``, the first field of a dataclass. An ``int`` indexes a tuple, a
        ``str`` is a key or attribute (``"logits"``), a callable maps the output to a tensor.
    detach : bool, default True
        Store outputs detached from the autograd graph. ``False`` keeps the graph (e.g. to
        backpropagate through a CKA loss).
    clone : bool, default True
        Store a copy. Without it an in-place operation after the layer, such as
        ``nn.ReLU(inplace=True)`` or a residual ``out += identity``, silently changes the stored
        output.
    transform : callable, optional
        Applied to each recorded output (after ``select`` and ``detach``) and stored instead of
        a clone; it must return a new tensor (not a view of its input), which then serves as the
        copy. :func:`compare_models` uses it to flatten and translate the features in the hook.

    Yields
    ------
    ActivationStore
        Mapping ``name -> tensor`` of the latest output of each recorded module that has run.

    Raises
    ------
    ValueError
        A name that is not in ``named_modules()`` (the message lists close matches), an index out
        of range, or a layer requested twice.

    Warns
    -----
    LayerCalledTwiceWarning
        When a recorded module runs more than once in one forward pass of ``model`` (once per
        module and ``with`` block).

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS (forward hooks, through which the outputs are recorded).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from cka_sim.torch import record_activations
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with record_activations(net, ["0", "2"]) as acts:
    ...     _ = net(torch.randn(5, 4))
    >>> {name: tuple(t.shape) for name, t in acts.items()}
    {'0': (5, 8), '2': (5, 2)}
    """
    _check_module(model, "model")
    resolved = _resolve_layers(model, layers, "layers")
    names = [name for name, _ in resolved]
    selectors = _selectors(select, names)
    store = ActivationStore(names)
    tracker = _ForwardTracker(type(model).__name__)
    handles: list[torch.utils.hooks.RemovableHandle] = []
    with _restore_training_modes(model):
        try:
            handles.append(model.register_forward_pre_hook(tracker.start, prepend=True))
            handles.append(model.register_forward_hook(tracker.stop, always_call=True))
            for name, module in resolved:
                hook = _capture_hook(
                    store,
                    tracker,
                    name,
                    selectors[name],
                    detach=detach,
                    clone=clone,
                    transform=transform,
                )
                handles.append(module.register_forward_hook(hook))
            yield store
        finally:
            for handle in handles:
                handle.remove()


# --------------------------------------------------------------------------------------------------
# compare_models


def _check_module(model: Any, argument: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{argument} must be a torch.nn.Module; got {type(model).__name__}")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def extract_inputs(batch: Any, input_key: InputKey | None = None) -> Any:
    """The model input of one batch, as :func:`compare_models` finds it.

    - ``input_key`` callable: ``input_key(batch)``.
    - a tensor: the batch itself.
    - a tuple or list, e.g. ``(x, y)``: element ``input_key`` (default 0).
    - a mapping: ``batch[input_key]``; without ``input_key`` the first key present among
      ``"x", "input", "inputs", "pixel_values", "image", "images", "input_ids"``, or the only
      tensor value.

    The result is passed as ``model(result)``, except that a tuple returned by a callable
    ``input_key`` is passed as positional arguments and a dict as keyword arguments.

    Parameters
    ----------
    batch : Any
        One batch of the loader.
    input_key : int, str or callable, optional
        How to find the input, as in :func:`compare_models`.

    Returns
    -------
    Any
        The model input.

    Raises
    ------
    ValueError
        If ``input_key`` does not fit the batch (a key that is absent, an index out of range, a
        key given for a tensor batch), or a dict batch has no recognisable input.
    TypeError
        For a batch that is none of a tensor, tuple, list or mapping (pass a callable).

    References
    ----------
    Paszke et al. (2019), *PyTorch: An Imperative Style, High-Performance Deep Learning
    Library*, NeurIPS; Wolf et al. (2020), *Transformers: State-of-the-Art Natural Language
    Processing*, EMNLP (the dict batches and key names of Hugging Face models).

    Examples
    --------
    >>> import torch
    >>> from cka_sim.torch import extract_inputs
    >>> x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    >>> extract_inputs((x, y)) is x, extract_inputs({"pixel_values": x, "labels": y}) is x
    (True, True)
    """
    if callable(input_key):
        return input_key(batch)
    if isinstance(batch, torch.Tensor):
        if input_key is not None:
            raise ValueError(
                f"input_key={input_key!r} was given but the batch is a tensor; leave input_key "
                "as None"
            )
        return batch
    if isinstance(batch, Mapping):
        if input_key is not None:
            if input_key not in batch:
                raise ValueError(
                    f"input_key={input_key!r} is not a key of the batch; keys are {list(batch)}"
                )
            return batch[input_key]
        for key in INPUT_KEYS:
            if key in batch:
                return batch[key]
        tensors = [key for key, value in batch.items() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:
            return batch[tensors[0]]
        raise ValueError(
            f"cannot tell which entry of the dict batch is the model input (keys {list(batch)}); "
            f"pass input_key='<key>' or input_key=callable (tried {list(INPUT_KEYS)})"
        )
    if isinstance(batch, (tuple, list)):
        index = 0 if input_key is None else input_key
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(
                f"input_key={input_key!r}: a tuple or list batch needs an int index or a callable"
            )
        if not -len(batch) <= index < len(batch):
            raise ValueError(
                f"input_key={index} is out of range for a batch of {len(batch)} elements"
            )
        return batch[index]
    raise TypeError(
        f"unsupported batch type {type(batch).__name__}: batches must be tensors, (x, y) tuples "
        "or lists, or dicts; pass input_key=callable to extract the input yourself"
    )


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _run(model: nn.Module, inputs: Any, device: torch.device, from_callable: bool) -> None:
    inputs = _to_device(inputs, device)
    if from_callable and isinstance(inputs, Mapping):
        model(**inputs)
    elif from_callable and isinstance(inputs, tuple):
        model(*inputs)
    else:
        model(inputs)


def _collect(
    store: ActivationStore, names: Sequence[str], argument: str, batch_index: int
) -> dict[str, torch.Tensor]:
    missing = [name for name in names if name not in store]
    if missing:
        raise ValueError(
            f"{argument}: layer(s) {missing} produced no output in batch {batch_index}: they are "
            "not called by forward(), or are called in a way that bypasses Module.__call__ "
            "(module.forward(x)). Choose layers that run on every batch."
        )
    return {name: store[name] for name in names}


def _measure_settings(
    measure: Any, estimator: Any, debiased: Any, confounder: Any
) -> tuple[str, str, bool]:
    """``measure``, ``estimator`` and ``debiased`` with their defaults resolved and checked."""
    if debiased is None:
        debiased = measure != "procrustes"
    measure = check_measure(measure, debiased=bool(debiased))
    if estimator is None:
        estimator = "minibatch" if measure == "cka" else "exact"
    check_choice(estimator, "estimator", ("minibatch", "exact"))
    if measure != "cka" and estimator != "exact":
        raise ValueError(
            f"measure={measure!r} is computed by the exact accumulator only; pass "
            "estimator='exact' (or leave estimator unset)"
        )
    if confounder is not None and (measure != "dcka" or not callable(confounder)):
        raise ValueError(
            "confounder must be a callable batch -> (m, ...) tensor, used by measure='dcka' "
            f"only; got {type(confounder).__name__} with measure={measure!r}"
        )
    return measure, estimator, bool(debiased)


def _model_input(batch: Any, inputs: Any) -> torch.Tensor:
    """The default confounder of a batch: the model input (its first tensor)."""
    tensor = first_tensor(inputs)
    if tensor is None:
        raise ValueError(
            "measure='dcka' uses the model input as the confounder, but the input of this batch "
            "holds no tensor; pass confounder=callable(batch) returning one"
        )
    return tensor


def _make_accumulator(
    estimator: str, debiased: bool, memory_budget_bytes: int | None, measure: str = "cka"
) -> Any:
    if estimator == "minibatch":
        from .minibatch import MinibatchCKA

        if memory_budget_bytes is not None:
            raise ValueError(
                "memory_budget_bytes applies to estimator='exact' only (the minibatch estimator's "
                "memory depends on the batch size, not on the layer widths); leave it as None"
            )
        return MinibatchCKA(debiased=debiased)
    from .streaming import StreamingCKAMatrix

    return StreamingCKAMatrix(
        debiased=debiased, memory_budget_bytes=memory_budget_bytes, measure=measure
    )


def _distributed_world() -> int | None:
    """World size when a ``torch.distributed`` process group is initialised, else None."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return None


def compare_models(
    model_a: nn.Module,
    model_b: nn.Module,
    loader: Iterable[Any],
    *,
    layers_a: Iterable[LayerSpec] | None = None,
    layers_b: Iterable[LayerSpec] | None = None,
    estimator: Literal["minibatch", "exact"] | None = None,
    debiased: bool | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    input_key: InputKey | None = None,
    memory_budget_bytes: int | None = None,
    measure: Measure = "cka",
    confounder: Callable[[Any], Any] | None = None,
) -> CKAResult:
    r"""Linear CKA between every layer of ``model_a`` and every layer of ``model_b``.

    Both models see the same batches. For each pair of layers with flattened outputs
    :math:`X` (n x p₁) and :math:`Y` (n x p₂),

    .. math:: \mathrm{CKA}(X, Y) = \frac{\mathrm{HSIC}(XX^\top, YY^\top)}
              {\sqrt{\mathrm{HSIC}(XX^\top, XX^\top)\,\mathrm{HSIC}(YY^\top, YY^\top)}}.

    ``estimator="minibatch"`` (Nguyen, Raghu & Kornblith 2021) averages the unbiased HSIC₁ of each
    batch in the numerator and both denominators; memory does not grow with the widths, but it
    estimates a different quantity from full-data CKA and needs batches of at least 4 examples.
    ``estimator="exact"`` is the full-data linear CKA of all examples (Kornblith et al. 2019),
    accumulated from centred feature statistics; its memory grows with the squared widths.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The models. Passing the same object twice runs one forward pass per batch.
    loader : iterable of batches
        E.g. a ``DataLoader``. A batch is a tensor, an ``(x, y, ...)`` tuple or list, or a dict
        (see ``input_key``).
    layers_a, layers_b : sequence of str or int, optional
        Layers of each model (exact names or indices into ``named_modules()``, as in
        :func:`record_activations`). Rows follow ``layers_a`` and columns ``layers_b`` in the
        order given. Default: :func:`default_layers` (leaf modules that own parameters).
    estimator : {"minibatch", "exact"}, optional
        Default: ``"minibatch"`` for ``measure="cka"``, ``"exact"`` (the only one they have) for
        the other measures.
    debiased : bool, optional
        Use the unbiased HSIC₁ (Song et al. 2012) instead of the biased HSIC. Default: True for
        CKA and dCKA; Procrustes has no debiased form.
    device : str or torch.device, optional
        Where to run. Default: each model where its first parameter (or buffer) lives, with
        inputs moved there. When given, both models are moved there with ``Module.to`` and left
        there.
    progress : bool, default True
        Show a tqdm progress bar (on rank 0 only under ``torch.distributed``).
    input_key : int, str or callable, optional
        How to find the model input in a batch: an index for tuple batches (default 0), a key
        for dict batches (default: the first of ``"x", "input", "inputs", "pixel_values",
        "image", "images", "input_ids"`` present, or the only tensor), or ``callable(batch)``;
        a tuple from the callable is passed as positional arguments, a dict as keyword
        arguments.
    memory_budget_bytes : int, optional
        For ``estimator="exact"``: refuse with a ``MemoryError`` at the first batch when the
        accumulator would need more (see ``StreamingCKAMatrix.estimate_memory``). ``None``: no
        limit. The exact accumulator holds p_i x p_j float64 products, so a convolutional feature
        map of 16 x 32 x 32 = 16,384 features alone needs 2 GiB: choose narrow layers or the
        minibatch estimator.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        ``"dcka"``: deconfounded CKA (Cui et al. 2022), every layer's Gram regressed on the
        confounder's before CKA; ``"procrustes"``: the orthogonal Procrustes similarity
        (Ding et al. 2021). Both use the exact accumulator
        (:class:`~cka_sim.StreamingCKAMatrix`).
    confounder : callable, optional
        For ``measure="dcka"``: ``confounder(batch)`` gives the (m, ...) confounder of a batch.
        Default: the model's input itself (the tensor found by ``input_key``, or the first tensor
        of what an ``input_key`` callable returns), flattened per example: the input's own
        similarity structure, which every layer inherits.

    Returns
    -------
    CKAResult
        ``values[i, j]`` is the CKA of ``layers_a[i]`` and ``layers_b[j]``. ``metadata`` records
        the model classes, layer lists, estimator, activation dtype, device, number of batches and
        the world size.

    Raises
    ------
    TypeError
        If a model is not a ``torch.nn.Module``, a batch is of an unsupported type, or a layer's
        output holds no tensor.
    ValueError
        For a layer name that is not in the model (the message lists close matches), a choice
        outside those listed, or batches too small for the debiased minibatch estimator.
    MemoryError
        For ``estimator="exact"`` when the accumulator would need more than
        ``memory_budget_bytes``.

    Notes
    -----
    Runs under ``torch.inference_mode()`` with both models in eval mode; every submodule's
    training flag is restored afterwards and the hooks are removed, also when an error is raised.
    Layer outputs are taken with :func:`first_tensor` and copied before the next layer runs, so
    in-place operations downstream do not alter them. When a ``torch.distributed`` process group
    is initialised, each process should iterate over its own shard of the data (e.g. with a
    ``DistributedSampler``); the accumulators are summed with ``all_reduce`` before the CKA
    values are computed, so every process returns the result for the union of the shards.

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML. Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same
    Things?*, ICLR.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from cka_sim.torch import compare_models
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> a = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> b = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> loader = DataLoader(TensorDataset(torch.randn(256, 8)), batch_size=64)
    >>> result = compare_models(a, b, loader, layers_a=["1", "2"], layers_b=["1", "2"],
    ...                         estimator="exact", progress=False)
    >>> result.shape, result.row_names, result.estimator
    ((2, 2), ['1', '2'], 'linear-debiased')
    """
    _check_module(model_a, "model_a")
    _check_module(model_b, "model_b")
    measure, estimator, debiased = _measure_settings(measure, estimator, debiased, confounder)
    names_a = [n for n, _ in _resolve_layers(model_a, _or_default(model_a, layers_a), "layers_a")]
    names_b = [n for n, _ in _resolve_layers(model_b, _or_default(model_b, layers_b), "layers_b")]
    if device is not None:
        device = torch.device(device)
        model_a.to(device)
        model_b.to(device)
    world_size = _distributed_world()
    accumulator = _make_accumulator(estimator, debiased, memory_budget_bytes, measure)
    # capture -> accumulate -> result
    prepare = _preparing(accumulator) if estimator == "minibatch" else None
    confounder_of = None
    if measure == "dcka":
        confounder_of = confounder if confounder is not None else _model_input
    with _Capture(model_a, model_b, names_a, names_b, input_key, prepare) as capture:
        n_batches, dtypes = _accumulate(
            accumulator, capture, loader, progress, world_size, confounder_of
        )
    if world_size is not None:
        accumulator.all_reduce()
    result = accumulator.compute()
    if list(result.row_names) != names_a or list(result.col_names) != names_b:
        raise RuntimeError(
            f"internal error: the accumulator returned rows {result.row_names} and columns "
            f"{result.col_names}; expected {names_a} and {names_b}"
        )
    result.metadata.update(
        {
            "model_a": type(model_a).__name__,
            "model_b": type(model_b).__name__,
            "same_model": capture.same_model,
            "layers_a": names_a,
            "layers_b": names_b,
            "estimator": estimator,
            "debiased": debiased,
            "measure": measure,
            "activation_dtype": sorted(dtypes),
            "device": str(capture.device_a),
            "device_a": str(capture.device_a),
            "device_b": str(capture.device_b),
            "n_batches": n_batches,
            "world_size": world_size or 1,
        }
    )
    return result


class _Capture:
    """Both models' recorded layers, one batch at a time (a context manager).

    On entry both models go to eval mode and the hooks are attached; on exit (also on errors) the
    hooks are removed and every submodule's training flag is restored. For the minibatch estimator
    each hook stores what :meth:`MinibatchCKA.prepare` makes of the layer output: its (m, m) Gram,
    formed at once from the flattened (and, where its offset is large, translated) output, so
    nothing refers to the output when a later in-place operation changes it and no (m, p) copy
    is kept (``prepare``, a hook transform).
    """

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module,
        names_a: list[str],
        names_b: list[str],
        input_key: InputKey | None,
        prepare: Callable[[torch.Tensor], Any] | None,
    ) -> None:
        self.models = (model_a, model_b)
        self.names_a, self.names_b = names_a, names_b
        self.same_model = model_a is model_b
        self.device_a, self.device_b = _model_device(model_a), _model_device(model_b)
        self.input_key = input_key
        self._transform = prepare
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Capture:
        model_a, model_b = self.models
        stack, transform = self._stack, self._transform
        stack.enter_context(_restore_training_modes(model_a, model_b))
        model_a.eval()
        model_b.eval()
        if self.same_model:
            union = list(dict.fromkeys(self.names_a + self.names_b))
            self.store_a = self.store_b = stack.enter_context(
                record_activations(model_a, union, transform=transform)
            )
        else:
            self.store_a = stack.enter_context(
                record_activations(model_a, self.names_a, transform=transform)
            )
            self.store_b = stack.enter_context(
                record_activations(model_b, self.names_b, transform=transform)
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def run(self, batch: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The recorded outputs of both models on one batch (model B's on model A's device)."""
        inputs = extract_inputs(batch, self.input_key)
        self.inputs = inputs
        from_callable = callable(self.input_key)
        self.clear()
        _run(self.models[0], inputs, self.device_a, from_callable)
        if not self.same_model:
            _run(self.models[1], inputs, self.device_b, from_callable)
        acts_a = _collect(self.store_a, self.names_a, "layers_a", index)
        if self.same_model and self.names_b == self.names_a:
            acts_b = acts_a  # one mapping: the accumulator forms each Gram once
        else:
            acts_b = _collect(self.store_b, self.names_b, "layers_b", index)
        if self.device_b != self.device_a:
            acts_b = {name: t.to(self.device_a) for name, t in acts_b.items()}
        return acts_a, acts_b

    def clear(self) -> None:
        self.store_a.clear()
        self.store_b.clear()


def _accumulate(
    accumulator: Any,
    capture: _Capture,
    loader: Iterable[Any],
    progress: bool,
    world_size: int | None,
    confounder_of: Callable[..., Any] | None = None,
) -> tuple[int, set[str]]:
    """Feed every batch's recorded layers to the accumulator; the batch count and dtypes seen.

    ``confounder_of`` (``measure="dcka"``): the confounder of a batch, from the batch (a user's
    callable) or from the batch and the model input (the default, :func:`_model_input`).
    """
    try:
        from tqdm.auto import tqdm
    except ImportError as err:
        raise ModuleNotFoundError(
            "compare_models needs tqdm for its progress bar; install the torch extra: "
            'pip install "cka-sim[torch]"',
            name="tqdm",
        ) from err

    rank = torch.distributed.get_rank() if world_size is not None else 0
    n_batches, dtypes = 0, set()
    disable = not progress or rank != 0
    total = _length(loader)
    with tqdm(loader, total=total, desc="compare_models", unit="batch", disable=disable) as bar:
        with torch.inference_mode():
            for batch in bar:
                acts_a, acts_b = capture.run(batch, n_batches)
                dtypes.update(str(t.dtype) for t in (*acts_a.values(), *acts_b.values()))
                if confounder_of is None:
                    accumulator.update(acts_a, acts_b)
                else:
                    z = _batch_confounder(confounder_of, batch, capture)
                    accumulator.update(acts_a, acts_b, z)
                # Free this batch's activations before the next forward pass, not after it.
                del acts_a, acts_b
                capture.clear()
                n_batches += 1
    if n_batches == 0:
        raise ValueError("loader yielded no batches; compare_models needs at least one")
    return n_batches, dtypes


def _batch_confounder(confounder_of: Callable[..., Any], batch: Any, capture: _Capture) -> Any:
    """The confounder of one batch on model A's device, detached."""
    if confounder_of is _model_input:
        z = _model_input(batch, capture.inputs)
    else:
        z = confounder_of(batch)
    if not isinstance(z, torch.Tensor):
        z = torch.as_tensor(z)
    return z.detach().to(capture.device_a)


def _preparing(accumulator: Any) -> Callable[[torch.Tensor], Any]:
    """The hook transform: a layer output flattened per example and prepared for ``accumulator``.

    Half precision is upcast to float32 and integers to float64 first, as the accumulators do.
    An output that cannot be a batch is cloned instead, for ``update`` to report.
    """

    def prepare(tensor: torch.Tensor) -> Any:
        if tensor.dim() == 0 or tensor.shape[0] == 0 or tensor[0].numel() == 0:
            return tensor.clone()
        flat = tensor.reshape(tensor.shape[0], -1) if tensor.dim() != 2 else tensor
        return accumulator.prepare(flat, "layer output")

    return prepare


def _or_default(model: nn.Module, layers: Iterable[LayerSpec] | None) -> Iterable[LayerSpec]:
    if layers is not None:
        return layers
    found = default_layers(model)
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no leaf module with parameters, so there is no default "
            "layer list; pass the layers to compare by name"
        )
    return found


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
