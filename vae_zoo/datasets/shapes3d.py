"""A Shapes3D-like generator: a coloured object in the corner of a room, rendered offline.

This is **not** DeepMind's ``3dshapes.h5`` (Burgess and Kim 2018), which is not available offline;
it reproduces its factor grid and factor order with a simple 2.5-D rasteriser:

* factors (``orientation`` varies fastest): ``floor_hue``, ``wall_hue``, ``object_hue``
  ``linspace(0, 0.9, 10)``; ``scale`` ``linspace(0.75, 1.25, 8)``; ``shape`` {cube, cylinder,
  sphere, capsule} (ids 0-3); ``orientation`` ``linspace(-30, 30, 15)`` degrees:
  10 x 10 x 10 x 8 x 4 x 15 = 480,000 RGB 64 x 64 images.
* Scene: two walls meet in a vertical corner whose column moves with the camera orientation
  (``32 - 0.8 * orientation`` px); the floor/wall boundary falls away from the corner; walls and
  floor carry fixed shading (left wall darker, floor lighter towards the camera). The object stands
  on the floor at column 32, its height ``20 * scale`` px; the cube turns with the orientation
  (its two visible faces change width), the round shapes look the same from every side.
* Colours: hue ``h`` with full saturation and value, ``colorsys.hsv_to_rgb(h, 1, 1)``, times the
  shading; edges are anti-aliased by 4 x 4 supersampling.

Rendering is linear in the three colours: each of the 480 scale/shape/orientation combinations
has three precomputed weight maps (floor, wall, object), and an image is
``w_floor * rgb(floor_hue) + w_wall * rgb(wall_hue) + w_object * rgb(object_hue)``, rounded.
32 px images use weight maps averaged over 2 x 2 blocks (the area downscale, before rounding).
"""

from __future__ import annotations

import colorsys

import numpy as np

HUES = np.linspace(0.0, 0.9, 10)
SCALES = np.linspace(0.75, 1.25, 8)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
ORIENTATIONS = np.linspace(-30.0, 30.0, 15)
FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
GRID_SHAPE = (10, 10, 10, len(SCALES), len(SHAPES), len(ORIENTATIONS))
N_IMAGES = int(np.prod(GRID_SHAPE))  # 480,000

_SIZE = 64
_SUPER = 4
_RGB = np.array([colorsys.hsv_to_rgb(float(h), 1.0, 1.0) for h in HUES], dtype=np.float32)


def _layers(scale: float, shape: int, orientation: float) -> np.ndarray:
    """Weight maps ``(3, 64, 64)`` (floor, wall, object) for one scale/shape/orientation."""
    n = _SIZE * _SUPER
    coords = (np.arange(n) + 0.5) / _SUPER
    x, y = coords[None, :], coords[:, None]
    corner = 32.0 - 0.8 * orientation
    horizon = 30.0 + 0.3 * np.abs(x - corner)
    floor = np.broadcast_to(y > horizon, (n, n))
    wall_shade = np.where(x < corner, 0.65 + 0.004 * orientation, 0.9 - 0.004 * orientation)
    floor_shade = 0.55 + 0.45 * np.clip((y - horizon) / (64.0 - horizon), 0.0, 1.0)
    inside, shade = _object(shape, scale, orientation, x, y)
    w_obj = np.where(inside, shade, 0.0)
    w_floor = np.where(~inside & floor, floor_shade, 0.0)
    w_wall = np.where(~inside & ~floor, wall_shade, 0.0)
    stack = np.stack([w_floor, w_wall, w_obj]).astype(np.float32)
    return stack.reshape(3, _SIZE, _SUPER, _SIZE, _SUPER).mean(axis=(2, 4))


