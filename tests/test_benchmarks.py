"""The benchmark suite's machinery on tiny sizes, so that it cannot rot (no timing is checked)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

from benchmarks.floors import sum_floors
from benchmarks.report import before_after, side_by_side
from benchmarks.run import CASES, Config, check_device, main, run_suite

REPO = Path(__file__).resolve().parent.parent


def test_tiny_suite_writes_table_json_and_plot(tmp_path, capsys):
    record = run_suite(Config.tiny(), out=tmp_path, threads=1)
    out = capsys.readouterr().out
    assert "machine:" in out and "linear_cka vs the GEMM floor" in out
    data = json.loads((tmp_path / record["json"].split("/")[-1]).read_text())
    assert data["meta"]["cases"] == list(CASES)
    cases = {row["case"] for row in data["rows"]}
    assert cases == {
        "linear",
        "accuracy",
        "rbf",
        "streaming",
        "memory",
        "compare_models",
        "procrustes",
    }
    procrustes = [r for r in data["rows"] if r["case"] == "procrustes"]
    assert {r["contender"] for r in procrustes} >= {"GEMM + SVD floor (numpy)", "cka_sim numpy"}
    assert all(r["error"] < 1e-6 for r in procrustes if r["error"] is not None)
    ours = [r for r in data["rows"] if r["case"] == "linear" and r["contender"] == "cka_sim"]
    assert ours and all(r["seconds"] > 0 and r["ratio"] > 0 for r in ours)
    accuracy = [r for r in data["rows"] if r["case"] == "accuracy" and r["contender"] == "cka_sim"]
    assert [r["params"]["feature mean"] for r in accuracy] == [0.0, 10.0, 100.0]
    assert all(r["error"] < 1e-6 for r in accuracy)
    assert (tmp_path / record["json"].split("/")[-1].replace(".json", ".md")).read_text()
    assert "| ratio before |" in before_after(data, data)
    assert record["png"] is not None and (tmp_path / record["png"].split("/")[-1]).stat().st_size
    _check_floors(record)


def _check_floors(record):
    """Every cka_sim row has a ratio to its library's floor and to the machine's fastest."""
    rows = record["rows"]
    for case in ("linear", "streaming"):
        floors = {
            r["contender"]: r["seconds"]
            for r in rows
            if r["case"] == case and "floor" in r["contender"]
        }
        assert {"GEMM floor (torch)", "GEMM floor (numpy)", "fastest floor"} <= set(floors)
        assert floors["fastest floor"] <= min(
            floors["GEMM floor (torch)"], floors["GEMM floor (numpy)"]
        )
    timed = [
        r
        for r in rows
        if r["case"] in ("linear", "streaming", "compare_models")
        and r["seconds"] is not None
        and "floor" not in r["contender"]
    ]
    ours = [r for r in timed if r["contender"].startswith(("cka_sim", "StreamingCKA"))]
    assert ours and all(r["ratio_of"] == "/floor" and r["ratio2_of"] == "/fastest" for r in ours)
    assert all(r["ratio2"] > 0 for r in ours)
    compare = {r["contender"]: r for r in rows if r["case"] == "compare_models"}
    forward = compare["forward only"]["seconds"]
    gemm = compare["forward + Gram products"]["seconds"]
    assert compare["forward + half-flop Grams"]["seconds"] == pytest.approx((forward + gemm) / 2)
    symmetric = ("forward + symmetric Grams", "forward + half-flop Grams")
    assert min(compare[name]["ratio2"] for name in symmetric) == pytest.approx(1.0)


def test_missing_peer_is_a_skipped_row_with_a_message(tmp_path, monkeypatch):
    from benchmarks import peers as peer_lib

    real = peer_lib.find_peer
    monkeypatch.setattr(
        peer_lib,
        "find_peer",
        lambda name, module: real(
            name, "no_such_module_for_the_test" if name == "ckatorch" else module
        ),
    )
    monkeypatch.setattr("benchmarks.run.peers", peer_lib.peers)
    record = run_suite(
        Config.tiny(), out=tmp_path, selected=("rbf",), threads=1, log=lambda s: None
    )
    skipped = [r for r in record["rows"] if r["contender"] == "ckatorch"]
    assert skipped and skipped[0]["seconds"] is None
    assert "not importable" in skipped[0]["note"] and "requirements.txt" in skipped[0]["note"]


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="sees no CUDA device"):
        check_device("cuda")
    with pytest.raises(SystemExit, match="sees no CUDA device"):
        main(["--device", "cuda", "--quick"])


def test_fastest_floor_takes_each_product_from_the_faster_library():
    times = {
        ("torch", "xx"): 3.0,
        ("torch", "yy"): 1.0,
        ("torch", "yx"): 2.0,
        ("numpy", "xx"): 1.0,
        ("numpy", "yy"): 2.0,
        ("numpy", "yx"): 4.0,
    }
    assert sum_floors(times) == {"torch": 6.0, "numpy": 7.0, "fastest": 4.0}


def test_baseline_is_timed_beside_the_current_package(tmp_path):
    record = run_suite(
        Config.tiny(),
        out=tmp_path,
        selected=("linear", "accuracy"),
        threads=1,
        log=lambda s: None,
        baseline_spec=str(REPO),
        clock="cpu",
    )
    assert record["meta"]["clock"] == "cpu"
    label = f"cka_sim@{REPO.name}"
    pairs = side_by_side(record["rows"], label)
    assert "| linear | n=64, p=8 | cka_sim debiased |" in pairs
    assert "| accuracy | n=32, p=4, feature mean=100.0 | cka_sim numpy |" in pairs
    names = {r["contender"] for r in record["rows"]}
    assert {label, f"{label} debiased", f"{label} numpy debiased"} <= names
    assert label in record["meta"]["baseline"]
    accuracy = {
        (r["params"]["feature mean"], r["contender"]): r["value"]
        for r in record["rows"]
        if r["case"] == "accuracy"
    }
    for mean in (0.0, 10.0, 100.0):  # the same code, imported twice, gives the same value
        assert accuracy[(mean, label)] == accuracy[(mean, "cka_sim")]


def test_gpu_check_stops_with_a_message_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    env = {**os.environ, "GPU_CHECK_DEVICE": "cuda"}
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "no CUDA device visible to torch" in (tmp_path / "status.txt").read_text()
    assert "torch" in (tmp_path / "env.txt").read_text()


def test_a_failing_case_is_reported_and_the_others_still_written(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("benchmarks.cases.accuracy", broken)
    record = run_suite(
        Config.tiny(), out=tmp_path, selected=("accuracy", "linear"), log=lambda s: None
    )
    assert record["meta"]["failed"] == {"accuracy": "RuntimeError: boom"}
    assert any(r["case"] == "linear" and r["seconds"] for r in record["rows"])
    assert json.loads((tmp_path / record["json"].split("/")[-1]).read_text())["meta"]["failed"]


def test_compare_rounds_rotate_the_order_and_keep_every_time():
    from benchmarks.case_compare import _interleaved, median_ratio

    calls = []

    class Ctx:
        device = "cpu"
        clock = staticmethod(iter(range(100)).__next__)  # each call takes exactly 1 "second"

        @staticmethod
        def log(message):
            pass

        @staticmethod
        def sync():
            pass

    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "c")}
    times, _, _ = _interleaved(Ctx(), fns, rounds=3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert times == {"a": [1, 1, 1], "b": [1, 1, 1], "c": [1, 1, 1]}
    # round by round: 4/4, 2/1, 6/5 -> median 1.2; the ratio of the best rounds would be 2
    assert median_ratio([4.0, 2.0, 6.0], [4.0, 1.0, 5.0]) == pytest.approx(1.2)


def test_compare_rounds_option(monkeypatch):
    from benchmarks import run

    seen = {}
    monkeypatch.setattr(
        run,
        "run_suite",
        lambda config, **kw: seen.update(rounds=config.compare_rounds) or {"meta": {"failed": []}},
    )
    main(["--preset", "tiny", "--case", "compare_models", "--compare-rounds", "5"])
    assert seen["rounds"] == 5
    with pytest.raises(SystemExit):
        run.parse_args(["--compare-rounds", "0"])
