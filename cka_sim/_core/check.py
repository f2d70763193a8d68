"""The check stage: every argument and array check, with messages that name the argument and say
what to do.

Each public function and ``update`` opens with one call into this module, which returns the
normalised inputs (floating (n, p) matrices of one library and device, finite); nothing below it
raises ``ValueError`` or ``TypeError`` for bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_torch_array

from .backend import Array, is_torch, namespace, numpy_views, other_library, to_scalar
from .prepare import WINDOW, Centred, PreparedGram, all_rows_equal, exponent

# Dtypes that are upcast before any arithmetic (names as both libraries print them).
_HALF_DTYPES = {"float16", "bfloat16", "torch.float16", "torch.bfloat16"}


def as_array(value: Any, name: str) -> Array:
    """Return ``value`` as a NumPy array or torch tensor, converting array-likes with NumPy.

    JAX, CuPy and array-api-strict arrays are copied to a NumPy array (:func:`to_host`; see
    ``docs/array_libraries.md``). Refuses masked arrays (the mask would be dropped or applied
    silently), non-numeric and complex dtypes (:func:`as_matrix` and :func:`check_gram` refuse tensors on the ``meta``
    device, after the pair's library and device are compared).
    """
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a NumPy masked array; cka-sim uses every value, so the mask would be "
            "dropped or applied silently. Remove the examples with masked values from both "
            f"inputs, or fill them ({name}.filled(value)), and pass a plain array."
        )
    if isinstance(value, np.ndarray):
        array = value
    elif is_torch_array(value):
        array = value
    elif other_library(value) is not None:
        array = to_host(value, name)
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be array-like with numeric entries; {err}. {SUPPORTED}"
            ) from err
    kind = str(array.dtype)
    if isinstance(array, np.ndarray) and not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise TypeError(
            f"{name} must hold numbers; got dtype {kind}. Convert it, e.g. np.asarray({name}, "
            "dtype=float)."
        )
    if "complex" in kind:
        raise TypeError(f"{name} must be real; got dtype {kind}")
    return array


#: What the check stage accepts, for the messages that refuse something else.
SUPPORTED = (
    "cka-sim accepts NumPy arrays (and array-likes such as lists or memory maps), torch tensors "
    "(CPU or CUDA), and JAX, CuPy and array-api-strict arrays (read through a NumPy copy); see "
    "docs/array_libraries.md"
)


def to_host(value: Any, name: str) -> np.ndarray:
    """A NumPy copy of a JAX, CuPy or array-api-strict array (one device-to-host transfer).

    A JAX tracer (inside ``jax.jit``, ``jax.grad`` or ``jax.vmap``) has no values to copy and is
    refused with a message that says so; bfloat16 becomes float32 (exactly), as for torch.
    """
    library = other_library(value)
    jax = sys.modules.get("jax")
    if library == "jax" and jax is not None and isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} is a JAX tracer: cka-sim was called inside a JAX transformation "
            "(jax.jit, jax.grad, jax.vmap, ...), which cka-sim does not support (it computes "
            "on concrete values, through NumPy). Call it outside the transformation on concrete "
            "arrays, e.g. on the outputs of a jitted function; for gradients of CKA use torch "
            "tensors, whose results are differentiable"
        )
    try:
        array = value.get() if library == "cupy" else np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:
        reason = str(err).rstrip(". ")
        raise TypeError(
            f"{name} ({library} array) could not be copied to a NumPy array: {reason}. Move it "
            "to the CPU device first"
        ) from err
    if array.dtype.name == "bfloat16":
        array = array.astype(np.float32)
    return array


def _meta_error(name: str) -> ValueError:
    """The error for a tensor on the meta device: it has a shape but no values."""
    return ValueError(
        f"{name} is a tensor on the 'meta' device, which has a shape but no values; run "
        "the model on real weights and inputs (e.g. model.to_empty(device='cpu') and load "
        "a state_dict) before comparing its activations"
    )


def _same_library(x: Array, y: Array, names: tuple[str, str]) -> None:
    if is_torch_array(x) != is_torch_array(y):
        kinds = [type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in (x, y)]
        raise TypeError(
            f"{names[0]} and {names[1]} must both be NumPy arrays or both torch tensors; got "
            f"{kinds[0]} and {kinds[1]}. Convert one, e.g. torch.as_tensor(...) or "
            "tensor.detach().cpu().numpy()."
        )
    if is_torch_array(x) and x.device != y.device:
        raise ValueError(
            f"{names[0]} is on {x.device} but {names[1]} is on {y.device}; move both to one "
            f"device, e.g. {names[1]}.to({names[0]}.device)"
        )


def check_finite(x: Array, name: str, xp: Any) -> None:
    """Raise when ``x`` holds NaN or infinity.

    A NaN or an infinity makes the sum of all values non-finite, so one reduction without a
    temporary settles almost every input; only when the sum is not finite (which finite values
    can also give, by overflow) is every value tested.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow only sends us on below
        total = xp.sum(x)
    if bool(xp.isfinite(total)):
        return
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or infinity; remove or impute those values first")


def as_matrix(value: Any, name: str, *, min_rows: int = 2, check_values: bool = True) -> Array:
    """Validate activations and return them as a floating (n, p) matrix.

    Rows are examples; trailing dimensions are flattened. Half precision is upcast to float32,
    integers and booleans to float64. ``check_values=False`` skips the NaN/infinity scan (the
    accumulators use it for torch tensors, where the scan would synchronise the device on every
    batch, and check their accumulated state instead).
    """
    x = as_array(value, name)
    if is_torch_array(x) and x.device.type == "meta":
        raise _meta_error(name)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_examples, n_features, ...); got shape {tuple(x.shape)}. "
            f"For a single feature use {name}.reshape(-1, 1)."
        )
    n, p = int(x.shape[0]), int(np.prod(x.shape[1:]))
    if n == 0 or p == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); it needs examples and features"
        )
    if n < min_rows:
        raise ValueError(
            f"{name} has {n} example(s); this estimator needs at least {min_rows} (rows are "
            "examples)"
        )
    xp = array_namespace(x)
    x = xp.reshape(x, (n, p))
    # products run in float32 or float64: half precision is upcast to float32, integers and
    # booleans to float64 (as NumPy does)
    if str(x.dtype) in _HALF_DTYPES:
        x = xp.astype(x, xp.float32)
    elif x.dtype not in (xp.float32, xp.float64):
        x = xp.astype(x, xp.float64)
    if check_values:
        check_finite(x, name, xp)
    return x


