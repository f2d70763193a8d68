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
    assert halves.compute() == pytest.approx(procrustes_similarity(X, Y), rel=1e-10, abs=1e-12)


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
        (lambda: StreamingCKA(measure="cca"), "measure must be 'cka', 'dcka'"),
        (lambda: StreamingCKA(True, measure="procrustes"), "no debiased form"),
        (lambda: StreamingCKAMatrix(measure="svcca"), "unknown measure 'svcca'"),
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
    # the confounder's moments, and its 6 columns in the block of 4096 waiting rows
    assert with_z - plain == 2 * 8 * (6 * 6 + 6 * (8 + 6 + 5) + 6) + 4096 * 6 * 8
    tight = StreamingCKAMatrix(measure="dcka", memory_budget_bytes=plain)
    with pytest.raises(MemoryError, match="StreamingCKAMatrix needs about"):
        tight.update({"x": X, "w": W}, {"y": Y}, Z)


# --- statistics -----------------------------------------------------------------------------


def test_permutation_test_recomputes_the_measure_for_each_permutation():
    from cka_sim import permutation_test
    from cka_sim.stats._resampling import permutations

    x, y, z = X[:60], Y[:60], Z[:60]
    result = permutation_test(x, y, n_permutations=39, seed=3, measure="dcka", confounder=z)
    assert result.statistic == pytest.approx(deconfounded_cka(x, y, z), rel=1e-12, abs=1e-12)
    perms = [p for block in permutations(np.random.default_rng(3), 60, 39) for p in block]
    want = [deconfounded_cka(x, y[p], z) for p in perms]
    np.testing.assert_allclose(result.null_distribution, want, rtol=0, atol=1e-12)
    assert result.pvalue == pytest.approx(1 / 40)  # the dependence survives deconfounding
    noise = np.random.default_rng(4).standard_normal((60, 5))
    independent = permutation_test(x, noise, n_permutations=39, seed=3, measure="procrustes")
    assert independent.statistic == pytest.approx(
        procrustes_similarity(x, noise), rel=1e-12, abs=1e-12
    )
    assert independent.pvalue > 0.1


def test_bootstrap_ci_half_samples_rows_of_x_y_and_the_confounder_together():
    from cka_sim import bootstrap_ci
    from cka_sim.stats._resampling import half_samples

    x, y, z = X[:60], Y[:60], Z[:60]
    result = bootstrap_ci(
        x, y, n_resamples=40, seed=5, method="percentile", measure="dcka", confounder=z
    )
    subsets = [rows for block in half_samples(np.random.default_rng(5), 60, 40) for rows in block]
    want = [deconfounded_cka(x[r], y[r], z[r]) for r in subsets]  # n even: no rescaling
    np.testing.assert_allclose(result.bootstrap_distribution, want, rtol=0, atol=1e-12)
    interval = result.confidence_interval
    assert interval.low < result.statistic < interval.high
    bca = bootstrap_ci(x, y, n_resamples=200, seed=5, measure="procrustes")
    assert bca.confidence_interval.low < procrustes_similarity(x, y) < bca.confidence_interval.high


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"measure": "dcka"}, "permutation_test: measure='dcka' needs the confounder"),
        ({"measure": "procrustes", "debiased": True}, "no debiased form"),
        ({"measure": "procrustes", "kernel": "rbf"}, "measure='procrustes' is linear"),
        ({"measure": "procrustes", "method": "gram"}, "applies to measure='cka' only"),
        ({"measure": "dcka", "confounder": Z[:50]}, "confounder must have one row per example"),
        ({"confounder": Z}, "only used by measure='dcka'"),
    ],
)
def test_statistics_refuse_bad_measure_options(kwargs, match):
    from cka_sim import permutation_test

    with pytest.raises(ValueError, match=match):
        permutation_test(X, Y, n_permutations=9, **kwargs)


# --- compare_models ---------------------------------------------------------------------------


def _two_nets():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)

    def net() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 8)).double()

    x = torch.randn(96, 3, 4, dtype=torch.float64) + 2.0
    return torch, net(), net(), x


