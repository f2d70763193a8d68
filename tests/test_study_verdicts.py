"""The study's verdict rules and evidence code, on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study.analysis import (
    cka_claims,
    model_masks,
)
from vae_zoo.study.claim3 import predicted_depth
from vae_zoo.study.claim4 import visual_claim, within_target_test
from vae_zoo.study.config import quick_config
from vae_zoo.study.criteria import (
    G_FALL,
    MIN_SPAN,
    PERMUTATION_ALPHA,
    RHO_MIN,
    RULES_VERSION,
    Interval,
    decoders_specific,
    encoders_generic,
    paper_recipe,
    retrain_which,
    visual_transfer_check,
)
from vae_zoo.study.representations import MEASURES, unit_layers

CONFIG = quick_config(bootstrap_resamples=300)


@pytest.mark.parametrize(
    ("g", "margin", "expected"),
    [
        (Interval(0.98, 0.95, 1.01), 0.1, True),  # within the seed margin of the ceiling
        (Interval(0.1, -0.05, 0.25), 0.1, False),  # near the floor: no more alike than untrained
        (Interval(0.6, 0.5, 0.7), 0.1, False),  # measurably below the ceiling
        (Interval(0.9, 0.8, 1.0), 0.1, None),  # straddles 1 − δ
        (Interval(0.9, 0.8, 1.0), 0.25, True),  # a wider seed spread, a wider margin
        (Interval(0.5, 0.0, 1.2), 1.4, None),  # seeds spread past the floor: unresolvable
        (Interval(0.1, -0.1, 0.3), 1.0, None),
        (Interval(float("nan"), float("nan"), float("nan")), 0.1, None),
    ],
)
def test_encoders_generic_rule(g, margin, expected):
    claim = encoders_generic(g, margin, {})
    assert claim.holds is expected
    assert claim.id == "encoders-generic"
    assert claim.evidence["rules_version"] == RULES_VERSION
    assert f"{1 - margin:.3f}" in claim.criterion


@pytest.mark.parametrize(
    ("g", "difference", "expected"),
    [
        (Interval(0.3, 0.2, 0.4), Interval(0.6, 0.5, 0.7), True),
        (Interval(0.97, 0.95, 1.0), Interval(0.0, -0.05, 0.05), False),  # decoders generic
        (Interval(0.3, 0.2, 0.4), Interval(-0.3, -0.4, -0.2), False),  # more generic than encoders
        (Interval(0.85, 0.75, 0.95), Interval(0.1, 0.05, 0.15), None),
        (Interval(0.3, 0.2, 0.4), Interval(0.05, -0.05, 0.15), None),
    ],
)
def test_decoders_specific_rule(g, difference, expected):
    assert decoders_specific(g, 0.1, difference, {}).holds is expected


def test_decoders_specific_with_an_unresolvable_margin_fails_only_on_the_difference():
    g = Interval(0.6, 0.2, 1.0)
    assert decoders_specific(g, 1.0, Interval(0.3, 0.1, 0.5), {}).holds is None
    assert decoders_specific(g, 1.0, Interval(-0.3, -0.5, -0.1), {}).holds is False


@pytest.mark.parametrize(
    ("rho", "pvalue", "expected"),
    [
        (0.6, 0.001, True),
        (RHO_MIN, PERMUTATION_ALPHA, True),  # both bounds are inclusive
        (0.6, 0.2, None),  # strong but not beyond chance
        (0.2, 0.01, None),  # beyond chance but weaker than pre-registered
        (RHO_MIN - 1e-9, 0.0001, None),
        (1e-9, 0.4, None),  # positive, however little, is not a failure
        (0.0, 0.5, False),  # no relation
        (-0.5, 0.99, False),  # deeper similarity with shallower reuse
        (-0.5, 0.01, False),  # a p-value cannot rescue a negative ρ
        (float("nan"), float("nan"), None),  # a constant side: undefined
    ],
)
def test_retrain_which_rule(rho, pvalue, expected):
    claim = retrain_which(rho, pvalue, {"n_pairs": 20})
    assert claim.holds is expected
    assert claim.id == "retrain-which"
    assert claim.evidence["rules_version"] == RULES_VERSION
    assert claim.evidence["n_pairs"] == 20
    assert f"ρ ≥ {RHO_MIN}" in claim.criterion and f"{MIN_SPAN}" in claim.criterion


@pytest.mark.parametrize(
    ("gain", "expected"),
    [
        (Interval(0.08, 0.02, 0.15), True),  # the recipe beats scratch
        (Interval(-0.3, -0.5, -0.1), False),  # loses to scratch
        (Interval(0.02, -0.03, 0.07), None),  # straddles 0
        (Interval(0.0, 0.0, 0.1), None),  # touching 0 is not above it
        (Interval(float("nan"), float("nan"), float("nan")), None),
    ],
)
def test_paper_recipe_rule(gain, expected):
    claim = paper_recipe(gain, {"n_pairs": 20})
    assert claim.holds is expected
    assert claim.id == "paper-recipe"
    assert claim.evidence["gain"] == gain.to_dict()
    assert claim.evidence["rules_version"] == RULES_VERSION


@pytest.mark.parametrize(
    ("rho", "pvalue", "expected"),
    [
        (0.6, 0.01, True),
        (0.6, 0.2, None),  # positive but not beyond chance
        (0.0, 0.5, False),  # no better than chance
        (-0.4, 0.9, False),  # backwards
        (float("nan"), float("nan"), None),
    ],
)
def test_visual_transfer_check_rule(rho, pvalue, expected):
    assert visual_transfer_check(rho, pvalue, {}).holds is expected


def test_interval_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="above high"):
        Interval(0.5, 0.6, 0.4)


MODELS = [f"{d}/s{s}" for d in "abc" for s in range(3)] + [f"random/r{i}" for i in range(4)]


def test_model_masks_groups():
    masks = model_masks(MODELS)
    assert masks["same"].sum() == 9  # 3 datasets x 3 pairs of seeds
    assert masks["cross"].sum() == 27  # 9 models, 36 pairs, minus the 9 same-dataset ones
    assert masks["random"].sum() == 36  # 9 trained x 4 untrained
    assert masks["same"][0, 1] and masks["cross"][0, 3] and masks["random"][0, 9]
    assert not any(m.diagonal().any() for m in masks.values())


def synthetic_evals(
    enc: dict[str, float], dec: dict[str, float], model_sd: float = 0.01
) -> list[dict]:
    """Stage-2 arrays with chosen levels per group; every model has its own effect."""
    from vae_zoo.models import ENCODER_LAYERS

    units = unit_layers()
    masks = model_masks(MODELS)
    rng = np.random.default_rng(0)
    effect = rng.normal(0, model_sd, (len(MODELS), len(units)))
    evals = []
    for name in "abc":
        full = np.full((len(MODELS), len(MODELS), len(units)), np.nan)
        for group, mask in masks.items():
            for a, b in zip(*np.nonzero(mask), strict=True):
                for u, (layer, _) in enumerate(units):
                    level = enc[group] if layer in ENCODER_LAYERS else dec[group]
                    full[a, b, u] = level + effect[a, u] + effect[b, u]
        halves = full[None] + 0.005 * rng.standard_normal((4, *full.shape))
        data = {"meta": {"models": MODELS, "units": units, "dataset": name}}
        for measure in MEASURES:
            data[f"{measure}_full"], data[f"{measure}_halves"] = full, halves
        data["own_init"] = np.full((len(MODELS), len(units)), 0.5)
        evals.append(data)
    return evals


def test_cka_claims_hold_when_encoders_generic_and_decoders_specific():
    evals = synthetic_evals(
        enc={"cross": 0.9, "same": 0.9, "random": 0.4},
        dec={"cross": 0.3, "same": 0.8, "random": 0.1},
    )
    claim1, claim2, extra = cka_claims(evals, CONFIG, second=evals)
    assert claim1.holds is True
    assert claim2.holds is True
    assert claim1.evidence["G"]["estimate"] == pytest.approx(1.0, abs=0.05)
    assert claim2.evidence["G"]["estimate"] == pytest.approx(0.2 / 0.7, abs=0.05)
    assert 0 < claim1.evidence["margin"] < 0.2
    assert claim1.evidence["n_pairs_per_evaluation_set"] == {"cross": 27, "same": 9, "random": 36}
    assert len(extra["depth"]) == 5


def test_cka_claims_fail_when_cross_dataset_encoders_sit_at_the_floor():
    """The case the version-1 rule could not call: cross-dataset no better than untrained."""
    evals = synthetic_evals(
        enc={"cross": 0.41, "same": 0.9, "random": 0.4},
        dec={"cross": 0.3, "same": 0.8, "random": 0.1},
    )
    claim1, claim2, _ = cka_claims(evals, CONFIG)
    assert claim1.holds is False
    assert claim1.evidence["G"]["high"] < 0.2
    assert claim2.holds is None or claim2.holds is False  # encoders no more generic


def test_cka_claims_fail_when_decoders_are_as_generic_as_encoders():
    evals = synthetic_evals(
        enc={"cross": 0.9, "same": 0.9, "random": 0.4},
        dec={"cross": 0.8, "same": 0.8, "random": 0.1},
    )
    _, claim2, _ = cka_claims(evals, CONFIG)
    assert claim2.holds is False


def test_cka_claims_inconclusive_when_the_interval_straddles_the_margin():
    """G near 1 − δ with a wide seed spread: neither equivalent nor measurably below."""
    evals = synthetic_evals(
        enc={"cross": 0.835, "same": 0.9, "random": 0.4},
        dec={"cross": 0.695, "same": 0.8, "random": 0.1},
        model_sd=0.08,
    )
    claim1, claim2, _ = cka_claims(evals, CONFIG)
    assert claim1.holds is None
    assert claim2.holds is None


def test_predicted_depth_counts_leading_blocks_above_the_threshold():
    assert predicted_depth([0.9, 0.8, 0.6, 0.3, 0.9, 0.9]) == 3  # stops at the first fall
    assert predicted_depth([0.2, 0.9]) == 0
    assert predicted_depth([0.9] * 6) == 6
    assert predicted_depth([G_FALL, float("nan")]) == 1


def _check_points(slope: float, noise: float, offsets=(0.0, 0.3, -0.2, 0.5)):
    """Five sources per target; each target has its own baseline gain (offset)."""
    rng = np.random.default_rng(2)
    points = []
    for t, offset in zip("abcd", offsets, strict=True):
        for s in "pqrst":
            score = rng.uniform()
            gain = offset + slope * score + noise * rng.standard_normal()
            points.append(
                {"source": s, "target": t, "score": score, "label_score": score,
                 "gain": gain, "loss_gain": gain}
            )  # fmt: skip
    return points


def test_visual_claim_follows_the_within_target_rank_correlation():
    config = quick_config()
    assert visual_claim(_check_points(1.0, 0.05), config).holds is True
    assert visual_claim(_check_points(-1.0, 0.05), config).holds is False
    noisy = visual_claim(_check_points(0.0, 1.0), config)
    assert noisy.holds in (None, False)
    assert noisy.evidence["pvalue"] > 0.05


def test_pooling_targets_can_flip_the_sign_but_the_within_target_test_does_not():
    """Targets whose baseline gain falls as their scores rise: pooled ρ < 0, within ρ = 1."""
    points = []
    for t, (offset, centre) in enumerate([(0.0, 0.9), (0.5, 0.5), (1.0, 0.1)]):
        for i in range(4):
            score = centre + 0.02 * i
            points.append(
                {"target": str(t), "source": str(i), "score": score, "gain": offset + 0.01 * i}
            )
    result = within_target_test(points, "score", "gain")
    assert result["rho"] == pytest.approx(1.0)
    # exact: only the identity in each of the three targets reaches ρ̄ = 1
    assert result["exact"] and result["combinations"] == 24**3
    assert result["pvalue"] == pytest.approx(1 / 24**3)
    from scipy.stats import spearmanr

    pooled = spearmanr([p["score"] for p in points], [p["gain"] for p in points]).statistic
    assert pooled < 0


def test_permutation_p_value_is_uniform_ish_under_the_null():
    rng = np.random.default_rng(5)
    pvalues = []
    for _ in range(40):
        points = [
            {"target": t, "source": s, "score": rng.uniform(), "gain": rng.uniform()}
            for t in "abc"
            for s in "pqrs"
        ]
        pvalues.append(within_target_test(points, "score", "gain")["pvalue"])
    assert 0.25 < np.mean(pvalues) < 0.75
    assert np.mean(np.array(pvalues) <= 0.05) < 0.2