def check_pair(
    x: Any,
    y: Any,
    *,
    names: tuple[str, str] = ("x", "y"),
    min_rows: int = 2,
    check_values: bool = True,
    one_dtype: bool = False,
) -> tuple[Array, Array, Any]:
    """Validate two activation matrices of the same examples; return them and their namespace.

    ``one_dtype``: promote both to their common dtype (float32 with float64 gives float64), as
    the products between them need.
    """
    if is_torch_array(x) or is_torch_array(y):  # before any copy, so the message names both
        _same_library(x, y, names)
    xa, ya = as_array(x, names[0]), as_array(y, names[1])
    if xa.ndim >= 1 and ya.ndim >= 1 and xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (examples); got "
            f"{xa.shape[0]} and {ya.shape[0]}"
        )
    xm = as_matrix(xa, names[0], min_rows=min_rows, check_values=check_values)
    ym = as_matrix(ya, names[1], min_rows=min_rows, check_values=check_values)
    xp = array_namespace(xm, ym)
    if one_dtype and xm.dtype != ym.dtype:
        common = xp.result_type(xm, ym)
        xm, ym = xp.astype(xm, common), xp.astype(ym, common)
    return xm, ym, xp


def check_gram(value: Any, name: str, *, min_size: int = 2) -> Array:
    """Validate a kernel (Gram) matrix: square, symmetric, finite, at least ``min_size`` rows."""
    k = as_array(value, name)
    if is_torch_array(k) and k.device.type == "meta":
        raise _meta_error(name)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) Gram matrix; got shape {tuple(k.shape)}")
    n = int(k.shape[0])
    if n < min_size:
        raise ValueError(f"{name} is {n} x {n}; this estimator needs at least {min_size} examples")
    xp = namespace(k)
    k = xp.astype(k, xp.float64)
    check_finite(k, name, xp)
    asym = to_scalar(xp.max(xp.abs(k - xp.matrix_transpose(k))))
    scale = to_scalar(xp.max(xp.abs(k)))
    if asym > 1e-5 * scale:
        raise ValueError(
            f"{name} is not symmetric (max |K - K.T| = {asym:.3g}); a Gram matrix k(x_i, x_j) must "
            f"be symmetric. Symmetrise with ({name} + {name}.T) / 2 if this is rounding error."
        )
    return k


