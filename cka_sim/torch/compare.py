"""CKA of every (layer of model A, layer of model B) pair, accumulated over a data loader.

:func:`compare_models` resolves the layers, captures both models' outputs batch by batch
(:class:`~cka_sim.torch.capture._Capture`), feeds them to a streaming accumulator
(``MinibatchCKA`` or ``StreamingCKAMatrix``), sums the accumulators across processes under
``torch.distributed``, and returns a :class:`~cka_sim.result.CKAResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn

from .._core.check import check_choice
from .._core.measures import Measure, check_measure
from ..result import CKAResult
from .capture import _Capture
from .inputs import InputKey
from .layers import LayerSpec, _check_module, _or_default, _resolve_layers
from .outputs import first_tensor


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
        from ..accumulators import MinibatchCKA

        if memory_budget_bytes is not None:
            raise ValueError(
                "memory_budget_bytes applies to estimator='exact' only (the minibatch estimator's "
                "memory depends on the batch size, not on the layer widths); leave it as None"
            )
        return MinibatchCKA(debiased=debiased)
    from ..accumulators import StreamingCKAMatrix

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

    Both models see the same batches in eval mode under ``torch.inference_mode()``, recorded as
    by :func:`record_activations`; every option in full: ``docs/model_comparison.md``.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The models; the same object twice runs one forward pass per batch.
    loader : iterable of batches
        Tensors, ``(x, y, ...)`` tuples or lists, or dicts (see ``input_key``).
    layers_a, layers_b : sequence of str or int, optional
        Rows and columns: exact module names or indices; default :func:`default_layers`.
    estimator : {"minibatch", "exact"}, optional
        Nguyen et al.'s minibatch estimator (a different quantity, batches of at least 4) or
        full-data CKA; default ``"minibatch"`` for CKA, ``"exact"`` for the other measures.
    debiased : bool, optional
        Unbiased HSIC₁ (Song et al. 2012); default True for CKA and dCKA.
    device : str or torch.device, optional
        Where to run; default each model's own device. Given, both models are moved there.
    progress : bool, default True
        A tqdm progress bar (rank 0 only under ``torch.distributed``).
    input_key : int, str or callable, optional
        How to find the model input in a batch, as in :func:`extract_inputs`.
    memory_budget_bytes : int, optional
        For ``estimator="exact"``: a ``MemoryError`` at the first batch beyond it.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        CKA, deconfounded CKA (Cui et al. 2022) or the Procrustes similarity (Ding et al. 2021).
    confounder : callable, optional
        For ``"dcka"``: ``confounder(batch)``; default the flattened model input.

    Returns
    -------
    CKAResult
        ``values[i, j]`` for ``layers_a[i]`` and ``layers_b[j]``, over every process's shard under
        ``torch.distributed``; ``metadata`` records models, layers, estimator, dtype and device.

    Raises
    ------
    TypeError
        For a non-module model, an unsupported batch, or a layer output without a tensor.
    ValueError
        For an unknown layer name (close matches are listed), an unknown choice, or batches too
        small for the debiased minibatch estimator. (``MemoryError``: see ``memory_budget_bytes``.)

    References
    ----------
    Kornblith et al. (2019), *Similarity of Neural Network Representations Revisited*, ICML.
    Nguyen, Raghu & Kornblith (2021), *Do Wide and Deep Networks Learn the Same Things?*, ICLR.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from cka_sim.torch import compare_models
    >>> a = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    >>> b = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    >>> loader = DataLoader(TensorDataset(torch.randn(256, 8)), batch_size=64)
    >>> result = compare_models(a, b, loader, layers_a=["1", "2"], layers_b=["1", "2"],
    ...                         estimator="exact", progress=False)
    >>> result.shape, result.row_names, result.estimator
    ((2, 2), ['1', '2'], 'linear-debiased')
    """
    return _compare(**locals())  # every argument, by name


def _compare(
    model_a: nn.Module,
    model_b: nn.Module,
    loader: Iterable[Any],
    layers_a: Iterable[LayerSpec] | None,
    layers_b: Iterable[LayerSpec] | None,
    estimator: str | None,
    debiased: bool | None,
    device: Any,
    progress: bool,
    input_key: InputKey | None,
    memory_budget_bytes: int | None,
    measure: str,
    confounder: Callable[[Any], Any] | None,
) -> CKAResult:
    """:func:`compare_models`: check, then capture -> accumulate -> result."""
    _check_module(model_a, "model_a")
    _check_module(model_b, "model_b")
    settings = _measure_settings(measure, estimator, debiased, confounder)
    measure, estimator, debiased = settings
    names_a = _layer_names(model_a, layers_a, "layers_a")
    names_b = _layer_names(model_b, layers_b, "layers_b")
    _move_to(device, model_a, model_b)
    world_size = _distributed_world()
    accumulator = _make_accumulator(estimator, debiased, memory_budget_bytes, measure)
    # capture -> accumulate -> result
    prepare = _preparing(accumulator) if estimator == "minibatch" else None
    confounder_of = _confounder_rule(measure, confounder)
    with _Capture(model_a, model_b, names_a, names_b, input_key, prepare) as capture:
        n_batches, dtypes = _accumulate(
            accumulator, capture, loader, progress, world_size, confounder_of
        )
    result = _computed(accumulator, world_size, names_a, names_b)
    result.metadata.update(_metadata(capture, settings, dtypes, n_batches, world_size))
    return result


def _layer_names(model: nn.Module, layers: Iterable[LayerSpec] | None, argument: str) -> list[str]:
    """The names of the requested layers (or of :func:`default_layers`), checked, in order."""
    return [name for name, _ in _resolve_layers(model, _or_default(model, layers), argument)]


def _move_to(device: str | torch.device | None, *models: nn.Module) -> None:
    """Move the models to ``device`` with ``Module.to`` (nothing when it is None)."""
    if device is not None:
        device = torch.device(device)
        for model in models:
            model.to(device)


def _confounder_rule(measure: str, confounder: Callable[[Any], Any] | None) -> Any:
    """How :func:`_accumulate` finds a batch's confounder: None unless ``measure="dcka"``."""
    if measure != "dcka":
        return None
    return confounder if confounder is not None else _model_input


def _computed(
    accumulator: Any, world_size: int | None, names_a: list[str], names_b: list[str]
) -> CKAResult:
    """The accumulator's result, summed over the processes first under ``torch.distributed``."""
    if world_size is not None:
        accumulator.all_reduce()
    result = accumulator.compute()
    if list(result.row_names) != names_a or list(result.col_names) != names_b:
        raise RuntimeError(
            f"internal error: the accumulator returned rows {result.row_names} and columns "
            f"{result.col_names}; expected {names_a} and {names_b}"
        )
    return result


def _metadata(
    capture: _Capture,
    settings: tuple[str, str, bool],
    dtypes: set[str],
    n_batches: int,
    world_size: int | None,
) -> dict[str, Any]:
    """What ``compare_models`` adds to the result's metadata: the models, layers and run."""
    model_a, model_b = capture.models
    measure, estimator, debiased = settings
    return {
        "model_a": type(model_a).__name__,
        "model_b": type(model_b).__name__,
        "same_model": capture.same_model,
        "layers_a": capture.names_a,
        "layers_b": capture.names_b,
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


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
