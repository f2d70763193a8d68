"""Resizing, splits, the IDX parser and the restricted unpickler of vae_zoo.datasets."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vae_zoo.datasets import splits, transforms
from vae_zoo.datasets.idx import parse_idx
from vae_zoo.datasets.safe_pickle import NumpyArrayUnpickler, load_array

small_images = arrays(
    np.uint8,
    st.tuples(st.integers(1, 3), st.sampled_from([1, 3]), st.just(8), st.just(8)),
    elements=st.integers(0, 255),
)


def test_pad_28_to_32_is_exact() -> None:
    x = np.random.default_rng(0).integers(1, 256, (4, 1, 28, 28), dtype=np.uint8)
    y = transforms.resize(x, 32)
    assert y.shape == (4, 1, 32, 32)
    np.testing.assert_array_equal(y[:, :, 2:30, 2:30], x)
    assert y.sum() == x.astype(np.int64).sum()  # the border is zero


def test_28_to_64_is_pad_then_pixel_doubling() -> None:
    x = np.random.default_rng(1).integers(0, 256, (2, 1, 28, 28), dtype=np.uint8)
    y = transforms.resize(x, 64)
    assert y.shape == (2, 1, 64, 64)
    padded = transforms.resize(x, 32)
    for dy in (0, 1):
        for dx in (0, 1):
            np.testing.assert_array_equal(y[:, :, dy::2, dx::2], padded)


@given(small_images, st.sampled_from([2, 4, 8]))
@settings(max_examples=30, deadline=None)
def test_box_average_inverts_upscaling(x: np.ndarray, factor: int) -> None:
    up = transforms.upscale(x, factor)
    assert up.shape[2:] == (8 * factor, 8 * factor)
    down = up
    while down.shape[2] > 8:
        down = transforms.downscale2(down)
    np.testing.assert_array_equal(down, x)


def test_downscale_rounds_half_up() -> None:
    x = np.array([[[[0, 1], [0, 1]], [[255, 0], [0, 0]]]], dtype=np.uint8).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(transforms.downscale2(x).ravel(), [1, 64])  # 0.5→1, 63.75→64


def test_resize_refuses_inexact_pairs() -> None:
    with pytest.raises(ValueError, match="no exact resize"):
        transforms.resize(np.zeros((1, 1, 64, 64), np.uint8), 28)
    assert transforms.supported_sizes(64) == (32, 64)
    assert transforms.supported_sizes(28) == (28, 32, 64)
    assert transforms.supported_sizes(8) == (32, 64)


def test_grayscale_is_bt601_luma() -> None:
    x = np.zeros((3, 3, 1, 1), np.uint8)
    x[0, 0] = x[1, 1] = x[2, 2] = 255
    np.testing.assert_array_equal(transforms.to_grayscale(x).ravel(), [76, 150, 29])
    grey = np.full((1, 3, 2, 2), 77, np.uint8)
    np.testing.assert_array_equal(transforms.to_grayscale(grey), grey[:, :1])


def test_hash_is_splitmix64() -> None:
    # The first two outputs of SplitMix64 seeded with 0 (its published reference values).
    keys = splits.hash_keys(2, 0)
    assert [int(k) for k in keys] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


@given(st.integers(10, 400), st.floats(0.05, 0.5), st.integers(0, 5))
@settings(max_examples=30, deadline=None)
def test_split_is_a_deterministic_partition(n: int, fraction: float, seed: int) -> None:
    train, test = splits.train_test_indices(n, fraction, seed=seed)
    assert len(test) == round(fraction * n)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    again = splits.train_test_indices(n, fraction, seed=seed)
    np.testing.assert_array_equal(test, again[1])


def test_stratified_split_takes_the_fraction_of_each_class() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    _, test = splits.train_test_indices(100, 0.2, labels=labels)
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 4, 6, 8])


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@given(arrays(np.uint8, st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)))
@settings(max_examples=30, deadline=None)
def test_idx_round_trip(array: np.ndarray) -> None:
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


def test_idx_rejects_bad_files() -> None:
    good = idx_bytes(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="not an IDX"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(good[:-1])


class _Touch:
    """A pickle payload that would create a file if it were ever executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_restricted_unpickler_rejects_code(tmp_path) -> None:
    target = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(str(target)))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_array(payload)
    assert not target.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing.*os\.system"):
        NumpyArrayUnpickler(io.BytesIO(b"cos\nsystem\n(S'true'\ntR.")).load()
    with pytest.raises(pickle.UnpicklingError, match="numeric numpy array"):
        load_array(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))
    with pytest.raises(pickle.UnpicklingError, match="numeric numpy array"):
        load_array(pickle.dumps([1, 2, 3]))


@pytest.mark.parametrize("protocol", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float32])
def test_restricted_unpickler_loads_plain_arrays(protocol: int, dtype: type) -> None:
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    out = load_array(pickle.dumps(array, protocol=protocol))
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)
