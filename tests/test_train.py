"""Tests of vae_zoo.train, vae_zoo.checkpoint and vae_zoo.zoo on tiny synthetic datasets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import vae_zoo.checkpoint as checkpoint_module
import vae_zoo.datasets
import vae_zoo.train.loop as train_module  # the module of the _interrupt_after test hook
from vae_zoo.checkpoint import (
    ArchitectureMismatchError,
    CheckpointError,
    CheckpointNotFoundError,
    load_model,
    load_model_state,
    read_checkpoint,
)
from vae_zoo.datasets.base import ImageDataset
from vae_zoo.models import LEGACY_ENCODER_KERNELS, ModelConfig, make_model
from vae_zoo.train import (
    ResumeMismatchError,
    TrainConfig,
    is_complete,
    main,
    read_metrics,
    train,
)
from vae_zoo.zoo import ZooError, run_zoo


def blobs(n: int, size: int = 32, seed: int = 0, name: str = "blobs") -> ImageDataset:
    """``n`` binary images of one random disc each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centre = rng.uniform(size / 4, 3 * size / 4, (n, 2))
    radius = rng.uniform(size / 10, size / 5, n)
    inside = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    images = (inside < radius[:, None, None] ** 2)[:, None].astype(np.uint8) * 255
    return ImageDataset(name, images)


TINY = TrainConfig(
    steps=12, batch_size=8, log_every=2, eval_every=4, checkpoint_every=5, eval_examples=16
)


def without_timing(rows):
    return [{k: v for k, v in r.items() if k != "steps_per_s"} for r in rows]


@pytest.fixture(scope="module")
def data():
    return blobs(64), blobs(16, seed=1)


def test_a_few_steps_reduce_the_loss(tmp_path):
    config = TrainConfig(steps=40, batch_size=16, lr=1e-3, log_every=10, eval_every=0)
    train(blobs(128), tmp_path, config, progress=False)
    losses = [row["loss"] for row in read_metrics(tmp_path, "train")]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0]