def test_compare_models_dcka_adjusts_for_the_model_input_by_default():
    torch, a, b, x = _two_nets()
    from cka_sim.torch import compare_models

    loader = [(x[i : i + 32], torch.zeros(32)) for i in range(0, 96, 32)]
    layers = ["2", "3"]
    result = compare_models(a, b, loader, layers_a=layers, layers_b=layers, measure="dcka")
    assert result.metadata["estimator"] == "exact" and result.metadata["measure"] == "dcka"
    assert result.estimator == "deconfounded-debiased"
    with torch.no_grad():
        acts_a = {"2": a[:3](x).numpy(), "3": a(x).numpy()}
        acts_b = {"2": b[:3](x).numpy(), "3": b(x).numpy()}
    flat = x.reshape(96, -1).numpy()
    want = cka_matrix(acts_a, acts_b, debiased=True, measure="dcka", confounder=flat).values
    np.testing.assert_allclose(result.values, want, rtol=0, atol=1e-10)
    noise = torch.randn(96, 5, dtype=torch.float64)
    own = compare_models(
        a,
        b,
        [(x[i : i + 32], noise[i : i + 32]) for i in range(0, 96, 32)],
        layers_a=layers,
        layers_b=layers,
        measure="dcka",
        debiased=False,
        confounder=lambda batch: batch[1],
    )
    want = cka_matrix(acts_a, acts_b, measure="dcka", confounder=noise.numpy()).values
    np.testing.assert_allclose(own.values, want, rtol=0, atol=1e-10)


def test_compare_models_procrustes_and_refused_settings():
    torch, a, b, x = _two_nets()
    from cka_sim.torch import compare_models

    loader = [x[i : i + 48] for i in range(0, 96, 48)]
    result = compare_models(a, b, loader, layers_a=["3"], layers_b=["1", "3"], measure="procrustes")
    assert result.metadata["debiased"] is False and result.estimator == "procrustes"
    with torch.no_grad():
        want = [procrustes_similarity(a(x).numpy(), b[:2](x).numpy())]
    assert result.values[0, 0] == pytest.approx(want[0], abs=1e-10)
    for kwargs, match in [
        ({"measure": "dcka", "estimator": "minibatch"}, "exact accumulator only"),
        ({"measure": "procrustes", "debiased": True}, "no debiased form"),
        ({"measure": "cka", "confounder": lambda batch: batch}, "used by measure='dcka' only"),
    ]:
        with pytest.raises(ValueError, match=match):
            compare_models(a, b, loader, layers_a=["3"], layers_b=["3"], **kwargs)


def test_torch_accumulators_match_numpy_for_every_measure():
    torch = pytest.importorskip("torch")
    xt, yt, zt = (torch.from_numpy(a).float() for a in (X, Y, Z))
    for measure, extra in (("dcka", (zt,)), ("procrustes", ())):
        acc = StreamingCKA(measure=measure)
        for rows in _batches([40, 40, 40]):
            acc.update(xt[rows], yt[rows], *(e[rows] for e in extra))
        got = acc.compute()
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        f32 = [a.numpy() for a in (xt, yt, zt)]
        if measure == "dcka":
            want = deconfounded_cka(*f32)
        else:
            want = procrustes_similarity(f32[0], f32[1])
        assert float(got) == pytest.approx(want, abs=1e-6)


def test_layerwise_uncertainty_for_the_other_measures():
    from cka_sim import bootstrap_ci
    from cka_sim.stats import cka_matrix_with_uncertainty

    acts_a, acts_b = {"x": X[:60], "w": W[:60]}, {"y": Y[:60]}
    z = Z[:60]
    result = cka_matrix_with_uncertainty(
        acts_a,
        acts_b,
        n_resamples=60,
        n_permutations=19,
        method="percentile",
        seed=7,
        measure="dcka",
        confounder=z,
    )
    want = cka_matrix(acts_a, acts_b, measure="dcka", confounder=z).values
    np.testing.assert_allclose(result.values, want, rtol=0, atol=1e-12)
    assert result.estimator == "deconfounded" and result.pvalues[0, 0] == pytest.approx(1 / 20)
    cell = bootstrap_ci(
        X[:60], Y[:60], n_resamples=60, method="percentile", seed=7, measure="dcka", confounder=z
    )  # the same half-samples, drawn first from the same seed
    assert result.ci_low[0, 0] == pytest.approx(cell.confidence_interval.low, abs=1e-12)
    assert result.ci_high[0, 0] == pytest.approx(cell.confidence_interval.high, abs=1e-12)
    with pytest.raises(ValueError, match="no debiased form"):
        cka_matrix_with_uncertainty(acts_a, acts_b, debiased=True, measure="procrustes")
