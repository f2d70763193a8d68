"""Centred products of a large batch, formed block by block in a small workspace.

The one-shot feature forms (:func:`~cka_sim.linear_cka`, :func:`~cka_sim.deconfounded_cka`)
need the products ``āᵀā`` of centred layers ``ā = x - c``. Centring a whole (n, p) layer first
writes a second copy of it, freshly allocated: at n = 20000, p = 1024 that copy cost as much as
a fifth of the products on the project's 2-core machine, and it doubles the memory the call
needs. Here the rows are centred a block at a time into a workspace of at most
:data:`WORKSPACE_BYTES` that stays in cache, and each block's products are added into the
accumulating ones in place by the BLAS (``?syrk``/``?gemm`` with ``beta = 1``, SciPy's BLAS).
Only the centre ``c`` is formed beforehand, from a sample of rows; the residual mean of ``ā``
(what ``c`` missed) is summed block by block and removed afterwards in float64, exactly as for a
centred layer (see :func:`~cka_sim._batch.prepare_layer`).

Used for NumPy arrays and torch CPU tensors that need no gradient (through zero-copy NumPy
views, under the same conditions as :func:`~cka_sim._backend.transposed_product`), in float32 or
float64, when the layers span several blocks; everything else keeps the centred copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas

from ._backend import Array, is_torch, numpy_views, spread
from ._validation import check_finite

#: Bytes of the workspace (one block of every unit): a few MiB stay in the cache.
WORKSPACE_BYTES = 8 * 2**20
#: Fewest rows of a block; narrower layers get more (up to the workspace).
MIN_BLOCK_ROWS = 256
#: A batch is done by blocks only when it spans at least this many of them.
MIN_BLOCKS = 4
#: Rows whose mean is the centre: it misses the column mean by about σ/√1024 = 0.03 σ.
SAMPLE_ROWS = 1024
# The residual mean δ (what the centre missed) is removed exactly in float64 afterwards; the
# products of ā = ā₀ + δ (ā₀ exactly centred) round relative to ‖ā₀‖² + n‖δ‖², so a δ within a
# tenth of the data's spread makes their rounding at most 1 % coarser. Beyond that the blocks
# are centred again about the corrected centre.
_RESIDUAL_TOLERANCE = 0.1


def block_rows(widths: list[int], itemsize: int) -> int:
    """Rows of one block of units of these widths and element size."""
    row_bytes = max(1, sum(int(w) for w in widths) * int(itemsize))
    return max(MIN_BLOCK_ROWS, WORKSPACE_BYTES // row_bytes)


@dataclass(frozen=True)
class Deferred:
    """A layer whose centring is left to :func:`centred_sums`.

    Attributes
    ----------
    data : numpy.ndarray, shape (n, p)
        The layer (a zero-copy view of a torch tensor), float32 or float64, in range; finiteness
        is checked by :func:`centred_sums`.
    name : str
        The argument's name, for the error a NaN or an infinity raises.
    from_torch : bool
        ``data`` views a torch tensor: the statistics go back to torch.
    """

    data: np.ndarray
    name: str
    from_torch: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def deferrable(layers: list[Array]) -> list[np.ndarray] | None:
    """NumPy views of ``layers`` when their centred products are done by blocks, else None.

    The layers must be NumPy arrays (or all torch CPU tensors that may leave torch, see
    :func:`~cka_sim._backend.numpy_views`) of one float dtype, and span :data:`MIN_BLOCKS`
    blocks at least.
    """
    if all(is_torch(a) for a in layers):
        views = numpy_views(*layers)
        if views is None:
            return None
    elif any(is_torch(a) for a in layers):
        return None
    else:
        views = list(layers)
    dtypes = {a.dtype for a in views}
    if len(dtypes) != 1 or dtypes.pop() not in (np.float32, np.float64):
        return None
    rows = block_rows([int(a.shape[1]) for a in views], views[0].dtype.itemsize)
    return views if int(views[0].shape[0]) >= MIN_BLOCKS * rows else None


@dataclass
class CentredSums:
    """What :func:`centred_sums` returns, all float64 NumPy arrays.

    ``S[u]`` and ``C[k]`` (for ``pairs[k] = (u, v)``) are the products of the units centred
    on their exact column means ``mean[u]``: ``Σ_i (x_ui - μ_u)(x_ui - μ_u)ᵀ`` and
    ``Σ_i (x_vi - μ_v)(x_ui - μ_u)ᵀ``. With ``fourth_order``: ``R_self[u] = Σ_i r_ui²`` and
    ``R_pair[k] = Σ_i r_ui r_vi``, ``r_ui = ‖x_ui - μ_u‖²``.
    """

    S: list[np.ndarray]
    C: list[np.ndarray]
    mean: list[np.ndarray]
    R_self: list[np.ndarray] | None = None
    R_pair: list[np.ndarray] | None = None


def centred_sums(
    units: list[Deferred], pairs: list[tuple[int, int]], fourth_order: bool
) -> CentredSums:
    """Products of the centred units and their residual means, formed block by block.

    The centre ``c`` of each unit is the float64 mean of :data:`SAMPLE_ROWS` rows spread over it,
    rounded to its dtype (no pass over the data). Each block of rows is centred into the
    workspace, its column sums are added (in float64) and its products added into the running
    ones by the BLAS in the input dtype. When the residual mean ``δ`` is not small next to the
    data's spread (an unrepresentative sample), the blocks are done again about ``c + δ``.
    The fourth-order sums are formed from the uncentred blocks' row norms and removed of
    ``δ`` afterwards (see :func:`_fourth_order`).

    Raises
    ------
    ValueError
        If a unit holds NaN or infinity (its column sums are then not finite).
    """
    n = int(units[0].shape[0])
    centres = [_sample_centre(u.data) for u in units]
    sums = _block_pass([u.data for u in units], centres, pairs, fourth_order)
    for u, total in zip(units, sums.col_sums, strict=True):
        if not np.all(np.isfinite(total)):  # a column with NaN or inf has no finite sum
            check_finite(u.data, u.name, np)
    residual = [s / n for s in sums.col_sums]
    if not all(_small(r, u.data) for r, u in zip(residual, units, strict=True)):
        centres = [(c + r).astype(c.dtype) for c, r in zip(centres, residual, strict=True)]
        sums = _block_pass([u.data for u in units], centres, pairs, fourth_order)
        residual = [s / n for s in sums.col_sums]
    mean = [c.astype(np.float64) + r for c, r in zip(centres, residual, strict=True)]
    out = CentredSums(sums.S, sums.C, mean)
    if fourth_order:
        out.R_self, out.R_pair = _fourth_order(sums, residual, pairs, n)
    # about the exact mean: ā_vᵀā_u - n δ_v δ_uᵀ, in place, by the same BLAS as the products (a
    # second BLAS thread pool taking turns with the first slows both, see _block_pass)
    ger = blas.get_blas_funcs("ger", dtype=np.float64)
    for s, r in zip(sums.S, residual, strict=True):
        _in_place(ger(-float(n), r, r, a=s, overwrite_a=1), s)
    for c, (u, v) in zip(sums.C, pairs, strict=True):
        _in_place(ger(-float(n), residual[v], residual[u], a=c, overwrite_a=1), c)
    return out


def _sample_centre(x: np.ndarray) -> np.ndarray:
    """Float64 mean of :data:`SAMPLE_ROWS` rows spread evenly over ``x``, in ``x``'s dtype."""
    rows = x[:: max(1, x.shape[0] // SAMPLE_ROWS)]
    return (rows.sum(axis=0, dtype=np.float64) / rows.shape[0]).astype(x.dtype)


@dataclass
class _Pass:
    """One pass: ``S``, ``C`` and the column sums of ``ā``; for the fourth-order sums the
    squared row norms ``q_u`` of ``āᵤ`` and ``G[u][v] = Σ_i q_ui ā_vi``."""

    S: list[np.ndarray]
    C: list[np.ndarray]
    col_sums: list[np.ndarray]
    q: list[np.ndarray] | None
    G: list[list[np.ndarray]] | None


def _block_pass(
    xs: list[np.ndarray], centres: list[np.ndarray], pairs: list[tuple[int, int]], rows_too: bool
) -> _Pass:
    """One pass over the rows of ``ā = x - c``, a block at a time (see :class:`_Pass`)."""
    n, dtype = int(xs[0].shape[0]), xs[0].dtype
    widths = [int(x.shape[1]) for x in xs]
    rows = block_rows(widths, dtype.itemsize)
    syrk, gemm = blas.get_blas_funcs(("syrk", "gemm"), dtype=dtype)
    work = [np.empty((rows, p), dtype=dtype) for p in widths]
    # Fortran order: the BLAS adds into these in place (no copy, checked below)
    S = [np.zeros((p, p), dtype=dtype, order="F") for p in widths]
    C = [np.zeros((widths[v], widths[u]), dtype=dtype, order="F") for u, v in pairs]
    col_sums = [np.zeros(p, dtype=np.float64) for p in widths]
    q = np.empty((len(xs), n if rows_too else 0), dtype=dtype)
    G = np.zeros((len(xs), len(xs), max(widths)))  # G[u, v, :p_v]
    # Every BLAS call of the pass goes to SciPy's BLAS: NumPy's has its own thread pool, and two
    # pools taking turns leave each other's threads spinning on the same cores (NumPy streaming
    # updates ran 1.5-4x slower when their rank-one updates went to SciPy's BLAS).
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        blocks = [
            np.subtract(x[start:stop], c, out=w[: stop - start])
            for x, c, w in zip(xs, centres, work, strict=True)
        ]
        for u, a in enumerate(blocks):
            col_sums[u] += a.sum(axis=0)
            if rows_too:
                np.einsum("ij,ij->i", a, a, out=q[u, start:stop])
            # aᵀa as the (p, m) Fortran array aᵀ times its transpose: the upper triangle
            S[u] = _in_place(syrk(1.0, a.T, beta=1.0, c=S[u], overwrite_c=1), S[u])
        for k, (u, v) in enumerate(pairs):
            a, b = blocks[u], blocks[v]
            C[k] = _in_place(gemm(1.0, b.T, a.T, beta=1.0, c=C[k], trans_b=1, overwrite_c=1), C[k])
        if rows_too:
            for v, b in enumerate(blocks):  # every unit's row norms against this unit's rows:
                # (bᵀ qᵀ)ᵀ, with the same BLAS (two BLAS thread pools in turn fight for cores)
                G[:, v, : widths[v]] += gemm(1.0, b.T, q[:, start:stop].T).T
    return _Pass(
        [_symmetric64(s) for s in S],
        [c.astype(np.float64) for c in C],
        col_sums,
        [row.astype(np.float64) for row in q] if rows_too else None,
        [[G[u, v, : widths[v]] for v in range(len(xs))] for u in range(len(xs))]
        if rows_too
        else None,
    )


def _fourth_order(
    sums: _Pass, residual: list[np.ndarray], pairs: list[tuple[int, int]], n: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``Σ r_u²`` and ``Σ r_u r_v`` of the exactly centred rows, from the sums of one pass.

    With ``q_ui = ‖ā_ui‖²``, ``s_ui = ā_ui·δ_u`` and ``d_u = ‖δ_u‖²``, ``r_ui = q_ui - 2 s_ui + d_u``
    and ``Σ_i r_ui r_vi`` expands into sums the pass formed: ``Σ q_u q_v``; ``Σ q_u s_v =
    G[u][v]·δ_v``; ``Σ s_u s_v = δ_vᵀ (Σ ā_v ā_uᵀ) δ_u``; ``Σ q_u = tr S_u``; ``Σ s_u = n d_u``.
    Every term involves the rows about their (nearly exact) centre only, so no digit is lost
    to the offset of the data, however large.
    """
    assert sums.q is not None and sums.G is not None
    q, G, S, C = sums.q, sums.G, sums.S, sums.C
    # SciPy's BLAS only, as the pass (see _block_pass)
    dot, gemv = blas.get_blas_funcs(("dot", "gemv"), dtype=np.float64)
    d = [dot(r, r) for r in residual]
    trace = [np.trace(s) for s in S]

    def cross(u: int, v: int, product_vu: np.ndarray) -> np.ndarray:
        # Σ_i (q_u - 2 s_u + d_u)(q_v - 2 s_v + d_v), product_vu = Σ ā_v ā_uᵀ; the d·Σs terms
        # give -2 n d_u d_v twice
        qs_uv = dot(G[u][v], residual[v])  # Σ q_u s_v
        qs_vu = dot(G[v][u], residual[u])  # Σ q_v s_u
        ss = dot(residual[v], gemv(1.0, product_vu, residual[u]))  # Σ s_u s_v
        return (
            dot(q[u], q[v])
            - 2.0 * (qs_uv + qs_vu)
            + 4.0 * ss
            + d[v] * trace[u]
            + d[u] * trace[v]
            - 3.0 * n * d[u] * d[v]
        )

    R_self = [cross(u, u, S[u]) for u in range(len(S))]
    R_pair = [cross(u, v, C[k]) for k, (u, v) in enumerate(pairs)]
    return R_self, R_pair


def _in_place(result: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The BLAS wrapper's output, which must be ``target`` itself (else a copy was made)."""
    if result is not target:  # pragma: no cover - SciPy's wrappers keep an F-ordered c
        raise RuntimeError("the BLAS accumulation copied its output; report this as a bug")
    return result


def _symmetric64(upper: np.ndarray) -> np.ndarray:
    """The full float64 symmetric matrix whose upper triangle ``?syrk`` filled (lower: zeros).

    Tile by tile, so that the transposed reads stay in the cache (a whole-matrix ``f + f.T``
    took three times as long at p = 1024).
    """
    full = upper.astype(np.float64, order="F")
    p, tile = full.shape[0], 64
    for i in range(0, p, tile):
        for j in range(0, i, tile):
            full[i : i + tile, j : j + tile] = full[j : j + tile, i : i + tile].T
        diagonal = full[i : i + tile, i : i + tile]
        diagonal += np.triu(diagonal, 1).T
    return full


def _small(residual: np.ndarray, x: np.ndarray) -> bool:
    """Whether the residual mean is within the tolerance next to the spread of ``x``."""
    size = float(np.sqrt(residual @ residual))
    return size <= _RESIDUAL_TOLERANCE * spread(x[:64].astype(np.float64), np)
