"""The study's report, its quick-study caveat, the packaged full-run verdicts, the progress
lines in a log that is not a terminal, and the CKA figures' floor panel and single-pair marks.

The report is rendered from synthetic ``results.json`` dicts: one with every rules-version-4
key (training length, both weightings, both sample-mode floors, the graded test, the paper's
recipe, claim 4's spreads) and one without them (older results)."""

from __future__ import annotations

import copy
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from vae_zoo.study import full_run, report, run
from vae_zoo.study.config import StudyConfig, quick_config
from vae_zoo.study.criteria import RULES_VERSION
from vae_zoo.study.report_claims import fmt, measurement, pvalue_text
from vae_zoo.study.stages import runner

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "docs" / "study" / "results.json"


def _iv(estimate: float, low: float | None = None, high: float | None = None) -> dict:
    low = estimate - 0.05 if low is None else low
    high = estimate + 0.05 if high is None else high
    return {"estimate": estimate, "low": low, "high": high}


def _config(kind: str) -> dict:
    config = quick_config() if kind == "quick" else StudyConfig()
    return json.loads(json.dumps(config.to_dict()))  # as results.json holds it: lists


def _cka_evidence(side: str, g: float, margin: float, means: tuple[float, float, float]) -> dict:
    return {
        "G": _iv(g),
        "margin": margin,
        "means": {k: _iv(v, v - 0.01, v + 0.01) for k, v in zip(("cross", "same", "random"), means, strict=True)},
        "n_pairs_per_evaluation_set": {"cross": 90, "same": 15, "random": 120},
        "n_models": {"trained": 15, "untrained": 8},
        "evaluation_datasets": ["dsprites", "mnist", "fashion_mnist", "animals", "digits"],
        "encoder_layers": ["encoder.conv1", "encoder.dense"],
        "decoder_layers": ["decoder.dense1", "decoder.deconv3"],
        "G_mean_of_layers": _iv(0.5511),
        "layer_weights": [
            {"layer": f"{side}.a", "span": 0.004, "weight": 0.1, "G": _iv(1.06, -0.5, 3.5),
             "margin": 2.0, "resolved": False},
            {"layer": f"{side}.b", "span": 0.3, "weight": 0.9, "G": _iv(0.3), "margin": 0.2,
             "resolved": True},
        ],
    }  # fmt: skip


