"""CKAResult files: round trip, permissions, and a clear ValueError for every damaged file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cka_sim import CKAResult


@pytest.fixture
def result() -> CKAResult:
    return CKAResult(
        values=np.array([[1.0, 0.25], [np.nan, 0.5]]),
        row_names=["a", "b"],
        col_names=["x", "y"],
        estimator="linear-debiased",
        n_examples=64,
        ci_low=np.zeros((2, 2)),
    )


def write(path, header, **arrays):
    if "values" not in arrays:
        arrays["values"] = np.eye(2)
    np.savez(path, header=np.array(json.dumps(header)), **arrays)
    return path


def test_round_trip_keeps_every_field_and_respects_the_umask(result, tmp_path):
    previous = os.umask(0o022)
    try:
        path = result.save(tmp_path / "r")
    finally:
        os.umask(previous)
    assert path.name == "r.npz" and path.stat().st_mode & 0o777 == 0o644
    loaded = CKAResult.load(path)
    np.testing.assert_array_equal(loaded.values, result.values)
    np.testing.assert_array_equal(loaded.ci_low, result.ci_low)
    assert (loaded.row_names, loaded.col_names) == (["a", "b"], ["x", "y"])
    assert (loaded.estimator, loaded.n_examples, loaded.ci_high) == ("linear-debiased", 64, None)


@pytest.mark.parametrize("keep", [0, 40, 0.5, -10])
def test_empty_or_truncated_files(result, tmp_path, keep):
    data = result.save(tmp_path / "r.npz").read_bytes()
    cut = data[: int(keep * len(data)) if isinstance(keep, float) else keep]
    (tmp_path / "r.npz").write_bytes(cut)
    with pytest.raises(ValueError, match="is not a CKAResult file"):
        CKAResult.load(tmp_path / "r.npz")


def test_random_bytes_do_not_suggest_allow_pickle(tmp_path):
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="is not a CKAResult file") as info:
        CKAResult.load(tmp_path / "r.npz")
    assert "pickle" not in str(info.value)
    np.save(tmp_path / "one.npy", np.eye(2))
    with pytest.raises(ValueError, match="single array"):
        CKAResult.load(tmp_path / "one.npy")


GOOD = {
    "format_version": 1,
    "row_names": ["a", "b"],
    "col_names": ["x", "y"],
    "estimator": "linear",
    "n_examples": 10,
    "metadata": {},
}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["a", "list"], "header is a JSON list"),
        ({k: v for k, v in GOOD.items() if k != "row_names"}, "no 'row_names' field"),
        ({**GOOD, "n_examples": "many"}, "'n_examples' must be a non-negative integer"),
        ({**GOOD, "n_examples": True}, "'n_examples' must be a non-negative integer"),
        ({**GOOD, "row_names": "ab"}, "'row_names' must be a list of strings"),
        ({**GOOD, "col_names": ["x", 2]}, "'col_names' must be a list of strings"),
        ({**GOOD, "estimator": 3}, "'estimator' must be a non-empty string"),
        ({**GOOD, "metadata": []}, "'metadata' must be an object"),
        ({**GOOD, "format_version": 9}, "unsupported CKAResult format 9"),
        ({**GOOD, "format_version": 2}, "no 'sha256' field"),
        ({**GOOD, "row_names": ["a"]}, "inconsistent CKAResult: values has shape"),
    ],
)
def test_bad_headers_name_the_field(tmp_path, header, message):
    with pytest.raises(ValueError, match=message):
        CKAResult.load(write(tmp_path / "r.npz", header))


def test_a_version_1_file_still_loads(tmp_path):
    loaded = CKAResult.load(write(tmp_path / "r.npz", GOOD))
    assert loaded.row_names == ["a", "b"] and loaded.estimator == "linear"


def test_changed_values_fail_the_checksum(result, tmp_path):
    path = result.save(tmp_path / "r.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["values"][0, 1] = 0.75
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="'values' array does not match the checksum"):
        CKAResult.load(path)
    del arrays["ci_low"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="'ci_low' array does not match"):
        CKAResult.load(path)


def test_a_string_of_names_is_refused():
    with pytest.raises(TypeError, match="row_names must be a list of layer names"):
        CKAResult(
            np.zeros((2, 1)), row_names="ab", col_names=["x"], estimator="linear", n_examples=3
        )