def check_gram_pair(gram_x: Any, gram_y: Any, *, min_size: int = 2) -> tuple[Array, Array, Any]:
    """Validate two Gram matrices over the same examples."""
    names = ("gram_x", "gram_y")
    kx = as_array(gram_x, names[0])
    ky = as_array(gram_y, names[1])
    if is_torch_array(kx) or is_torch_array(ky):
        _same_library(kx, ky, names)
    kx = check_gram(kx, names[0], min_size=min_size)
    ky = check_gram(ky, names[1], min_size=min_size)
    if kx.shape != ky.shape:
        raise ValueError(
            f"gram_x and gram_y must be the same size; got {tuple(kx.shape)} and {tuple(ky.shape)}"
        )
    return kx, ky, namespace(kx, ky)


def _listed(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming ``name`` and listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}: {name} must be {_listed(choices)}; got {value!r}"
        )
    return value


def check_kernel_name(kernel: Any, choices: tuple[str, ...]) -> None:
    """Accept a callable or one of the built-in kernel names ``choices``."""
    if not callable(kernel) and (not isinstance(kernel, str) or kernel not in choices):
        raise ValueError(
            f"unknown kernel {kernel!r}; use {', '.join(repr(c) for c in choices)} or a callable "
            "that maps (n, p) activations to their (n, n) Gram matrix"
        )


