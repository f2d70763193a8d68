"""Tests for the command line, ``python -m cka_sim`` (called through ``main``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cka_sim import CKAResult, kernel_cka, linear_cka
from cka_sim.__main__ import main


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(1337)
    x = rng.standard_normal((100, 10))
    y = rng.standard_normal((100, 10)) + x
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path / "x.npy", tmp_path / "y.npy", x, y


def test_value_printed(pair, capsys) -> None:
    px, py, x, y = pair
    assert main([str(px), str(py)]) == 0
    out = capsys.readouterr().out
    assert f"CKA (linear, n=100) = {linear_cka(x, y):.4f}" in out


def test_json_with_test_and_interval(pair, capsys) -> None:
    px, py, x, y = pair
    argv = [str(px), str(py), "--debiased", "--permutations", "49", "--bootstrap", "100"]
    assert main([*argv, "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cka"] == pytest.approx(linear_cka(x, y, debiased=True))
    assert out["estimator"] == "linear-debiased" and out["pvalue"] == pytest.approx(1 / 50)
    assert out["ci_low"] < out["cka"] < out["ci_high"]
    assert main([*argv, "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == out  # the seed reproduces the run


def test_rbf_kernel(pair, capsys) -> None:
    px, py, x, y = pair
    assert main([str(px), str(py), "--kernel", "rbf", "--threshold", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cka"] == pytest.approx(kernel_cka(x, y, threshold=0.5))


def test_npz_layers_matrix_plot_and_save(tmp_path, capsys) -> None:
    rng = np.random.default_rng(0)
    h = rng.standard_normal((40, 5))
    np.savez(tmp_path / "a.npz", first=h, second=np.tanh(h))
    np.savez(tmp_path / "b.npz", only=h @ rng.standard_normal((5, 3)))
    argv = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    plot, saved = tmp_path / "cka.png", tmp_path / "res.npz"
    assert main([*argv, "--plot", str(plot), "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "first" in out and "second" in out and "only" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    res = CKAResult.load(saved)
    assert res.row_names == ["first", "second"] and res.col_names == ["only"]
    assert res.values[0, 0] == pytest.approx(
        linear_cka(h, np.load(tmp_path / "b.npz")["only"]), rel=1e-10
    )
    assert main([*argv, "--permutations", "19", "--bootstrap", "50", "--seed", "0", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert np.asarray(data["pvalues"]).shape == (2, 1)
    assert np.asarray(data["ci_low"]).shape == (2, 1)


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("missing", [], "no such file"),
        ("garbage", [], "not a readable .npy/.npz file"),
        ("short", [], "same number of rows"),
        ("ok", ["--bootstrap", "1"], "--bootstrap must be 0 or at least 2"),
        ("ok", ["--confidence", "1.5"], "--confidence must lie strictly between 0 and 1"),
        ("ok", ["--plot", "out.png"], "--plot and --save need .npz files"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pair, tmp_path, capsys, make, extra, message) -> None:
    px, py, _, _ = pair
    other = {"missing": tmp_path / "nope.npy", "garbage": tmp_path / "bad.npy"}.get(make, py)
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    if make == "short":
        other = tmp_path / "short.npy"
        np.save(other, np.zeros((7, 2)))
    assert main([str(px), str(other), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cka-sim: error:") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_mixed_npy_npz_and_no_files(pair, tmp_path, capsys) -> None:
    px, _, x, _ = pair
    np.savez(tmp_path / "l.npz", a=x)
    assert main([str(px), str(tmp_path / "l.npz")]) == 2
    assert "not one each" in capsys.readouterr().err
    assert main([]) == 2
    assert "give two activation files" in capsys.readouterr().err


def test_demo_runs(capsys) -> None:
    assert main(["--demo"]) == 0
    out = capsys.readouterr().out
    assert "independent of x" in out and "p >> n" in out


def test_help_via_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cka_sim", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "--permutations" in done.stdout and "examples:" in done.stdout
    assert "python -m cka_sim --demo" in done.stdout


def test_measure_dcka_and_procrustes(pair, tmp_path, capsys) -> None:
    from cka_sim import deconfounded_cka, procrustes_similarity

    px, py, x, y = pair
    z = x[:, :4] + np.random.default_rng(2).standard_normal((100, 4))
    np.save(tmp_path / "z.npy", z)
    argv = [str(px), str(py), "--measure", "dcka", "--confounder", str(tmp_path / "z.npy")]
    assert main([*argv, "--permutations", "19", "--bootstrap", "50", "--seed", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["measure"] == "dcka" and out["estimator"] == "deconfounded" and "cka" not in out
    assert out["value"] == pytest.approx(deconfounded_cka(x, y, z))
    assert out["pvalue"] == pytest.approx(1 / 20) and out["ci_low"] < out["value"] < out["ci_high"]
    assert main([str(px), str(py), "--measure", "procrustes"]) == 0
    text = capsys.readouterr().out
    s = procrustes_similarity(x, y)
    assert f"Procrustes similarity (procrustes, n=100) = {s:.4f}" in text
    assert f"Procrustes distance 2 - 2s = {2 - 2 * s:.4f}" in text
    np.savez(tmp_path / "a.npz", first=x, second=np.tanh(x))
    np.savez(tmp_path / "b.npz", only=y)
    layers = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), *argv[2:], "--json"]
    assert main([*layers, "--permutations", "19", "--seed", "0"]) == 0
    matrix = json.loads(capsys.readouterr().out)
    assert matrix["values"][0][0] == pytest.approx(deconfounded_cka(x, y, z))
    assert matrix["pvalues"][0][0] == pytest.approx(1 / 20)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--measure", "dcka"], "--measure dcka needs --confounder"),
        (["--confounder", "z.npy"], "--confounder is used by --measure dcka only"),
        (["--measure", "procrustes", "--debiased"], "no debiased form"),
        (["--measure", "procrustes", "--kernel", "rbf"], "is linear; drop --kernel rbf"),
    ],
)
def test_measure_option_errors(pair, capsys, extra, message) -> None:
    px, py, _, _ = pair
    assert main([str(px), str(py), *extra]) == 2
    assert message in capsys.readouterr().err
