"""The model-level bootstrap: coverage on synthetic zoos with known between-model variance."""

from __future__ import annotations

import numpy as np
import pytest

from vae_zoo.study.bootstrap import (
    PairData,
    group_replicates,
    model_weights,
    percentile_interval,
)

DATASETS, SEEDS, UNTRAINED, EVALS = 5, 3, 8, 3
MEANS = {"cross": 0.6, "same": 0.9, "random": 0.4}


def synthetic_zoo():
    """Model ids, group masks and strata of a zoo like the study's default."""
    ids = [(d, s) for d in range(DATASETS) for s in range(SEEDS)]
    ids += [(-1, r) for r in range(UNTRAINED)]
    n = len(ids)
    masks = {g: np.zeros((n, n), dtype=bool) for g in MEANS}
    for a, (da, _) in enumerate(ids):
        for b, (db, _) in enumerate(ids):
            if da < 0:
                continue
            if db < 0:
                masks["random"][a, b] = True
            elif b > a:
                masks["same" if da == db else "cross"][a, b] = True
    strata = [[d * SEEDS + s for s in range(SEEDS)] for d in range(DATASETS)]
    strata.append(list(range(DATASETS * SEEDS, n)))
    return n, masks, strata


def draw_measurements(rng, n, masks, *, model_sd, pair_sd, example_sd, units=1):
    """Pair value = group mean + effect of model a + effect of model b + pair noise.

    A model's effect is the same on every evaluation set (an odd model is odd everywhere), so
    pairs sharing a model are correlated: the between-model variance the intervals must carry.
    """
    effect = rng.normal(0, model_sd, (n, units))
    evals = []
    for _ in range(EVALS):
        full = np.full((n, n, units), np.nan)
        halves = np.full((6, n, n, units), np.nan)
        for group, mask in masks.items():
            a, b = np.nonzero(mask)
            value = MEANS[group] + effect[a] + effect[b] + rng.normal(0, pair_sd, (len(a), units))
            full[a, b] = value
            halves[:, a, b] = value + rng.normal(0, example_sd, (6, len(a), units))
        evals.append(PairData(full, halves))
    return evals


@pytest.mark.parametrize(
    ("model_sd", "pair_sd"),
    [(0.05, 0.01), (0.03, 0.03)],
    ids=["between-model variance dominates", "model and pair variance alike"],
)
def test_nominal_95_interval_covers_90_to_99_percent(model_sd, pair_sd):
    n, masks, strata = synthetic_zoo()
    rng = np.random.default_rng(20261130)
    draws, covered = 200, dict.fromkeys(MEANS, 0)
    covered["cross − random"] = covered["G"] = 0
    for i in range(draws):
        evals = draw_measurements(
            rng, n, masks, model_sd=model_sd, pair_sd=pair_sd, example_sd=0.01
        )
        _, reps = group_replicates(evals, masks, strata, resamples=200, seed=i)
        for group, mean in MEANS.items():
            low, high = percentile_interval(reps[group][:, 0], 0.95)
            covered[group] += low <= mean <= high
        low, high = percentile_interval(reps["cross"][:, 0] - reps["random"][:, 0], 0.95)
        covered["cross − random"] += low <= MEANS["cross"] - MEANS["random"] <= high
        g = (reps["cross"] - reps["random"]) / (reps["same"] - reps["random"])
        low, high = percentile_interval(g[:, 0], 0.95)
        covered["G"] += low <= 0.2 / 0.5 <= high
    rates = {k: v / draws for k, v in covered.items()}
    assert all(0.90 <= rates[k] <= 0.99 for k in (*MEANS, "cross − random")), rates
    # The ratio G's percentile interval is conservative (about 99.7 % in 400-draw runs of this
    # zoo): it may be too wide, never too narrow.
    assert rates["G"] >= 0.95, rates


def test_pair_resampling_undercovers_the_same_zoo():
    """The design this replaces: resampling pairs as if independent gives too narrow intervals."""
    n, masks, _ = synthetic_zoo()
    rng = np.random.default_rng(7)
    draws, covered = 100, 0
    for _ in range(draws):
        evals = draw_measurements(rng, n, masks, model_sd=0.05, pair_sd=0.01, example_sd=0.01)
        cells = np.stack([e.full[masks["cross"]][:, 0] for e in evals])  # (E, P)
        idx = rng.integers(0, cells.shape[1], (300, cells.shape[1]))
        reps = cells[:, idx].mean(axis=(0, 2))
        low, high = percentile_interval(reps, 0.95)
        covered += low <= MEANS["cross"] <= high
    assert covered / draws < 0.8


def test_weights_draw_k_minus_one_per_stratum():
    rng = np.random.default_rng(0)
    w = model_weights([[0, 1, 2], [3, 4], [5]], 6, 1000, rng)
    np.testing.assert_array_equal(w[:, :3].sum(axis=1), 2)
    np.testing.assert_array_equal(w[:, 3:5].sum(axis=1), 2)  # a pair needs two draws
    np.testing.assert_array_equal(w[:, 5], 1)
    assert {0, 1, 2} <= set(np.unique(w[:, 0]).tolist())


def test_a_model_is_never_paired_with_its_own_copy():
    """One dataset, two seeds: a replicate that draws the same seed twice has no same pair."""
    full = np.zeros((2, 2, 1))
    full[0, 1] = 0.5
    mask = np.array([[False, True], [False, False]])
    point, reps = group_replicates([PairData(full)], {"same": mask}, [[0, 1]], resamples=400)
    assert point["same"][0] == pytest.approx(0.5)
    finite = reps["same"][np.isfinite(reps["same"])]
    np.testing.assert_allclose(finite, 0.5)
    assert 0.3 < np.isnan(reps["same"]).mean() < 0.7  # P(draw the same seed twice) = 1/2


def test_percentile_interval_of_no_finite_replicate_is_nan():
    assert all(np.isnan(percentile_interval(np.array([np.nan, np.nan]), 0.95)))


def test_undefined_point_has_no_interval():
    # The input layer's G is 0/0 (cross = same = random = 1); resamples whose rounding differs
    # give finite ratios such as 0.0, which must not be reported as an interval around NaN.
    from vae_zoo.study.analysis import _interval

    undefined = _interval(float("nan"), np.array([0.0, 0.0, np.nan, 0.0]), 0.95)
    assert np.isnan(undefined.estimate) and np.isnan(undefined.low) and np.isnan(undefined.high)
    defined = _interval(0.5, np.array([0.4, 0.5, 0.6, np.nan]), 0.95)
    assert 0.4 <= defined.low <= 0.5 <= defined.high <= 0.6


def test_g_is_undefined_where_ceiling_and_floor_coincide():
    # The input layer: every model sees the same images, so cross = same = random = 1 up to
    # rounding; G must be NaN there (point and every replicate), not a ratio of rounding errors.
    from vae_zoo.study.analysis import GroupStats

    eps = 1e-16
    point = {
        "cross": np.array([1.0 - eps, 0.7]),
        "same": np.array([1.0, 0.9]),
        "random": np.array([1.0 - 2 * eps, 0.5]),
    }
    replicates = {
        group: np.tile(values, (50, 1)) + np.linspace(0, 1e-12, 50)[:, None] * [1, 0]
        for group, values in point.items()
    }
    stats = GroupStats([("input", "mean"), ("encoder.conv1", "mean")], point, replicates, {})
    g, reps = stats.g_index([0])
    assert np.isnan(g) and np.all(np.isnan(reps))
    g, reps = stats.g_index([1])
    assert g == pytest.approx(0.5) and np.allclose(reps, 0.5)
