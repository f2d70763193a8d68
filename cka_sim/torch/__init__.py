"""PyTorch model comparison: layer outputs recorded by exact name, CKA of every layer pair.

:func:`record_activations` attaches forward hooks to modules chosen by their fully qualified name in
``model.named_modules()`` (``"encoder.0"``, ``"layer1.0.conv2"``) and keeps each module's latest
output. :func:`compare_models` runs two models over a data loader and feeds those outputs, batch by
batch, to a streaming CKA accumulator, giving the CKA of every (layer of model A, layer of model B)
pair as a :class:`~cka_sim.result.CKAResult`.

This package imports torch; ``import cka_sim`` does not. See ``docs/model_comparison.md``. Its
modules: ``layers`` (which modules: names, indices, the default list), ``outputs`` (which tensor
of a module's output), ``hooks`` (:func:`record_activations`), ``inputs`` (how a batch reaches a
model), ``samples`` (what one row is: example, token, position, pool), ``capture`` (both models,
one batch at a time), ``confounder`` (dCKA's), ``probe`` and ``summary`` (:func:`layer_table`) and
``compare`` (:func:`compare_models`).
"""

from __future__ import annotations

# The real PyTorch (an absolute import), checked first so that a missing torch names the extra.
try:
    import torch  # noqa: F401
except ImportError as _err:
    raise ModuleNotFoundError(
        'cka_sim.torch needs torch; install the torch extra: pip install "cka-sim[torch]"',
        name="torch",
    ) from _err

from .compare import compare_models
from .hooks import ActivationStore, LayerCalledTwiceWarning, record_activations

# Also importable from here, as from the single module this package replaces: the helpers that
# the API page documents beside __all__, and the type aliases of the signatures (``X as X``: a
# re-export outside __all__).
from .inputs import INPUT_KEYS as INPUT_KEYS
from .inputs import BatchKeysDroppedWarning
from .inputs import InputKey as InputKey
from .inputs import extract_inputs as extract_inputs
from .layers import LayerSpec as LayerSpec
from .layers import default_layers
from .outputs import Selector as Selector
from .outputs import first_tensor as first_tensor
from .summary import layer_table

__all__ = [
    "ActivationStore",
    "BatchKeysDroppedWarning",
    "LayerCalledTwiceWarning",
    "compare_models",
    "default_layers",
    "layer_table",
    "record_activations",
]