def _claims() -> list[dict]:
    dec = _cka_evidence("decoder", 0.2, 0.37, (0.418, 0.878, 0.300))
    dec["encoder_G_minus_decoder_G"] = _iv(0.09, 0.01, 0.17)
    pairs = {
        "mnist->digits": {"predicted_depth": 2, "best_depth": 0, "second_best_depth": 1,
                          "gap": 0.004, "in_tie_band": True,
                          "profile": {"G": [0.75, 0.85, 0.35], "unresolved": ["encoder.conv1"]}},
        "digits->mnist": {"predicted_depth": 1, "best_depth": 3, "second_best_depth": 2,
                          "gap": 0.05, "in_tie_band": False,
                          "profile": {"G": [0.9, 0.4, 0.2], "unresolved": []}},
    }  # fmt: skip
    long_curves = {
        "gain_over_scratch": {"all": {"600": 0.18, "2400": 0.07}},
        "per_pair": {
            "mnist->digits": {"all": {"600": 0.17, "2400": -0.005}},
            "fashion_mnist->mnist": {"all": {"600": 0.19, "2400": 0.14}},
        },
        "steps": 2400,
        "single_runs": True,
    }
    return [
        {"id": "encoders-generic", "holds": False, "criterion": "holds if ...",
         "evidence": _cka_evidence("encoder", 0.297, 0.214, (0.880, 0.978, 0.838))},
        {"id": "decoders-specific", "holds": True, "criterion": "holds if ...", "evidence": dec},
        {"id": "retrain-which", "holds": None, "criterion": "holds if ...",
         "evidence": {"rho": 0.21, "pvalue": 0.12, "n_pairs": 2, "pairs": pairs,
                      "permutation": {"pvalue": 0.12, "exact": True, "combinations": 4,
                                      "standard_error": 0.0, "draws": 0},
                      "power": {"power": 0.42, "standard_error": 0.025, "simulations": 400,
                                "alternative": "a stated alternative"},
                      "tie_band": {"band": 0.02, "pooled_sd": 0.01, "dof": 12, "tie_sds": 2.0,
                                   "group_sizes": {"scratch/mnist": 5},
                                   "pairs_inside": ["mnist->digits"]},
                      "group_sizes": {"digits": 1, "mnist": 1}, "graded_budget": 600,
                      "scratch_models_per_target": {"digits": 5, "mnist": 5},
                      "long_curves": long_curves}},
        {"id": "paper-recipe", "holds": False, "criterion": "holds if ...",
         "evidence": {"gain": _iv(-0.31, -0.40, -0.22), "n_pairs": 2, "budget": 600,
                      "per_pair_gain": {"mnist->digits": -0.36, "digits->mnist": -0.26},
                      "scratch_models_per_target": {"digits": 5, "mnist": 5},
                      "resamples": 2000, "gain_definition": "(m − loss) / m"}},
        {"id": "visual-transfer-check", "holds": None, "criterion": "holds if ...",
         "evidence": {"rho_within_targets": 0.44, "pvalue": 0.0612, "pvalue_exact": True,
                      "combinations": 24**5, "n_points": 20, "n_source_seeds": 3,
                      "source_seeds": [0, 1, 2],
                      "n_sources_per_target": {t: 4 for t in "abcde"},
                      "per_target_rho": {t: 0.4 for t in "abcde"},
                      "target_spread": {t: {"n_scratch": 5, "scratch_sd": 0.0123,
                                            "gain_sd_between_sources": 0.02,
                                            "between_over_noise": 2.8} for t in "abcde"},
                      "secondary": {"label_score_vs_probe_gain": {"rho": 0.437, "pvalue": 0.07,
                                                                  "exact": True},
                                    "score_vs_loss_gain": {"rho": 0.679, "pvalue": 0.003,
                                                           "exact": True}},
                      "pooled_rho_post_hoc": -0.2}},
    ]  # fmt: skip


def _secondary() -> dict:
    def reading(holds: bool, g: float, floor: float) -> dict:
        ev = {"G": _iv(g), "margin": 0.44, "means": {"random": _iv(floor, floor, floor)}}
        return {"decoders-specific": {"holds": holds, "evidence": ev}}

    return {
        "biased/sample": reading(False, 0.48, 0.017),
        "biased/sample-matched-floor": reading(True, 0.21, 0.25),
    }


def _training_length() -> dict:
    moves = [
        "decoders-specific (debiased/mean): moves with training: does not hold at 750, holds at "
        "1500, holds at 3000 steps",
        "encoders-generic (debiased/mean): does not hold at every length (750, 1500, 3000 steps)",
    ]
    per_length = {
        str(n): {"encoder_G": _iv(0.3), "decoder_G": _iv(0.2), "verdicts": {"encoders-generic": False}}
        for n in (750, 1500, 3000)
    }  # fmt: skip
    return {
        "lengths": [750, 1500, 3000],
        "test_loss": {
            "mean_test_loss": {"750": {"mnist": 180.0}, "1500": {"mnist": 170.0},
                               "3000": {"mnist": 166.6}},
            "per_doubling": {"750->1500": {"mnist": {"relative_change": -0.055}},
                             "1500->3000": {"mnist": {"relative_change": -0.02}}},
            "definition": "mean over seeds",
        },
        "readings": {"debiased/mean": {"per_length": per_length,
                                       "verdict_moves": dict(enumerate(moves))}},
        "summary": moves,
    }  # fmt: skip


