"""Tests for the command line, ``python -m cka_sim`` (called through ``main``)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from cka_sim import CKAResult, kernel_cka, linear_cka
from cka_sim.__main__ import MAX_DRAWS, main
from cka_sim._core.npyfile import open_activations


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
        ("garbage", [], "not a .npy or .npz file"),
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


def _npy_bytes(header: bytes, data: bytes = b"") -> bytes:
    """A version 1.0 .npy file with the given header text (padded as NumPy pads it)."""
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _forged(shape: tuple[int, ...]) -> bytes:
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    return _npy_bytes(header, np.zeros(6).tobytes())


def _npz_with(member: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("layer.npy", member)
    return buffer.getvalue()


def _write_file(tmp_path, kind: str):
    """A path of the faulty kind ``kind`` (made in ``tmp_path``)."""
    path = tmp_path / f"{kind}.npy"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "malformed header":  # an unclosed tuple: tokenize.TokenError in NumPy
        path.write_bytes(_npy_bytes(b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,"))
    elif kind == "huge shape":
        path.write_bytes(_forged((10**12, 10**6)))
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "object array":
        np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        path.write_bytes(_forged((100, 10)))
    elif kind in ("npz huge member", "npz truncated member"):
        path = tmp_path / f"{kind}.npz"
        shape = (10**12, 10**6) if kind == "npz huge member" else (100, 10)
        path.write_bytes(_npz_with(_forged(shape)))
    return path


FAULTS = {
    "directory": "is a directory, not a regular file",
    "fifo": "is a FIFO (named pipe), not a regular file",
    "malformed header": "its header is malformed",
    "huge shape": "declares shape (1000000000000, 1000000) of float64 (8,000,000,000,000,000,000",
    "random bytes": "not a .npy or .npz file",
    "object array": "holds Python objects (dtype object)",
    "truncated": "declares shape (100, 10) of float64 (8,000 bytes), but the file holds only 48",
    "npz huge member": "['layer.npy']: its header declares shape (1000000000000, 1000000)",
    "npz truncated member": "['layer.npy']: its header declares shape (100, 10)",
}


@pytest.mark.parametrize("kind", FAULTS)
def test_a_faulty_file_is_named_for_what_it_is_in_one_line(pair, tmp_path, capsys, kind) -> None:
    px, _, _, _ = pair
    bad = _write_file(tmp_path, kind)
    first = tmp_path / "x.npz" if bad.suffix == ".npz" else px
    if bad.suffix == ".npz":
        np.savez(first, layer=np.zeros((3, 2)))
    assert main([str(first), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cka-sim: error: {bad}") and FAULTS[kind] in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "allow_pickle" not in err and "no such file" not in err


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("1e11", f"--permutations must be at most {MAX_DRAWS:,}"),
        (str(10**11), "got 100,000,000,000"),
        ("2.5", "--permutations must be a whole number of draws"),
        ("many", "--permutations must be a whole number of draws"),
        ("-3", "--permutations must be 0 or more"),
        ("inf", "--permutations must be a whole number of draws"),
    ],
)
def test_permutations_are_bounded_in_one_line(pair, capsys, given, message) -> None:
    px, py, _, _ = pair
    assert main([str(px), str(py), "--permutations", given]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cka-sim: error:") and message in err and err.count("\n") == 1


def test_counts_in_scientific_notation_run(pair, capsys) -> None:
    px, py, _, _ = pair
    assert main([str(px), str(py), "--permutations", "1.9e1", "--seed", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_permutations"] == 19
    assert main([str(px), str(py), "--bootstrap", f"{MAX_DRAWS + 1}"]) == 2
    assert "--bootstrap must be at most" in capsys.readouterr().err


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_files_are_memory_mapped_and_read_as_saved(tmp_path, capsys, order) -> None:
    rng = np.random.default_rng(3)
    x = np.asarray(rng.standard_normal((60, 7)), order=order)
    y = (rng.standard_normal((60, 3)) + x[:, :3]).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    mapped = open_activations(tmp_path / "x.npy")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(mapped, x)
    for version in ((2, 0), (3, 0)):
        with open(tmp_path / "v.npy", "wb") as f:
            np.lib.format.write_array(f, x, version=version)
        assert np.array_equal(open_activations(tmp_path / "v.npy"), x)
    assert main([str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--json"]) == 0
    value = json.loads(capsys.readouterr().out)["cka"]
    assert value == pytest.approx(linear_cka(x, y), rel=1e-12, abs=1e-12)


def test_an_empty_array_file_is_read_and_refused_by_the_estimator(tmp_path, capsys) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    assert open_activations(tmp_path / "e.npy").shape == (0, 3)
    assert main([str(tmp_path / "e.npy"), str(tmp_path / "e.npy")]) == 2
    assert "is empty" in capsys.readouterr().err
