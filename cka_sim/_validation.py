"""Input validation with messages that name the argument and say what to do."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj

from ._backend import Array, compute_dtype, is_torch, namespace, to_scalar
from .exceptions import CKAUndefinedWarning


def as_array(value: Any, name: str) -> Array:
    """Return ``value`` as a NumPy array or torch tensor, converting array-likes with NumPy."""
    _refuse_masked(value, name)
    if is_array_api_obj(value) and (is_torch(value) or isinstance(value, np.ndarray)):
        array = value
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be array-like with numeric entries; {err}") from err
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


def _refuse_masked(value: Any, name: str) -> None:
    """Refuse masked arrays: the mask would be dropped or applied silently."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a NumPy masked array; cka-sim uses every value, so the mask would be "
            "dropped or applied silently. Remove the examples with masked values from both "
            f"inputs, or fill them ({name}.filled(value)), and pass a plain array."
        )


def _refuse_meta(value: Array, name: str) -> None:
    """Refuse tensors on the meta device: they have shapes but no values."""
    if is_torch(value) and value.device.type == "meta":
        raise ValueError(
            f"{name} is a tensor on the 'meta' device, which has a shape but no values; run the "
            "model on real weights and inputs (e.g. model.to_empty(device='cpu') and load a "
            "state_dict) before comparing its activations"
        )


def _same_library(x: Array, y: Array, names: tuple[str, str]) -> None:
    if is_torch(x) != is_torch(y):
        kinds = [type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in (x, y)]
        raise TypeError(
            f"{names[0]} and {names[1]} must both be NumPy arrays or both torch tensors; got "
            f"{kinds[0]} and {kinds[1]}. Convert one, e.g. torch.as_tensor(...) or "
            "tensor.detach().cpu().numpy()."
        )
    if is_torch(x) and x.device != y.device:
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
    streaming accumulators use it for torch tensors, where the scan would synchronise the device
    on every batch, and check their accumulated state instead).
    """
    x = as_array(value, name)
    _refuse_meta(x, name)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_examples, n_features, ...); got shape {tuple(x.shape)}. "
            f"For a single feature use {name}.reshape(-1, 1)."
        )
    n = int(x.shape[0])
    p = int(np.prod(x.shape[1:])) if x.ndim > 1 else 0
    if n == 0 or p == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); it needs examples and features"
        )
    xp = namespace(x)
    x = xp.reshape(x, (n, p))
    dtype = compute_dtype(x, xp)
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    if n < min_rows:
        raise ValueError(
            f"{name} has {n} example(s); this estimator needs at least {min_rows} (rows are "
            "examples)"
        )
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
) -> tuple[Array, Array, Any]:
    """Validate two activation matrices with the same examples; return them and their namespace."""
    xa = as_array(x, names[0])
    ya = as_array(y, names[1])
    _same_library(xa, ya, names)
    if xa.ndim >= 1 and ya.ndim >= 1 and xa.shape[0] != ya.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of rows (examples); got "
            f"{xa.shape[0]} and {ya.shape[0]}"
        )
    xm = as_matrix(xa, names[0], min_rows=min_rows, check_values=check_values)
    ym = as_matrix(ya, names[1], min_rows=min_rows, check_values=check_values)
    return xm, ym, namespace(xm, ym)


def check_gram(value: Any, name: str, *, min_size: int = 2) -> Array:
    """Validate a kernel (Gram) matrix: square, symmetric, finite, at least ``min_size`` rows."""
    k = as_array(value, name)
    _refuse_meta(k, name)
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


def warn_undefined(what: str, reason: str, stacklevel: int = 3, *, measure: str = "CKA") -> None:
    """Warn that ``measure`` is undefined (NaN is returned) and why."""
    warnings.warn(
        f"{measure} is undefined for {what}: {reason}; returning NaN",
        CKAUndefinedWarning,
        stacklevel=stacklevel,
    )
