"""The benchmark suite's machinery on tiny sizes, so that it cannot rot (no timing is checked)."""

import json

import pytest

pytest.importorskip("torch")

from benchmarks.report import before_after
from benchmarks.run import CASES, Config, check_device, main, run_suite


def test_tiny_suite_writes_table_json_and_plot(tmp_path, capsys):
    record = run_suite(Config.tiny(), out=tmp_path, threads=1)
    out = capsys.readouterr().out
    assert "machine:" in out and "linear_cka vs the GEMM floor" in out
    data = json.loads((tmp_path / record["json"].split("/")[-1]).read_text())
    assert data["meta"]["cases"] == list(CASES)
    cases = {row["case"] for row in data["rows"]}
    assert cases == {"linear", "accuracy", "rbf", "streaming", "memory", "compare_models"}
    ours = [r for r in data["rows"] if r["case"] == "linear" and r["contender"] == "cka_sim"]
    assert ours and all(r["seconds"] > 0 and r["ratio"] > 0 for r in ours)
    accuracy = [r for r in data["rows"] if r["case"] == "accuracy" and r["contender"] == "cka_sim"]
    assert [r["params"]["feature mean"] for r in accuracy] == [0.0, 10.0, 100.0]
    assert all(r["error"] < 1e-6 for r in accuracy)
    assert (tmp_path / record["json"].split("/")[-1].replace(".json", ".md")).read_text()
    assert "| ratio before |" in before_after(data, data)
    assert record["png"] is not None and (tmp_path / record["png"].split("/")[-1]).stat().st_size


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
