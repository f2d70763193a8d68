"""CKAResult files: round trip, permissions, and a clear ValueError for every damaged file."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np
import pytest

from cka_sim import CKAResult, __version__


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
    assert loaded.cka_sim_version == __version__ == result.cka_sim_version


def test_the_version_that_saved_a_result_is_kept_and_shown(result, tmp_path):
    result.cka_sim_version = "0.0.7"
    loaded = CKAResult.load(result.save(tmp_path / "r.npz"))
    assert loaded.cka_sim_version == "0.0.7" and loaded.to_dict()["cka_sim_version"] == "0.0.7"
    assert repr(loaded) == (
        "CKAResult(2 x 2, estimator='linear-debiased', n_examples=64, cka_sim 0.0.7)"
    )
    assert "cka_sim unknown" in repr(
        CKAResult(np.eye(1), ["a"], ["b"], "linear", 4, {}, None, None, None, None)
    )


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
        ({**GOOD, "format_version": True}, "unsupported CKAResult format True"),
        ({**GOOD, "format_version": 2}, "no 'sha256' field"),
        ({**GOOD, "row_names": ["a"]}, "inconsistent CKAResult: values has shape"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*CKAResult file of format 1:UserWarning")
def test_bad_headers_name_the_field(tmp_path, header, message):
    with pytest.raises(ValueError, match=message):
        CKAResult.load(write(tmp_path / "r.npz", header))


def test_a_format_1_file_loads_with_a_warning_that_nothing_was_checked(tmp_path):
    header = {**GOOD, "metadata": {"cka_sim_version": "0.0.1"}}
    with pytest.warns(UserWarning, match="format 1, which has no checksums: damage to its"):
        loaded = CKAResult.load(write(tmp_path / "r.npz", header))
    assert loaded.row_names == ["a", "b"] and loaded.estimator == "linear"
    assert loaded.cka_sim_version == "0.0.1"  # from the metadata, where older files kept it
    with pytest.warns(UserWarning, match="format 1"):
        assert CKAResult.load(write(tmp_path / "r.npz", GOOD)).cka_sim_version is None


def test_a_format_2_file_loads_with_a_warning_its_header_was_not_checked(tmp_path):
    header = {**GOOD, "format_version": 2, "sha256": {}}
    arrays = {"values": np.eye(2)}
    from cka_sim.result import _digest

    header["sha256"] = {"values": _digest(arrays["values"])}
    with pytest.warns(UserWarning, match="format 2, which has no checksum of its header"):
        loaded = CKAResult.load(write(tmp_path / "r.npz", header, **arrays))
    np.testing.assert_array_equal(loaded.values, np.eye(2))
    arrays["values"][0, 0] = 0.5  # its arrays are still checked
    with pytest.raises(ValueError, match="'values' array does not match the checksum"):
        CKAResult.load(write(tmp_path / "r.npz", header, **arrays))


def rewrite(path, edit):
    """Rewrite a saved file with ``edit(header)`` applied, keeping its checksum entry."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays["header"]))
    edit(header)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.update(row_names=h["row_names"][::-1]),
        lambda h: h.update(estimator="minibatch-debiased"),
        lambda h: h.update(n_examples=65),
        lambda h: h["metadata"].update(note="added"),
        lambda h: h.update(cka_sim_version="9.9"),
    ],
    ids=["swapped-rows", "estimator", "n_examples", "metadata", "version"],
)
def test_an_edited_header_fails_its_checksum(result, tmp_path, edit):
    path = result.save(tmp_path / "r.npz")
    rewrite(path, edit)
    with pytest.raises(ValueError, match=r"the header \(layer names, estimator, metadata\) does"):
        CKAResult.load(path)


def test_a_format_3_file_without_its_checksum_is_refused(result, tmp_path):
    path = result.save(tmp_path / "r.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "checksum"}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="format 3 must have a 'checksum' entry"):
        CKAResult.load(path)


def test_a_deeply_nested_header_is_a_value_error(tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    np.savez(tmp_path / "r.npz", header=np.array(nested), values=np.eye(2))
    with pytest.raises(ValueError, match="header is nested too deeply"):
        CKAResult.load(tmp_path / "r.npz")
    text = json.dumps({**GOOD, "format_version": 3, "metadata": {}, "sha256": {}})
    deep = text.replace(
        '"metadata": {}', '"metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    checksum = hashlib.sha256(deep.encode()).hexdigest()
    np.savez(
        tmp_path / "r.npz", header=np.array(deep), checksum=np.array(checksum), values=np.eye(2)
    )
    with pytest.raises(ValueError, match="header is nested too deeply"):
        CKAResult.load(tmp_path / "r.npz")


def npy_with_shape(shape: tuple[int, ...], payload: bytes = b"") -> bytes:
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    text = repr(header).encode() + b" "
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_huge_declared_shape_is_a_value_error_before_any_allocation(
    result, tmp_path, compression
):
    path = result.save(tmp_path / "r.npz")
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries["values.npy"] = npy_with_shape((10**12, 10**6), np.eye(2).tobytes())
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    with pytest.raises(
        ValueError, match=r"'values' entry declares shape \(1000000000000, 1000000\)"
    ):
        CKAResult.load(path)


def test_an_entry_declaring_more_bytes_than_the_file_is_a_value_error(result, tmp_path):
    path = result.save(tmp_path / "r.npz")
    data = bytearray(path.read_bytes())
    # the central directory's uncompressed size of the first entry: 2**32 - 1 bytes
    start = data.rfind(b"PK\x01\x02")
    while data.rfind(b"PK\x01\x02", 0, start) != -1:
        start = data.rfind(b"PK\x01\x02", 0, start)
    data[start + 24 : start + 28] = (2**32 - 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="entry declares 4294967295 bytes, more than the"):
        CKAResult.load(path)


def test_a_directory_or_a_fifo_is_not_a_result_file(tmp_path):
    with pytest.raises(ValueError, match="is not a CKAResult file .*: it is a directory"):
        CKAResult.load(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.npz")
        with pytest.raises(ValueError, match="it is not a regular file"):
            CKAResult.load(tmp_path / "fifo.npz")
    with pytest.raises(FileNotFoundError):
        CKAResult.load(tmp_path / "missing.npz")


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


def test_a_version_that_is_not_a_string_is_refused():
    with pytest.raises(TypeError, match="cka_sim_version must be a version string or None"):
        CKAResult(np.eye(1), ["a"], ["b"], "linear", 4, cka_sim_version=(0, 1))


def test_a_string_of_names_is_refused():
    with pytest.raises(TypeError, match="row_names must be a list of layer names"):
        CKAResult(
            np.zeros((2, 1)), row_names="ab", col_names=["x"], estimator="linear", n_examples=3
        )