def synthetic_results(kind: str = "full", *, new_keys: bool = True) -> dict:
    """A results.json of rules version 4 (``new_keys``) or one without the version-4 keys."""
    depth = [
        {"depth": 1, "encoder_layer": "encoder.dense", "decoder_layer": "decoder.dense1",
         "difference": _iv(-0.28, -0.34, -0.22)},
        {"depth": 2, "encoder_layer": "encoder.conv2", "decoder_layer": "decoder.deconv2",
         "difference": _iv(0.65, 0.49, 0.79)},
    ]  # fmt: skip
    results = {
        "config": _config(kind),
        "rules_version": RULES_VERSION,
        "claims": _claims(),
        "secondary": _secondary(),
        "tables": {"depth_matched": depth},
        "evaluation_sets": {"mnist": {"n": 500}},
        "figures": ["figures/cka_heatmaps.png", "figures/new_figure.png"],
        "training_length": _training_length(),
        "provenance": {"git_commit": "abc", "finished": "2026-12-08T10:00:00Z"},
        "timings": {},
    }
    if not new_keys:
        del results["training_length"]
        del results["secondary"]["biased/sample-matched-floor"]
        for claim in results["claims"]:
            ev = claim["evidence"]
            for key in (
                "layer_weights",
                "G_mean_of_layers",
                "pairs",
                "tie_band",
                "power",
                "long_curves",
                "target_spread",
                "n_source_seeds",
                "permutation",
            ):
                ev.pop(key, None)  # fmt: skip
        results["claims"] = [c for c in results["claims"] if c["id"] != "paper-recipe"]
    return results


def _summary(text: str) -> str:
    return text.split("## Summary", 1)[1].split("\n## ", 1)[0]


FULL_RUN = {
    "rules_version": "3",
    "git_commit": "0dfabc59c3eca0afa56cd7bd464ad9b68a7eb464",
    "date": "2026-11-30",
    "claims": [
        {
            "id": "encoders-generic",
            "holds": False,
            "verdict": "does not hold",
            "evidence": "G 0.30",
        },
        {"id": "decoders-specific", "holds": True, "verdict": "holds", "evidence": "G 0.20"},
        {"id": "retrain-which", "holds": None, "verdict": "inconclusive", "evidence": "1 of 2"},
    ],
}


@pytest.fixture
def packaged(monkeypatch):
    """The packaged full run, replaced by :data:`FULL_RUN` (a copy the test may change)."""
    data = copy.deepcopy(FULL_RUN)
    monkeypatch.setattr(full_run, "load_full_run", lambda: data)
    return data


# -- the report -------------------------------------------------------------------------------


def test_summary_states_each_qualifier_from_the_results(packaged):
    text = report.render(synthetic_results("full"))
    summary = _summary(text)
    # verdict lines, the paper-recipe among them, and where the results differ from the paper
    assert "- `paper-recipe` does not hold: mean relative gain" in summary
    assert re.search(r"does not hold for `encoders-generic`, `paper-recipe`", summary)
    # undertraining and the training-length check
    assert "3,000 steps, 1 % of the paper's 300,000" in summary
    assert "1500 and 3000 steps" in summary and "mnist -2.0 %" in summary
    assert "still falling" in summary
    assert "1 of 2 verdicts moved with training" in summary and "holds at 1500" in summary
    # claim 1: equivalence to the seed level against the raw CKA, both weightings, group sizes
    assert (
        "equivalence to the seed level" in summary and "raw cross-dataset CKA is 0.880" in summary
    )
    assert "0.838 with an untrained one" in summary and "0.551 [" in summary
    assert (
        "15 trained and 8 untrained models" in summary and "90 cross, 15 same, 120 floor" in summary
    )
    # claim 2 under both floors, and why the plain floor flips it
    assert "plain floor (floor 0.017)" in summary and "matched-input floor (floor 0.250)" in summary
    assert "flips the verdict" in summary and "degenerate" in summary
    # per-depth differences with the sign reversal
    assert "-0.28 [-0.34, -0.22] at depth 1" in summary and "The sign turns" in summary
    # claim 3: the tie band, the power, and `all` only on the mean
    assert "1 of 2 pairs have their best and second-best" in summary and "42 %" in summary
    assert "beat scratch on the mean over pairs at every budget, but not in every pair" in summary
    assert "mnist → digits at 2400 steps (-0.005)" in summary and "1 of 4 (pair, budget)" in summary
    # secondary readings stay out of the summary, but are in the report
    assert "0.437" not in summary and "0.679" not in summary
    assert "ρ = 0.437" in text and "ρ = 0.679" in text
    assert "Toy-size" not in text  # the full study gets no caveat


