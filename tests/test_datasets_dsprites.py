"""Pixel-level facts of the dSprites generator (vae_zoo.datasets.dsprites)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vae_zoo.datasets import dsprites, load
from vae_zoo.datasets._grid_cache import cached_images
from vae_zoo.datasets.splits import train_test_indices
from vae_zoo.datasets.transforms import downscale2
from vae_zoo.storage import sha256_file


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(row_min, row_max, col_min, col_max) of the on pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def flat_index(shape: int, scale: int, orient: int, px: int, py: int) -> int:
    return int(np.ravel_multi_index((shape, scale, orient, px, py), dsprites.GRID_SHAPE))


def test_grid_count_and_factor_order() -> None:
    assert dsprites.GRID_SHAPE == (3, 6, 40, 32, 32)
    assert dsprites.N_IMAGES == 737_280
    idx = dsprites.factor_indices(np.arange(dsprites.N_IMAGES))
    assert idx.shape == (737_280, 5)
    # posY fastest, then posX, orientation, scale, shape.
    np.testing.assert_array_equal(idx[1], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(idx[32], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(idx[1024], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(idx[40_960], [0, 1, 0, 0, 0])
    np.testing.assert_array_equal(idx[245_760], [1, 0, 0, 0, 0])
    values = dsprites.factor_values(np.array([dsprites.N_IMAGES - 1]))[0]
    np.testing.assert_allclose(values, [2, 1.0, 2 * np.pi, 1.0, 1.0])
    np.testing.assert_allclose(dsprites.SCALES, np.linspace(0.5, 1, 6))


@pytest.mark.parametrize(("shape", "width", "height"), [(0, 20, 20), (1, 26, 14), (2, 20, 17)])
def test_sizes_at_scale_one(shape: int, width: int, height: int) -> None:
    r0, r1, c0, c1 = bbox(dsprites.render_mask(shape, 1.0, 0.0))
    assert (c1 - c0 + 1, r1 - r0 + 1) == (width, height)


def test_square_is_a_filled_square_at_every_scale() -> None:
    for k, scale in enumerate(dsprites.SCALES):
        mask = dsprites.render_mask(0, float(scale), 0.0)
        side = round(20 * scale)
        assert mask.sum() == side * side, k
        assert bbox(mask) == (32 - side // 2, 31 + side // 2, 32 - side // 2, 31 + side // 2)


def test_heart_points_down_with_a_notch_on_top() -> None:
    mask = dsprites.render_mask(2, 1.0, 0.0)
    r0, r1, c0, c1 = bbox(mask)
    widths = mask.sum(axis=1)[r0 : r1 + 1]
    assert widths[-1] <= 2  # the point is the bottom row
    assert np.argmax(widths) < len(widths) // 2  # widest in the upper half
    top = mask[r0, c0 : c1 + 1]
    middle = (c0 + c1) // 2 - c0
    assert not top[middle] and top[:middle].any() and top[middle + 1 :].any()  # the notch


def test_rotation_is_counter_clockwise_as_displayed() -> None:
    # Upright, a heart's mass sits above its box centre (lobes up, point down). Turned by +90°
    # it points right, its lobes left: the mass sits left of the box centre (clockwise: right).
    upright = dsprites.render_mask(2, 1.0, 0.0)
    r0, r1, _, _ = bbox(upright)
    assert np.nonzero(upright)[0].mean() < (r0 + r1) / 2 - 0.5
    mask = dsprites.render_mask(2, 1.0, np.pi / 2)
    r0, r1, c0, c1 = bbox(mask)
    assert (c1 - c0 + 1, r1 - r0 + 1) == (17, 20)
    assert np.nonzero(mask)[1].mean() < (c0 + c1) / 2 - 0.5
    assert mask.sum(axis=0)[c1] <= 2  # the point is the rightmost column
    # The ellipse at orientation index 5 (≈46°) leans up-right: x and up are positively related.
    ellipse = dsprites.render_mask(1, 1.0, float(dsprites.ORIENTATIONS[5]))
    rows, cols = np.nonzero(ellipse)
    assert np.corrcoef(cols, -rows)[0, 1] > 0.5
    turned = dsprites.render_mask(1, 1.0, np.pi / 2)
    r0, r1, c0, c1 = bbox(turned)
    assert (c1 - c0 + 1, r1 - r0 + 1) == (14, 26)


def test_centre_is_16_plus_32_pos_in_whole_pixels() -> None:
    offsets = np.rint(32 * np.linspace(0, 1, 32)).astype(int)
    idx = [flat_index(0, 5, 0, k, 31 - k) for k in range(32)]
    images = dsprites.render(np.array(idx), 64)[:, 0] > 0
    for k, image in enumerate(images):
        cx, cy = 16 + offsets[k], 16 + offsets[31 - k]
        assert bbox(image) == (cy - 10, cy + 9, cx - 10, cx + 9)
    assert offsets[0] == 0 and offsets[-1] == 32


def test_render_matches_mask_and_is_binary() -> None:
    image = dsprites.render(np.array([flat_index(2, 3, 17, 0, 0)]), 64)
    assert image.dtype == np.uint8 and image.shape == (1, 1, 64, 64)
    assert set(np.unique(image)) == {0, 255}
    mask = dsprites.render_mask(2, float(dsprites.SCALES[3]), float(dsprites.ORIENTATIONS[17]))
    np.testing.assert_array_equal(image[0, 0] > 0, np.roll(mask, (-16, -16), axis=(0, 1)))


def test_orientations_zero_and_two_pi_give_the_same_image() -> None:
    a = dsprites.render(np.array([flat_index(s, 5, 0, 9, 20) for s in range(3)]))
    b = dsprites.render(np.array([flat_index(s, 5, 39, 9, 20) for s in range(3)]))
    np.testing.assert_array_equal(a, b)


def test_32px_is_box_average_of_64px() -> None:
    idx = np.sort(np.random.default_rng(0).choice(dsprites.N_IMAGES, 3000, replace=False))
    small = dsprites.render(idx, 32)
    np.testing.assert_array_equal(small, downscale2(dsprites.render(idx, 64)))
    assert set(np.unique(small)) <= {0, 64, 128, 191, 255}


def test_split_sizes_cover_the_grid() -> None:
    train, test = train_test_indices(dsprites.N_IMAGES, 0.1)
    assert (len(train), len(test)) == (663_552, 73_728)
    assert np.intersect1d(train, test).size == 0


def test_cached_test_split_is_memory_mapped_and_reused(tmp_path) -> None:
    ds = load("dsprites", split="test", size=32, data_dir=tmp_path)
    assert ds.images.shape == (73_728, 1, 32, 32) and isinstance(ds.images, np.memmap)
    files = list((tmp_path / "dsprites").glob("*.npy"))
    assert [f.name for f in files] == ["dsprites-v1-32px-test.npy"]
    assert not list((tmp_path / "dsprites").glob("*.tmp"))
    pick = np.array([0, 1000, 73_727])
    expected = dsprites.render(ds.info["grid_indices"][pick], 32)
    np.testing.assert_array_equal(ds.images[pick], expected)
    np.testing.assert_array_equal(ds.labels, ds.factors[:, 0].astype(np.int64))
    mtime = files[0].stat().st_mtime_ns
    again = load("dsprites", split="test", size=32, data_dir=tmp_path)
    assert files[0].stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.images[pick], expected)


def test_max_examples_renders_only_a_subset(tmp_path) -> None:
    ds = load("dsprites", split="train", size=64, data_dir=tmp_path, max_examples=500)
    assert ds.images.shape == (500, 1, 64, 64)
    assert ds.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert set(np.unique(ds.labels)) == {0, 1, 2}
    assert not (tmp_path / "dsprites").exists()
    again = load("dsprites", split="train", size=64, data_dir=tmp_path, max_examples=500)
    np.testing.assert_array_equal(ds.images, again.images)


def test_an_empty_cache_file_is_rebuilt_with_the_umask(tmp_path) -> None:
    previous = os.umask(0o022)
    try:
        first = load("dsprites", split="test", size=32, data_dir=tmp_path)
        path = tmp_path / "dsprites" / "dsprites-v1-32px-test.npy"
        assert path.stat().st_mode & 0o777 == 0o644  # readable by a shared cache's other users
        expected = np.array(first.images[:5])
        del first
        path.write_bytes(b"")  # a zero-byte file, e.g. a full disk under an older version
        again = load("dsprites", split="test", size=32, data_dir=tmp_path)
    finally:
        os.umask(previous)
    np.testing.assert_array_equal(again.images[:5], expected)


def test_a_garbled_or_unchecked_cache_file_is_rebuilt(tmp_path) -> None:
    calls = []

    def fill(out: np.ndarray) -> None:
        calls.append(1)
        out[:] = np.arange(out.size, dtype=np.uint8).reshape(out.shape)

    path = tmp_path / "grid.npy"
    shape = (6, 1, 4, 4)
    built = np.array(cached_images(path, shape, fill))
    assert (tmp_path / "grid.npy.sha256").read_text().split() == [sha256_file(path), "grid.npy"]
    np.testing.assert_array_equal(cached_images(path, shape, fill), built)
    assert len(calls) == 1
    with open(path, "r+b") as handle:  # overwrite pixels, keep the header: loads as garbage
        handle.seek(-16, os.SEEK_END)
        handle.write(bytes(16))
    np.testing.assert_array_equal(cached_images(path, shape, fill), built)
    assert len(calls) == 2
    (tmp_path / "grid.npy.sha256").unlink()  # no recorded checksum: cannot be trusted
    np.testing.assert_array_equal(cached_images(path, shape, fill), built)
    assert len(calls) == 3
    path.write_bytes(path.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(cached_images(path, shape, fill), built)
    assert len(calls) == 4
