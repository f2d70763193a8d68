"""The matched-input floor of the sample-driven decoder, and the second weighting of claims 1-2.

The plain floor of the sample-driven decoder pairs a trained model on its own posterior sample
with an untrained model on *its* own sample; an untrained encoder's means hardly vary across
images, so that sample is noise and the floor is about 0. The matched floor drives the untrained
decoder with the trained model's own sample instead. These tests check that each stored cell is
the CKA it says it is, and how both floors and both weightings enter claims 1 and 2.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cka_sim import gram_linear, linear_cka  # noqa: E402
from vae_zoo.models import DECODER_LAYERS, ENCODER_LAYERS, make_model  # noqa: E402
from vae_zoo.study.analysis import cka_claims, group_stats, model_masks  # noqa: E402
from vae_zoo.study.config import (  # noqa: E402
    DECODER_CLAIM_LAYERS,
    ENCODER_CLAIM_LAYERS,
    quick_config,
)
from vae_zoo.study.criteria import MIN_SPAN  # noqa: E402
from vae_zoo.study.measurement import (  # noqa: E402
    FLOOR_MEASURES,
    _first_row_values,
    measure_evaluation_set,
    with_matched_floor,
)
from vae_zoo.study.representations import (  # noqa: E402
    MEASURES,
    decoder_activations,
    model_activations,
    unit_layers,
)

CONFIG = quick_config(bootstrap_resamples=200)
UNITS = unit_layers()
SAMPLE = [u for u, (_, mode) in enumerate(UNITS) if mode == "sample"]


def _informative(seed: int) -> torch.nn.Module:
    """An untrained model whose posterior means vary across images and whose σ is small, as a
    trained encoder's: its sample carries the image (its decoder is still random)."""
    model = make_model(1, 32, seed=seed).eval()
    with torch.no_grad():
        model.encoder.mu.weight.mul_(500.0)
        model.encoder.mu.bias.zero_()
        model.encoder.logvar.weight.zero_()
        model.encoder.logvar.bias.fill_(-6.0)
    return model


@pytest.fixture(scope="module")
def measured():
    """Two 'trained' models and two untrained ones on 48 images, with the matched floor."""
    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(48, 1, 32, 32)) * 255).astype(np.uint8)
    models = {
        "a/s0": _informative(0),
        "b/s0": _informative(1),
        "random/r0": make_model(1, 32, seed=10).eval(),
        "random/r1": make_model(1, 32, seed=11).eval(),
    }
    out = measure_evaluation_set(
        models, images, np.arange(48) % 3, initial=None, half_samples=2, seed=5
    )
    return models, images, out


def test_the_matched_floor_is_the_untrained_decoder_on_the_trained_sample(measured):
    models, images, out = measured
    own = model_activations(models["a/s0"], images, noise_seed=0)  # model 0's noise seed
    z = own[("z", "sample")]
    driven = decoder_activations(models["random/r1"], z)
    halves = np.random.default_rng(5)
    half = np.sort(halves.choice(48, 24, replace=False))
    for layer in ("decoder.dense1", "decoder.deconv2", "output"):
        col = UNITS.index((layer, "sample"))
        for measure in FLOOR_MEASURES:
            expected = linear_cka(
                own[(layer, "sample")], driven[layer], debiased=measure == "debiased"
            )
            cell = out[f"{measure}_matched_floor_full"][0, 3, col]
            assert cell == pytest.approx(expected, abs=1e-5)
        expected_half = linear_cka(own[(layer, "sample")][half], driven[layer][half], debiased=True)
        assert out["debiased_matched_floor_halves"][0, 0, 3, col] == pytest.approx(
            expected_half, abs=1e-5
        )
    # z is the shared input itself
    z_col = UNITS.index(("z", "sample"))
    assert np.allclose(out["debiased_matched_floor_full"][:2, 2:, z_col], 1.0)


def test_matched_floor_well_above_the_plain_floor_when_untrained_means_are_constant(measured):
    models, images, out = measured
    untrained_mu = model_activations(models["random/r0"], images)[("encoder.mu", "mean")]
    assert untrained_mu.std(axis=0).max() < 0.05  # its posterior means barely move; σ ≈ 1
    claim = [UNITS.index((layer, "sample")) for layer in DECODER_CLAIM_LAYERS]
    plain = out["debiased_full"][:2, 2:][:, :, claim]
    matched = out["debiased_matched_floor_full"][:2, 2:][:, :, claim]
    assert np.abs(plain).max() < 0.15  # the degenerate floor: about 0
    assert matched.min() > 0.5  # the same input: an untrained decoder keeps much of it