def test_the_degenerate_floor_is_named_only_where_it_is_the_lower_one(packaged):
    results = synthetic_results("full")
    matched = results["secondary"]["biased/sample-matched-floor"]["decoders-specific"]
    matched["evidence"]["means"]["random"] = _iv(0.001, 0.0, 0.002)  # below the plain floor
    summary = _summary(report.render(results))
    assert "The two floors give different verdicts." in summary and "degenerate" not in summary
    matched["holds"] = False
    assert "Both floors give the same verdict." in _summary(report.render(results))


def test_claim_sections_render_the_new_evidence(packaged):
    text = report.render(synthetic_results("full"))
    assert "| `encoder.a` | 0.0040 | 10 % | 1.060 [-0.500, 3.500] | 2.00 | no |" in text
    assert (
        "| mnist → digits | 0.75, 0.85, 0.35 | `encoder.conv1` | 2 | 0 | 1 | 0.0040 | yes |" in text
    )
    assert "exact, 4 combinations" in text and "Power of the test: it holds in 42 %" in text
    assert "| biased/sample-matched-floor | 0.210 [" in text
    assert "lost to scratch in 2 of 2 pairs" in text
    assert "| a | 4 | 0.400 | 5 | 0.0123 | 0.0200 | 2.80 |" in text
    assert "(exact, 7,962,624 combinations)" in text
    assert "## Training length" in text and "| 3000 | 166.6 |" in text
    # a figure without a claim section is still shown, once; a figure not made is not linked
    assert text.count("figures/new_figure.png") == 1 and "## Other figures" in text
    assert "figures/cka_layer_curves.png" not in text


def test_report_of_older_results_without_the_new_keys(packaged):
    text = report.render(synthetic_results("full", new_keys=False))
    summary = _summary(text)
    assert "The training-length check is not in these results" in summary
    assert "the matched-input floor is not in these results" in summary
    assert "## Training length" not in text and "Power of the test" not in text
    assert "`paper-recipe`" not in text


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed full run in this checkout")
def test_report_renders_the_committed_full_run():
    results = json.loads(COMMITTED.read_text())
    text = report.render(results)
    for claim in results["claims"]:
        assert f"## `{claim['id']}`" in text


def test_measurement_lines_and_number_formats():
    claims = {c["id"]: c for c in _claims()}
    assert measurement(claims["encoders-generic"]).startswith("encoder G = 0.297 [0.247, 0.347]")
    assert "ρ = 0.21" in measurement(claims["retrain-which"])
    assert "(exact, 4 combinations)" in measurement(claims["retrain-which"])
    v3 = {"id": "retrain-which", "evidence": {"hits": {"a": True, "b": False}, "n_pairs": 2}}
    assert measurement(v3).endswith("in 1 of 2 sweep pairs")
    assert measurement({"id": "unknown", "evidence": {}}) == "see `results.json`"
    assert pvalue_text({"pvalue": 0.05, "exact": False, "standard_error": 0.001, "draws": 99})
    assert "Monte Carlo, 99 draws, standard error 0.0010" in pvalue_text(
        {"pvalue": 0.05, "exact": False, "standard_error": 0.001, "draws": 99}
    )
    undefined = {"pvalue": float("nan"), "exact": False, "standard_error": float("nan")}
    assert pvalue_text(undefined) == "one-sided permutation p = undefined"
    assert fmt(-0.0001) == "0.000" and fmt(-0.01) == "-0.010"
    assert fmt(float("nan")) == "undefined" and fmt(None) == "not recorded"


# -- the quick study's caveat -----------------------------------------------------------------


def test_quick_report_opens_with_the_caveat_and_the_full_runs_verdicts(packaged):
    text = report.render(synthetic_results("quick"))
    top = text.split("## Summary", 1)[0]
    assert "**Toy-size run.**" in top and "test that the pipeline runs end to end" in top
    assert "| `encoders-generic` | does not hold | does not hold | G 0.30 |" in top
    assert "| `paper-recipe` | does not hold | - | - |" in top  # no such claim in version 3
    assert "this code applies rules version 4" in top


