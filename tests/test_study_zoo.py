"""Tests of the study's zoo stage (vae_zoo.study.stages.zoo): kept checkpoints at every training
length, what counts as done, the snapshots the CKA stage reads, and the models' test losses."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_train import TinyLoader
from vae_zoo import storage
from vae_zoo.checkpoint import load_model, read_checkpoint
from vae_zoo.study import StudyConfig
from vae_zoo.study.stages import zoo as zoo_stage
from vae_zoo.study.stages.common import StudyContext
from vae_zoo.study.stages.runner import run_stage
from vae_zoo.train import read_metrics, snapshot_path

CONFIG = StudyConfig(
    datasets=("a", "b"),
    seeds=(0, 1),
    random_models=2,
    train_steps=6,
    training_lengths=(2, 4, 6),
    train_examples=32,
    transfer_steps=4,
    transfer_budgets=(0, 4),
    sweep_pairs=(("a", "b"),),
    check_source_seeds=(0,),
    sweep_steps=3,
    check_steps=3,
    scratch_seeds=2,
    workers=1,
    test_examples=8,
)


class TinyContext(StudyContext):
    """The study context with synthetic datasets (tests.test_train.TinyLoader)."""

    def loader(self):
        return TinyLoader()


def run_zoo(ctx: StudyContext, manifest: storage.Manifest) -> list[str]:
    messages: list[str] = []
    stage = zoo_stage.ZooStage(ctx)
    run_stage(stage, manifest=manifest, workers=1, progress=False, log=messages.append)
    return messages


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ctx = TinyContext(CONFIG, tmp_path_factory.mktemp("zoo"))
    manifest = storage.Manifest(ctx.out)
    first = run_zoo(ctx, manifest)
    return ctx, manifest, first


def test_every_run_keeps_its_earlier_lengths_and_evaluates_at_every_length(trained):
    ctx, _, first = trained
    assert "checkpoints and test loss at 2, 4, 6 (4 to train)" in first[0]
    for m in zoo_stage.zoo_models(ctx):
        assert [r["step"] for r in read_metrics(m.run_dir, "test")] == [2, 4, 6]
        assert read_checkpoint(snapshot_path(m.run_dir, 2))["step"] == 2
        assert read_checkpoint(snapshot_path(m.run_dir, 4))["step"] == 4
        assert not snapshot_path(m.run_dir, 6).exists()  # the final length is checkpoint.pt
        stored = json.loads((m.run_dir / "config.json").read_text())["train_config"]
        assert stored["keep_checkpoints"] == [2, 4] and stored["seed"] == m.init_seed


def test_zoo_snapshots_name_a_checkpoint_of_every_model_at_every_length(trained):
    ctx, _, _ = trained
    snapshots = zoo_stage.zoo_snapshots(ctx)
    names = [m.name for m in zoo_stage.zoo_models(ctx)]
    assert list(snapshots) == [2, 4, 6]
    assert all(list(by_model) == names for by_model in snapshots.values())
    run = ctx.out / "zoo" / "a" / "s1"
    assert snapshots[2]["a/s1"] == run / "checkpoint-step2.pt"
    assert snapshots[6]["a/s1"] == run / "checkpoint.pt"
    for length, by_model in snapshots.items():
        for path in by_model.values():
            assert read_checkpoint(path)["step"] == length
    early, final = load_model(snapshots[2]["a/s1"]), load_model(snapshots[6]["a/s1"])
    assert not torch.equal(early.encoder.conv3.weight, final.encoder.conv3.weight)
    assert final.encoder.conv3.kernel_size == (2, 2)  # the paper's kernel in the zoo


def test_model_records_give_the_test_loss_at_every_length(trained):
    ctx, _, _ = trained
    records = zoo_stage.model_records(ctx)
    trained_records = [r for r in records if r["dataset"]]
    assert len(trained_records) == 4 and len(records) == 6
    for record in trained_records:
        run = ctx.out / "zoo" / record["dataset"] / f"s{record['seed']}"
        logged = {r["step"]: r["loss"] for r in read_metrics(run, "test")}
        assert record["test_loss_at"] == {"2": logged[2], "4": logged[4], "6": logged[6]}
        assert record["final_test_loss"] == logged[6]
    assert all(r["test_loss_at"] == {} for r in records if r["dataset"] is None)


def test_a_run_is_done_only_when_its_result_and_every_snapshot_verify(trained):
    ctx, manifest, _ = trained
    run = ctx.out / "zoo" / "b" / "s0"
    for name in ("result.json", "checkpoint.pt", "checkpoint-step2.pt", "checkpoint-step4.pt"):
        assert manifest.verified(run / name), name  # recorded when the job finished
    assert "(0 to train)" in run_zoo(ctx, manifest)[0]
    stage = zoo_stage.ZooStage(ctx)
    job = next(j for j in stage.plan() if j.out_dir == str(run))
    assert stage.is_done(job, manifest.verified)
    unverified = {snapshot_path(run, 4)}
    assert not stage.is_done(job, lambda path: path not in unverified and manifest.verified(path))
    assert not stage.is_done(job, lambda path: path.name != "result.json")


def test_a_lost_snapshot_retrains_the_run_to_the_same_model(tmp_path):
    ctx = TinyContext(CONFIG, tmp_path)
    manifest = storage.Manifest(ctx.out)
    run_zoo(ctx, manifest)
    run = ctx.out / "zoo" / "a" / "s0"
    before = read_checkpoint(snapshot_path(run, 2))["model"]
    snapshot_path(run, 2).unlink()
    assert "(1 to train)" in run_zoo(ctx, manifest)[0]
    after = read_checkpoint(snapshot_path(run, 2))["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # seeded: the same run again
    assert manifest.verified(snapshot_path(run, 2))
    assert [r["step"] for r in read_metrics(run, "test")] == [2, 4, 6]
