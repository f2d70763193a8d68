"""CKA of every (layer of model A, layer of model B) pair, accumulated over a data loader.

:func:`compare_models` resolves the layers, captures both models' outputs batch by batch
(:class:`~cka_sim.torch.capture._Capture`), feeds them to a streaming accumulator
(``MinibatchCKA`` or ``StreamingCKAMatrix``), sums the accumulators across processes under
``torch.distributed``, and returns a :class:`~cka_sim.result.CKAResult`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import torch
from torch import nn

from .._core.check import check_choice
from .._core.measures import Measure, check_measure
from .._core.memory import check_budget, resolve_budget
from ..result import CKAResult
from .capture import _Capture
from .confounder import ConfounderRule, confounder_rule
from .inputs import InputKey
from .layers import LayerSpec, _check_module, _or_default, _resolve_layers
from .outputs import Selector
from .samples import MaskSource, Pooling, SampleMode, SampleRule, check_mask_source, sample_rule

# What to do when a comparison does not fit (the MemoryError's advice).
_EXACT_ADVICE = (
    "Use estimator='minibatch' (memory set by the batch size, not the widths), "
    "samples='positions' (the channels of a conv map as features, not every pixel), or fewer or "
    "narrower layer pairs"
)
_MINIBATCH_ADVICE = (
    "Use smaller batches (the minibatch estimator keeps one samples x samples Gram per layer: "
    "with samples='tokens' a batch is all its tokens), fewer layers, or estimator='exact' for "
    "narrow layers"
)


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


def _make_accumulator(
    estimator: str, debiased: bool, memory_budget_bytes: int | None, measure: str = "cka"
) -> Any:
    if estimator == "minibatch":
        from ..accumulators import MinibatchCKA

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
    memory_budget_bytes: int | Literal["auto"] | None = "auto",
    measure: Measure = "cka",
    confounder: Callable[[Any], Any] | Literal["input"] | None = None,
    samples: SampleMode = "examples",
    mask: MaskSource = "auto",
    pooling: Pooling = "mean",
    grid: int | tuple[int, ...] | None = None,
    select: Selector | Mapping[str, Selector] | tuple[Any, Any] | None = None,
) -> CKAResult:
    r"""Linear CKA between every layer of ``model_a`` and every layer of ``model_b``.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The models; the same object twice runs one forward pass per batch.
    loader : iterable of batches
        Tensors, ``(x, y, ...)`` tuples or lists, or dicts (passed whole, see ``input_key``).
    layers_a, layers_b : sequence of str or int, optional
        Rows and columns: exact module names or indices; default :func:`default_layers`.
    estimator : {"minibatch", "exact"}, optional
        Nguyen et al.'s minibatch estimator or full-data CKA (default for measures but CKA).
    debiased : bool, optional
        Unbiased HSIC₁ (Song et al. 2012); default True for CKA and dCKA.
    device : str or torch.device, optional
        Where to run (both models are moved there); default each model's own device.
    progress : bool, default True
        A tqdm progress bar (rank 0 only under ``torch.distributed``).
    input_key : int, str or callable, optional
        As in :func:`extract_inputs`; without it a dict goes whole, as the keys ``forward`` names.
    memory_budget_bytes : "auto", int or None, default "auto"
        ``MemoryError`` before allocating more; ``"auto"``: half the free memory; None: no check.
    measure : {"cka", "dcka", "procrustes"}, default "cka"
        CKA, deconfounded CKA (Cui et al. 2022) or the Procrustes similarity (Ding et al. 2021).
    confounder : callable or "input", optional
        For ``"dcka"``: ``confounder(batch)``; default the input, sketched to 1024 features.
    samples, mask, pooling, grid : str, optional
        A row is an example (default), a token ``mask`` keeps (``"tokens"``), a map position after
        ``grid`` pooling (``"positions"``), tokens pooled by ``pooling`` (``"pooled"``).
    select : int, str, callable, mapping or (select_a, select_b), optional
        Which tensor of a layer's output (``"pooler_output"``), as in :func:`record_activations`.

    Returns
    -------
    CKAResult
        ``values[i, j]`` for ``layers_a[i]``, ``layers_b[j]``, over all processes' shards.

    Raises
    ------
    TypeError
        For a non-module model, an unsupported batch, or a layer output without a tensor.
    ValueError
        Unknown layer or choice, small batches, NaN (layer, batch named), samples that differ.
    MemoryError
        Before allocating, when the estimator would need more than ``memory_budget_bytes``.

    References
    ----------
    Kornblith et al. (2019), ICML; Nguyen, Raghu & Kornblith (2021), ICLR (the minibatch CKA).

    Examples
    --------
    >>> import torch; from cka_sim.torch import compare_models
    >>> a, b = (torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU()) for _ in "ab")
    >>> result = compare_models(a, b, torch.randn(256, 8).split(64), progress=False)
    >>> result.shape, result.row_names, result.estimator
    ((1, 1), ['0'], 'minibatch-debiased')
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
    confounder: Callable[[Any], Any] | str | None,
    samples: str,
    mask: Any,
    pooling: Any,
    grid: Any,
    select: Any,
) -> CKAResult:
    """:func:`compare_models`: check, then capture -> accumulate -> result."""
    _check_module(model_a, "model_a")
    _check_module(model_b, "model_b")
    settings = _measure_settings(measure, estimator, debiased, None)
    measure, estimator, debiased = settings
    rule = sample_rule(samples, pooling, grid)
    check_mask_source(mask, rule)
    confounder_of = confounder_rule(measure, confounder, rule.mode)
    _move_to(device, model_a, model_b)
    budget = resolve_budget(memory_budget_bytes, _first_device(model_a))
    first, loader = _peeked(loader, layers_a is None or layers_b is None)
    names_a = _layer_names(model_a, layers_a, "layers_a", first, input_key)
    names_b = _layer_names(model_b, layers_b, "layers_b", first, input_key)
    selects = _split_select(select, names_a, names_b, model_a is model_b)
    world_size = _distributed_world()
    accumulator = _make_accumulator(estimator, debiased, budget, measure)
    # capture -> accumulate -> result
    layers = len(names_a) + (0 if model_a is model_b and names_a == names_b else len(names_b))
    prepare = _preparing(accumulator, budget, layers) if estimator == "minibatch" else None
    capture = _Capture(model_a, model_b, names_a, names_b, input_key, prepare, rule, mask, selects)
    with capture:
        n_batches, dtypes = _accumulate(
            accumulator, capture, loader, progress, world_size, confounder_of, budget
        )
    result = _computed(accumulator, world_size, names_a, names_b)
    result.metadata.update(_metadata(capture, settings, dtypes, n_batches, world_size))
    result.metadata.update(_sample_metadata(rule, mask, confounder_of))
    return result


