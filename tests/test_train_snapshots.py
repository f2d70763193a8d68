"""Tests of the kept checkpoints of vae_zoo.train (``TrainConfig.keep_checkpoints``): what they
hold, that evaluation leaves training alone, and that they survive an interrupted run."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import vae_zoo.train.loop as train_module  # the module of the _interrupt_after test hook
from tests.test_train import blobs, without_timing
from vae_zoo.checkpoint import load_model, read_checkpoint
from vae_zoo.models import make_model
from vae_zoo.objectives import BetaVAE
from vae_zoo.train import (
    ResumeMismatchError,
    TrainConfig,
    evaluate,
    main,
    read_metrics,
    snapshot_path,
    train,
)

BASE = {"batch_size": 8, "log_every": 2, "eval_every": 0, "checkpoint_every": 5}
BASE_EVAL = {**BASE, "eval_examples": 16}


@pytest.fixture(scope="module")
def data():
    return blobs(64), blobs(16, seed=1)


def weights(path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_snapshot_path_is_in_the_run_directory(tmp_path):
    assert snapshot_path(tmp_path, 750) == tmp_path / "checkpoint-step750.pt"
    assert snapshot_path(str(tmp_path), 3).name == "checkpoint-step3.pt"


@pytest.mark.parametrize(
    ("kept", "message"),
    [
        ((0,), "increasing steps in 1..steps \\(12\\); got \\[0\\]"),
        ((13,), "got \\[13\\]"),
        ((6, 4), "got \\[6, 4\\]"),
        ((4, 4), "got \\[4, 4\\]"),
        ((2.5,), "sequence of integer steps"),
        ("46", "sequence of integer steps"),
        (6, "sequence of integer steps"),
    ],
)
def test_invalid_kept_steps_are_a_clear_error(kept, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(steps=12, keep_checkpoints=kept)


def test_kept_steps_are_evaluation_steps_and_round_trip():
    config = TrainConfig(steps=12, eval_every=0, keep_checkpoints=[4, 8])  # a JSON list
    assert config.keep_checkpoints == (4, 8) and config.eval_steps() == {4, 8, 12}
    assert config.to_dict()["keep_checkpoints"] == [4, 8]
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    old = {k: v for k, v in config.to_dict().items() if k != "keep_checkpoints"}
    assert TrainConfig.from_dict(old).keep_checkpoints == ()  # a config of an older run
    assert "keep_checkpoints" not in TrainConfig.RESUME_KEYS


def test_a_kept_checkpoint_is_the_model_of_a_run_of_that_length(tmp_path, data):
    train_data, test_data = data
    k = 6
    long = TrainConfig(steps=2 * k, keep_checkpoints=(k,), **BASE_EVAL)
    short = TrainConfig(steps=k, **BASE_EVAL)
    train(train_data, tmp_path / "long", long, test_data=test_data, progress=False)
    train(train_data, tmp_path / "short", short, test_data=test_data, progress=False)
    kept = snapshot_path(tmp_path / "long", k)
    assert same_weights(weights(kept), weights(tmp_path / "short"))
    assert not same_weights(weights(kept), weights(tmp_path / "long"))  # it is not the final one
    payload = read_checkpoint(kept)
    assert payload["step"] == k and payload["complete"] is False
    # the test loss at the kept step is logged, and is the short run's final test loss
    long_test = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "long", "test")}
    short_test = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "short", "test")}
    assert sorted(long_test) == [k, 2 * k] and long_test[k] == short_test[k]
    result = json.loads((tmp_path / "long" / "result.json").read_text())
    assert result["snapshots"] == {str(k): kept.name}


def test_evaluation_leaves_every_training_rng_alone(tmp_path, data):
    train_data, test_data = data
    plain = TrainConfig(steps=12, **BASE)
    busy = TrainConfig(steps=12, eval_at=(0, 1, 2, 3, 5, 7), keep_checkpoints=(3, 9), **BASE_EVAL)
    train(train_data, tmp_path / "plain", plain, progress=False)  # no test data: no evaluation
    train(train_data, tmp_path / "busy", busy, test_data=test_data, progress=False)
    assert [r["step"] for r in read_metrics(tmp_path / "busy", "test")] == [0, 1, 2, 3, 5, 7, 9, 12]
    a, b = read_checkpoint(tmp_path / "plain"), read_checkpoint(tmp_path / "busy")
    assert same_weights(a["model"], b["model"])
    for name in ("data", "torch", "numpy", "python"):
        assert repr(a["rng"][name]) == repr(b["rng"][name]), name
    assert torch.equal(a["rng"]["noise"], b["rng"]["noise"])


def test_evaluate_draws_no_global_randomness(data):
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002 - the global RNG is what is checked
    random.seed(1)
    before = (torch.get_rng_state(), repr(np.random.get_state()), random.getstate())  # noqa: NPY002
    first = evaluate(make_model(1, 32, seed=0), BetaVAE(), data[1], seed=3)
    after = (torch.get_rng_state(), repr(np.random.get_state()), random.getstate())  # noqa: NPY002
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]
    assert first == evaluate(make_model(1, 32, seed=0), BetaVAE(), data[1], seed=3)
    assert first != evaluate(make_model(1, 32, seed=0), BetaVAE(), data[1], seed=4)


def test_kept_checkpoints_survive_an_interrupted_run(tmp_path, data, monkeypatch):
    train_data, test_data = data
    config = TrainConfig(steps=12, keep_checkpoints=(4, 7), **BASE_EVAL)
    train(train_data, tmp_path / "full", config, test_data=test_data, progress=False)
    # killed after step 8: step 4's copy was written before the checkpoint of step 5, step 7's
    # after it; the resume from step 5 keeps the first and writes the second again
    monkeypatch.setattr(train_module, "_interrupt_after", 8)
    train(train_data, tmp_path / "cut", config, test_data=test_data, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", None)
    assert read_checkpoint(tmp_path / "cut")["step"] == 5
    written = snapshot_path(tmp_path / "cut", 4).stat().st_mtime_ns
    resumed = train(train_data, tmp_path / "cut", config, test_data=test_data, progress=False)
    assert resumed.complete and resumed.resumed_from == 5
    assert snapshot_path(tmp_path / "cut", 4).stat().st_mtime_ns == written  # kept as it was
    for step in (4, 7):
        full, cut = snapshot_path(tmp_path / "full", step), snapshot_path(tmp_path / "cut", step)
        assert same_weights(weights(full), weights(cut)), step
    assert [r["step"] for r in read_metrics(tmp_path / "cut", "test")] == [4, 7, 12]
    assert without_timing(read_metrics(tmp_path / "cut")) == without_timing(
        read_metrics(tmp_path / "full")
    )


def test_resuming_past_a_missing_kept_checkpoint_is_refused(tmp_path, data):
    config = TrainConfig(steps=6, keep_checkpoints=(3,), **BASE)
    train(data[0], tmp_path, config, progress=False)
    snapshot_path(tmp_path, 3).unlink()
    with pytest.raises(ResumeMismatchError, match="at steps \\[3\\] .*checkpoint-step3.pt is miss"):
        train(data[0], tmp_path, config, progress=False)  # complete, but the copy is gone
    # the same steps without that copy is fine; an extension keeps the steps still ahead
    longer = TrainConfig(steps=10, keep_checkpoints=(8,), **BASE)
    train(data[0], tmp_path, longer, progress=False)
    assert snapshot_path(tmp_path, 8).is_file() and read_checkpoint(tmp_path)["step"] == 10
    with pytest.raises(ResumeMismatchError, match="checkpoint-step4.pt is missing"):
        train(data[0], tmp_path, TrainConfig(steps=12, keep_checkpoints=(4,), **BASE))


def test_command_line_keeps_checkpoints(tmp_path, monkeypatch, capsys):
    import vae_zoo.datasets

    monkeypatch.setattr(
        vae_zoo.datasets,
        "load",
        lambda name, *, split, size, data_dir=None: blobs(16, size, seed=split == "test"),
        raising=False,
    )
    argv = ["--dataset", "dsprites", "--steps", "4", "--batch-size", "4", "--no-progress"]
    code = main([*argv, "--eval-examples", "8", "--keep-checkpoints", "2", "--out", str(tmp_path)])
    assert code == 0 and snapshot_path(tmp_path, 2).is_file()
    assert [r["step"] for r in read_metrics(tmp_path, "test")] == [2, 4]
    assert main([*argv, "--keep-checkpoints", "5", "--out", str(tmp_path / "b")]) == 2
    assert "keep_checkpoints must be increasing steps in 1..steps (4)" in capsys.readouterr().err
