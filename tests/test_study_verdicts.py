"""The study's verdict rules and evidence code, on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study.analysis import (
    cka_claims,
    model_masks,
    transfer_claim,
    visual_claim,
)
from vae_zoo.study.config import StudyConfig, quick_config
from vae_zoo.study.criteria import (
    RULES_VERSION,
    Interval,
    decoders_specific,
    encoders_generic,
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