def test_matched_floor_cells_exist_only_for_trained_untrained_pairs_at_sample_units(measured):
    _, _, out = measured
    for measure in FLOOR_MEASURES:
        full = out[f"{measure}_matched_floor_full"]
        finite = np.isfinite(full)
        assert finite[:2, 2:][:, :, SAMPLE].all()
        finite[:2, 2:][:, :, SAMPLE] = False
        assert not finite.any()
        assert out[f"{measure}_matched_floor_halves"].shape == (2, *full.shape)
    assert out["own_init"].shape == (4, len(UNITS)) and np.isnan(out["own_init"]).all()
    assert out["heatmap"].size == 0  # no heatmap models asked for


def test_an_untrained_decoder_with_the_trained_weights_reaches_one():
    """Same input and same decoder weights: the matched floor is 1 at every decoder unit, while
    the plain floor of the same pair (its own noisy sample) stays near 0."""
    rng = np.random.default_rng(1)
    images = (rng.uniform(size=(40, 1, 32, 32)) * 255).astype(np.uint8)
    trained = _informative(3)
    twin = make_model(1, 32, seed=12).eval()
    twin.decoder = copy.deepcopy(trained.decoder)
    models = {"a/s0": trained, "a/s1": _informative(4), "random/r0": twin}
    out = measure_evaluation_set(
        models, images, np.zeros(40, int), initial=None, half_samples=1, seed=0
    )
    cols = [UNITS.index((layer, "sample")) for layer in DECODER_LAYERS]
    assert np.allclose(out["debiased_matched_floor_full"][0, 2, cols], 1.0, atol=1e-5)
    assert np.abs(out["debiased_full"][0, 2, cols]).max() < 0.2


def test_floor_values_in_closed_form_match_cka_and_leave_constant_units_undefined():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 6)) + 2.0
    feats = [x, x @ rng.normal(size=(6, 9)), np.ones((30, 3)), rng.normal(size=(30, 4))]
    grams = np.stack([np.asarray(gram_linear(f), dtype=np.float32) for f in feats])
    grams = np.concatenate([grams, np.ones((1, 30, 30), dtype=np.float32)])  # constant kernel
    half = np.arange(0, 30, 2)
    for subset in (None, half):
        values = _first_row_values(grams, subset)
        rows = slice(None) if subset is None else subset
        for measure in FLOOR_MEASURES:
            debiased = measure == "debiased"
            for j in (1, 3):
                expected = linear_cka(feats[0][rows], feats[j][rows], debiased=debiased)
                assert values[measure][j - 1] == pytest.approx(expected, abs=1e-6)
            assert np.isnan(values[measure][[1, 3]]).all()  # constant features, constant kernel
    assert np.isnan(_first_row_values(grams[[2, 0]], None)["debiased"]).all()


def test_pair_values_in_closed_form_equal_the_normalised_gram_banks():
    """Every measure on all examples and on a half, undefined cells included: a constant unit,
    and the input layer, which deconfounding on the input leaves empty."""
    from vae_zoo.study.measurement import _gram32, _input_gram
    from vae_zoo.study.representations import pair_values, unit_bank

    rng = np.random.default_rng(6)
    images = (rng.uniform(size=(40, 1, 32, 32)) * 255).astype(np.uint8)
    acts = [model_activations(make_model(1, 32, seed=s), images) for s in range(4)]
    confounder = _input_gram(images)
    half = np.sort(rng.choice(40, 20, replace=False))
    for unit in (("input", "mean"), ("encoder.conv3", "mean"), ("decoder.deconv2", "sample")):
        stack = np.stack([_gram32(a[unit]) for a in acts])
        stack[2] = 0.0  # a constant unit of one model
        for subset in (None, half):
            values = pair_values(stack, confounder=confounder, subset=subset)
            for measure in MEASURES:
                bank = unit_bank(stack, measure, confounder=confounder, subset=subset)
                expected = bank @ bank.T
                expected[~np.any(bank != 0, axis=1)] = np.nan
                expected[:, ~np.any(bank != 0, axis=1)] = np.nan
                assert np.allclose(values[measure], expected, atol=1e-10, equal_nan=True)
            assert np.isnan(values["debiased"][2]).all()
    assert np.isnan(
        pair_values(stack[:1] * 0 + _gram32(acts[0][("input", "mean")]), confounder=confounder)[
            "deconfounded"
        ]
    ).all()


def test_without_the_matched_floor_no_arrays_and_a_clear_error():
    rng = np.random.default_rng(2)
    images = (rng.uniform(size=(20, 1, 32, 32)) * 255).astype(np.uint8)
    models = {"a/s0": make_model(1, 32, seed=0), "random/r0": make_model(1, 32, seed=1)}
    out = measure_evaluation_set(
        models, images, np.zeros(20, int), initial=None, half_samples=1, seed=0, matched_floor=False
    )
    assert not any("matched_floor" in key for key in out)
    data = {key: value for key, value in out.items() if key != "meta"}
    data["meta"] = {"models": list(models), "units": UNITS}
    with pytest.raises(KeyError, match="no 'debiased_matched_floor'"):
        with_matched_floor(data)


