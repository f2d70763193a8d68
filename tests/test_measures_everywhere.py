"""The measure= option of the accumulators and cka_matrix: Procrustes and dCKA over batches.

(dCKA's batch-split, merge and state contract runs in ``test_accumulator_contract.py``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import (
    CKAUndefinedWarning,
    StreamingCKA,
    StreamingCKAMatrix,
    cka_matrix,
    deconfounded_cka,
    procrustes_similarity,
)

rng = np.random.default_rng(0)
N = 120
Z = rng.standard_normal((N, 6)) + 3.0
X = Z @ rng.standard_normal((6, 8)) + rng.standard_normal((N, 8)) + 40.0
Y = np.tanh(X @ rng.standard_normal((8, 5)) / 3) + Z[:, :5]
W = np.maximum(X[:, :6], 40.0) + 0.1 * rng.standard_normal((N, 6))


def _batches(sizes: list[int]):
    lo = 0
    for size in sizes:
        yield slice(lo, lo + size)
        lo += size


@pytest.mark.parametrize("sizes", [[N], [1] * N, [7, 13, 50, 50]], ids=["whole", "ones", "ragged"])
def test_streaming_procrustes_equals_in_memory(sizes):
    acc = StreamingCKA(measure="procrustes")
    for rows in _batches(sizes):
        acc.update(X[rows], Y[rows])
    assert acc.compute() == pytest.approx(procrustes_similarity(X, Y), rel=1e-10, abs=1e-10)
    halves = StreamingCKA(measure="procrustes").update(X[:60], Y[:60])
    halves.merge(StreamingCKA(measure="procrustes").update(X[60:], Y[60:]))
    assert halves.compute() == pytest.approx(procrustes_similarity(X, Y), rel=1e-10)


def test_procrustes_and_dcka_matrices_equal_the_pairwise_functions():
    acts_a, acts_b = {"x": X, "w": W}, {"y": Y, "x": X}
    proc = cka_matrix(acts_a, acts_b, measure="procrustes")
    want = [[procrustes_similarity(a, b) for b in acts_b.values()] for a in acts_a.values()]
    np.testing.assert_allclose(proc.values, want, rtol=0, atol=1e-10)
    assert proc.estimator == "procrustes" and proc.metadata["measure"] == "procrustes"
    for debiased in (False, True):
        dcka = cka_matrix(acts_a, acts_b, debiased=debiased, measure="dcka", confounder=Z)
        want = [
            [deconfounded_cka(a, b, Z, debiased=debiased) for b in acts_b.values()]
            for a in acts_a.values()
        ]
        np.testing.assert_allclose(dcka.values, want, rtol=0, atol=1e-10)
        assert dcka.estimator == ("deconfounded-debiased" if debiased else "deconfounded")
    shared = {"x": X, "y": Y, "w": W}
    values = cka_matrix(shared, shared, measure="procrustes").values
    np.testing.assert_allclose(np.diag(values), 1.0, atol=1e-12)
    np.testing.assert_allclose(values, values.T, atol=0)


def test_streaming_matrix_procrustes_over_batches():
    acc = StreamingCKAMatrix(measure="procrustes")
    for rows in _batches([30, 1, 89]):
        acc.update({"x": X[rows], "w": W[rows]}, {"y": Y[rows]})
    want = [[procrustes_similarity(X, Y)], [procrustes_similarity(W, Y)]]
    np.testing.assert_allclose(acc.compute().values, want, rtol=0, atol=1e-10)


def test_dcka_layer_explained_by_the_confounder_is_a_nan_row_with_warning():
    acts = {"x": X, "z_copy": 2.0 * Z}
    with pytest.warns(CKAUndefinedWarning, match="layer 'z_copy' of acts_a: its Gram matrix is a"):
        values = cka_matrix(acts, {"y": Y}, measure="dcka", confounder=Z).values
    assert np.isnan(values[1, 0]) and np.isfinite(values[0, 0])


def test_constant_layer_gives_nan_with_warning_in_every_measure():
    flat = np.full((N, 3), 2.5)
    with pytest.warns(CKAUndefinedWarning, match="Procrustes is undefined for y"):
        assert np.isnan(StreamingCKA(measure="procrustes").update(X, flat).compute())
    with pytest.warns(CKAUndefinedWarning, match="deconfounded CKA is undefined for x"):
        assert np.isnan(StreamingCKA(measure="dcka").update(flat, Y, Z).compute())
    with pytest.raises(ValueError, match="the confounder is constant"):
        StreamingCKA(measure="dcka").update(X, Y, flat).compute()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StreamingCKA(measure="cca"), "measure must be one of 'cka', 'dcka'"),
        (lambda: StreamingCKA(True, measure="procrustes"), "no debiased form"),
        (lambda: StreamingCKAMatrix(measure="svcca"), "measure must be one of"),
        (lambda: StreamingCKA(measure="dcka").update(X, Y), "measure='dcka' needs the confounder"),
        (lambda: StreamingCKA().update(X, Y, Z), "only used by measure='dcka'"),
        (lambda: StreamingCKA(measure="dcka").update(X, Y, Z[:10]), "confounder must have one row"),
        (lambda: cka_matrix({"x": X}, {"y": Y}, measure="dcka"), "cka_matrix: measure='dcka'"),
        (lambda: cka_matrix({"x": X}, {"y": Y}, confounder=Z), "only used by measure='dcka'"),
        (
            lambda: cka_matrix(
                {"x": X[:3]}, {"y": Y[:3]}, debiased=True, measure="dcka", confounder=Z[:3]
            ),
            "has 3 example.*at least 4",
        ),
    ],
)
def test_bad_measure_options_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_dcka_widths_and_memory_estimate_include_the_confounder():
    acc = StreamingCKA(measure="dcka").update(X[:10], Y[:10], Z[:10])
    with pytest.raises(
        ValueError, match=r"\[8, 5, 4\] features .* earlier batches had \[8, 5, 6\]"
    ):
        acc.update(X[10:20], Y[10:20], Z[10:20, :4])
    plain = StreamingCKAMatrix.estimate_memory([8, 6], [5])
    with_z = StreamingCKAMatrix.estimate_memory([8, 6], [5], confounder_width=6)
    assert with_z - plain == 2 * 8 * (6 * 6 + 6 * (8 + 6 + 5) + 6)
    tight = StreamingCKAMatrix(measure="dcka", memory_budget_bytes=plain)
    with pytest.raises(MemoryError, match="StreamingCKAMatrix needs about"):
        tight.update({"x": X, "w": W}, {"y": Y}, Z)
