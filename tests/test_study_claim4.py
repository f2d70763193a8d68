"""Claim 4 (vae_zoo.study.claim4) on synthetic points with known answers: seed means, the
exact within-target p-value, the targets' spread against their scratch models, and the verdict
(planted association holds, reversed fails, noise inconclusive)."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study.claim4 import check_point, target_spread, visual_claim, within_target_test
from vae_zoo.study.config import quick_config
from vae_zoo.study.stages.common import StudyContext
from vae_zoo.study.stages.probes import check_models

CONFIG = quick_config()
TARGETS = ("a", "b", "c", "d", "e")
SOURCES = ("p", "q", "r", "s")
SCRATCH = {t: [0.50, 0.52, 0.48, 0.51, 0.49] for t in TARGETS}  # mean 0.50, SD 0.0158
SCRATCH_LOSS = [100.0, 102.0, 98.0]


def _points(gain_of_score, *, seeds=(0, 1, 2), noise=0.0, rng_seed=0):
    """Five targets of four sources; target t has its own level; per-seed noise on the gain."""
    rng = np.random.default_rng(rng_seed)
    points = []
    for level, t in zip((0.0, 0.1, -0.1, 0.2, 0.05), TARGETS, strict=True):
        for s in SOURCES:
            centre = rng.uniform()
            per_seed = []
            for seed in seeds:
                score = centre + 1e-4 * rng.standard_normal()
                gain = level + gain_of_score(centre) + noise * rng.standard_normal()
                per_seed.append(
                    {"seed": seed, "score": score, "label_score": score,
                     "accuracy": 0.5 + gain, "loss": 100.0 * (1 - gain)}
                )  # fmt: skip
            points.append(check_point(s, t, per_seed, SCRATCH[t], SCRATCH_LOSS))
    return points


def test_check_point_averages_the_source_seeds():
    per_seed = [
        {"seed": 0, "score": 0.2, "label_score": 0.1, "accuracy": 0.60, "loss": 90.0},
        {"seed": 1, "score": 0.4, "label_score": 0.3, "accuracy": 0.70, "loss": 95.0},
    ]
    point = check_point("p", "a", per_seed, [0.5, 0.6], [100.0, 100.0])
    assert point["score"] == pytest.approx(0.3)
    assert point["label_score"] == pytest.approx(0.2)
    assert point["gain"] == pytest.approx(0.65 - 0.55)
    assert [s["gain"] for s in point["per_seed"]] == pytest.approx([0.05, 0.15])
    assert point["loss_gain"] == pytest.approx((0.10 + 0.05) / 2)
    assert point["n_seeds"] == 2 and point["per_seed"][1]["seed"] == 1
    with pytest.raises(ValueError, match="no source seeds"):
        check_point("p", "a", [], [0.5], [1.0])
    with pytest.raises(ValueError, match="no scratch models"):
        check_point("p", "a", per_seed, [], [1.0])


def test_a_planted_positive_association_holds_with_the_exact_p():
    claim = visual_claim(_points(lambda c: 0.3 * c, noise=1e-5), CONFIG, SCRATCH)
    ev = claim.evidence
    assert claim.holds is True
    assert ev["rho_within_targets"] == pytest.approx(1.0)
    assert ev["pvalue_exact"] is True and ev["combinations"] == 24**5
    assert ev["pvalue_standard_error"] == 0.0
    # only the identity in every target reaches ρ̄ = 1
    assert ev["pvalue"] == pytest.approx(1 / 24**5)


def test_a_reversed_association_fails():
    claim = visual_claim(_points(lambda c: -0.3 * c, noise=1e-5), CONFIG, SCRATCH)
    assert claim.holds is False
    assert claim.evidence["rho_within_targets"] == pytest.approx(-1.0)
    assert claim.evidence["pvalue"] == pytest.approx(1.0)


def _ordered_points(rhos_as_orders):
    """Targets whose gains rank the sources in the given orders (score ranks 0, 1, 2, 3)."""
    points = []
    for t, order in zip(TARGETS, rhos_as_orders, strict=True):
        for i, s in enumerate(SOURCES):
            acc = 0.5 + 0.01 * order[i]
            per_seed = [{"seed": 0, "score": 0.1 * i, "label_score": 0.1 * i, "accuracy": acc,
                         "loss": 100.0}]  # fmt: skip
            points.append(check_point(s, t, per_seed, SCRATCH[t], SCRATCH_LOSS))
    return points


def test_a_weak_positive_association_is_inconclusive_and_its_p_is_exact():
    # within-target ρ: 0.8, -0.4, 0.2, 0.0, 0.2 (mean 0.16): positive but not significant
    orders = [(0, 2, 1, 3), (3, 1, 0, 2), (2, 1, 0, 3), (2, 0, 3, 1), (0, 3, 2, 1)]
    claim = visual_claim(_ordered_points(orders), CONFIG, SCRATCH)
    ev = claim.evidence
    assert list(ev["per_target_rho"].values()) == pytest.approx([0.8, -0.4, 0.2, 0.0, 0.2])
    assert ev["rho_within_targets"] == pytest.approx(0.16)
    # the exact p by brute force over the 24 orders of one target, convolved over 5 targets
    single = np.array([_rho4(p) for p in permutations(range(4))])
    null = np.zeros(1)
    for _ in TARGETS:
        null = (null[:, None] + single[None, :] / 5).ravel()
    expected = np.mean(null >= ev["rho_within_targets"] - 1e-12)
    assert ev["pvalue"] == pytest.approx(expected, abs=1e-12)
    assert ev["pvalue"] > 0.05 and claim.holds is None


def _rho4(order):
    d = np.arange(4) - np.array(order)
    return 1 - 6 * np.sum(d**2) / (4 * 15)


def test_noise_does_not_hold():
    """No association: ρ̄ near 0, the p-value far above α (inconclusive, or fails if ρ̄ ≤ 0)."""
    for seed in range(4):
        claim = visual_claim(_points(lambda c: 0.0, noise=0.05, rng_seed=seed), CONFIG, SCRATCH)
        assert claim.holds in (None, False)
        assert claim.holds is None or claim.evidence["rho_within_targets"] <= 0
        assert claim.evidence["pvalue"] > 0.05 or claim.evidence["rho_within_targets"] <= 0


def test_the_verdict_reads_the_seed_means_not_any_one_seed():
    """Each seed alone ranks the sources wrongly somewhere; their means rank them right."""
    points = []
    for t in TARGETS:
        for i, s in enumerate(SOURCES):
            # seed gains i + (+2, -2, 0) on alternating sources: single seeds reorder, mean = i
            shift = 2.0 if i % 2 else -2.0
            per_seed = [
                {"seed": k, "score": 0.1 * i, "label_score": 0.1 * i,
                 "accuracy": 0.5 + 0.01 * (i + d), "loss": 100.0}
                for k, d in enumerate((shift, -shift, 0.0))
            ]  # fmt: skip
            points.append(check_point(s, t, per_seed, SCRATCH[t], SCRATCH_LOSS))
    claim = visual_claim(points, CONFIG, SCRATCH)
    ev = claim.evidence
    assert ev["rho_within_targets"] == pytest.approx(1.0) and claim.holds is True
    assert ev["n_source_seeds"] == 3
    per_seed = ev["secondary"]["per_source_seed"]
    assert set(per_seed) == {"0", "1", "2"}
    assert per_seed["0"]["rho"] < 1.0 and per_seed["1"]["rho"] < 1.0
    assert per_seed["2"]["rho"] == pytest.approx(1.0)  # the unshifted seed
    assert ev["points"][1]["gain"] == pytest.approx(0.01)  # (0.5 + 0.01) - scratch mean 0.5


def test_target_spread_sets_the_sources_against_scratch_noise():
    points = _points(lambda c: 0.0, noise=0.02)
    spread = target_spread(points, SCRATCH)
    a = spread["a"]
    scratch_sd = float(np.std(SCRATCH["a"], ddof=1))
    gains = [p["gain"] for p in points if p["target"] == "a"]
    assert a["n_scratch"] == 5 and a["scratch_sd"] == pytest.approx(scratch_sd)
    assert a["scratch_range"] == pytest.approx(0.04)
    assert a["gain_sd_between_sources"] == pytest.approx(np.std(gains, ddof=1))
    assert a["gain_range_between_sources"] == pytest.approx(np.ptp(gains))
    assert a["n_source_seeds"] == 3
    assert a["between_over_noise"] == pytest.approx(
        np.std(gains, ddof=1) / (scratch_sd / math.sqrt(3))
    )
    seed_sd = np.sqrt(
        np.mean([np.var([s["accuracy"] for s in p["per_seed"]], ddof=1)
                 for p in points if p["target"] == "a"])
    )  # fmt: skip
    assert a["source_seed_sd"] == pytest.approx(seed_sd)
    assert visual_claim(points, CONFIG, SCRATCH).evidence["target_spread"]["a"] == a


def test_within_target_test_draws_when_told_and_agrees_with_exact():
    points = _points(lambda c: 0.02 * c, noise=0.02, rng_seed=3)
    exact = within_target_test(points, "score", "gain")
    drawn = within_target_test(points, "score", "gain", exact_limit=1, draws=20_000, seed=1)
    assert exact["exact"] and not drawn["exact"] and drawn["draws"] == 20_000
    assert drawn["rho"] == exact["rho"]
    assert abs(drawn["pvalue"] - exact["pvalue"]) < 4 * drawn["standard_error"] + 1e-4


def test_targets_with_fewer_than_three_sources_are_left_out():
    points = _points(lambda c: 0.3 * c, noise=1e-5)
    few = [p for p in points if p["target"] != "a" or p["source"] in ("p", "q")]
    result = within_target_test(few, "score", "gain")
    assert math.isnan(result["per_target"]["a"]) and result["n_targets"] == 4
    assert result["combinations"] == 24**4


def test_check_models_probes_every_source_seed_and_scratch_model(tmp_path):
    config = quick_config()
    models = check_models(StudyContext(config, tmp_path))
    target = config.datasets[0]
    ids = {probe for t, probe in models if t == target}
    sources = [d for d in config.datasets if d != target]
    expected = {f"check/all/{s}/s{seed}" for s in sources for seed in config.check_source_seeds}
    expected |= {f"check/scratch/{i}" for i in range(config.scratch_seeds)}
    assert ids == expected
    paths = list(models.values())
    assert len(set(paths)) == len(paths)  # every model its own run directory
    assert all(p.name == "checkpoint.pt" for p in paths)