MODELS = [f"{d}/s{s}" for d in "abc" for s in range(3)] + [f"random/r{i}" for i in range(4)]


def layered_evals(
    levels: dict[str, tuple[float, float, float]],
    default: tuple[float, float, float] = (0.5, 0.9, 0.2),
    *,
    matched: float | None = None,
    model_sd: float = 0.01,
    layer_sd: dict[str, float] | None = None,
) -> list[dict]:
    """Stage-2 arrays with (cross, same, random) levels per layer (the same in both decoder
    modes); ``matched``: the level of the matched floor at every sample-driven unit;
    ``layer_sd``: a larger per-model spread at some layers (wide seed margins)."""
    masks = model_masks(MODELS)
    rng = np.random.default_rng(0)
    sd = np.array([(layer_sd or {}).get(layer, model_sd) for layer, _ in UNITS])
    effect = rng.normal(0, 1, (len(MODELS), len(UNITS))) * sd
    evals = []
    for name in "abc":
        full = np.full((len(MODELS), len(MODELS), len(UNITS)), np.nan)
        for g, group in enumerate(("cross", "same", "random")):
            a, b = np.nonzero(masks[group])
            level = np.array([levels.get(layer, default)[g] for layer, _ in UNITS])
            full[a, b] = level + effect[a] + effect[b]
        halves = full[None] + 0.003 * rng.standard_normal((3, *full.shape))
        data = {"meta": {"models": MODELS, "units": UNITS, "dataset": name}}
        for measure in MEASURES:
            data[f"{measure}_full"], data[f"{measure}_halves"] = full, halves
        if matched is not None:
            floor = np.full_like(full, np.nan)
            a, b = np.nonzero(masks["random"])
            floor[a[:, None], b[:, None], np.array(SAMPLE)[None]] = matched
            for measure in FLOOR_MEASURES:
                data[f"{measure}_matched_floor_full"] = floor
                data[f"{measure}_matched_floor_halves"] = np.repeat(floor[None], 3, axis=0)
        evals.append(data)
    return evals


def test_with_matched_floor_swaps_only_the_floor_of_the_sample_driven_units():
    evals = layered_evals({}, matched=0.6)
    swapped = with_matched_floor(evals[0])
    masks = model_masks(MODELS)
    before, after = evals[0]["debiased_full"], swapped["debiased_full"]
    mean_units = [u for u in range(len(UNITS)) if u not in SAMPLE]
    a, b = np.nonzero(masks["random"])
    assert np.allclose(after[a][:, :, SAMPLE][np.arange(len(a)), b], 0.6)
    assert np.array_equal(after[:, :, mean_units], before[:, :, mean_units], equal_nan=True)
    for group in ("same", "cross"):
        a, b = np.nonzero(masks[group])
        assert np.array_equal(after[a, b], before[a, b])
    halves = swapped["debiased_halves"]
    trained, untrained = np.argwhere(masks["random"])[0]
    assert np.allclose(halves[:, trained, untrained][:, SAMPLE], 0.6)
    assert np.array_equal(halves[:, 0, 1], evals[0]["debiased_halves"][:, 0, 1])
    assert evals[0]["debiased_full"] is before  # the input is not modified


def test_the_matched_floor_reading_moves_the_decoder_g_to_its_floor():
    """Sample-driven decoder: cross 0.7, same 0.8, plain floor 0, matched floor 0.6.
    G on the plain floor = 0.7 / 0.8; on the matched floor (0.7 - 0.6) / (0.8 - 0.6) = 0.5."""
    dec = {layer: (0.7, 0.8, 0.0) for layer in DECODER_CLAIM_LAYERS}
    evals = layered_evals(dec, matched=0.6)
    _, plain, _ = cka_claims(evals, CONFIG, mode="sample")
    matched_data = [with_matched_floor(e) for e in evals]
    _, matched, _ = cka_claims(matched_data, CONFIG, mode="sample")
    assert plain.evidence["G"]["estimate"] == pytest.approx(0.875, abs=0.02)
    assert matched.evidence["G"]["estimate"] == pytest.approx(0.5, abs=0.03)
    assert matched.evidence["means"]["random"]["estimate"] == pytest.approx(0.6, abs=0.01)
    assert matched.evidence["encoder_G"] == plain.evidence["encoder_G"]  # encoders untouched
    _, mean_mode, _ = cka_claims(matched_data, CONFIG, mode="mean")
    assert mean_mode.evidence["G"]["estimate"] == pytest.approx(0.875, abs=0.02)


