"""Layer capture by exact module name: forward hooks that keep each module's latest output.

:func:`record_activations` attaches a forward hook to every requested module and yields an
:class:`ActivationStore`; a hook on the root model counts calls per forward pass, so a module that
runs twice is reported (:class:`LayerCalledTwiceWarning`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .inputs import _restore_training_modes
from .layers import LayerSpec, _check_module, _resolve_layers
from .outputs import Selector, _select, _selectors
from .samples import MASK_KEY, MaskSource, Pooling, SampleMode, SampleRule, as_mask, sample_rule


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
    rule: SampleRule | None = None,
) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        tracker.called(name)
        tensor = _select(output, selector, name)
        if detach:
            tensor = tensor.detach()
        source = tensor
        if rule is not None:
            tensor = rule.rows(tensor, name)
        if transform is not None:
            tensor = transform(tensor)
        elif clone and _shares_memory(tensor, source):
            tensor = tensor.clone()
        store._put(name, tensor)

    return hook


def _shares_memory(tensor: torch.Tensor, source: torch.Tensor) -> bool:
    """Whether ``tensor`` (the output or what the sample rule made of it) is a view of ``source``."""
    if tensor is source:
        return True
    return tensor.untyped_storage().data_ptr() == source.untyped_storage().data_ptr()


@contextlib.contextmanager
def record_activations(
    model: nn.Module,
    layers: LayerSpec | Iterable[LayerSpec],
    *,
    select: Selector | Mapping[str, Selector] | None = None,
    detach: bool = True,
    clone: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    samples: SampleMode = "examples",
    mask: MaskSource = "auto",
    pooling: Pooling = "mean",
    grid: int | tuple[int, ...] | None = None,
) -> Iterator[ActivationStore]:
    """Record the outputs of named modules while the model runs.

    Each call of a recorded module stores its output under its name, replacing the last; on exit
    (also by an exception) the hooks are removed and every ``training`` flag is restored.

    Parameters
    ----------
    model : torch.nn.Module
        The model; its ``named_modules()`` define the names.
    layers : str, int or sequence of them
        Exact fully qualified names from ``model.named_modules()`` (``""``: the model itself; no
        suffix matching) or ``int`` indices into that list (root at 0, negative from the end). A
        module registered under several names may be requested by any of them.
    select : int, str, callable or mapping of layer name to one of those, optional
        Which tensor of an output that is not one: default :func:`first_tensor`; an ``int`` indexes
        a tuple, a ``str`` is a key or attribute (``"logits"``), a callable returns the tensor.
    detach : bool, default True
        Store outputs detached; ``False`` keeps the graph (to backpropagate through a CKA loss).
    clone : bool, default True
        Store a copy: else a later in-place operation (``nn.ReLU(inplace=True)``, a residual
        ``out += identity``) silently changes the stored output.
    transform : callable, optional
        Applied to each output (after ``select``, ``detach`` and ``samples``) and stored instead
        of a clone: it must return a new tensor, not a view (:func:`compare_models` uses it).
    samples, mask, pooling, grid : optional
        ``samples="examples"`` (default) stores outputs as they are; ``"tokens"``, ``"positions"``
        and ``"pooled"`` store (samples, features) rows as :func:`compare_models` does, with
        ``mask="auto"`` the ``attention_mask`` keyword of each call (None: every token; or a
        tensor); ``pooling`` ("mean", "first", "last", callable) and ``grid`` as there.

    Yields
    ------
    ActivationStore
        Mapping ``name -> tensor``: after ``model(x)``, the outputs of that forward pass.

    Raises
    ------
    ValueError
        An unknown name (close matches listed), index or choice, a layer requested twice; inside
        the block, an output whose shape does not fit ``samples`` or the mask (layer named).

    Warns
    -----
    LayerCalledTwiceWarning
        When a recorded module runs twice in one forward pass (once per module and block).

    References
    ----------
    Paszke et al. (2019), *PyTorch*, NeurIPS (forward hooks, through which outputs are recorded).

    Examples
    --------
    >>> import torch; from torch import nn
    >>> from cka_sim.torch import record_activations
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> with record_activations(net, ["0", "2"]) as acts:
    ...     _ = net(torch.randn(5, 4))
    >>> {name: tuple(t.shape) for name, t in acts.items()}
    {'0': (5, 8), '2': (5, 2)}
    """
    rule, from_call = _rule_of(samples, mask, pooling, grid)
    recording = _Recording(
        model, layers, select, detach=detach, clone=clone, transform=transform, rule=rule,
        mask_from_call=from_call,
    )  # fmt: skip
    with _restore_training_modes(model), recording as store:
        yield store


def _rule_of(samples: Any, mask: Any, pooling: Any, grid: Any) -> tuple[SampleRule | None, bool]:
    """The sample rule of :func:`record_activations` (None: outputs as they are) and whether
    the mask is read from each call's ``attention_mask``."""
    if samples == "examples" and grid is None:
        return None, False
    rule = sample_rule(samples, pooling, grid)
    auto = isinstance(mask, str) and mask == "auto"
    if mask is not None and not auto:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(
                "record_activations: mask must be 'auto', None or a (batch, tokens) tensor; got "
                f"{type(mask).__name__}"
            )
        rule.mask = as_mask(mask)
    return rule, auto and rule.uses_mask


class _Recording:
    """The hooks of one :func:`record_activations` block (a context manager yielding the store).

    Building one checks the model and the layers and makes the hooks; entering attaches them
    (first the call counter on the root model, then one capture hook per layer) and exiting, also
    after an error, removes them.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Iterable[LayerSpec],
        select: Selector | Mapping[str, Selector] | None,
        *,
        detach: bool,
        clone: bool,
        transform: Callable[[torch.Tensor], torch.Tensor] | None,
        rule: SampleRule | None = None,
        mask_from_call: bool = False,
    ) -> None:
        _check_module(model, "model")
        resolved = _resolve_layers(model, layers, "layers")
        names = [name for name, _ in resolved]
        selectors = _selectors(select, names)
        self.model = model
        self.store = ActivationStore(names)
        self.tracker = _ForwardTracker(type(model).__name__)
        self.hooks: list[tuple[nn.Module, Callable[[nn.Module, Any, Any], None]]] = []
        for name, module in resolved:
            hook = _capture_hook(
                self.store,
                self.tracker,
                name,
                selectors[name],
                detach=detach,
                clone=clone,
                transform=transform,
                rule=rule,
            )
            self.hooks.append((module, hook))
        self.rule = rule if mask_from_call else None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _mask_from_call(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        """Take the ``attention_mask`` keyword argument of this call as the token mask."""
        assert self.rule is not None
        found = kwargs.get(MASK_KEY)
        self.rule.mask = None if found is None else as_mask(found)

    def __enter__(self) -> ActivationStore:
        try:
            handles = self._handles
            handles.append(self.model.register_forward_pre_hook(self.tracker.start, prepend=True))
            handles.append(self.model.register_forward_hook(self.tracker.stop, always_call=True))
            if self.rule is not None:
                handles.append(
                    self.model.register_forward_pre_hook(self._mask_from_call, with_kwargs=True)
                )
            for module, hook in self.hooks:
                handles.append(module.register_forward_hook(hook))
        except BaseException:
            self._remove()
            raise
        return self.store

    def __exit__(self, *exc: Any) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