def check_count(value: Any, name: str, *, minimum: int = 1) -> int:
    """An integer count of at least ``minimum``, or a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}")
    return int(value)


def check_positive(value: float | None, name: str) -> None:
    """Raise unless ``value`` is None or a finite positive number."""
    if value is None:
        return
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")


def check_accumulator_layer(x: Array, xp: Any, name: str) -> Array:
    """The accumulators' magnitude rule (:data:`~cka_sim._core.prepare.WINDOW`), on a validated
    (m, p) batch: every batch of a layer is merged in the same units, so none may be rescaled.

    A float32 batch whose largest magnitude lies outside its window is returned as float64
    (exact), where products of any float32 values neither underflow nor overflow; a float64
    batch outside its window (where the fourth-order statistics would leave the float64 range)
    is refused by name. One reduction (a device synchronisation on an accelerator).
    """
    e = exponent(x, xp)  # None: all zero, or NaN/inf (reported elsewhere)
    window = WINDOW[str(x.dtype).removeprefix("torch.")]
    if e is None or abs(e) <= window:
        return x
    if x.dtype == xp.float64:
        raise ValueError(
            f"{name} has values of magnitude about 2**{e}; the accumulators' float64 "
            f"statistics (up to fourth powers) hold magnitudes up to 2**±{window} only. "
            f"Multiply every batch of this layer by one power of two, e.g. {name} * 2.0**{-e} "
            "(CKA does not change), or use linear_cka / cka_matrix, which take any magnitude"
        )
    return xp.astype(x, xp.float64)


def as_layers(acts: Any, name: str) -> list[tuple[str, Any]]:
    """``(layer name, activations)`` pairs of a Mapping (its order) or a Sequence ("0", "1", ...)."""
    if isinstance(acts, Mapping):
        layers = [(str(key), value) for key, value in acts.items()]
    elif isinstance(acts, Sequence) and not isinstance(acts, (str, bytes)):
        layers = [(str(i), value) for i, value in enumerate(acts)]
    else:
        raise TypeError(
            f"{name} must be a mapping {{layer name: activations}} or a sequence of activations; "
            f"got {type(acts).__name__}. For a single layer pass {{'layer': {name}}} or [{name}]."
        )
    if not layers:
        raise ValueError(f"{name} holds no layers")
    names = [layer for layer, _ in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"{name} has repeated layer names: {names}")
    return layers


def check_names(expected: list[str], got: list[str], what: str) -> None:
    """Raise when a later batch names different layers from the first one."""
    if expected != got:
        raise ValueError(
            f"{what} names layers {got}, but earlier batches named {expected}; every batch must "
            "give the same layers in the same order"
        )


def check_same_batch(units: list[Array], rows: int | None = None) -> None:
    """Raise unless ``units`` share one number of rows (and ``rows``), one library, one device."""
    counts = {int(u.shape[0]) for u in units} | ({rows} if rows is not None else set())
    if len(counts) != 1:
        raise ValueError(
            "the layers of one batch must have the same number of rows: the same number of "
            f"examples in every layer; got {sorted(counts)}"
        )
    if len({is_torch(u) for u in units}) != 1:
        raise TypeError("mix of NumPy arrays and torch tensors in one batch; use one kind")
    if is_torch(units[0]):
        devices = {str(u.device) for u in units}
        if len(devices) != 1:
            raise ValueError(f"the layers of one batch are on several devices: {sorted(devices)}")


def check_same_place(held: Array, data: Array, what: str) -> None:
    """Raise unless ``data`` is of the array library and on the device of ``held`` (the state)."""
    libraries = ["torch" if is_torch(a) else "NumPy" for a in (held, data)]
    if libraries[0] != libraries[1]:
        raise TypeError(
            f"{what}: this accumulator holds {libraries[0]} statistics but got {libraries[1]} "
            "data; feed one kind (NumPy arrays or torch tensors) throughout"
        )
    if is_torch(held) and held.device != data.device:
        raise ValueError(
            f"{what}: the accumulator lives on {held.device} but the data is on "
            f"{data.device}; move the data (or load the state_dict on that device)"
        )


METHODS = ("auto", "features", "gram")


def check_linear(
    x: Any, y: Any, *, debiased: bool, method: str
) -> tuple[Array, Array, Any, str, bool]:
    """The check of :func:`~cka_sim.linear_cka`: ``(x, y, xp, method, from_torch_view)``.

    ``x`` and ``y`` come back as finite (n, p) matrices of one floating dtype; ``method`` with
    ``"auto"`` resolved to the form of fewer flops (``"features"`` when
    ``p1² + p2² + p1 p2 <= n (p1 + p2)``). torch CPU tensors that need no gradient come back as
    zero-copy NumPy views (:func:`~cka_sim._core.backend.numpy_views`), with
    ``from_torch_view=True`` so that the result goes back to torch.
    """
    check_choice(method, "method", METHODS)
    x, y, xp = check_pair(x, y, min_rows=4 if debiased else 2, one_dtype=True)
    n, p1, p2 = x.shape[0], x.shape[1], y.shape[1]
    if method == "auto":
        method = "features" if p1 * p1 + p2 * p2 + p1 * p2 <= n * (p1 + p2) else "gram"
    views = numpy_views(x, y) if is_torch_array(x) else None
    if views is None:
        return x, y, xp, method, False
    return views[0], views[1], np, method, True


KERNELS = ("rbf", "linear", "polynomial")


def check_kernel_cka(
    x: Any, y: Any, kernel: Any, sigma: Any, gamma: Any, *, debiased: bool
) -> tuple[Array, Array, Any, tuple[Any, Any]]:
    """The check of :func:`~cka_sim.kernel_cka`: ``(x, y, xp, (sigma_x, sigma_y))``."""
    check_kernel_name(kernel, KERNELS)
    sigmas = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    if len(sigmas) != 2:
        raise ValueError(f"sigma must be a number or a pair of numbers; got {sigma!r}")
    if kernel == "rbf":
        for s in sigmas:
            check_positive(s, "sigma")
    if kernel == "polynomial":
        check_positive(gamma, "gamma")
    x, y, xp = check_pair(x, y, min_rows=4 if debiased else 2)
    return x, y, xp, sigmas


def check_confounder(x: Any, confounder: Any, *, min_rows: int) -> Array:
    """Validate the confounder against ``x``: same library and device, same examples."""
    z = as_array(confounder, "confounder")
    xa = as_array(x, "x")
    _same_library(xa, z, ("x", "confounder"))
    if z.ndim >= 1 and xa.ndim >= 1 and z.shape[0] != xa.shape[0]:
        raise ValueError(
            f"confounder must have one row per example, as x; got {z.shape[0]} rows and "
            f"{xa.shape[0]}"
        )
    return as_matrix(z, "confounder", min_rows=min_rows, check_values=False)


def constant_confounder_error(name: str) -> ValueError:
    """The error for a confounder with nothing to adjust for."""
    return ValueError(
        f"{name} is constant (all its features are the same for every example), so its Gram "
        "matrix is zero after centring and there is nothing to adjust for; pass the inputs "
        "that vary across examples, or use linear_cka"
    )


def check_deconfounded(
    x: Any, y: Any, confounder: Any, *, debiased: bool, method: str
) -> tuple[Array, Array, Array, Any, str]:
    """The check of :func:`~cka_sim.deconfounded_cka`: ``(x, y, z, xp, method)``, the three of
    one dtype and finite, ``method`` with ``"auto"`` resolved by flops."""
    check_choice(method, "method", METHODS)
    rows = 4 if debiased else 2
    x, y, xp = check_pair(x, y, min_rows=rows)
    z = check_confounder(x, confounder, min_rows=rows)
    n, p1, p2, q = x.shape[0], x.shape[1], y.shape[1], z.shape[1]
    if method == "auto":
        feature_flops = p1 * p1 + p2 * p2 + q * q + p1 * p2 + p1 * q + p2 * q
        method = "features" if feature_flops <= n * (p1 + p2 + q) else "gram"
    common = xp.result_type(x, y, z)  # products need one dtype
    x, y, z = (a if a.dtype == common else xp.astype(a, common) for a in (x, y, z))
    check_finite(z, "confounder", xp)
    if all_rows_equal(z, xp):
        raise constant_confounder_error("confounder")
    return x, y, z, xp, method


def check_deconfounded_grams(
    gram_x: Any, gram_y: Any, gram_confounder: Any, *, debiased: bool
) -> tuple[Array, Array, Array, Any]:
    """The check of :func:`~cka_sim.deconfounded_cka_from_grams`: three float64 Grams."""
    min_size = 4 if debiased else 2
    k, l, xp = check_gram_pair(gram_x, gram_y, min_size=min_size)
    raw = as_array(gram_confounder, "gram_confounder")
    _same_library(as_array(gram_x, "gram_x"), raw, ("gram_x", "gram_confounder"))
    kz = check_gram(raw, "gram_confounder", min_size=min_size)
    if tuple(kz.shape) != tuple(k.shape):
        raise ValueError(
            f"gram_confounder must be the same size as gram_x; got {tuple(kz.shape)} and "
            f"{tuple(k.shape)}"
        )
    return k, l, kz, xp


def check_layer_sets(
    acts_a: Any, acts_b: Any, *, min_rows: int, check_values: bool = True
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]], list[Array], bool]:
    """The layers of two mappings (or one, passed twice: ``shared``) of the same examples:
    ``(layers_a, layers_b, matrices, shared)``, the matrices validated, one per distinct layer
    (those of ``acts_a``, then those of ``acts_b`` unless shared)."""
    shared = acts_a is acts_b
    layers_a = as_layers(acts_a, "acts_a")
    layers_b = layers_a if shared else as_layers(acts_b, "acts_b")
    raw = []
    for side, layers in (("acts_a", layers_a), ("acts_b", [] if shared else layers_b)):
        for name, value in layers:
            label = f"{side}[{name!r}]"
            raw.append(as_matrix(value, label, min_rows=min_rows, check_values=check_values))
    rows = {int(x.shape[0]) for x in raw}
    if len(rows) != 1:
        raise ValueError(
            f"every layer must hold the same examples (rows); got row counts {sorted(rows)}"
        )
    if len({is_torch(x) for x in raw}) != 1:
        raise TypeError("mix of NumPy arrays and torch tensors; use one kind")
    return layers_a, layers_b, raw, shared


def check_batch_layers(
    layers: list[tuple[str, Any]], side: str, *, exact: bool, rows: int | None = None
) -> tuple[list[Any], Any]:
    """The check of one side of an accumulator's batch: each ``(name, activations)`` as a
    validated (m, p) matrix (or passed through when already prepared), and their namespace.

    torch tensors are detached and not scanned for NaN (that would synchronise the device on
    every batch; the accumulators check their state instead). Magnitudes follow
    :func:`check_accumulator_layer` (``exact=False``, :class:`~cka_sim.MinibatchCKA`: float64
    only; its float32 batches are scaled with their Grams, see
    :func:`~cka_sim._core.prepare.translated`). All layers, and ``rows`` when given, must have
    the same number of examples, one array library and one device.
    """
    out = []
    for name, value in layers:
        label = f"{side}[{name!r}]"
        if isinstance(value, PreparedGram) and exact:
            raise TypeError(
                f"{label} was prepared by MinibatchCKA.prepare (it holds the layer's Gram, not "
                "its activations); pass the activations, or prepare them with this "
                "accumulator's own prepare()"
            )
        if not isinstance(value, (Centred, PreparedGram)):
            value = check_accumulator_batch(value, label, exact=exact)
        out.append(value)
    arrays = [u.gram if isinstance(u, PreparedGram) else getattr(u, "x", u) for u in out]
    check_same_batch(arrays, rows)
    return out, namespace(*arrays)


def check_accumulator_batch(value: Any, name: str, *, exact: bool = True) -> Array:
    """One accumulator batch of one layer: detached, a validated (m, p) matrix (NumPy scanned
    for NaN, torch not), its magnitude checked (:func:`check_accumulator_layer`)."""
    if is_torch_array(value):
        value = value.detach()
    x = as_matrix(value, name, min_rows=1, check_values=not is_torch_array(value))
    xp = array_namespace(x)
    if exact or x.dtype == xp.float64:
        x = check_accumulator_layer(x, xp, name)
    return x
