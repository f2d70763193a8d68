"""Array backends: one code path for NumPy arrays and torch tensors (CPU or CUDA).

The namespace comes from ``array-api-compat``, which recognises torch tensors without importing
torch, so ``import cka_sim`` stays free of torch. Numerical policy (``docs/estimators.md``): the
large products run in the input's floating dtype on centred data; every reduction runs in
float64. The last stage of the pipeline, :func:`present`, also lives here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_jax_array,
    is_numpy_array,
    is_torch_array,
)

Array = Any  # a NumPy array or a torch tensor

#: Row-block height of the symmetric product on torch CPU (see :func:`gram`).
GRAM_BLOCK = 64


def namespace(*arrays: Array) -> Any:
    """Return the array-API namespace shared by ``arrays`` (NumPy or torch)."""
    return array_namespace(*arrays)


def other_library(x: Any) -> str | None:
    """The name of ``x``'s array library when it is one that cka-sim reads through a NumPy copy.

    ``"jax"``, ``"cupy"`` or ``"array_api_strict"``; None for NumPy arrays, torch tensors and
    everything else (none of these libraries is imported to answer).
    """
    if is_jax_array(x):
        return "jax"
    if is_cupy_array(x):
        return "cupy"
    space = getattr(x, "__array_namespace__", None)
    if space is not None and type(x).__module__.startswith("array_api_strict"):
        try:
            if is_array_api_strict_namespace(space()):
                return "array_api_strict"
        except Exception:  # an object whose namespace cannot be had is not one of these
            return None
    return None


def is_torch(x: Array) -> bool:
    """True for a torch tensor (without importing torch)."""
    return is_torch_array(x)


def device_of(x: Array) -> Any:
    """The device of ``x`` (``"cpu"`` for NumPy)."""
    return device(x)


def on_host(x: Array) -> bool:
    """True when ``x``'s values can be read without a device synchronisation (NumPy, torch CPU)."""
    return not is_torch(x) or x.device.type == "cpu"


def to_float64(x: Array, xp: Any) -> Array:
    """``x`` as float64 (no copy when it already is)."""
    return x if x.dtype == xp.float64 else xp.astype(x, xp.float64)


def to_scalar(value: Array) -> float:
    """A Python float of a 0-dim array, detached from any autograd graph (synchronises CUDA)."""
    return float(value.detach()) if is_torch(value) else float(value)


def to_numpy(a: Array) -> np.ndarray:
    """A float64 NumPy copy of ``a`` (one device-to-host transfer for torch)."""
    if is_torch(a):
        return a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=np.float64)


def numpy_views(*tensors: Array) -> list[Any] | None:
    """Zero-copy NumPy views of torch CPU tensors whose products may leave torch, else None.

    The one dispatch point for running torch CPU products on NumPy's BLAS, which has the
    symmetric product (SYRK, half the flops) that torch's CPU matmul lacks: at n = 20000,
    p = 1024 (float32) on the project's 2-core machine NumPy's products took about 0.7x torch's.
    Only for tensors that need no gradient, in float32 or float64 (one dtype), strided, and only
    while torch itself runs on more than one thread (a caller that pinned torch to one thread
    keeps torch's product). Not for code that alternates with torch operations batch after batch
    (the accumulators): the two thread pools taking turns made a streaming update 1.3-2.6x slower.
    """
    import torch

    for t in tensors:
        if (
            not is_torch_array(t)
            or t.device.type != "cpu"
            or t.requires_grad
            or t.layout != torch.strided
            or t.dtype not in (torch.float32, torch.float64)
            or t.is_neg()
        ):
            return None
    if len({t.dtype for t in tensors}) != 1 or torch.get_num_threads() < 2:
        return None
    views: dict[int, Any] = {}
    return [views.setdefault(id(t), t.numpy()) for t in tensors]


def row_sq_sums(x: Array, xp: Any) -> Array:
    """``Σ_j x_ij²`` of every row of an (m, p) array, in its dtype, without a temporary.

    torch: the squared row norms (one reduction); NumPy: ``einsum``. Both ran 3 to 6 times faster
    than ``(x * x).sum(1)`` at m = 4096 to 20000 on the project's machine.
    """
    if is_numpy_array(x):
        return np.einsum("ij,ij->i", x, x)
    return xp.linalg.vector_norm(x, axis=1) ** 2


def gram(x: Array, xp: Any) -> Array:
    """``x xᵀ`` of an (m, p) array in its own dtype, exactly symmetric.

    NumPy already runs ``x @ x.T`` as the BLAS symmetric rank-k update (half the flops); torch's
    CPU matmul does not, so for torch CPU tensors of 128 rows or more that need no gradient the
    upper block rows ``x[i:i+64] @ x[i:].T`` are computed and mirrored (about 5/8 of the flops at
    m = 256). ``x`` may be a transposed view (``gram(a.mT)`` is ``aᵀa``).
    """
    m, b = x.shape[0], GRAM_BLOCK
    if not (is_torch(x) and x.device.type == "cpu" and not x.requires_grad and m >= 2 * b):
        return x @ xp.matrix_transpose(x)
    out = xp.empty((m, m), dtype=x.dtype)
    for start in range(0, m, b):
        stop = min(start + b, m)
        block = x[start:stop] @ x[start:].T
        out[start:stop, start:] = block
        out[stop:, start:stop] = block[:, stop - start :].T
    return out


def frobenius_sq(a: Array, xp: Any) -> Array:
    """Squared Frobenius norm of ``a``, reduced in float64."""
    a64 = to_float64(a, xp)
    return xp.sum(a64 * a64)


def median(values: Array, xp: Any) -> Array:
    """Median of all entries, averaging the two middle values for an even count (as NumPy).

    ``torch.median`` returns the lower of the two middle values and ``torch.quantile`` refuses
    more than 2**24 entries, so torch uses ``kthvalue`` twice.
    """
    flat = xp.reshape(values, (-1,))
    if is_numpy_array(flat):
        return np.median(flat)
    count = int(flat.shape[0])
    upper = flat.kthvalue(count // 2 + 1).values
    if count % 2:
        return upper
    # the lower middle value is the largest one below ``upper`` when exactly count/2 values lie
    # below it, and ``upper`` itself otherwise (ties)
    below = flat < upper
    if int(below.sum()) != count // 2:
        return upper
    lower = flat.where(below, flat.new_tensor(float("-inf"))).max()
    return (lower + upper) / 2


def present(value: Array, *, from_torch_view: bool = False) -> Any:
    """The output type: a Python float for NumPy input, the 0-dim tensor itself for torch.

    ``from_torch_view``: the value was computed by NumPy on views of torch CPU tensors
    (:func:`numpy_views`), and is returned as a 0-dim float64 tensor.
    """
    if from_torch_view:
        import torch

        return torch.tensor(float(value), dtype=torch.float64)
    return value if is_torch_array(value) else float(value)
