"""The study's verdict rules and evidence code, on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study.analysis import (
    EvalCKA,
    cka_claims,
    model_pairs,
    transfer_claim,
    visual_claim,
)
from vae_zoo.study.config import StudyConfig, quick_config
from vae_zoo.study.criteria import (
    GENERIC_RATIO,
    Interval,
    decoders_specific,
    encoders_generic,
    retrain_which,
    visual_transfer_check,
)
from vae_zoo.study.representations import unit_layers

CONFIG = quick_config(bootstrap_resamples=200)


@pytest.mark.parametrize(
    ("ratio", "over_random", "expected"),
    [
        (Interval(0.95, 0.9, 1.0), Interval(0.2, 0.1, 0.3), True),
        (Interval(0.95, 0.9, 1.0), Interval(0.0, -0.1, 0.1), None),
        (Interval(0.5, 0.4, 0.6), Interval(0.2, 0.1, 0.3), False),
        (Interval(0.95, 0.9, 1.0), Interval(-0.2, -0.3, -0.1), False),
        (Interval(0.8, 0.7, 0.9), Interval(0.2, 0.1, 0.3), None),
    ],
)
def test_encoders_generic_rule(ratio, over_random, expected):
    claim = encoders_generic(ratio, over_random, {})
    assert claim.holds is expected
    assert claim.id == "encoders-generic"
    assert str(GENERIC_RATIO) in claim.criterion


@pytest.mark.parametrize(
    ("ratio", "difference", "expected"),
    [
        (Interval(0.5, 0.4, 0.6), Interval(0.4, 0.3, 0.5), True),
        (Interval(0.95, 0.9, 1.0), Interval(0.0, -0.05, 0.05), False),
        (Interval(0.5, 0.4, 0.6), Interval(-0.3, -0.4, -0.2), False),
        (Interval(0.75, 0.6, 0.9), Interval(0.2, 0.1, 0.3), None),
    ],
)
def test_decoders_specific_rule(ratio, difference, expected):
    assert decoders_specific(ratio, difference, {}).holds is expected


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(0.1, 0.05, 0.15), True),
        (Interval(-0.1, -0.15, -0.05), False),
        (Interval(0.01, -0.02, 0.04), None),
    ],
)
def test_transfer_and_visual_rules(interval, expected):
    assert retrain_which(interval, {}).holds is expected
    assert visual_transfer_check(interval, {}).holds is expected


def test_interval_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="above high"):
        Interval(0.5, 0.6, 0.4)


MODELS = ["a/s0", "a/s1", "b/s0", "b/s1", "c/s0", "c/s1", "random/s0", "random/s1"]


def test_model_pairs_groups():
    pairs = model_pairs(MODELS)
    assert len(pairs["same"]) == 3
    assert len(pairs["cross"]) == 12
    assert len(pairs["random"]) == 12
    assert (0, 1) in pairs["same"] and (0, 2) in pairs["cross"] and (0, 6) in pairs["random"]


def synthetic_evals(
    enc: dict[str, float], dec: dict[str, float], noise: float = 0.01
) -> list[EvalCKA]:
    """Same-unit CKA with chosen levels per comparison group for encoder and decoder units."""
    from vae_zoo.models import ENCODER_LAYERS

    units = unit_layers()
    pairs = model_pairs(MODELS)
    rng = np.random.default_rng(0)
    evals = []
    for name in ("a", "b", "c"):
        full = np.full((len(MODELS), len(MODELS), len(units)), np.nan)
        for group, idx in pairs.items():
            for a, b in idx:
                for u, (layer, _) in enumerate(units):
                    level = enc[group] if layer in ENCODER_LAYERS else dec[group]
                    full[a, b, u] = full[b, a, u] = level + noise * rng.standard_normal()
        halves = full[None] + noise * rng.standard_normal((4, *full.shape))
        evals.append(EvalCKA(name, MODELS, units, full, halves))
    return evals


def test_cka_claims_hold_when_encoders_generic_and_decoders_specific():
    evals = synthetic_evals(
        enc={"cross": 0.9, "same": 0.92, "random": 0.4},
        dec={"cross": 0.3, "same": 0.8, "random": 0.1},
    )
    claim1, claim2, extra = cka_claims(evals, CONFIG)
    assert claim1.holds is True
    assert claim2.holds is True
    assert claim1.evidence["ratio_cross_over_same"]["estimate"] == pytest.approx(
        0.9 / 0.92, abs=0.01
    )
    assert claim2.evidence["ratio_cross_over_same"]["estimate"] == pytest.approx(
        0.3 / 0.8, abs=0.01
    )
    assert set(extra["curves"]) == {"cross", "same", "random"}


def test_cka_claims_fail_when_reversed():
    evals = synthetic_evals(
        enc={"cross": 0.3, "same": 0.9, "random": 0.2},
        dec={"cross": 0.85, "same": 0.87, "random": 0.1},
    )
    claim1, claim2, _ = cka_claims(evals, CONFIG)
    assert claim1.holds is False
    assert claim2.holds is False


def test_cka_claims_fail_when_cross_dataset_is_no_better_than_random():
    evals = synthetic_evals(
        enc={"cross": 0.5, "same": 0.55, "random": 0.6},
        dec={"cross": 0.3, "same": 0.8, "random": 0.1},
    )
    claim1, _, _ = cka_claims(evals, CONFIG)
    assert claim1.holds is False
    assert claim1.evidence["cross_minus_random"]["high"] < 0


def test_cka_claims_inconclusive_with_noisy_measurements():
    evals = synthetic_evals(
        enc={"cross": 0.75, "same": 0.9, "random": 0.4},
        dec={"cross": 0.6, "same": 0.8, "random": 0.1},
        noise=0.3,
    )
    claim1, claim2, _ = cka_claims(evals, CONFIG)
    assert claim1.holds is None
    assert claim2.holds is None


def _losses(encoder: float, decoder: float, noise: float = 0.01):
    rng = np.random.default_rng(1)
    datasets = ["a", "b", "c"]
    final = {
        (s, t): {
            "encoder": encoder + noise * rng.standard_normal(),
            "decoder": decoder + noise * rng.standard_normal(),
            "all": decoder,
            "paper": decoder,
        }
        for s in datasets
        for t in datasets
        if s != t
    }
    return final, {t: 2.0 for t in datasets}


def test_transfer_claim_from_losses():
    config = StudyConfig(datasets=("a", "b", "c"), bootstrap_resamples=200)
    holds = transfer_claim(*_losses(encoder=1.5, decoder=1.0), config)
    assert holds.holds is True
    assert holds.evidence["decoder_over_encoder_advantage"]["estimate"] == pytest.approx(
        0.25, abs=0.02
    )
    assert holds.evidence["gain_over_scratch"]["decoder"]["estimate"] == pytest.approx(
        0.5, abs=0.02
    )
    assert transfer_claim(*_losses(encoder=1.0, decoder=1.5), config).holds is False


def _points(slope: float, noise: float):
    rng = np.random.default_rng(2)
    points = []
    for s in "abcd":
        for t in "abcd":
            if s == t:
                continue
            for seed in (0, 1):
                score = rng.uniform()
                points.append(
                    {
                        "source": s,
                        "target": t,
                        "seed": seed,
                        "score": score,
                        "label_score": score,
                        "gain": slope * score + noise * rng.standard_normal(),
                    }
                )
    return points


def test_visual_claim_follows_rank_correlation():
    config = quick_config(bootstrap_resamples=300)
    assert visual_claim(_points(1.0, 0.05), config).holds is True
    assert visual_claim(_points(-1.0, 0.05), config).holds is False
    assert visual_claim(_points(0.0, 1.0), config).holds is None