def test_caveat_names_other_settings_and_the_rules_version(packaged):
    config = _config("full")
    assert full_run.run_kind(config) == ("full", [])
    assert full_run.caveat_lines(config, packaged) == []
    config["train_steps"] = 10
    config["training_lengths"] = [10]
    kind, differs = full_run.run_kind(config)
    assert kind == "other" and differs == ["train_steps", "training_lengths"]
    lines = full_run.caveat_lines(config, packaged)
    assert "differ from the full study's (in train_steps, training_lengths)" in lines[0]
    packaged["rules_version"] = RULES_VERSION
    assert "this code applies" not in " ".join(full_run.caveat_lines(config, packaged))
    assert "not installed" in full_run.caveat_lines(config, None)[-1]


def test_terminal_caveat_at_the_start_and_beside_the_final_verdicts(packaged):
    start = report.start_lines(_config("quick"))
    assert start[0].startswith("note: This is the toy-size study (--quick)")
    assert "will be shown beside this run's at the end" in start[-1]
    assert report.start_lines(_config("full")) == []
    lines = report.final_verdict_lines(synthetic_results("quick"))
    row = next(line for line in lines if "decoders-specific" in line)
    assert re.search(r"decoders-specific\s+holds\s+holds: G 0.20", row)
    assert any(line.startswith("  note: This is the toy-size study") for line in lines)
    plain = report.final_verdict_lines(synthetic_results("full"))
    assert plain[0] == "  encoders-generic: does not hold" and len(plain) == 5


