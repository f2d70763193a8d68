"""How a batch reaches a model: the model input found in a batch, moved to the model's device.

:func:`extract_inputs` finds the input of a tensor, ``(x, y, ...)`` or dict batch (or applies the
caller's ``input_key``); :func:`_run` moves it to the model's device and calls the model.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

InputKey = int | str | Callable[[Any], Any]

# Keys tried, in this order, to find the model input in a dict batch when no ``input_key`` is given.
INPUT_KEYS = ("x", "input", "inputs", "pixel_values", "image", "images", "input_ids")


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
        return _from_mapping(batch, input_key)
    if isinstance(batch, (tuple, list)):
        return _from_sequence(batch, input_key)
    raise TypeError(
        f"unsupported batch type {type(batch).__name__}: batches must be tensors, (x, y) tuples "
        "or lists, or dicts; pass input_key=callable to extract the input yourself"
    )


def _from_mapping(batch: Mapping[Any, Any], input_key: int | str | None) -> Any:
    """``batch[input_key]``; without a key the first of :data:`INPUT_KEYS`, or the only tensor."""
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


def _from_sequence(batch: tuple[Any, ...] | list[Any], input_key: int | str | None) -> Any:
    """Element ``input_key`` (default 0) of a tuple or list batch."""
    index = 0 if input_key is None else input_key
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError(
            f"input_key={input_key!r}: a tuple or list batch needs an int index or a callable"
        )
    if not -len(batch) <= index < len(batch):
        raise ValueError(f"input_key={index} is out of range for a batch of {len(batch)} elements")
    return batch[index]


class BatchKeysDroppedWarning(UserWarning):
    """Some entries of a dict batch were not passed to the model.

    :func:`~cka_sim.torch.compare_models` passes a dict batch to a model whole, as keyword
    arguments, keeping the keys its ``forward`` names as parameters; the others (labels, ids of
    the examples) are dropped and named in this warning. Pass ``input_key=callable`` to choose the
    arguments yourself.
    """


def _forward_parameters(model: nn.Module) -> set[str]:
    """The names ``model.forward`` accepts as keyword arguments (``**kwargs`` not counted)."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds}


def _call_arguments(
    model: nn.Module, batch: Any, input_key: InputKey | None
) -> tuple[tuple[Any, ...], dict[str, Any], list[str]]:
    """``(args, kwargs, dropped keys)`` of the call ``model(*args, **kwargs)`` for one batch.

    A dict batch without ``input_key`` is passed whole as keyword arguments: every key that
    ``model.forward`` names as a parameter (``input_ids``, ``attention_mask``, ...). When it names
    none of them, the input found by :func:`extract_inputs` is passed positionally. Either way the
    keys left out are returned, for a :class:`BatchKeysDroppedWarning`.
    """
    if input_key is None and isinstance(batch, Mapping):
        accepted = _forward_parameters(model)
        kwargs = {key: value for key, value in batch.items() if key in accepted}
        if kwargs:
            return (), kwargs, [str(key) for key in batch if key not in kwargs]
        found = _from_mapping(batch, None)
        return (found,), {}, [str(key) for key, value in batch.items() if value is not found]
    inputs = extract_inputs(batch, input_key)
    if callable(input_key) and isinstance(inputs, Mapping):
        return (), dict(inputs), []
    if callable(input_key) and isinstance(inputs, tuple):
        return inputs, {}, []
    return (inputs,), {}, []


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to_device(item, device) for item in value)
    return value


def _run(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], device: torch.device
) -> None:
    model(*_to_device(args, device), **_to_device(kwargs, device))


@contextlib.contextmanager
def _restore_training_modes(*models: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit (also on exceptions)."""
    saved = [(module, module.training) for model in models for module in model.modules()]
    try:
        yield
    finally:
        for module, flag in saved:
            module.training = flag
