"""The training-length check: CKA of the zoo's snapshots and claims 1-2 at every length."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vae_zoo import storage  # noqa: E402
from vae_zoo.checkpoint import save_checkpoint  # noqa: E402
from vae_zoo.models import make_model  # noqa: E402
from vae_zoo.study.analysis import model_masks  # noqa: E402
from vae_zoo.study.config import quick_config  # noqa: E402
from vae_zoo.study.lengths import (  # noqa: E402
    length_evals,
    loss_by_length,
    training_length,
    verdict_line,
)
from vae_zoo.study.measurement import FLOOR_MEASURES  # noqa: E402
from vae_zoo.study.representations import MEASURES, unit_layers  # noqa: E402
from vae_zoo.study.stages import zoo as zoo_stage  # noqa: E402
from vae_zoo.study.stages.cka import CKAStage, cka_path, load_cka  # noqa: E402
from vae_zoo.study.stages.common import StudyContext  # noqa: E402
from vae_zoo.study.stages.runner import run_stage  # noqa: E402
from vae_zoo.train import snapshot_path  # noqa: E402

CONFIG = quick_config(
    datasets=("digits", "mnist"),
    seeds=(0, 1),
    random_models=2,
    cka_examples=16,
    half_samples=2,
    bootstrap_resamples=200,
    workers=1,
)
LENGTHS = CONFIG.training_lengths  # (38, 75, 150)


def test_loss_by_length_means_over_seeds_and_the_change_per_doubling():
    config = quick_config(datasets=("digits", "mnist"), training_lengths=(75, 150), seeds=(0, 1))
    records = [
        {"dataset": "digits", "test_loss_at": {"75": 200.0, "150": 180.0}},
        {"dataset": "digits", "test_loss_at": {75: 210.0, 150: 190.0}},  # int keys too
        {"dataset": "mnist", "test_loss_at": {"75": 120.0}, "final_test_loss": 90.0},
        {"dataset": None, "test_loss_at": {}},  # an untrained model: skipped
    ]
    out = loss_by_length(records, config)
    assert out["mean_test_loss"]["75"] == {"digits": 205.0, "mnist": 120.0}
    assert out["mean_test_loss"]["150"] == {"digits": 185.0, "mnist": 90.0}  # final fallback
    digits = out["per_doubling"]["75->150"]["digits"]
    assert digits["change"] == pytest.approx(-20.0)
    assert digits["relative_change"] == pytest.approx(185 / 205 - 1)


def test_change_per_doubling_over_two_doublings_and_unknown_losses():
    config = quick_config(datasets=("digits", "mnist"), training_lengths=(50, 150), seeds=(0, 1))
    records = [{"dataset": "digits", "test_loss_at": {"50": 160.0, "150": 100.0}}]
    out = loss_by_length(records, config)
    doublings = math.log2(3)
    row = out["per_doubling"]["50->150"]
    assert row["digits"]["change"] == pytest.approx(-60.0 / doublings)
    assert row["digits"]["relative_change"] == pytest.approx((100 / 160) ** (1 / doublings) - 1)
    assert row["mnist"] == {"change": None, "relative_change": None}


def test_verdict_line_says_whether_a_verdict_moves():
    assert verdict_line("c", "r", {750: True, 1500: True}) == (
        "c (r): holds at every length (750, 1500 steps)"
    )
    line = verdict_line("c", "r", {3000: True, 750: None, 1500: False})
    assert line == (
        "c (r): moves with training: inconclusive at 750, does not hold at 1500, holds at 3000 steps"
    )


MODELS = [f"{d}/s{s}" for d in "abc" for s in range(3)] + [f"random/r{i}" for i in range(4)]
UNITS = unit_layers()


def _evals(dec_cross: float, matched: float = 0.3) -> list[dict]:
    """Stage-2 arrays: encoder (cross, same, random) = (0.9, 0.9, 0.4) at every length;
    decoder (dec_cross, 0.8, 0.1), its matched floor ``matched``."""
    from vae_zoo.models import ENCODER_LAYERS

    masks = model_masks(MODELS)
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 0.01, (len(MODELS), len(UNITS)))
    enc = np.array([layer in ENCODER_LAYERS for layer, _ in UNITS])
    sample = [u for u, (_, mode) in enumerate(UNITS) if mode == "sample"]
    levels = {"cross": (0.9, dec_cross), "same": (0.9, 0.8), "random": (0.4, 0.1)}
    evals = []
    for name in "abc":
        full = np.full((len(MODELS), len(MODELS), len(UNITS)), np.nan)
        for group, (e, d) in levels.items():
            a, b = np.nonzero(masks[group])
            full[a, b] = np.where(enc, e, d) + effect[a] + effect[b]
        halves = full[None] + 0.003 * rng.standard_normal((3, *full.shape))
        data = {"meta": {"models": MODELS, "units": UNITS, "dataset": name}}
        for measure in MEASURES:
            data[f"{measure}_full"], data[f"{measure}_halves"] = full, halves
        floor = np.full_like(full, np.nan)
        a, b = np.nonzero(masks["random"])
        floor[a[:, None], b[:, None], np.array(sample)[None]] = matched
        for measure in FLOOR_MEASURES:
            data[f"{measure}_matched_floor_full"] = floor
            data[f"{measure}_matched_floor_halves"] = np.repeat(floor[None], 3, axis=0)
        evals.append(data)
    return evals


def test_training_length_reports_verdicts_per_length_and_whether_they_move():
    config = quick_config(datasets=("digits", "mnist"), training_lengths=(75, 150), seeds=(0, 1))
    study = SimpleNamespace(config=config)
    records = [{"dataset": "digits", "test_loss_at": {"75": 200.0, "150": 180.0}}]
    # 75 steps: the decoders as alike as the seeds (claim 2 fails); 150: specific (holds)
    out = training_length(study, {150: _evals(0.3), 75: _evals(0.8)}, records=records)
    assert out["lengths"] == [75, 150]
    assert out["test_loss"]["per_doubling"]["75->150"]["digits"]["change"] == pytest.approx(-20)
    primary = out["readings"]["debiased/mean"]
    early, late = primary["per_length"]["75"], primary["per_length"]["150"]
    assert early["verdicts"] == {"encoders-generic": True, "decoders-specific": False}
    assert late["verdicts"] == {"encoders-generic": True, "decoders-specific": True}
    assert late["decoder_G"]["estimate"] == pytest.approx(0.2 / 0.7, abs=0.03)
    assert early["decoder_G"]["estimate"] == pytest.approx(1.0, abs=0.03)
    assert len(late["depth_differences"]) == 5
    diff = late["depth_differences"][0]["difference"]
    assert diff["estimate"] == pytest.approx(1 - 0.2 / 0.7, abs=0.05)
    assert primary["verdict_moves"]["decoders-specific"] == (
        "decoders-specific (debiased/mean): moves with training: does not hold at 75, holds at "
        "150 steps"
    )
    assert "holds at every length" in primary["verdict_moves"]["encoders-generic"]
    matched = out["readings"]["debiased/sample-matched-floor"]["per_length"]["150"]
    # the matched floor 0.3 of the sample-driven decoder: G = (0.3 - 0.3) / (0.8 - 0.3) = 0
    assert matched["decoder_G"]["estimate"] == pytest.approx(0.0, abs=0.03)
    assert len(out["summary"]) == 4


class _EvalSets:
    """Fixed images per dataset (the stage reads only ``images``)."""

    def images(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(len(name))
        images = (rng.uniform(size=(20, 1, 32, 32)) * 255).astype(np.uint8)
        return images, np.arange(20) % 2


def _save(model: torch.nn.Module, path: Path) -> Path:
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model": model.state_dict()})
    return path


@pytest.fixture(scope="module")
def measured_lengths(tmp_path_factory):
    """A zoo of untrained models with fake snapshots (75 steps: the final weights; 38: other
    weights), measured by the CKA stage at every length."""
    out = tmp_path_factory.mktemp("lengths")
    ctx = StudyContext(CONFIG, out)
    final, snapshots = {}, {length: {} for length in LENGTHS[:-1]}
    for i, d in enumerate(CONFIG.datasets):
        for s in CONFIG.seeds:
            run = out / "zoo" / d / f"s{s}"
            model = make_model(1, 32, seed=10 * i + s)
            final[f"{d}/s{s}"] = _save(model, run / "checkpoint.pt")
            snapshots[75][f"{d}/s{s}"] = _save(model, snapshot_path(run, 75))
            other = make_model(1, 32, seed=100 + 10 * i + s)
            snapshots[38][f"{d}/s{s}"] = _save(other, snapshot_path(run, 38))
    mp = pytest.MonkeyPatch()
    mp.setattr(zoo_stage, "zoo_snapshots", lambda c: {**snapshots, 150: final}, raising=False)
    stage = CKAStage(ctx, _EvalSets(), final)
    messages: list[str] = []
    manifest = storage.Manifest(out)
    run_stage(stage, manifest=manifest, workers=1, progress=False, log=messages.append)
    run_stage(stage, manifest=manifest, workers=1, progress=False, log=messages.append)
    jobs = stage.plan()
    mp.undo()
    return ctx, jobs, messages


def test_the_cka_stage_plans_every_length_final_first(measured_lengths):
    ctx, jobs, _ = measured_lengths
    names = [Path(job.out).name for job in jobs]
    assert names == [
        "digits.npz",
        "mnist.npz",
        "digits_step38.npz",
        "mnist_step38.npz",
        "digits_step75.npz",
        "mnist_step75.npz",
    ]
    assert [job.controls for job in jobs] == [True, True, False, False, False, False]
    assert all(job.matched_floor for job in jobs)
    assert cka_path(ctx, "mnist", 150) == cka_path(ctx, "mnist")
    with pytest.raises(ValueError, match="not one of training_lengths"):
        cka_path(ctx, "mnist", 100)


def test_the_stage_resumes_every_length(measured_lengths):
    _, _, messages = measured_lengths
    assert "(6 of 6 to compute)" in messages[0]
    assert "(0 of 6 to compute)" in messages[1]
    assert "training lengths 38, 75, 150" in messages[0]


def test_snapshots_use_the_same_sets_halves_and_untrained_models(measured_lengths):
    """The 75-step snapshot holds the final weights: every measured array is the same."""
    ctx, _, _ = measured_lengths
    final, same, other = (load_cka(ctx, "digits", n) for n in (None, 75, 38))
    for key in ("debiased_full", "debiased_halves", "debiased_matched_floor_halves"):
        assert np.allclose(final[key], same[key], equal_nan=True)
        assert not np.allclose(final[key], other[key], equal_nan=True)
    assert same["meta"]["models"] == final["meta"]["models"]
    # the controls are left out at the earlier lengths
    assert np.isnan(same["own_init"]).all() and same["heatmap"].size == 0
    assert np.isfinite(final["own_init"][0]).any() and final["heatmap"].size > 0


def test_length_evals_load_every_length_in_the_eval_format(measured_lengths):
    ctx, _, _ = measured_lengths
    evals = length_evals(SimpleNamespace(config=CONFIG, context=ctx))
    assert sorted(evals) == list(LENGTHS)
    for length, per in evals.items():
        assert [e["meta"]["dataset"] for e in per] == list(CONFIG.datasets)
        assert all(e["meta"]["training_length"] == length for e in per)
        assert all(isinstance(u, tuple) for u in per[0]["meta"]["units"])