def test_run_study_prints_the_caveat_and_writes_it_in_the_report(
    tmp_path, monkeypatch, capsys, packaged
):
    """The wiring in run._run_locked, with the stages and the analysis stood in for."""
    results = synthetic_results("quick")

    class FakeStudy:
        def __init__(self, config, out_dir, progress=True):
            self.out = Path(out_dir)
            self.config = config

        def log(self, message):
            print(message)

        def train_zoo(self):
            return {}

        def models(self, checkpoints):
            return {}

        def measure_cka(self, checkpoints):
            print("[2/5] cka")

        def run_transfers(self, checkpoints):
            pass

        def run_probes(self, models):
            return {}

    monkeypatch.setattr(run, "Study", FakeStudy)
    monkeypatch.setattr(run, "analyse", lambda study, models, probes: copy.deepcopy(results))
    run.run_study(quick_config(), tmp_path, progress=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("note: This is the toy-size study")
    assert out.index("[2/5] cka") > 0
    assert any(re.search(r"retrain-which\s+inconclusive\s+inconclusive: 1 of 2", x) for x in out)
    assert "**Toy-size run.**" in (tmp_path / "report.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", saved["provenance"]["finished"])


# -- the packaged full run ---------------------------------------------------------------------


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed full run in this checkout")
def test_packaged_full_run_matches_the_committed_results():
    packaged = full_run.load_full_run()
    assert packaged is not None, "vae_zoo/study/full_run.json is not installed with the package"
    committed = json.loads(COMMITTED.read_text())
    expected = full_run.summarise(committed, COMMITTED)
    hint = "regenerate it: python -m vae_zoo.study.full_run docs/study/results.json"
    assert packaged["rules_version"] == expected["rules_version"], hint
    assert packaged["git_commit"] == expected["git_commit"], hint
    assert [(c["id"], c["holds"]) for c in packaged["claims"]] == [
        (c["id"], c["holds"]) for c in committed["claims"]
    ], hint
    assert packaged["claims"] == expected["claims"], hint


def test_full_run_cli_writes_the_summary(tmp_path, capsys):
    source = tmp_path / "results.json"
    results = synthetic_results("full")
    source.write_text(json.dumps(results))
    out = tmp_path / "full_run.json"
    assert full_run.main([str(source), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["rules_version"] == RULES_VERSION and written["date"] == "2026-12-08"
    assert [c["verdict"] for c in written["claims"]] == [
        "does not hold", "holds", "inconclusive", "does not hold", "inconclusive",
    ]  # fmt: skip
    assert written["claims"][0]["evidence"] == measurement(results["claims"][0])
    assert full_run.main([str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err


# -- progress in a log that is not a terminal --------------------------------------------------


class _Manifest:
    def __init__(self) -> None:
        self.recorded: list[Path] = []

    def verified(self, path: Path) -> bool:
        return False

    def record(self, path: Path) -> None:
        self.recorded.append(path)


class _Job:
    def __init__(self, name: str) -> None:
        self.out_dir = f"/study/transfer/sweep/{name}"


def _square(job: _Job) -> str:
    return job.out_dir


class _Stage(runner.Stage):
    name = "transfer"

    def __init__(self, jobs):
        self.jobs = jobs

    def plan(self):
        return self.jobs

    def is_done(self, job, verified):
        return False

    def announce(self, jobs, todo):
        return f"[3/5] transfer: {len(jobs)} runs ({len(todo)} to run)"

    def worker(self):
        return _square


def _run(stage, *, terminal, workers=1):
    lines: list[str] = []
    manifest = _Manifest()
    runner.run_stage(
        stage, manifest=manifest, workers=workers, progress=True, log=lines.append,
        terminal=terminal,
    )  # fmt: skip
    return lines, manifest


def test_a_log_gets_one_plain_line_per_finished_job(monkeypatch, capsys):
    monkeypatch.setattr(runner, "LINE_INTERVAL", 0.0)
    jobs = [_Job("mnist-to-digits/freeze2"), _Job("mnist-to-digits/paper")]
    lines, manifest = _run(_Stage(jobs), terminal=False)
    assert lines[0] == "[3/5] transfer: 2 runs (2 to run)"
    assert re.fullmatch(
        r"\[3/5\] transfer 1/2 done \(mnist-to-digits/freeze2, \d+\.\d s\)", lines[1]
    )
    assert lines[2].startswith("[3/5] transfer 2/2 done (mnist-to-digits/paper, ")
    assert len(lines) == 3 and len(manifest.recorded) == 2
    assert "\r" not in capsys.readouterr().err  # no bar


def test_quick_jobs_are_summarised_by_their_latest_line(monkeypatch):
    monkeypatch.setattr(runner, "LINE_INTERVAL", 3600.0)
    lines, _ = _run(_Stage([_Job(f"j{i}") for i in range(5)]), terminal=False)
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "[3/5] transfer 1/5 done", "[3/5] transfer 5/5 done",
    ]  # fmt: skip


def test_a_terminal_gets_the_bar_and_no_lines(capsys):
    lines, _ = _run(_Stage([_Job("a"), _Job("b")]), terminal=True)
    assert lines == ["[3/5] transfer: 2 runs (2 to run)"]
    assert "transfer: 100%" in capsys.readouterr().err


def test_the_mode_follows_whether_stderr_is_a_terminal(monkeypatch):
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(runner, "LINE_INTERVAL", 0.0)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not runner.is_terminal()
    lines, _ = _run(_Stage([_Job("a")]), terminal=None)
    assert len(lines) == 2 and "1/1 done (sweep/a" in lines[1]
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert runner.is_terminal()
    lines, _ = _run(_Stage([_Job("a")]), terminal=None)
    assert len(lines) == 1


def test_pool_jobs_report_their_own_names(monkeypatch):
    monkeypatch.setattr(runner, "LINE_INTERVAL", 0.0)

    class Builtin(_Stage):
        def plan(self):
            return [("mnist", "random/r0"), ("digits", "check/all/mnist")]

        def worker(self):
            return str  # picklable for the spawned workers

        def collect(self, result):
            return []

    lines, _ = _run(Builtin([]), terminal=False, workers=2)
    names = sorted(re.search(r"done \((.*), ", line).group(1) for line in lines[1:])
    assert names == ["digits check/all/mnist", "mnist random/r0"]


def test_describe_and_seconds():
    stage = _Stage([])
    assert stage.describe(_Job("mnist-to-digits/freeze2")) == "mnist-to-digits/freeze2"

    class CKAJob:
        out = "/study/cka/mnist.npz"

    assert stage.describe(CKAJob()) == "cka/mnist"
    assert stage.describe(("mnist", "random/r1")) == "mnist random/r1"
    assert runner._seconds(0.42) == "0.4 s" and runner._seconds(41.2) == "41 s"
    assert runner._seconds(725) == "12 min 5 s"


def test_the_cli_line_buffers_a_log(monkeypatch):
    from vae_zoo.study.__main__ import _line_buffered_log

    log = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", log)
    _line_buffered_log()
    assert log.line_buffering


# -- the CKA figures ---------------------------------------------------------------------------


def _eval_with_heatmap(with_random: bool) -> dict:
    models = ["mnist/s0", "mnist/s1", "digits/s0", "digits/s1"]
    if with_random:
        models += ["random/r0"]
    k, v = len(models), 2
    heat = np.arange(k * v * k * v, dtype=float).reshape(k, v, k, v) / 1000
    heat[0, 0, 1, 0] = np.nan  # one undefined cell of one same-dataset pair
    return {
        "meta": {"heatmap_models": models, "heatmap_units": [["encoder.conv1", "mean"],
                                                            ["decoder.dense1", "mean"]]},
        "heatmap": heat,
    }  # fmt: skip


def test_heatmap_groups_add_the_floor_and_skip_undefined_cells():
    data = _eval_with_heatmap(with_random=True)
    means, names = run.heatmap_groups([data])
    assert names == ["encoder.conv1", "decoder.dense1"]
    assert {g: n for g, (_, n) in means.items()} == {"same": 2, "cross": 4, "random": 4}
    heat = data["heatmap"]
    floor = np.mean([heat[a, :, 4, :] for a in range(4)], axis=0)
    np.testing.assert_allclose(means["random"][0], floor)
    # the undefined cell is left out of its mean, not counted as 0
    assert means["same"][0][0, 0] == pytest.approx(heat[2, 0, 3, 0])
    without, _ = run.heatmap_groups([_eval_with_heatmap(with_random=False)])
    assert "random" not in without


def test_heatmap_figure_has_three_panels_on_one_scale(tmp_path, monkeypatch):
    from vae_zoo.study import figures

    kept = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.setdefault("fig", fig) and path)
    run._heatmaps([_eval_with_heatmap(with_random=True)], tmp_path)
    fig = kept["fig"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [
        "same dataset, other seed (ceiling) (2 pairs)",
        "different datasets (4 pairs)",
        "trained (rows) vs untrained (columns): the floor (4 pairs)",
    ]
    limits = {ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert len(limits) == 1


def _stats(n_same: int):
    from vae_zoo.study.analysis import GroupStats

    units = [("encoder.conv1", "mean"), ("encoder.conv2", "mean"), ("decoder.dense1", "mean")]
    rng = np.random.default_rng(0)
    point = {"cross": np.array([0.9, 0.8, 0.4]), "same": np.array([1.0, 0.95, 0.9]),
             "random": np.array([0.85, 0.7, 0.3])}  # fmt: skip
    reps = {g: p + 0.01 * rng.normal(size=(50, 3)) for g, p in point.items()}
    return GroupStats(units, point, reps, {"cross": 4, "same": n_same, "random": 8})


@pytest.mark.parametrize("n_same", [1, 3])
def test_curves_mark_a_group_that_rests_on_a_single_pair(tmp_path, monkeypatch, n_same):
    from vae_zoo.study import figures

    kept = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.append(fig) or path)
    figures.layer_curves([("debiased", _stats(n_same), "mean")], 0.95, tmp_path / "a.png")
    figures.g_curves([("debiased", _stats(n_same), "mean")], 0.95, tmp_path / "b.png")
    legend = [t.get_text() for t in kept[0].legends[0].get_texts()]
    same = next(t for t in legend if t.startswith("same dataset"))
    g_label = kept[1].axes[0].get_legend().get_texts()[0].get_text()
    if n_same == 1:
        assert "a single pair per evaluation set (markers, no band)" in same
        assert "a single pair: markers, no band" in g_label
        assert len(kept[0].axes[0].collections) == 2  # bands of cross and random only
    else:
        assert same.endswith(": 3 pairs per evaluation set") and "single" not in g_label
        assert len(kept[0].axes[0].collections) == 3
