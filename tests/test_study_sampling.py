"""Evaluation sets are seeded samples stratified by label; every model has its own init seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")

from vae_zoo.study import StudyConfig, quick_config
from vae_zoo.study.pipeline import Study
from vae_zoo.study.sampling import (
    init_seed,
    random_seed,
    stratified_indices,
)


def test_quick_evaluation_sets_cover_every_class(tmp_path):
    """At the --quick size every evaluation set holds all classes, balanced within a factor 2.

    The first images of a split are not a sample: dSprites' first 128 test images are one shape
    at one scale, Animal-Shape's one animal.
    """
    config = quick_config()
    study = Study(config, tmp_path, progress=False)
    for name in config.datasets:
        _, labels = study.eval_images(name)
        classes = np.unique(study.dataset(name, "test").labels)
        values, counts = np.unique(labels, return_counts=True)
        assert len(labels) == min(config.cka_examples, len(study.dataset(name, "test")))
        assert set(values.tolist()) == set(classes.tolist()), name
        assert counts.max() / counts.min() <= 2, (name, counts)


def test_dsprites_evaluation_set_spreads_over_scale_orientation_and_position(tmp_path):
    study = Study(quick_config(), tmp_path, progress=False)
    data = study.dataset("dsprites", "test")
    factors = data.factors[study.eval_indices("dsprites")]
    shape_scale = {(round(f[0]), round(f[1], 2)) for f in factors}
    assert len(shape_scale) == 18  # 3 shapes x 6 scales, all present at 128 examples
    quarters = np.minimum((factors[:, 2] / (2 * np.pi) * 4).astype(int), 3)
    assert set(quarters.tolist()) == {0, 1, 2, 3}
    assert factors[:, 3].min() < 0.25 and factors[:, 3].max() > 0.75
    assert factors[:, 4].min() < 0.25 and factors[:, 4].max() > 0.75


def test_evaluation_sets_are_recorded_and_reproducible(tmp_path):
    one = Study(quick_config(), tmp_path / "a", progress=False)
    two = Study(quick_config(), tmp_path / "b", progress=False)
    np.testing.assert_array_equal(one.eval_indices("mnist"), two.eval_indices("mnist"))
    record = one.evaluation_sets()["mnist"]
    assert record["n"] == quick_config().cka_examples
    assert sum(record["label_counts"].values()) == record["n"]
    assert record["test_indices"] == one.eval_indices("mnist").tolist()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    fraction=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_stratified_indices_are_distinct_and_as_balanced_as_sizes_allow(sizes, fraction, seed):
    keys = np.repeat(np.arange(len(sizes)), sizes)
    n = max(1, int(fraction * len(keys)))
    idx = stratified_indices(keys, n, seed)
    assert len(idx) == n == len(np.unique(idx))
    taken = np.bincount(keys[idx], minlength=len(sizes))
    sizes = np.array(sizes)
    assert np.all(taken <= sizes)
    # Every stratum that is not exhausted got at least as many as any other minus one.
    open_ = taken < sizes
    if open_.any():
        assert taken.max() - taken[open_].min() <= 1
    np.testing.assert_array_equal(idx, stratified_indices(keys, n, seed))


def test_stratified_indices_balance_the_second_key_inside_the_first():
    first = np.repeat([0, 1], 400)
    second = np.tile(np.repeat(np.arange(4), 100), 2)
    idx = stratified_indices(np.stack([first, second], axis=1), 40, seed=3)
    cells = np.bincount(first[idx] * 4 + second[idx], minlength=8)
    np.testing.assert_array_equal(cells, np.full(8, 5))


def test_stratified_indices_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="n must be between 1 and the 3 candidates"):
        stratified_indices(np.zeros(3), 4, seed=0)


def test_no_two_zoo_models_or_baselines_share_an_initialisation(tmp_path):
    """Initial weights depend on (dataset, seed): mnist/s0 and dsprites/s0 start apart."""
    from vae_zoo.models import make_model

    config = quick_config()
    study = Study(config, tmp_path, progress=False)
    seeds = [m.init_seed for m in study.zoo_models()]
    seeds += [random_seed(i) for i in range(config.random_models)]
    assert len(set(seeds)) == len(seeds)
    assert init_seed("mnist", 0) != init_seed("dsprites", 0)
    a = make_model(1, 32, seed=init_seed("mnist", 0)).encoder.conv1.weight
    b = make_model(1, 32, seed=init_seed("dsprites", 0)).encoder.conv1.weight
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())


def test_every_seed_a_study_plans_is_distinct():
    """Every name counts in full: scratch/<target>/<i> seeds differ by target and index (the
    v3 bug kept only a prefix, so the five scratch models of a target were one)."""
    from vae_zoo.study.sampling import planned_seeds, scratch_seed

    for config in (StudyConfig(), quick_config()):
        seeds = planned_seeds(config)
        assert len(set(seeds.values())) == len(seeds), "two names of the study share a seed"
        expected = len(config.datasets) * (
            len(config.seeds) + config.scratch_seeds + config.tie_repeats + 1 + 4
        )
        long_targets = len({t for _, t in config.sweep_pairs})
        assert len(seeds) == expected + config.random_models + long_targets
    assert len({scratch_seed(t, i) for t in ("mnist", "digits") for i in range(5)}) == 10


def test_derived_seed_uses_the_whole_name():
    from vae_zoo.study.sampling import derived_seed

    assert derived_seed("probe/train/mnist") != derived_seed("probe/train/digits")
    assert derived_seed("abcd" + "x" * 40) != derived_seed("abcd" + "x" * 39 + "y")
    assert 0 <= derived_seed("eval/mnist") < 2**31
