"""The merge of centred moments (``cka_sim._moments``) against sums formed directly.

A fresh batch keeps its products about a rounded centre, with the leftover mean (``residual``)
removed only in the merge. These tests give batches a deliberately large residual, which the
accumulators' own preparation never produces, so that a wrong correction shows at once.
"""

import numpy as np
import pytest
import torch

from cka_sim._backend import namespace
from cka_sim._batch import Prepared
from cka_sim._moments import FIELDS, Moments

PAIRS = [(0, 1)]


def _unit(x: np.ndarray, offset: np.ndarray, lib: str) -> Prepared:
    """``x`` centred about ``mean(x) + offset``: the residual mean is ``-offset``."""
    mean = x.mean(axis=0)
    xc = x - (mean + offset)
    residual = xc.mean(axis=0)
    arrays = (xc, mean, residual)
    if lib == "torch":
        arrays = tuple(torch.from_numpy(a) for a in arrays)
    return Prepared(arrays[0], arrays[1], arrays[2])


def _batch(rows: list[np.ndarray], offsets: list[np.ndarray], lib: str) -> Moments:
    units = [_unit(x, o, lib) for x, o in zip(rows, offsets, strict=True)]
    return Moments.from_batch(units, PAIRS, debiased=True, xp=namespace(units[0].data))


def _direct(rows: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Every field summed over the rows centred on their exact mean."""
    a, b = (x - x.mean(axis=0) for x in rows)
    r, q = (np.sum(c * c, axis=1) for c in (a, b))
    return {
        "S": [a.T @ a, b.T @ b],
        "C": [b.T @ a],
        "R_self": [np.sum(r * r), np.sum(q * q)],
        "W_self": [a.T @ r, b.T @ q],
        "R_pair": [np.sum(r * q)],
        "W_uv": [b.T @ r],
        "W_vu": [a.T @ q],
    }


def _numpy(value):
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_merge_of_a_batch_with_a_large_residual_equals_the_direct_sums(lib):
    rng = np.random.default_rng(7)
    first = [rng.normal(3.0, 1.0, (40, 5)), rng.normal(-2.0, 2.0, (40, 3))]
    second = [rng.normal(4.0, 1.5, (30, 5)), rng.normal(0.0, 1.0, (30, 3))]
    # residuals of about half the spread: every correction term is large
    state = _batch(first, [rng.normal(0, 0.5, 5), rng.normal(0, 1.0, 3)], lib).finalise()
    fresh = _batch(second, [rng.normal(0, 0.7, 5), rng.normal(0, 0.5, 3)], lib)
    assert fresh.residual is not None  # the merge, not the batch, removes it
    merged = state.combined(fresh, state.namespace(), consume=True)
    expected = _direct([np.vstack([f, s]) for f, s in zip(first, second, strict=True)])
    assert merged.residual is None
    for field in FIELDS:
        for got, want in zip(getattr(merged, field.name), expected[field.name], strict=True):
            np.testing.assert_allclose(_numpy(got), want, rtol=1e-10, atol=1e-9, err_msg=field.name)


def test_second_order_shift_of_an_unfinalised_batch_is_refused():
    rng = np.random.default_rng(1)
    fresh = _batch(
        [rng.normal(size=(10, 2)), rng.normal(size=(10, 2))], [np.ones(2), np.ones(2)], "numpy"
    )
    with pytest.raises(AssertionError):
        fresh.recentred([np.zeros(2), np.zeros(2)], np)