def _first_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _split_select(select: Any, names_a: list[str], names_b: list[str], same: bool) -> Any:
    """``(select_a, select_b)``: a pair as given, one selector for both, or a mapping split by
    the layer names of each model."""
    if isinstance(select, tuple):
        if len(select) != 2:
            raise ValueError(
                f"select as a tuple must be (select_a, select_b); got {len(select)} entries"
            )
        return select
    if not isinstance(select, Mapping):
        return select, select
    unknown = [key for key in select if key not in names_a and key not in names_b]
    if unknown:
        raise ValueError(
            f"select has entries for {unknown}, which are not compared layers; they are "
            f"{names_a} (model_a) and {names_b} (model_b)"
        )
    if same:
        return dict(select), None
    return (
        {k: v for k, v in select.items() if k in names_a},
        {k: v for k, v in select.items() if k in names_b},
    )


def _sample_metadata(rule: SampleRule, mask: Any, confounder: ConfounderRule | None) -> dict:
    """What a sample was, for the result's metadata."""
    out: dict[str, Any] = {"samples": rule.mode}
    if rule.uses_mask:
        out["mask"] = mask if isinstance(mask, str) or mask is None else type(mask).__name__
    if rule.mode == "pooled":
        out["pooling"] = rule.pooling if isinstance(rule.pooling, str) else "callable"
    if rule.grid is not None:
        out["grid"] = list(rule.grid)
    if confounder is not None:
        out["confounder"] = confounder.description
    return out