def test_the_primary_g_is_the_span_weighted_mean_of_per_layer_g():
    """G of the layer means = Σ w_u G_u with w_u the layer's share of the summed span; the mean
    of per-layer G over resolved layers weighs every resolved layer the same."""
    levels = {
        "encoder.conv1": (0.99, 1.0, 0.99),  # span 0.01 < MIN_SPAN: unresolved
        "encoder.conv2": (0.9, 0.95, 0.7),  # G = 0.8
        "encoder.conv3": (0.6, 0.9, 0.5),  # G = 0.25
        "encoder.conv4": (0.4, 0.9, 0.3),  # G = 1/6
        "encoder.dense": (0.35, 0.85, 0.25),  # G = 1/6
    }
    evals = layered_evals(levels)
    claim1, _, _ = cka_claims(evals, CONFIG)
    ev = claim1.evidence
    rows = {row["layer"]: row for row in ev["layer_weights"]}
    assert list(rows) == list(ENCODER_CLAIM_LAYERS)
    assert sum(row["weight"] for row in rows.values()) == pytest.approx(1.0)
    spans = {k: v[1] - v[2] for k, v in levels.items()}
    for layer, row in rows.items():
        assert row["span"] == pytest.approx(spans[layer], abs=0.01)
    weighted = sum(row["weight"] * row["G"]["estimate"] for row in rows.values())
    assert ev["G"]["estimate"] == pytest.approx(weighted, abs=1e-9)
    assert not rows["encoder.conv1"]["resolved"] and spans["encoder.conv1"] < MIN_SPAN
    assert all(rows[layer]["resolved"] for layer in ENCODER_CLAIM_LAYERS[1:])
    expected = np.mean([0.8, 0.25, 1 / 6, 1 / 6])
    assert ev["G_mean_of_layers"]["estimate"] == pytest.approx(expected, abs=0.03)
    assert ev["G"]["estimate"] < ev["G_mean_of_layers"]["estimate"]  # the deep layers weigh more
    low, high = ev["G_mean_of_layers"]["low"], ev["G_mean_of_layers"]["high"]
    assert low <= ev["G_mean_of_layers"]["estimate"] <= high


def test_second_weighting_uses_the_same_replicates_and_skips_wide_seed_margins():
    levels = {"encoder.conv2": (0.75, 0.8, 0.74)}  # span 0.06, but the seeds spread wider
    evals = layered_evals(levels, layer_sd={"encoder.conv2": 0.05})
    claim1, _, _ = cka_claims(evals, CONFIG)
    rows = {row["layer"]: row for row in claim1.evidence["layer_weights"]}
    assert rows["encoder.conv2"]["span"] >= MIN_SPAN
    assert rows["encoder.conv2"]["margin"] >= 1 and not rows["encoder.conv2"]["resolved"]
    stats = group_stats(evals, "debiased", CONFIG)
    resolved = [stats.units.index((layer, "mean")) for layer in rows if rows[layer]["resolved"]]
    reps = np.mean([stats.g_index([u])[1] for u in resolved], axis=0)
    finite = reps[np.isfinite(reps)]
    low, high = np.percentile(finite, [2.5, 97.5])
    assert claim1.evidence["G_mean_of_layers"]["low"] == pytest.approx(low)
    assert claim1.evidence["G_mean_of_layers"]["high"] == pytest.approx(high)


def test_claim2_evidence_carries_the_per_depth_differences_and_both_weightings():
    dec = {layer: (0.3, 0.8, 0.1) for layer in DECODER_CLAIM_LAYERS}
    enc = {layer: (0.85, 0.9, 0.4) for layer in ENCODER_CLAIM_LAYERS}
    _, claim2, extra = cka_claims(layered_evals({**enc, **dec}), CONFIG)
    ev = claim2.evidence
    assert [row["depth"] for row in ev["depth_differences"]] == [1, 2, 3, 4, 5]
    for row in ev["depth_differences"]:
        assert row["encoder_layer"] in ENCODER_LAYERS
        assert row["difference"]["estimate"] == pytest.approx(0.9 - 2 / 7, abs=0.03)
        assert (
            row["difference"]["low"] <= row["difference"]["estimate"] <= row["difference"]["high"]
        )
    assert ev["depth_differences"] == extra["depth"]
    diff = ev["encoder_minus_decoder_G_mean_of_layers"]
    assert diff["estimate"] == pytest.approx(
        ev["encoder_G_mean_of_layers"]["estimate"] - ev["G_mean_of_layers"]["estimate"]
    )
    assert claim2.holds is True
