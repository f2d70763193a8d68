"""One forward pass that records the shape of every named module's output, and nothing else.

Used by :func:`~cka_sim.torch.default_layers` (to skip outputs without a batch dimension) and by
:func:`~cka_sim.torch.layer_table`. The model runs in eval mode under ``torch.inference_mode()``;
its modes are restored and no output is kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .inputs import InputKey, _call_arguments, _model_device, _restore_training_modes, _run
from .outputs import first_tensor


def probe_outputs(
    model: nn.Module, batch: Any, names: list[str], input_key: InputKey | None = None
) -> tuple[dict[str, torch.Tensor], int | None]:
    """The first output of each named module on ``batch``, and the batch's example count.

    The outputs are the tensors themselves (no copy): read their shapes at once. The example
    count is the first dimension of the first tensor of the model input (None without one).
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = first_tensor(output)
            if tensor is not None and name not in seen:
                seen[name] = tensor.detach()

        return hook

    args, kwargs, _ = _call_arguments(model, batch, input_key)
    first = first_tensor((args, kwargs))
    n = int(first.shape[0]) if first is not None and first.dim() > 0 else None
    with _restore_training_modes(model), torch.inference_mode():
        model.eval()
        try:
            for name in names:
                handles.append(modules[name].register_forward_hook(hook_for(name)))
            _run(model, args, kwargs, _model_device(model))
        finally:
            for handle in handles:
                handle.remove()
    return seen, n