def _object(
    shape: int, scale: float, orientation: float, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mask and shading of the object, standing on the floor at (32, 54)."""
    height = 20.0 * scale
    base, cx = 54.0, 32.0
    half = 0.5 * height
    dx = x - cx
    if shape == 0:  # cube: two vertical faces and a top, turned by the orientation
        turn = np.deg2rad(45.0 + orientation)
        left_w, right_w = 1.2 * half * np.cos(turn), 1.2 * half * np.sin(turn)
        top_h = 0.35 * half
        x0 = cx - 0.5 * (left_w + right_w)
        xm = x0 + left_w
        x1 = xm + right_w
        in_cols = (x >= x0) & (x < x1)
        # Seen from slightly above: the front vertical edge (at xm) is lowest, so the top face is
        # a rhombus between the faces' top edges and the back edges.
        rise = top_h * np.where(x < xm, (x - x0) / max(left_w, 1e-6), (x1 - x) / max(right_w, 1e-6))
        face_top = base - height + 2.0 * top_h
        edge = face_top - (top_h - rise)
        body = in_cols & (y < base) & (y >= edge)
        top = in_cols & (y < edge) & (y >= face_top - top_h - rise)
        shade = np.where(top, 1.0, np.where(x < xm, 0.85, 0.6))
        return body | top, np.broadcast_to(shade, body.shape)
    if shape == 1:  # cylinder: shaded body and an elliptical top
        radius, cap = 0.6 * half, 0.25 * half
        in_cols = np.abs(dx) < radius
        top_y = base - height + cap
        ellipse = (dx / radius) ** 2 + ((y - top_y) / cap) ** 2 < 1.0
        body = in_cols & (y < base) & (y >= top_y)
        side = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - (dx / radius) ** 2, 0.0, 1.0))
        mask = body | ellipse
        return mask, np.where(ellipse & ~body, 1.0, np.broadcast_to(side, mask.shape))
    if shape == 2:  # sphere, lit from the upper left
        centre_y = base - half
        dist2 = (dx**2 + (y - centre_y) ** 2) / half**2
        mask = dist2 < 1.0
        nz = np.sqrt(np.clip(1.0 - dist2, 0.0, 1.0))
        light = (-0.4 * dx / half - 0.4 * (y - centre_y) / half + 0.82 * nz).clip(0.0, 1.0)
        return mask, 0.45 + 0.55 * light
    # capsule: a vertical stadium (rectangle with round ends)
    radius = 0.45 * half
    top_c, bottom_c = base - height + radius, base - radius
    nearest_y = np.clip(y, top_c, bottom_c)
    dist2 = (dx**2 + (y - nearest_y) ** 2) / radius**2
    mask = dist2 < 1.0
    side = 0.5 + 0.5 * np.sqrt(np.clip(1.0 - dist2, 0.0, 1.0))
    return mask, side


_WEIGHT_CACHE: dict[int, np.ndarray] = {}


def weights(size: int = 64) -> np.ndarray:
    """All weight maps, ``(8 * 4 * 15, 3, size, size)`` float32, ordered scale, shape, orient."""
    if size not in (32, 64):
        raise ValueError(f"shapes3d renders at 64 or 32 px, got {size}")
    if size not in _WEIGHT_CACHE:
        maps = np.stack(
            [
                _layers(float(s), k, float(o))
                for s in SCALES
                for k in range(len(SHAPES))
                for o in ORIENTATIONS
            ]
        )
        if size == 32:
            maps = maps.reshape(-1, 3, 32, 2, 32, 2).mean(axis=(3, 5))
        _WEIGHT_CACHE[size] = maps
    return _WEIGHT_CACHE[size]


def factor_indices(indices: np.ndarray) -> np.ndarray:
    """Integer factor indices ``(n, 6)`` of flat grid indices."""
    return np.stack(np.unravel_index(np.asarray(indices, dtype=np.int64), GRID_SHAPE), axis=1)


def factor_values(indices: np.ndarray) -> np.ndarray:
    """Factor values ``(n, 6)``: three hues, scale, shape id, orientation (degrees)."""
    idx = factor_indices(indices)
    return np.stack(
        [
            HUES[idx[:, 0]],
            HUES[idx[:, 1]],
            HUES[idx[:, 2]],
            SCALES[idx[:, 3]],
            idx[:, 4].astype(np.float64),
            ORIENTATIONS[idx[:, 5]],
        ],
        axis=1,
    )


def render_into(out: np.ndarray, indices: np.ndarray, chunk: int = 8192) -> None:
    """Render flat grid ``indices`` into ``out`` ``(n, 3, S, S)`` uint8, ``chunk`` at a time."""
    maps = weights(out.shape[-1])
    idx = factor_indices(indices)
    combo = (idx[:, 3] * len(SHAPES) + idx[:, 4]) * len(ORIENTATIONS) + idx[:, 5]
    h, w = maps.shape[-2:]
    flat = maps.reshape(len(maps), 3, h * w)
    for start in range(0, len(idx), chunk):
        sl = slice(start, start + chunk)
        # (n, rgb, layer): the colour of each layer, scaled to 0-255.
        mix = np.stack([_RGB[idx[sl, 0]], _RGB[idx[sl, 1]], _RGB[idx[sl, 2]]], axis=2) * 255.0
        image = np.empty((len(mix), 3, h * w), dtype=np.float32)
        # Group the chunk by weight map so each map is used in place, never gathered per image.
        order = np.argsort(combo[sl], kind="stable")
        values, first = np.unique(combo[sl][order], return_index=True)
        for value, members in zip(values, np.split(order, first[1:]), strict=True):
            image[members] = (mix[members].reshape(-1, 3) @ flat[value]).reshape(-1, 3, h * w)
        out[sl] = np.rint(image).clip(0, 255).astype(np.uint8).reshape(-1, 3, h, w)


def render(indices: np.ndarray, size: int = 64) -> np.ndarray:
    """Render flat grid ``indices`` as ``uint8`` ``(n, 3, size, size)``."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= N_IMAGES):
        raise IndexError(f"shapes3d indices must be in [0, {N_IMAGES})")
    out = np.empty((indices.size, 3, size, size), dtype=np.uint8)
    render_into(out, indices)
    return out
