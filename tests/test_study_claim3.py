"""Claim 3's graded test, the paper's recipe line and the transfer stage's plan, on synthetic
numbers with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study.claim3 import (
    BlockProfile,
    best_depths,
    graded_power,
    long_gains,
    pair_g_profile,
    paper_claim,
    paper_gain,
    predicted_depth,
    retrain_claim,
    tie_band,
    transfer_claims,
)
from vae_zoo.study.config import ENCODER_BLOCKS, GRADED_DEPTHS, StudyConfig, quick_config
from vae_zoo.study.criteria import G_FALL, MIN_SPAN, TIE_SDS
from vae_zoo.study.sampling import (
    long_scratch_seed,
    planned_seeds,
    scratch_seed,
    transfer_seed,
)
from vae_zoo.study.stages import transfer as stage
from vae_zoo.study.stages.common import StudyContext

DATASETS = ("a", "b", "c", "d", "e")
CONFIG = StudyConfig(
    datasets=DATASETS, sweep_pairs=(("a", "b"), ("c", "a")), bootstrap_resamples=400
)
PAIRS = [(s, t) for t in DATASETS for s in DATASETS if s != t]
BLOCKS = tuple(b[0] for b in ENCODER_BLOCKS)


# -- the pair-level G profile and the predicted depth -------------------------------------------


def test_predicted_depth_passes_over_unresolved_blocks():
    profile = [0.1, 0.9, 0.2, 0.8, 0.1, 0.1]
    assert predicted_depth(profile) == 0  # block 1 falls
    assert predicted_depth(profile, [True, False, False, False, False, False]) == 2
    assert predicted_depth(profile, [True, False, True, False, False, False]) == 4
    assert predicted_depth(profile, [True] * 6) == 6
    # an undefined G on a resolved block stops the count; on an unresolved one it does not
    assert predicted_depth([0.9, float("nan"), 0.9]) == 1
    assert predicted_depth([0.9, float("nan"), 0.9], [False, True, False]) == 3
    assert predicted_depth([G_FALL, G_FALL - 1e-9]) == 1


def _cka(levels: list[tuple[float, float, float, tuple[float, ...]]]) -> dict:
    """Stage-2 arrays of target ``b``'s evaluation set: per block, (ceiling, cross, floor,
    deviations of b's three same-dataset pairs from the ceiling; a's pairs sit at it)."""
    models = [f"{d}/s{s}" for d in "ab" for s in range(3)] + ["random/r0", "random/r1"]
    units = [(b, "mean") for b in BLOCKS]
    full = np.full((len(models), len(models), len(units)), np.nan)
    for u, (ceiling, cross, floor, spread) in enumerate(levels):
        same_b = iter(spread)
        for i, mi in enumerate(models):
            for j, mj in enumerate(models):
                if j <= i:
                    continue
                di, dj = mi.split("/")[0], mj.split("/")[0]
                if dj == "random":
                    full[i, j, u] = floor
                elif di == dj == "b":
                    full[i, j, u] = ceiling + next(same_b)
                elif di == dj:
                    full[i, j, u] = ceiling
                else:
                    full[i, j, u] = cross
    return {"meta": {"models": models, "units": units}, "debiased_full": full}


def test_pair_g_profile_flags_narrow_spans_and_wide_seed_spreads():
    tight = (0.0, 0.0, 0.0)
    data = _cka(
        [
            (0.112, 0.101, 0.1, tight),  # span 0.012 < MIN_SPAN: unresolved, G ~ 0.08
            (0.9, 0.82, 0.1, tight),  # G = 0.9, resolved
            (0.6, 0.1, 0.1, (-0.4, 0.0, 0.4)),  # the seeds spread over the span: δ >= 1
            (0.8, 0.24, 0.1, (-0.01, 0.0, 0.01)),  # G = 0.2, resolved: the fall
            (0.8, 0.8, 0.1, tight),
            (0.8, 0.8, 0.1, tight),
        ]
    )
    profile = pair_g_profile(data, "a/s0", "b")
    assert isinstance(profile, BlockProfile)
    assert profile.blocks == BLOCKS
    assert profile.g[1] == pytest.approx(0.9)
    assert profile.g[3] == pytest.approx(0.2)
    assert profile.span[0] == pytest.approx(0.012) and profile.span[0] < MIN_SPAN
    # δ = 2 SD of the six same-dataset pairs (a's three at 0.6, b's at 0.2, 0.6, 1.0) / 0.5
    sd = np.std([0.6, 0.6, 0.6, 0.2, 0.6, 1.0], ddof=1)
    assert profile.margin[2] == pytest.approx(2 * sd / 0.5)
    assert profile.margin[2] >= 1 > profile.margin[3]
    assert profile.unresolved == (True, False, True, False, False, False)
    assert profile.to_dict()["unresolved"] == [BLOCKS[0], BLOCKS[2]]
    assert predicted_depth(profile.g) == 0
    assert predicted_depth(profile.g, profile.unresolved) == 3


# -- best depth, tie band -----------------------------------------------------------------------


def _losses(best: int, *, slope: float = 5.0, paper: float = 110.0) -> dict[str, float]:
    out = {f"freeze{k}": 100.0 + slope * abs(k - best) for k in GRADED_DEPTHS}
    return {**out, "paper": paper}


def test_best_depths_are_the_two_lowest_losses_ties_to_the_shallower():
    assert best_depths(_losses(3)) == (3, 2)
    flat = {f"freeze{k}": 1.0 for k in GRADED_DEPTHS}
    assert best_depths(flat) == (0, 1)
    assert best_depths({**flat, "freeze4": 0.5, "freeze5": 0.7}) == (4, 5)


def test_tie_band_pools_the_seed_variance_of_relative_losses():
    scratch = {"a": [99.0, 101.0], "b": [198.0, 200.0, 202.0]}
    repeats = {"a": [100.0, 100.0, 103.0]}
    band = tie_band(scratch, repeats)
    groups = [
        np.array([99.0, 101.0]) / 100,
        np.array([198.0, 200.0, 202.0]) / 200,
        np.array([100.0, 100.0, 103.0]) / 100,
    ]
    squares = sum(float(np.sum((g - g.mean()) ** 2)) for g in groups)
    assert band["dof"] == 1 + 2 + 2
    assert band["pooled_sd"] == pytest.approx(np.sqrt(squares / 5))
    assert band["band"] == pytest.approx(TIE_SDS * band["pooled_sd"])
    assert band["group_sizes"] == {"scratch/a": 2, "freeze2/a": 3, "scratch/b": 3}


# -- claim 3 on synthetic graded tests ------------------------------------------------------------


def _profile(depth: int) -> BlockProfile:
    g = tuple([0.9] * depth + [0.1] * (len(BLOCKS) - depth))
    return BlockProfile(BLOCKS, g, (0.5,) * len(BLOCKS), (0.1,) * len(BLOCKS))


def _graded(patterns: list[list[int]], slope: float = 5.0):
    """Per target, sources predicted at depths 0-3 with the given best depths."""
    graded, profiles = {}, {}
    for t, best in zip(DATASETS, patterns, strict=True):
        sources = [s for s in DATASETS if s != t]
        for depth, (s, b) in enumerate(zip(sources, best, strict=True)):
            graded[(s, t)] = _losses(b, slope=slope)
            profiles[(s, t)] = _profile(depth)
    scratch = {t: [100.0, 101.0, 99.0, 100.5, 99.5] for t in DATASETS}
    repeats = {t: [100.0, 100.4, 99.6] for t in DATASETS}
    return graded, scratch, repeats, profiles


@pytest.mark.parametrize(
    ("patterns", "expected", "rho"),
    [
        ([[0, 1, 2, 3]] * 5, True, 1.0),  # best depth = predicted depth everywhere
        ([[3, 2, 1, 0]] * 5, False, -1.0),  # deeper similarity, shallower best depth
        ([[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1], [0, 1, 2, 3]], None, 0.2),
    ],
)
def test_retrain_claim_from_synthetic_graded_tests(patterns, expected, rho):
    graded, scratch, repeats, profiles = _graded(patterns)
    claim = retrain_claim(graded, scratch, repeats, profiles, CONFIG, power_simulations=20)
    assert claim.holds is expected
    ev = claim.evidence
    assert ev["rho"] == pytest.approx(rho)
    assert ev["n_pairs"] == 20 and ev["group_sizes"] == dict.fromkeys(DATASETS, 4)
    assert ev["permutation"]["exact"] and ev["permutation"]["combinations"] == 24**5
    if expected is None:
        assert ev["pvalue"] > 0.05  # ρ = 0.2 is below RHO_MIN and not beyond chance
    row = ev["pairs"]["d->a"]  # a's third source (b, c, d, e): predicted depth 2
    assert row["predicted_depth"] == 2 == ev["predicted_depth"]["d->a"]
    assert row["best_depth"] == patterns[0][2] == ev["best_depth"]["d->a"]
    assert row["losses"]["paper"] == 110.0
    assert row["profile"]["G"] == list(profiles[("d", "a")].g)
    assert ev["scratch_models_per_target"] == dict.fromkeys(DATASETS, 5)
    assert set(ev["power"]) >= {"power", "standard_error", "simulations", "alternative"}
    json.dumps(ev)  # plain types only


def test_pairs_inside_the_tie_band_are_listed():
    graded, scratch, repeats, profiles = _graded([[0, 1, 2, 3]] * 5)
    # on a->b, the second-best depth is 0.01 % of scratch away: inside any realistic band
    graded[("a", "b")]["freeze1"] = graded[("a", "b")]["freeze0"] + 0.01
    claim = retrain_claim(graded, scratch, repeats, profiles, CONFIG, power_simulations=5)
    band = claim.evidence["tie_band"]
    assert 0 < band["band"] < 0.05  # the seeds spread by about 1 % of scratch
    assert band["pairs_inside"] == ["a->b"]
    row = claim.evidence["pairs"]["a->b"]
    assert row["in_tie_band"] and row["gap"] == pytest.approx(0.01 / 100)
    assert row["second_best_depth"] == 1
    # slope 5 per depth against a 100 scratch: a gap of 5 %, outside the band
    assert claim.evidence["pairs"]["c->b"]["gap"] == pytest.approx(0.05)


def test_power_is_high_when_predictions_hit_and_low_when_they_do_not():
    predicted = [0, 1, 2, 3] * 5
    groups = [t for t in DATASETS for _ in range(4)]
    best = [3, 0, 1, 2] * 5
    hit = graded_power(predicted, best, groups, hit_rate=1.0, simulations=10)
    assert hit["power"] == 1.0 and hit["standard_error"] == 0.0
    miss = graded_power(predicted, best, groups, hit_rate=0.0, simulations=60, seed=1)
    assert miss["power"] < 0.2  # the null: best depths unrelated to the predictions
    assert "probability 0.0" in miss["alternative"]


# -- the paper's recipe line ---------------------------------------------------------------------


@pytest.mark.parametrize(("paper", "expected"), [(90.0, True), (115.0, False), (None, None)])
def test_paper_claim_on_synthetic_losses(paper, expected):
    graded, scratch, _, _ = _graded([[0, 1, 2, 3]] * 5)
    for (_, t), losses in graded.items():  # None: two targets win by 10 %, three lose by 5 %
        losses["paper"] = paper if paper is not None else (90.0 if t in "ab" else 105.0)
    claim = paper_claim(graded, scratch, CONFIG)
    assert claim.holds is expected
    means = {t: np.mean(v) for t, v in scratch.items()}
    gains = [(means[t] - v["paper"]) / means[t] for (_, t), v in graded.items()]
    assert claim.evidence["gain"]["estimate"] == pytest.approx(np.mean(gains))
    assert claim.evidence["n_pairs"] == 20


def test_paper_gain_interval_resamples_targets_and_their_scratch_models():
    graded, scratch, _, _ = _graded([[0, 1, 2, 3]] * 5)
    for losses in graded.values():
        losses["paper"] = 95.0
    narrow, _ = paper_gain(graded, scratch, resamples=500, level=0.95)
    # every target alike: the interval comes from the scratch models alone, and is narrow
    assert narrow.low < narrow.estimate < narrow.high and narrow.high - narrow.low < 0.02
    scratch = {**scratch, "a": [60.0, 140.0, 70.0, 130.0, 100.0]}  # one noisy target
    wide, _ = paper_gain(graded, scratch, resamples=500, level=0.95)
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)
    again, _ = paper_gain(graded, scratch, resamples=500, level=0.95)
    assert again == wide  # seeded


# -- the long curves ----------------------------------------------------------------------------


def test_long_gains_are_relative_to_scratch_at_each_budget():
    config = StudyConfig(
        datasets=DATASETS, sweep_pairs=(("a", "b"),), long_depths=(0, 3), bootstrap_resamples=50
    )
    runs = {
        ("a", "b"): {
            "freeze0": {0: 900.0, 600: 110.0, 1200: 100.0, 2400: 90.0},
            "freeze3": {0: 900.0, 600: 95.0, 1200: 105.0, 2400: 99.0},
            "all": {0: 800.0, 600: 120.0, 1200: 100.0, 2400: 100.0},
        }
    }
    scratch = {"b": {0: 1400.0, 600: 100.0, 1200: 100.0, 2400: 100.0}}
    out = long_gains(runs, scratch, config)
    gains = out["gain_over_scratch"]
    assert set(gains["all"]) == {"600", "1200", "2400"}  # budget 0 left out
    assert gains["all"]["600"] == pytest.approx(-0.2)
    assert gains["best freeze depth"] == pytest.approx({"600": 0.05, "1200": 0.0, "2400": 0.1})
    assert out["single_runs"] is True


# -- the transfer stage: its plan, seeds and readers --------------------------------------------


def _stage(config: StudyConfig, tmp_path: Path) -> stage.TransferStage:
    checkpoints = {
        f"{d}/s{s}": tmp_path / "zoo" / d / f"s{s}" for d in config.datasets for s in config.seeds
    }
    return stage.TransferStage(StudyContext(config, tmp_path), checkpoints)


def _parts(jobs) -> dict[str, tuple[int, int]]:
    return {
        part: (
            sum(j.part == part for j in jobs),
            sum(j.config.steps for j in jobs if j.part == part),
        )
        for part in stage.PARTS
    }


def test_default_plan_has_every_part(tmp_path):
    config = StudyConfig()
    jobs = _stage(config, tmp_path).plan()
    assert _parts(jobs) == {
        "graded": (20 * 7, 20 * 7 * 600),
        "tie": (5 * 2, 5 * 2 * 600),
        "long": (2 * 5 + 2, 12 * 2400),
        "check": (60 + 25, 85 * 600),
    }
    assert len({j.out_dir for j in jobs}) == len(jobs)
    line = _stage(config, tmp_path).announce(jobs, jobs[:3])
    assert line.startswith("[3/5] transfer: 247 runs, 169800 steps in all (3 to run)")
    assert "graded test 140 runs, 84000 steps" in line and "claim 4 85 runs, 51000 steps" in line


def test_quick_plan_has_every_part(tmp_path):
    config = quick_config()
    jobs = _stage(config, tmp_path).plan()
    assert _parts(jobs) == {
        "graded": (12 * 7, 12 * 7 * 20),
        "tie": (4 * 1, 4 * 20),
        "long": (1 * 4 + 1, 5 * 40),  # freeze0, freeze6, paper, all; scratch on digits
        "check": (12 * 2 + 4 * 2, 32 * 20),
    }


def test_plan_uses_the_pre_registered_sources_and_seeds(tmp_path):
    config = quick_config()
    jobs = _stage(config, tmp_path).plan()
    by_dir = {Path(j.out_dir).relative_to(tmp_path).as_posix(): j for j in jobs}
    g = by_dir["transfer/graded/mnist-to-digits/freeze3"]
    assert g.config.seed == transfer_seed("digits", 0) and g.source.endswith("mnist/s0")
    assert g.budgets == (0, config.sweep_steps) and g.recipe.name == "freeze3"
    assert by_dir["transfer/graded/mnist-to-digits/paper"].recipe == "paper"
    tie = by_dir["transfer/graded/dsprites-to-digits/freeze2-r1"]  # dsprites: first other dataset
    assert tie.config.seed == transfer_seed("digits", 1) and tie.recipe.name == "freeze2"
    assert tie.source.endswith("dsprites/s0")
    long = by_dir["transfer/long/scratch-digits"]
    assert long.config.seed == long_scratch_seed("digits")
    assert long.budgets == tuple(config.transfer_budgets) and long.config.steps == 40
    check = by_dir["transfer/check/mnist-to-digits/s1"]
    assert check.source.endswith("mnist/s1") and check.recipe == "all"
    scratch = by_dir["transfer/check/scratch-digits/s1"]
    assert scratch.config.seed == scratch_seed("digits", 1) and scratch.recipe == "scratch"


def test_long_scratch_seed_is_planned_and_distinct():
    config = StudyConfig()
    seeds = planned_seeds(config)
    assert seeds["scratch-long/digits"] == long_scratch_seed("digits")
    assert seeds["scratch-long/mnist"] == long_scratch_seed("mnist")
    assert "scratch-long/animals" not in seeds  # not a long-curve target
    assert len(set(seeds.values())) == len(seeds)


def test_readers_find_what_the_plan_writes(tmp_path):
    config = quick_config()
    ctx = StudyContext(config, tmp_path)
    for i, job in enumerate(_stage(config, tmp_path).plan()):
        out = Path(job.out_dir)
        out.mkdir(parents=True)
        losses = {str(b): 1000.0 - b + i for b in job.budgets}
        (out / "transfer.json").write_text(json.dumps({"test_loss": losses}))
    graded = stage.graded_losses(ctx)
    assert len(graded) == 12 and set(graded[("mnist", "digits")]) == {
        *(f"freeze{k}" for k in GRADED_DEPTHS),
        "paper",
    }
    ties = stage.tie_losses(ctx)
    assert set(ties) == set(config.datasets) and all(len(v) == 2 for v in ties.values())
    assert ties["digits"][0] == graded[("dsprites", "digits")]["freeze2"]
    runs, scratch = stage.long_losses(ctx)
    assert set(runs[("mnist", "digits")]) == {"freeze0", "freeze6", "paper", "all"}
    assert set(scratch) == {"digits"} and set(scratch["digits"]) == {0, 20, 40}
    checks = stage.check_losses(ctx)
    assert len(checks["all"]) == 12 * 2 and ("mnist", "digits", 1) in checks["all"]
    assert all(len(v) == config.scratch_seeds for v in checks["scratch"].values())
    profiles = {pair: _profile(1) for pair in graded}
    claim3, paper, gains = transfer_claims(
        graded, checks["scratch"], ties, profiles, config, long=(runs, scratch)
    )
    assert claim3.evidence["n_pairs"] == 12 and paper.evidence["n_pairs"] == 12
    assert set(gains["gain_over_scratch"]) == {
        "freeze0",
        "freeze6",
        "paper",
        "all",
        "best freeze depth",
    }


def test_a_missing_run_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="has not finished"):
        stage.graded_losses(StudyContext(quick_config(), tmp_path))


# -- figures --------------------------------------------------------------------------------------


def test_claim3_figures_are_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    from vae_zoo.study.figures import freeze_depth_curves, graded_test, transfer_curves

    graded, scratch, repeats, profiles = _graded([[0, 1, 2, 3]] * 5)
    graded[("a", "b")]["freeze1"] = graded[("a", "b")]["freeze0"] + 0.01
    claim = retrain_claim(graded, scratch, repeats, profiles, CONFIG, power_simulations=5)
    runs = {("a", "b"): {"freeze0": {0: 900.0, 600: 110.0}, "all": {0: 800.0, 600: 95.0}}}
    paths = [
        graded_test(claim.evidence, tmp_path / "graded.png"),
        freeze_depth_curves(claim.evidence, tmp_path / "freeze.png"),
        transfer_curves(runs, {"b": {0: 1400.0, 600: 100.0}}, CONFIG, tmp_path / "curves.png"),
    ]
    assert all(p.stat().st_size > 1000 for p in paths)