def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, data, monkeypatch):
    train_data, test_data = data
    full = train(train_data, tmp_path / "full", TINY, test_data=test_data, progress=False)
    # killed after step 8: the last checkpoint is step 5, steps 6-8 are redone on resume
    monkeypatch.setattr(train_module, "_interrupt_after", 8)  # as if killed after step 8
    cut = train(train_data, tmp_path / "cut", TINY, test_data=test_data, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", None)
    assert not cut.complete and not is_complete(tmp_path / "cut")
    assert read_checkpoint(tmp_path / "cut")["step"] == 5
    assert max(r["step"] for r in read_metrics(tmp_path / "cut")) == 8
    resumed = train(train_data, tmp_path / "cut", TINY, test_data=test_data, progress=False)
    assert resumed.resumed_from == 5 and resumed.complete and full.complete
    a, b = read_checkpoint(tmp_path / "full"), read_checkpoint(tmp_path / "cut")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, state in a["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][field])
    assert without_timing(read_metrics(tmp_path / "full")) == without_timing(
        read_metrics(tmp_path / "cut")
    )


def test_same_seed_same_parameters_other_seed_differs(tmp_path, data):
    cfg = TrainConfig(steps=3, batch_size=8, eval_every=0)
    runs = [
        train(data[0], tmp_path / f"r{i}", c, progress=False)
        for i, c in enumerate([cfg, cfg, TrainConfig(steps=3, batch_size=8, seed=1)])
    ]
    p = [read_checkpoint(r.checkpoint)["model"] for r in runs]
    assert all(torch.equal(p[0][k], p[1][k]) for k in p[0])
    assert not torch.equal(p[0]["decoder.dense1.weight"], p[2]["decoder.dense1.weight"])


def test_complete_run_is_not_retrained_and_can_be_extended(tmp_path, data):
    cfg = TrainConfig(steps=4, batch_size=8, eval_every=0, log_every=2)
    train(data[0], tmp_path, cfg, progress=False)
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    again = train(data[0], tmp_path, cfg, progress=False)
    assert again.resumed_from == 4 and again.complete
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp
    longer = TrainConfig(steps=6, batch_size=8, eval_every=0, log_every=2)
    assert not is_complete(tmp_path, 6)
    train(data[0], tmp_path, longer, progress=False)
    assert is_complete(tmp_path, 6) and read_checkpoint(tmp_path)["step"] == 6
    # and equals a 6-step run done in one go
    train(data[0], tmp_path / "direct", longer, progress=False)
    a, b = read_checkpoint(tmp_path)["model"], read_checkpoint(tmp_path / "direct")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_threads_are_restored_and_metrics_have_eval_steps(tmp_path, data):
    before = torch.get_num_threads()
    cfg = TrainConfig(
        steps=6, batch_size=8, eval_every=0, eval_at=(0, 3), log_every=3, eval_examples=8, threads=1
    )
    result = train(data[0], tmp_path, cfg, test_data=data[1], progress=False)
    assert torch.get_num_threads() == before
    assert [r["step"] for r in read_metrics(tmp_path, "test")] == [0, 3, 6]
    assert result.test["step"] == 6 and set(result.test) >= {"loss", "recon", "kl"}
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["complete"] and saved["step"] == 6


def test_checkpoint_round_trip(tmp_path, data):
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=0)
    train(data[0], tmp_path, cfg, progress=False)
    model = load_model(tmp_path, decode_from="mean")
    assert not model.training and model.config == ModelConfig(1, 32, 10)
    stored = read_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    x = torch.rand(3, 1, 32, 32)
    again = load_model(tmp_path / "checkpoint.pt", decode_from="mean")
    assert torch.equal(model(x).logits, again(x).logits)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, data, monkeypatch):
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=0)
    train(data[0], tmp_path, cfg, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def crash(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_module.save_checkpoint(tmp_path / "checkpoint.pt", {"step": 3})
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_missing_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path, data):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at .*vae_zoo.train"):
        load_model(tmp_path / "nowhere")
    train(
        data[0], tmp_path / "run", TrainConfig(steps=1, batch_size=8, eval_every=0), progress=False
    )
    good = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint .*delete it"):
        load_model(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a vae_zoo checkpoint"):
        load_model(tmp_path / "other.pt")
    # a damaged checkpoint in a run directory stops the resume with the same message
    (tmp_path / "run" / "checkpoint.pt").write_bytes(good[:100])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        train(data[0], tmp_path / "run", TrainConfig(steps=2, batch_size=8), progress=False)


def test_architecture_mismatch_is_a_clear_error(tmp_path, data):
    train(data[0], tmp_path, TrainConfig(steps=1, batch_size=8, eval_every=0), progress=False)
    payload = read_checkpoint(tmp_path)
    with pytest.raises(
        ArchitectureMismatchError, match=r"written for ConvVAE\(channels=1, size=32.*size=64"
    ):
        load_model_state(make_model(1, 64), payload, "ckpt")
    with pytest.raises(ArchitectureMismatchError, match="expected ConvVAE"):
        load_model(tmp_path, expect=ModelConfig(3, 32, 10))
    payload["model"]["encoder.mu.weight"] = torch.zeros(3, 3)
    with pytest.raises(ArchitectureMismatchError, match="does not match the parameters"):
        load_model_state(make_model(1, 32), payload, "ckpt")


def test_a_checkpoint_from_before_encoder_kernels_loads_as_the_old_architecture(tmp_path, data):
    # what the code before ModelConfig.encoder_kernels wrote: kernel 4 in every encoder conv,
    # and a model config of channels, size and latent_dim only
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=0, checkpoint_every=1)
    old_model = make_model(1, 32, seed=0, encoder_kernels=LEGACY_ENCODER_KERNELS)
    train(data[0], tmp_path / "old", cfg, init_model=old_model, progress=False)
    payload = read_checkpoint(tmp_path / "old")
    assert payload["model_config"].pop("encoder_kernels") == [4, 4, 4, 4]
    assert payload["model"]["encoder.conv3.weight"].shape == (64, 32, 4, 4)
    del payload["format"], payload["version"]
    checkpoint_module.save_checkpoint(tmp_path / "old" / "checkpoint.pt", payload)
    model = load_model(tmp_path / "old")
    assert model.config.encoder_kernels == (4, 4, 4, 4) and model.config.size == 32
    assert model.encoder.conv4.kernel_size == (4, 4) and model.encoder.conv4.padding == (1, 1)
    assert all(torch.equal(v, payload["model"][k]) for k, v in model.state_dict().items())
    with pytest.raises(ArchitectureMismatchError, match="expected ConvVAE"):
        load_model(tmp_path / "old", expect=ModelConfig(1, 32, 10))  # today's default differs
    # it resumes too, and the extended run records its kernels
    train(data[0], tmp_path / "old", TrainConfig(**{**cfg.to_dict(), "steps": 3}), progress=False)
    assert read_checkpoint(tmp_path / "old")["model_config"]["encoder_kernels"] == [4, 4, 4, 4]
    # new-shaped weights under a config without the field are refused, not misread
    train(data[0], tmp_path / "new", cfg, progress=False)
    new = read_checkpoint(tmp_path / "new")
    del new["model_config"]["encoder_kernels"]
    with pytest.raises(ArchitectureMismatchError, match="does not match the parameters"):
        load_model_state(make_model(1, 32, encoder_kernels=LEGACY_ENCODER_KERNELS), new, "c")
    with pytest.raises(
        ArchitectureMismatchError, match=r"written for .*\(4, 4, 4, 4\).*\(4, 4, 2, 2\)"
    ):
        load_model_state(make_model(1, 32), new, "c")


def test_resuming_with_other_settings_or_data_is_refused(tmp_path, data):
    cfg = TrainConfig(steps=2, batch_size=8, eval_every=0)
    train(data[0], tmp_path, cfg, progress=False)
    with pytest.raises(ResumeMismatchError, match="seed=0 but this run asks for seed=1"):
        train(data[0], tmp_path, TrainConfig(steps=2, batch_size=8, seed=1), progress=False)
    with pytest.raises(ResumeMismatchError, match="trained on"):
        train(blobs(64, seed=9), tmp_path, cfg, progress=False)
    with pytest.raises(ResumeMismatchError, match="already holds 2 steps"):
        train(data[0], tmp_path, TrainConfig(steps=1, batch_size=8), progress=False)


def test_channel_mismatch_between_model_and_data(tmp_path, data):
    colour = ImageDataset("colour", np.zeros((8, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="3-channel images"):
        train(colour, tmp_path, TrainConfig(steps=1), init_model=make_model(1, 32), progress=False)


def test_command_line(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_load(name, *, split, size, data_dir=None):
        calls.append((name, split, size))
        return blobs(32 if split == "train" else 8, size, seed=split == "test", name=name)

    monkeypatch.setattr(vae_zoo.datasets, "load", fake_load, raising=False)
    out = tmp_path / "x"
    code = main(
        [
            "--dataset",
            "dsprites",
            "--size",
            "32",
            "--steps",
            "3",
            "--seed",
            "0",
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--objective",
            "beta_tcvae",
            "-p",
            "beta=2",
            "--no-progress",
            "--eval-examples",
            "8",
        ]
    )
    assert code == 0 and calls == [("dsprites", "train", 32), ("dsprites", "test", 32)]
    assert is_complete(out, 3)
    stored = json.loads((out / "config.json").read_text())["train_config"]
    assert stored["objective"] == "beta_tcvae" and stored["objective_params"] == {"beta": 2}
    assert json.loads(capsys.readouterr().out)["step"] == 3
    assert (
        main(
            [
                "--dataset",
                "dsprites",
                "--out",
                str(out),
                "--seed",
                "1",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "seed=0 but this run asks for seed=1" in capsys.readouterr().err


@dataclass(frozen=True)
class TinyLoader:
    """A picklable zoo loader of synthetic datasets (one per name)."""

    def __call__(self, name: str, split: str, size: int) -> ImageDataset:
        if name == "broken":
            raise ValueError("no such dataset")
        seed = sum(map(ord, name)) + (split == "test")
        return blobs(32 if split == "train" else 8, size, seed=seed, name=name)


ZOO_CONFIG = TrainConfig(steps=2, batch_size=4, eval_every=0, log_every=1, eval_examples=8)


def test_zoo_trains_the_grid_and_skips_completed_runs(tmp_path):
    results = run_zoo(
        ["a", "b"],
        [0, 1],
        out_dir=tmp_path,
        config=ZOO_CONFIG,
        workers=1,
        loader=TinyLoader(),
        progress=False,
    )
    assert [(r.run.dataset, r.run.seed, r.skipped) for r in results] == [
        ("a", 0, False),
        ("a", 1, False),
        ("b", 0, False),
        ("b", 1, False),
    ]
    assert results[0].out_dir == tmp_path / "a-32px" / "beta_vae" / "seed0"
    assert all(is_complete(r.out_dir, 2) and r.checkpoint.is_file() for r in results)
    assert read_checkpoint(results[1].checkpoint)["train_config"]["seed"] == 1
    again = run_zoo(
        ["a", "b"],
        [0, 1],
        [("beta_vae", {}), ("beta_tcvae", {"beta": 2})],
        out_dir=tmp_path,
        config=ZOO_CONFIG,
        workers=1,
        loader=TinyLoader(),
        progress=False,
    )
    assert [r.skipped for r in again] == [True, True, False, False] * 2
    assert again[2].out_dir.parent.name == "beta_tcvae-beta=2"


@pytest.mark.slow  # two spawned worker processes each import torch
def test_zoo_in_worker_processes_reports_failures(tmp_path):
    with pytest.raises(ZooError, match=r"1 of 2 zoo runs failed:\n- broken seed 0"):
        run_zoo(
            ["a", "broken"],
            [0],
            out_dir=tmp_path,
            config=ZOO_CONFIG,
            workers=2,
            loader=TinyLoader(),
            progress=False,
            test=False,
        )
    assert is_complete(tmp_path / "a-32px" / "beta_vae" / "seed0", 2)


def test_a_run_directory_in_use_is_refused_at_once(tmp_path, data):
    from vae_zoo.storage import DirectoryLockedError, lock_directory

    with lock_directory(tmp_path / "run"):
        with pytest.raises(DirectoryLockedError, match="in use by process"):
            train(data[0], tmp_path / "run", TINY, progress=False)
    assert not any((tmp_path / "run").iterdir())  # nothing trained, nothing written


def test_an_incomplete_last_metrics_line_is_dropped_on_resume(tmp_path, data, monkeypatch):
    train_data, test_data = data
    full = train(train_data, tmp_path / "full", TINY, test_data=test_data, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", 8)
    train(train_data, tmp_path / "cut", TINY, test_data=test_data, progress=False)
    monkeypatch.setattr(train_module, "_interrupt_after", None)
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as log:
        log.write('{"step": 9, "split": "train", "lo')  # killed while appending a line
    assert max(r["step"] for r in read_metrics(tmp_path / "cut")) == 8
    resumed = train(train_data, tmp_path / "cut", TINY, test_data=test_data, progress=False)
    assert resumed.complete and resumed.resumed_from == 5
    assert without_timing(read_metrics(tmp_path / "cut")) == without_timing(
        read_metrics(full.out_dir)
    )


def test_a_garbled_metrics_line_before_the_last_is_a_clear_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n#garbage\n{"step": 2}\n')
    with pytest.raises(CheckpointError, match="line 2 of .*metrics.jsonl is not a metrics row"):
        read_metrics(tmp_path)


@pytest.mark.parametrize("missing", ["optimizer", "rng", "log_sums", "step"])
def test_a_checkpoint_without_resume_state_is_a_checkpoint_error(tmp_path, data, missing):
    short = TrainConfig(steps=2, batch_size=8, log_every=1, eval_every=0, checkpoint_every=1)
    train(data[0], tmp_path, short, progress=False)
    payload = read_checkpoint(tmp_path)
    del payload[missing], payload["format"], payload["version"]
    checkpoint_module.save_checkpoint(tmp_path / "checkpoint.pt", payload)
    longer = TrainConfig(**{**short.to_dict(), "steps": 3})
    with pytest.raises(CheckpointError, match=f"without \\['{missing}'\\]"):
        train(data[0], tmp_path, longer, progress=False)
    if missing == "step":
        return
    del payload["model"]
    checkpoint_module.save_checkpoint(tmp_path / "checkpoint.pt", payload)
    with pytest.raises(CheckpointError, match="without \\['model'\\]"):
        load_model(tmp_path)
