"""Tests of vae_zoo.transfer: recipes freeze, re-initialise and record the right parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vae_zoo.train.loop as train_module  # the module of the _interrupt_after test hook
from vae_zoo.checkpoint import CheckpointNotFoundError, load_model, read_checkpoint
from vae_zoo.datasets.base import ImageDataset
from vae_zoo.models import DatasetMismatchError, make_model
from vae_zoo.train import ResumeMismatchError, TrainConfig, read_metrics, train
from vae_zoo.transfer import RECIPES, Recipe, apply_recipe, get_recipe, transfer


def blobs(n: int, size: int = 32, seed: int = 0, name: str = "blobs") -> ImageDataset:
    """``n`` binary images of one random square each."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.uint8)
    for image, (y, x), w in zip(
        images, rng.integers(0, size - 8, (n, 2)), rng.integers(3, 8, n), strict=True
    ):
        image[0, y : y + w, x : x + w] = 255
    return ImageDataset(name, images)


CONFIG = TrainConfig(
    steps=4, batch_size=8, log_every=2, eval_every=0, checkpoint_every=3, eval_examples=8
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("source")
    train(blobs(48, seed=1, name="src"), out, CONFIG, progress=False)
    return out


@pytest.fixture(scope="module")
def target():
    return blobs(48, seed=2, name="tgt"), blobs(8, seed=3, name="tgt")


def params_of(path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


EXPECTED_TRAINABLE = {
    "decoder": lambda n: n.startswith("decoder."),
    "encoder": lambda n: n.startswith("encoder."),
    "all": lambda n: True,
    "paper": lambda n: (
        n.split(".")[:2] in (["encoder", "mu"], ["encoder", "logvar"], ["decoder", "dense1"])
    ),
    "scratch": lambda n: True,
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_freezes_trains_and_reinitialises_the_named_components(
    recipe, source, target, tmp_path
):
    result = transfer(
        source,
        target[0],
        recipe,
        tmp_path,
        CONFIG,
        test_data=target[1],
        eval_budgets=(0, 2),
        progress=False,
    )
    before, after = params_of(source), params_of(result.checkpoint)
    names = list(before)
    assert result.trainable == [n for n in names if EXPECTED_TRAINABLE[recipe](n)]
    assert result.frozen == [n for n in names if n not in result.trainable]
    assert set(result.reinitialised) == (
        set(result.trainable) if recipe in ("paper", "scratch") else set()
    )
    for name in result.frozen:
        assert torch.equal(before[name], after[name]), f"{recipe}: frozen {name} changed"
    for name in result.trainable:
        assert not torch.equal(before[name], after[name]), f"{recipe}: {name} did not change"
    assert sorted(result.test_loss) == [0, 2, 4]
    record = json.loads((tmp_path / "transfer.json").read_text())
    assert record["recipe"] == recipe and record["trainable"] == result.trainable
    assert record["reinitialised"] == result.reinitialised and record["frozen"] == result.frozen
    assert record["source_step"] == CONFIG.steps and record["steps"] == CONFIG.steps
    assert read_checkpoint(result.checkpoint)["trainable"] == result.trainable


def test_reinitialised_parameters_differ_from_the_source_before_training(source):
    model = load_model(source)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sets = apply_recipe(model, "paper", seed=0)
    after = model.state_dict()
    for name in before:
        assert torch.equal(before[name], after[name]) == (name not in sets["reinitialised"]), name
    # seeded: the same seed re-initialises to the same values, and the global RNG is untouched
    state = torch.get_rng_state()
    again = load_model(source)
    apply_recipe(again, "paper", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(after[k], again.state_dict()[k]) for k in after)


def test_scratch_equals_a_fresh_random_model_in_distribution_not_the_source(source):
    model = load_model(source)
    apply_recipe(model, "scratch", seed=0)
    src = params_of(source)
    fresh = make_model(1, 32, seed=123).state_dict()
    for name, value in model.state_dict().items():
        assert not torch.equal(value, src[name])
        assert value.shape == fresh[name].shape


def test_transfer_resumes_bit_for_bit(source, target, tmp_path, monkeypatch):
    full = transfer(source, target[0], "decoder", tmp_path / "full", CONFIG, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", 3)  # as if killed after step 3
    cut = transfer(source, target[0], "decoder", tmp_path / "cut", CONFIG, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", None)
    assert not cut.train.complete
    done = transfer(source, target[0], "decoder", tmp_path / "cut", CONFIG, progress=False)
    assert done.train.resumed_from == 3
    a, b = params_of(full.checkpoint), params_of(done.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(read_metrics(tmp_path / "cut", "train")) == 2


def test_transfer_errors(source, target, tmp_path):
    colour = ImageDataset("colour", np.zeros((8, 3, 32, 32), np.uint8))
    with pytest.raises(DatasetMismatchError, match="'colour' has 3-channel images .* 1-channel"):
        transfer(source, colour, "paper", tmp_path / "a", CONFIG, progress=False)
    with pytest.raises(DatasetMismatchError, match="64 px images .* size=32"):
        transfer(source, blobs(8, size=64), "paper", tmp_path / "b", CONFIG, progress=False)
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at"):
        transfer(tmp_path / "missing", target[0], "paper", tmp_path / "c", CONFIG, progress=False)
    with pytest.raises(ValueError, match=r"unknown recipe 'head'.*'paper'"):
        transfer(source, target[0], "head", tmp_path / "d", CONFIG, progress=False)
    transfer(source, target[0], "all", tmp_path / "e", CONFIG, progress=False)
    with pytest.raises(ResumeMismatchError, match="recipe='all', not 'decoder'"):
        transfer(source, target[0], "decoder", tmp_path / "e", CONFIG, progress=False)
    with pytest.raises(ResumeMismatchError, match="not a transfer"):
        transfer(source, target[0], "decoder", source, CONFIG, progress=False)


def test_custom_recipes_are_validated():
    with pytest.raises(ValueError, match="re-initialises 'decoder.dense1' but does not train"):
        Recipe("bad", train=("encoder",), reinit=("decoder.dense1",))
    model = make_model(1, 32, seed=0)
    with pytest.raises(ValueError, match="component 'decoder.dense9'.*decoder.dense1"):
        apply_recipe(model, Recipe("typo", train=("decoder.dense9",)))
    head = Recipe("head", train=("decoder.deconv4",), reinit=("decoder.deconv4",))
    assert get_recipe(head) is head
    sets = apply_recipe(model, head)
    assert sets["trainable"] == ["decoder.deconv4.weight", "decoder.deconv4.bias"]
