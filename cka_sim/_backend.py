"""Array backends: one code path for NumPy arrays and torch tensors (CPU or CUDA).

The namespace comes from ``array-api-compat``, which recognises torch tensors without importing
torch, so ``import cka_sim`` stays free of torch. Everything here is small and shared by the
functional core (:mod:`cka_sim.kernels`, :mod:`cka_sim.hsic`, :mod:`cka_sim.cka`) and the
streaming accumulators.

Numerical policy (see ``docs/estimators.md``): the large products run in the input's floating
dtype on centred data; every reduction (sums, norms, traces) runs in float64.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array

Array = Any  # a NumPy array or a torch tensor

# Dtypes that are upcast before any arithmetic (names as both libraries print them).
_HALF_DTYPES = {"float16", "bfloat16", "torch.float16", "torch.bfloat16"}


def namespace(*arrays: Array) -> Any:
    """Return the array-API namespace shared by ``arrays`` (NumPy or torch)."""
    return array_namespace(*arrays)


def is_torch(x: Array) -> bool:
    """True for a torch tensor (without importing torch)."""
    return is_torch_array(x)


def compute_dtype(x: Array, xp: Any) -> Any:
    """The floating dtype in which the big products of ``x`` run.

    float32 and float64 are kept; float16, bfloat16, integers and booleans are upcast (to float32
    for half precision, to float64 for integers and booleans, as NumPy does).
    """
    name = str(x.dtype)
    if name in _HALF_DTYPES:
        return xp.float32
    if x.dtype in (xp.float32, xp.float64):
        return x.dtype
    return xp.float64


def to_float64(x: Array, xp: Any) -> Array:
    """``x`` as float64 (no copy when it already is)."""
    return x if x.dtype == xp.float64 else xp.astype(x, xp.float64)


def center_columns(x: Array, xp: Any) -> Array:
    """Subtract the column means of ``x`` (n, p), exactly enough for float32.

    The mean is summed in float64 and subtracted in ``x``'s dtype, then the (tiny) residual mean
    of the result is summed in float64 and subtracted once more: the corrected two-pass algorithm.
    Without the second pass a float32 column with mean 1e6 keeps a residual mean of about 0.03,
    which biases every product of the centred data. float64 input gets the second pass only when
    the first may have left a residual that matters (see :func:`centre_float64`).
    """
    n = x.shape[0]
    mean = xp.sum(x, axis=0, dtype=xp.float64) / n
    if x.dtype == xp.float64:
        return centre_float64(x, mean, xp)[0]
    xc = x - xp.astype(mean, x.dtype)
    residual = xp.sum(xc, axis=0, dtype=xp.float64) / n
    return xc - xp.astype(residual, x.dtype)


# Inputs whose largest magnitude lies within 2**±W of 1 are used as they are; outside that window
# they are multiplied by an exact power of two first (see ``power_of_two_scaled``). W is chosen so
# that no product or reduction downstream overflows or underflows: float32 centred data down to
# 2**-(W+24) still squares to a normal float32, and float64 fourth powers of centred data down to
# 2**-(W+53) stay normal.
_SAFE_EXPONENT_FLOAT32 = 16
_SAFE_EXPONENT_FLOAT64 = 128


def max_abs_exponent(x: Array, xp: Any) -> int | None:
    """Binary exponent ``e`` of the largest ``|x|`` (``2**(e-1) <= max|x| < 2**e``).

    None when ``x`` is all zero or holds a non-finite value. No temporary: two reductions for
    NumPy, one pass (``torch.aminmax``) and one device synchronisation for torch.
    """
    if is_numpy_array(x):
        largest = max(float(x.max()), -float(x.min()))
    else:
        import torch

        low, high = torch.aminmax(x)
        largest = to_scalar(torch.maximum(high, -low))
    if largest == 0.0 or not math.isfinite(largest):
        return None
    return math.frexp(largest)[1]


def times_power_of_two(x: Array, exponent: int, xp: Any) -> Array:
    """``x * 2**exponent``, exact unless the result leaves the normal range.

    The factor is applied in steps that are themselves normal numbers of ``x``'s dtype.
    """
    step = 100 if x.dtype == xp.float32 else 1000
    while exponent:
        part = max(-step, min(step, exponent))
        x = x * (2.0**part)
        exponent -= part
    return x


def power_of_two_scaled(x: Array, xp: Any) -> tuple[Array, int]:
    """``(x * 2**-e, e)`` with ``max|x * 2**-e|`` in [0.5, 1), or ``(x, 0)`` when no scaling is needed.

    CKA, the HSIC ratios and every estimator built from them are invariant to scaling one
    representation, and a power of two scales exactly, so this changes no digit of the result;
    it keeps float32 products of inputs around 1e-23 or 1e19, and float64 products of inputs
    around 1e±150, from underflowing or overflowing. Costs one pass (:func:`within_window`), or
    one max and one min reduction when that does not settle it; the multiplication runs only when the largest magnitude lies outside ``2**±16`` (float32) or
    ``2**±128`` (float64).
    """
    window = _SAFE_EXPONENT_FLOAT64 if x.dtype == xp.float64 else _SAFE_EXPONENT_FLOAT32
    if within_window(x, window):
        return x, 0
    exponent = max_abs_exponent(x, xp)
    if exponent is None or abs(exponent) <= window:
        return x, 0
    return times_power_of_two(x, -exponent, xp), exponent


# Elements per BLAS dot product in ``within_window``: a float32 dot product of at most 2**22
# terms is within γ = k·u / (1 - k·u) = 1/3 (k = 2**22, u = 2**-24) of the exact sum of the
# squares, however the BLAS orders it.
_DOT_CHUNK = 2**22


def within_window(x: Array, window: int) -> bool:
    """True when the sum of squares alone shows ``2**-(window+1) <= max|x| < 2**window``.

    ``max|x| <= ‖x‖`` and ``max|x| >= ‖x‖/√N``: one multi-threaded BLAS pass over a contiguous
    NumPy array (dot products of chunks, added in float64, each within a factor 1 ± 1/3 of the
    exact sum) settles most inputs, against two single-threaded reductions for the exact
    maximum. False (ask :func:`max_abs_exponent`) when undecided, for non-finite values, and
    for torch tensors (``torch.aminmax`` is already one pass).
    """
    if not is_numpy_array(x) or not x.flags.c_contiguous or x.size == 0:
        return False
    flat = x.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):  # inf or NaN: undecided, below
        total = sum(
            float(np.dot(c, c)) for c in np.split(flat, range(_DOT_CHUNK, flat.size, _DOT_CHUNK))
        )
    if not math.isfinite(total):
        return False
    # computed within (2/3, 4/3) of the exact sum S: 2T < 4**W gives S <= 1.5 T < 0.75 * 4**W, and
    # T >= N / 4**W gives S / N >= 0.75 / 4**W, so 2**-(W+1) < 0.87 * 2**-W <= max|x| < 2**W
    return 2.0 * total < 2.0 ** (2 * window) and total >= 2.0 ** (-2 * window) * flat.size


def _power_of_two(k: Any, dtype: Any, xp: Any, like: Array) -> Array:
    """``2**k`` as a 0-dim array of ``dtype`` (float32 or float64) on ``like``'s device, exactly.

    ``k`` is a 0-dim integer array within the dtype's normal exponent range. torch: built from
    its bits (no host synchronisation; ``torch.pow`` is not exact on every device).
    """
    if not is_torch(like):
        return np.ldexp(np.dtype(dtype).type(1.0), int(k))
    import torch

    if dtype == torch.float64:
        return ((k.to(torch.int64) + 1023) << 52).view(torch.float64)
    return ((k.to(torch.int32) + 127) << 23).view(torch.float32)


def translated_to_unit(
    x: Array, centre: Array, probe: Array, xp: Any, window: int
) -> tuple[Array, Array | None]:
    """``(x - centre) * 2**-e`` in one pass, and the float64 factor ``2**(2e)`` that restores a
    product of two rows (a Gram entry) to the units of ``x`` (``None``: nothing to restore).

    ``e`` is the binary exponent of ``max|probe|`` (a sample of the translated rows serves: the
    float32 products keep their digits for magnitudes within ``2**±40`` of it), clamped to the
    normal range of ``x``'s dtype so that the factor is itself a normal number. A power of two
    scales exactly, so the result equals the translated ``x`` scaled afterwards, digit for digit.
    Where ``e`` can be read without a device synchronisation (NumPy, torch on the CPU), a batch
    whose ``|e|`` is at most ``window`` is only translated; on other devices ``e`` stays on the
    device and the scaling always runs (fused with the translation). All zero or non-finite
    ``probe``: ``e = 0``.
    """
    largest = xp.maximum(xp.max(probe), -xp.min(probe))
    limit = 126 if x.dtype == xp.float32 else 1022
    if is_torch(x):
        import torch

        e = torch.frexp(largest).exponent.clamp(-limit, limit)
        e = torch.where(torch.isfinite(largest), e, torch.zeros_like(e))
        if x.device.type == "cpu" and abs(int(e)) <= window:
            return x - centre, None
        factor = _power_of_two(-e, x.dtype, xp, x)
        restore = _power_of_two(2 * e, xp.float64, xp, x)
        return torch.addcmul(-(centre * factor), x, factor), restore
    e = int(np.clip(np.frexp(largest)[1], -limit, limit)) if np.isfinite(largest) else 0
    if abs(e) <= window:
        return x - centre, None
    factor = _power_of_two(-e, x.dtype, xp, x)
    out = x * factor
    out -= centre * factor
    return out, _power_of_two(2 * e, xp.float64, xp, x)


# A float32 column mean is kept when the mean it leaves behind in the centred data is at most
# this fraction of the data's spread; beyond that the float32 products of the centred data lose
# digits to the leftover offset, and the mean is summed in float64 instead.
_RESIDUAL_TOLERANCE = 1e-2
_SPREAD_ROWS = 32


def spread(xc: Array, xp: Any) -> float:
    """Rough root of the summed column variances of ``xc``, from its first 33 rows.

    ``E‖x_i - x_0‖² = 2 Σ_j σ_j²``, so the mean squared distance of rows 1..32 to row 0, halved,
    estimates it in four operations. Used only to judge whether an offset is small next to the
    data, where a rough estimate serves.
    """
    sample = xc[1 : _SPREAD_ROWS + 1] - xc[0:1]
    if sample.shape[0] == 0:
        return 0.0
    return (to_scalar(xp.sum(sample * sample)) / (2 * sample.shape[0])) ** 0.5


def centre_float32(x: Array, xp: Any, sums: Array | None = None) -> tuple[Array, Array, Array]:
    """Centre float32 (n, p) data without a float64 pass; return ``(xc, centre, residual)``.

    ``centre`` is the column mean computed in float32 and ``xc = x - centre``; ``residual``, the
    mean of ``xc`` (float64, shape (p,)), is summed from ``xc`` itself, which lies near zero, so
    that float32 sum is accurate to the spread of the data rather than to its offset. Callers
    remove ``residual`` from their products in float64 (``xcᵀxc - n δδᵀ``), which is exact.

    A float32 sum of ``n`` values with a large common offset ``μ`` can be off by up to about
    ``n·ε·|μ|``; when the residual is not small next to the spread of the data (more than
    1 % of it: feature means around 1000 times the spread for n = 20000), the float32 products of
    ``xc`` would lose digits to it, so the mean is then summed in float64 and rounded to float32,
    which leaves a residual of half a float32 unit of the mean at most.

    ``sums``, the column sums of ``x`` when the caller has them already, saves a pass.
    """
    n = x.shape[0]
    centre = xp.mean(x, axis=0) if sums is None else sums / n
    if centre.dtype != x.dtype:
        centre = xp.astype(centre, x.dtype)
    xc = x - centre
    residual = to_float64(xp.sum(xc, axis=0), xp) / n
    if to_scalar(xp.sum(residual * residual)) ** 0.5 <= _RESIDUAL_TOLERANCE * spread(xc, xp):
        return xc, centre, residual
    mean = xp.sum(x, axis=0, dtype=xp.float64) / n
    centre = xp.astype(mean, x.dtype)
    return x - centre, centre, mean - to_float64(centre, xp)


# The float64 residual mean left by the first centring pass is ignored while a bound on it stays
# below this fraction of the data's spread (its effect on CKA is of the order of its square).
_RESIDUAL_TOLERANCE_FLOAT64 = 1e-7
_EPS64 = float(np.finfo(np.float64).eps)


def centre_float64(x: Array, mean: Array, xp: Any) -> tuple[Array, Array]:
    """``(x - centre, centre)`` for float64 ``x``: ``centre`` is ``mean``, or ``mean`` plus the
    residual mean of a second pass when the first may leave one that matters.

    A float64 column sum of ``n`` values with a common offset ``μ`` is off by up to about
    ``n·ε·|μ|`` (NumPy adds the rows of a C-ordered array one after the other), so at feature
    means 1e9 times the spread, ``x - mean`` keeps a residual mean comparable to the spread and
    the feature form of CKA loses its third digit. When that bound exceeds 1e-7 of the spread,
    the residual mean of the centred data (which lies near zero, so its sum is accurate) is
    summed and subtracted too: the corrected two-pass algorithm. Typical data never needs it.
    """
    n = x.shape[0]
    xc = x - mean
    bound = n * _EPS64 * to_scalar(xp.sum(mean * mean)) ** 0.5
    if bound <= _RESIDUAL_TOLERANCE_FLOAT64 * spread(xc, xp):
        return xc, mean
    residual = xp.sum(xc, axis=0) / n
    return xc - residual, mean + residual


def numpy_views(*tensors: Array) -> list[Any] | None:
    """Zero-copy NumPy views of torch CPU tensors whose products may leave torch, else None.

    Only for tensors that need no gradient (autograd inputs keep the torch path), in float32 or
    float64 (one dtype), strided, and only while torch itself runs on more than one thread: a
    caller that pinned torch to one thread (several processes side by side) keeps torch's
    single-threaded product rather than NumPy's BLAS thread pool. The same tensor passed twice
    gives the same view.
    """
    if not all(is_torch(t) for t in tensors):
        return None
    import torch

    for t in tensors:
        if (
            t.device.type != "cpu"
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


def transposed_product(b: Array, a: Array, xp: Any) -> Array:
    """``bᵀ a`` of (n, p_b) and (n, p_a) arrays in their own dtype (the cross product of
    :func:`~cka_sim.procrustes_similarity`).

    torch CPU tensors that need no gradient go through NumPy's BLAS on zero-copy views (see
    :func:`numpy_views`): NumPy runs ``aᵀ a`` as the symmetric rank-k update (SYRK, half the
    flops) and torch's CPU matmul has no symmetric routine; at n = 20000, p = 1024 (float32) on
    the project's 2-core machine NumPy's products took about 0.7x torch's. The result is a torch
    tensor again (``from_numpy``, no copy). Not for code that alternates with torch operations
    batch after batch (the streaming accumulators): torch's and NumPy's thread pools taking turns
    made a streaming update 1.3-2.6x slower.
    """
    views = numpy_views(a, b)
    if views is None:
        return xp.matrix_transpose(b) @ a
    import torch

    va, vb = views
    return torch.from_numpy(vb.T @ va)


# Rows of the sample whose mean translates a minibatch layer (see ``sample_centre``).
_SAMPLE_ROWS = 32


def sample_centre(rows: Array, xp: Any) -> Array:
    """Column means of sampled rows (:func:`sample_rows`), in their dtype: ``r₀ + mean(rᵢ - r₀)``.

    Taking the mean of the differences from the first row keeps it in the rows' dtype (summing
    32 float32 rows in float64 cost about eight times as much) while equal rows still give the
    first row exactly (their differences are exact zeros), so that a constant batch translates to
    exact zeros. ``x - sample_centre(sample_rows(x))`` lies within about ``σ/√32`` of zero per
    feature, near enough for a float32 Gram to keep the digits of the spread; callers that need
    the exact mean (the full-data estimators) do not use it.
    """
    first = rows[0]
    return first + xp.mean(rows - first, axis=0)


def sample_rows(x: Array) -> Array:
    """At most 32 rows spread evenly over ``x`` (m, p), the first row first (a strided view)."""
    return x[:: max(1, x.shape[0] // _SAMPLE_ROWS)][:_SAMPLE_ROWS]


def row_sq_sums(x: Array, xp: Any) -> Array:
    """``Σ_j x_ij²`` of every row of an (m, p) array, in its dtype, in one pass without a temporary.

    torch: the squared row norms (``linalg.vector_norm``, one reduction); NumPy: ``einsum``. Both
    ran 3 to 6 times faster than ``(x * x).sum(1)`` at m = 4096 to 20000 on the project's machine;
    the extra rounding of the square root is one unit in the last place.
    """
    if is_numpy_array(x):
        return np.einsum("ij,ij->i", x, x)
    return xp.linalg.vector_norm(x, axis=1) ** 2


def add_outer(a: Array, left: Array, right: Array, alpha: float = 1.0) -> Array:
    """``a += alpha * left @ rightᵀ`` in place, for (p, k) factors of a rank-k update; returns ``a``.

    torch runs it as one ``addmm_`` (no (p, q) temporary); NumPy forms the product, then adds.
    """
    if is_torch(a):
        return a.addmm_(left, right.mT, alpha=alpha)
    term = (left if alpha == 1.0 else left * alpha) @ right.T  # alpha on the (p, k) factor
    a += term
    return a


def _gram_block(m: int) -> int:
    """Row-block height of the symmetric Gram product of ``m`` rows on torch CPU (see ``gram``).

    Smaller blocks skip more of the lower triangle but run their GEMMs less efficiently. Measured
    with two threads on the project's machine, 128-row blocks took 0.91-0.96x the time of 64-row
    ones for 512 to 1024 rows (and 0.82-0.93x a full GEMM); at 256 rows neither height won.
    """
    return 128 if m >= 512 else 64


def gram(x: Array, xp: Any) -> Array:
    """``x xᵀ`` of an (m, p) array in its own dtype, exactly symmetric.

    NumPy already uses the BLAS symmetric rank-k update (half the flops) for ``x @ x.T``; torch's
    CPU matmul does not, so for torch CPU tensors of 128 rows or more that need no gradient the
    upper block rows ``x[i:i+b] @ x[i:].T`` are computed and mirrored (``b`` = 64, or 128 from
    512 rows): about 5/8 of the flops at m = 256, in GEMMs still large enough to run at full
    rate. ``x`` may be a transposed view (``gram(a.mT)`` is ``aᵀa``). Elsewhere (CUDA, autograd,
    small m) it is ``x @ x.T``.
    """
    m = x.shape[0]
    b = _gram_block(m)
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
    # The lower middle value is the largest one below ``upper`` when exactly count/2 values lie
    # below it, and ``upper`` itself otherwise (ties): two linear passes instead of a second
    # selection.
    below = flat < upper
    if int(below.sum()) != count // 2:
        return upper
    lower = flat.where(below, flat.new_tensor(float("-inf"))).max()
    return (lower + upper) / 2


def to_scalar(value: Array) -> float:
    """A Python float of a 0-dim array, detached from any autograd graph (synchronises CUDA)."""
    return float(value.detach()) if is_torch(value) else float(value)


def as_output(value: Array) -> Any:
    """Return a Python float for NumPy results and the 0-dim tensor itself for torch."""
    if is_torch(value):
        return value
    return float(value)


def as_float64_tensor(value: Array) -> Any:
    """A NumPy result of torch CPU input (see :func:`numpy_views`) as a 0-dim float64 tensor."""
    import torch

    return torch.tensor(float(value), dtype=torch.float64)
