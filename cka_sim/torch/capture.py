"""Both models' recorded layers on one batch at a time, for :func:`~cka_sim.torch.compare_models`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .hooks import ActivationStore, _restore_training_modes, record_activations
from .inputs import InputKey, _model_device, _run, extract_inputs


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
