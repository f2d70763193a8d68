"""Small batches of the exact accumulators, gathered into blocks before their statistics are formed.

Besides a batch's own products, :class:`~cka_sim.StreamingCKA` and
:class:`~cka_sim.StreamingCKAMatrix` pay a fixed price per batch: the float64 state moved to the
new mean (Chan–Golub–LeVeque: several passes over every p x p statistic, more when debiased),
the debiasing sums, the upcasts and a few dozen small array operations. For batches of a few
hundred rows that price exceeds the products themselves. A :class:`RowBuffer` copies the rows of
such batches, already validated, into one preallocated block per unit and hands the block over
when it is full (or when anything reads the state), so the price is paid once per block. The
statistics of a block equal those of its batches merged (the accumulators are exact under any
split of the examples), so the results change only by rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._core.backend import Array, is_torch, namespace

#: Rows of a block: batches of at most half of it are buffered, larger ones go straight through.
BLOCK_ROWS = 4096
#: Most bytes of one block (all units together); wide layers get fewer rows.
BLOCK_BYTES = 64 * 2**20


def block_rows(widths: list[int], itemsize: int) -> int:
    """Rows of a block of units of these widths and element size (at least 1)."""
    row_bytes = max(1, sum(int(w) for w in widths) * int(itemsize))
    return max(1, min(BLOCK_ROWS, BLOCK_BYTES // row_bytes))


def block_bytes(widths: list[int], itemsize: int = 8) -> int:
    """Bytes of a full block (the most a :class:`RowBuffer` holds)."""
    return block_rows(widths, itemsize) * sum(int(w) for w in widths) * int(itemsize)


class RowBuffer:
    """Rows of small batches, kept per unit until a block is full.

    :meth:`blocks` takes one batch (a list of validated ``(m, p_u)`` arrays, one per unit, all
    with the same rows) and yields what is ready for its statistics, oldest first: nothing while
    the batch fits in the block, the block once full, and a batch too large (or of another
    layout, dtype or device) on its own after the rows held before it. :meth:`drain` yields the
    rows held. Each block is a fresh allocation, so arrays derived from a yielded block are never
    overwritten by later batches.
    """

    def __init__(self) -> None:
        self._block: list[Array] | None = None
        self.rows = 0

    def reset(self) -> None:
        """Forget the rows held."""
        self._block, self.rows = None, 0

    @property
    def held(self) -> Array | None:
        """One of the arrays held (``None`` when empty): where the rows live."""
        return None if self._block is None else self._block[0]

    @property
    def widths(self) -> list[int] | None:
        """Widths of the units held (``None`` when empty)."""
        return None if self._block is None else [int(b.shape[1]) for b in self._block]

    def blocks(self, units: list[Array]) -> Iterator[list[Array]]:
        """Add one batch; yield the blocks (lists of arrays, one per unit) ready for statistics."""
        m = int(units[0].shape[0])
        capacity = block_rows([int(u.shape[1]) for u in units], _itemsize(units))
        if self.rows and (not self._holds_like(units) or self.rows + m > capacity):
            yield from self.drain()
        if 2 * m > capacity:
            yield units
            return
        if self._block is None:
            xp = namespace(units[0])
            self._block = [_empty_like_rows(u, capacity, xp) for u in units]
        for block, u in zip(self._block, units, strict=True):
            block[self.rows : self.rows + m] = u
        self.rows += m
        if self.rows + m > capacity:  # the next batch of this size would not fit: hand it over
            yield from self.drain()

    def drain(self) -> Iterator[list[Array]]:
        """Yield the rows held (if any) as one block and forget them."""
        if self.rows:
            block, rows = self._block, self.rows
            self.reset()
            assert block is not None
            yield [b[:rows] for b in block]

    def _holds_like(self, units: list[Array]) -> bool:
        block = self._block
        if block is None or len(block) != len(units):
            return False
        for b, u in zip(block, units, strict=True):
            if b.shape[1] != u.shape[1] or b.dtype != u.dtype or is_torch(b) != is_torch(u):
                return False
            if is_torch(b) and b.device != u.device:
                return False
        return True


def _itemsize(units: list[Array]) -> int:
    return max(int(u.dtype.itemsize) for u in units)


def _empty_like_rows(u: Array, rows: int, xp: Any) -> Array:
    if is_torch(u):
        return u.new_empty((rows, int(u.shape[1])))
    return xp.empty((rows, int(u.shape[1])), dtype=u.dtype)