def _layer_names(
    model: nn.Module,
    layers: Iterable[LayerSpec] | None,
    argument: str,
    batch: Any = None,
    input_key: InputKey | None = None,
) -> list[str]:
    """The names of the requested layers (or of :func:`default_layers` on ``batch``), checked."""
    chosen = _or_default(model, layers, batch, input_key)
    return [name for name, _ in _resolve_layers(model, chosen, argument)]


def _peeked(loader: Iterable[Any], peek: bool) -> tuple[Any, Iterable[Any]]:
    """The loader's first batch (None unless ``peek``) and the loader, that batch included."""
    if not peek:
        return None, loader
    iterator = iter(loader)
    try:
        first = next(iterator)
    except StopIteration:
        return None, []
    total = _length(loader)

    class _Rest:
        def __iter__(self) -> Any:
            return itertools.chain([first], iterator)

        def __len__(self) -> int:
            if total is None:
                raise TypeError("the loader has no length")
            return total

    return first, _Rest()


def _move_to(device: str | torch.device | None, *models: nn.Module) -> None:
    """Move the models to ``device`` with ``Module.to`` (nothing when it is None)."""
    if device is not None:
        device = torch.device(device)
        for model in models:
            model.to(device)


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
    confounder_of: ConfounderRule | None = None,
    budget: int | None = None,
) -> tuple[int, set[str]]:
    """Feed every batch's recorded layers to the accumulator; the batch count and dtypes seen.

    ``confounder_of`` (``measure="dcka"``): the confounder of a batch. The exact accumulator's
    memory is checked against ``budget`` at the first batch, before its state is allocated.
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
                dtypes.update(str(_dtype(t)) for t in (*acts_a.values(), *acts_b.values()))
                z = None if confounder_of is None else confounder_of(batch, capture)
                if n_batches == 0 and capture._transform is None:
                    _check_exact_memory(accumulator, acts_a, acts_b, z, budget)
                if z is None:
                    accumulator.update(acts_a, acts_b)
                else:
                    accumulator.update(acts_a, acts_b, z)
                # Free this batch's activations before the next forward pass, not after it.
                del acts_a, acts_b
                capture.clear()
                n_batches += 1
    if n_batches == 0:
        raise ValueError("loader yielded no batches; compare_models needs at least one")
    return n_batches, dtypes


def _dtype(unit: Any) -> Any:
    return unit.gram.dtype if hasattr(unit, "gram") else unit.dtype


def _check_exact_memory(
    accumulator: Any, acts_a: dict, acts_b: dict, z: Any, budget: int | None
) -> None:
    """The exact accumulator's memory, from the first batch's widths, against ``budget``."""
    widths_a = [int(t[0].numel()) for t in acts_a.values()]
    shared = acts_a is acts_b
    widths_b = None if shared else [int(t[0].numel()) for t in acts_b.values()]
    need = accumulator.estimate_memory(
        widths_a,
        widths_b,
        debiased=accumulator.debiased,
        shared=shared,
        confounder_width=0 if z is None else int(z[0].numel()),
    )
    check_budget(
        need,
        budget,
        f"compare_models(estimator='exact') with layer widths {widths_a} x "
        f"{widths_a if widths_b is None else widths_b}"
        + ("" if z is None else f" and a {int(z[0].numel())}-wide confounder"),
        _EXACT_ADVICE,
    )


def _preparing(accumulator: Any, budget: int | None, layers: int) -> Callable[[torch.Tensor], Any]:
    """The hook transform: a layer's (samples, features) rows prepared for ``accumulator``.

    Before a Gram is formed, the batch's Grams (``layers`` of them, samples x samples, float64
    with a copy in the input dtype) are checked against ``budget``.
    """

    def prepare(rows: torch.Tensor) -> Any:
        m = int(rows.shape[0])
        check_budget(
            16 * layers * m * m,
            budget,
            f"compare_models(estimator='minibatch') with {layers} layers and batches of {m} "
            "samples",
            _MINIBATCH_ADVICE,
        )
        return accumulator.prepare(rows, "layer output")

    return prepare


def _length(loader: Iterable[Any]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
