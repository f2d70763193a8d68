"""Both models' recorded layers on one batch at a time, for :func:`~cka_sim.torch.compare_models`."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._core.prepare import PreparedGram
from .hooks import ActivationStore, _Recording
from .inputs import (
    BatchKeysDroppedWarning,
    InputKey,
    _call_arguments,
    _model_device,
    _restore_training_modes,
    _run,
)
from .samples import SampleRule, batch_mask


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
        rule: SampleRule | None = None,
        mask: Any = "auto",
        select: tuple[Any, Any] = (None, None),
    ) -> None:
        self.models = (model_a, model_b)
        self.rule = rule if rule is not None else SampleRule()
        self.mask_source = mask
        self.select = select
        self.warned: set[int] = set()
        self.names_a, self.names_b = names_a, names_b
        self.same_model = model_a is model_b
        self.device_a, self.device_b = _model_device(model_a), _model_device(model_b)
        self.input_key = input_key
        self._transform = prepare
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Capture:
        model_a, model_b = self.models
        stack = self._stack
        stack.enter_context(_restore_training_modes(model_a, model_b))
        model_a.eval()
        model_b.eval()
        if self.same_model:
            union = list(dict.fromkeys(self.names_a + self.names_b))
            self.store_a = self.store_b = stack.enter_context(
                self._recording(model_a, union, _merged(self.select, self.names_a, self.names_b))
            )
        else:
            self.store_a = stack.enter_context(
                self._recording(model_a, self.names_a, self.select[0])
            )
            self.store_b = stack.enter_context(
                self._recording(model_b, self.names_b, self.select[1])
            )
        return self

    def _recording(self, model: nn.Module, names: list[str], select: Any) -> _Recording:
        """The hooks of one model: select, then the sample rule, then ``prepare`` (or a copy)."""
        return _Recording(
            model, names, select, detach=True, clone=True, transform=self._transform, rule=self.rule
        )

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def run(self, batch: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The recorded outputs of both models on one batch (model B's on model A's device)."""
        calls = [_call_arguments(model, batch, self.input_key) for model in self.models]
        self.inputs = calls[0][:2]
        self.rule.mask = (
            batch_mask(self.mask_source, batch, calls[0][1]) if self.rule.uses_mask else None
        )
        self.clear()
        for side, (model, device, call) in enumerate(
            zip(self.models, (self.device_a, self.device_b), calls, strict=True)
        ):
            if side == 1 and self.same_model:
                break
            self._warn_dropped(side, call[2])
            _run(model, call[0], call[1], device)
        acts_a = _collect(self.store_a, self.names_a, "layers_a", index)
        if self.same_model and self.names_b == self.names_a:
            acts_b = acts_a  # one mapping: the accumulator forms each Gram once
        else:
            acts_b = _collect(self.store_b, self.names_b, "layers_b", index)
        if self.device_b != self.device_a:
            acts_b = {name: _to(t, self.device_a) for name, t in acts_b.items()}
        _check_batch(acts_a, acts_b, index, self.rule.mode)
        return acts_a, acts_b

    def _warn_dropped(self, side: int, dropped: list[str]) -> None:
        if dropped and side not in self.warned:
            self.warned.add(side)
            model = self.models[side]
            warnings.warn(
                f"compare_models: the dict batch's keys {dropped} are not parameters of "
                f"{type(model).__name__}.forward and were not passed to model_{'ab'[side]}; "
                "pass input_key=callable(batch) to choose its arguments yourself",
                BatchKeysDroppedWarning,
                stacklevel=5,
            )

    def clear(self) -> None:
        self.store_a.clear()
        self.store_b.clear()


def _merged(select: tuple[Any, Any], names_a: list[str], names_b: list[str]) -> Any:
    """One selector rule for one model recorded once for both sides (they must agree)."""
    a, b = select
    if a is b or b is None:
        return a
    if a is None:
        return b
    raise ValueError(
        "model_a and model_b are the same object, recorded once: give one select= for both"
    )


def _to(unit: Any, device: torch.device) -> Any:
    if isinstance(unit, PreparedGram):
        return PreparedGram(unit.gram.to(device), unit.scale)
    return unit.to(device)


def _array(unit: Any) -> torch.Tensor:
    return unit.gram if isinstance(unit, PreparedGram) else unit


def _check_batch(acts_a: dict[str, Any], acts_b: dict[str, Any], index: int, mode: str) -> None:
    """Refuse, naming the layer and the batch, values that are not finite and row counts that
    differ between layers (the two models must give the same samples)."""
    sides = [("model_a", acts_a)] + ([] if acts_b is acts_a else [("model_b", acts_b)])
    units = [(side, name, _array(u)) for side, acts in sides for name, u in acts.items()]
    # sum first (one reduction per layer, one synchronisation); scan only a sum that is not
    # finite, which may also come from finite values that overflow
    sums = torch.stack([t.sum(dtype=torch.float64) for _, _, t in units])
    bad = (
        []
        if bool(torch.isfinite(sums).all())
        else [i for i, (_, _, t) in enumerate(units) if not bool(torch.isfinite(t).all())]
    )
    if bad:
        side, name, _ = units[bad[0]]
        raise ValueError(
            f"layer {name!r} of {side} gave NaN or infinity in batch {index} (counting from 0); "
            "check the model and that batch's inputs"
        )
    rows = {f"{side}[{name!r}]": int(t.shape[0]) for side, name, t in units}
    if len(set(rows.values())) != 1:
        raise ValueError(
            f"batch {index}: the layers give different numbers of samples with samples={mode!r}: "
            f"{rows}. Both models must give every layer the same samples: with 'tokens' the same "
            "tokens (one tokeniser, one mask), with 'positions' the same map size (pass grid= "
            "to pool every map to one size), with 'examples' and 'pooled' a batch dimension "
            "first"
        )


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
