"""cka_matrix: all layer pairs of in-memory activations, equal to linear_cka per pair."""

from __future__ import annotations

import numpy as np
import pytest

from cka_sim import CKAResult, CKAUndefinedWarning, cka_matrix, linear_cka


def _acts(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    return {
        "narrow": x * 4 + 20,
        "wide": (x @ rng.standard_normal((5, 150)) + rng.standard_normal((n, 150))).reshape(
            n, 10, 15
        ),
        "mid": np.tanh(x @ rng.standard_normal((5, 30))),
    }


@pytest.mark.parametrize("debiased", [False, True])
def test_equals_linear_cka_per_pair_both_forms(debiased):
    acts = _acts()
    other = {"b0": acts["mid"] ** 2, "b1": acts["wide"].reshape(60, -1)[:, :70]}
    result = cka_matrix(acts, other, debiased=debiased)
    truth = [[linear_cka(acts[i], other[j], debiased=debiased) for j in other] for i in acts]
    np.testing.assert_allclose(result.values, truth, atol=1e-10)
    assert result.row_names == list(acts) and result.col_names == list(other)
    assert result.estimator == ("linear-debiased" if debiased else "linear")
    assert result.n_examples == 60


def test_same_mapping_is_symmetric_with_unit_diagonal():
    acts = _acts()
    result = cka_matrix(acts, acts)
    np.testing.assert_allclose(np.diag(result.values), 1.0, atol=1e-12)
    np.testing.assert_allclose(result.values, result.values.T, atol=1e-15)
    assert result.value("narrow", "wide") == pytest.approx(linear_cka(acts["narrow"], acts["wide"]))


def test_order_sequences_and_save_round_trip(tmp_path):
    acts = _acts()
    reordered = {k: acts[k] for k in ["mid", "wide", "narrow"]}
    result = cka_matrix(reordered, [acts["narrow"]])
    assert result.row_names == ["mid", "wide", "narrow"] and result.col_names == ["0"]
    assert result.value("narrow", "0") == pytest.approx(1.0)
    loaded = CKAResult.load(result.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.values, result.values)
    assert loaded.row_names == result.row_names


def test_torch_and_float32():
    torch = pytest.importorskip("torch")
    acts = _acts()
    tacts = {k: torch.tensor(v, dtype=torch.float32) for k, v in acts.items()}
    result = cka_matrix(tacts, tacts, debiased=True)
    truth = [
        [
            linear_cka(
                acts[i].astype(np.float32).astype(float),
                acts[j].astype(np.float32).astype(float),
                debiased=True,
            )
            for j in acts
        ]
        for i in acts
    ]
    np.testing.assert_allclose(result.values, truth, atol=1e-6)


def test_errors_and_constant_layer():
    acts = _acts()
    with pytest.raises(ValueError, match="same examples"):
        cka_matrix(acts, {"short": acts["mid"][:10]})
    with pytest.raises(ValueError, match="no layers"):
        cka_matrix({}, acts)
    with pytest.warns(CKAUndefinedWarning, match="'dead' of acts_b"):
        result = cka_matrix(acts, {"dead": np.ones((60, 3)), "mid": acts["mid"]})
    assert np.isnan(result.values[:, 0]).all() and np.isfinite(result.values[:, 1]).all()


@pytest.mark.parametrize("exponent", [-231, 231])
@pytest.mark.parametrize("measure", ["procrustes", "dcka"])
def test_other_measures_rescale_magnitudes_like_the_one_shot_functions(
    measure: str, exponent: int
) -> None:
    """Layers (and the confounder) at 2**±231, beyond the accumulators' window, are scaled by a
    power of two first, as procrustes_similarity and deconfounded_cka scale them."""
    from cka_sim import deconfounded_cka, procrustes_similarity

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4))
    y = x @ rng.standard_normal((4, 3)) + rng.standard_normal((40, 3))
    z = x[:, :2] + rng.standard_normal((40, 2))
    tx, ty, tz = (np.ldexp(a, exponent) for a in (x, y, z))
    if measure == "procrustes":
        got = cka_matrix({"x": tx}, {"y": ty}, measure=measure).values[0, 0]
        expected = procrustes_similarity(x, y)
        assert procrustes_similarity(tx, ty) == pytest.approx(expected, abs=1e-12)
    else:
        got = cka_matrix({"x": tx}, {"y": ty}, measure=measure, confounder=tz).values[0, 0]
        expected = deconfounded_cka(x, y, z)
        assert deconfounded_cka(tx, ty, tz) == pytest.approx(expected, abs=1e-12)
    assert 0.1 < expected < 1.0
    assert got == pytest.approx(expected, abs=1e-12)
