"""A vectorised generator of the dSprites grid (Matthey et al. 2017), rendered offline.

The grid and geometry follow the published dataset:

* factors, in this order (``posY`` varies fastest): ``shape`` {square, ellipse, heart} (ids
  0, 1, 2), ``scale`` ``linspace(0.5, 1, 6)``, ``orientation`` ``linspace(0, 2π, 40)`` radians,
  ``posX`` and ``posY`` ``linspace(0, 1, 32)``: 3 x 6 x 40 x 32 x 32 = 737,280 binary 64 x 64
  images. As in the original, orientations 0 and 2π both occur and give identical images.
* A sprite's centre is the pixel corner ``(16 + round(32 posX), 16 + round(32 posY))`` (column,
  row; row 0 at the top), i.e. ``16 + 32 pos`` snapped to whole pixels, so every position step
  moves the sprite by one pixel (two pixels once, between positions 15 and 16).
* At scale 1 the square is 20 x 20 px, the ellipse 26 x 14 px (long axis horizontal) and the heart
  20 px wide x 17 px tall with its point down; all sizes scale linearly with ``scale``.
* ``orientation`` rotates the sprite counter-clockwise as displayed, about its centre.
* A pixel is on when its centre lies strictly inside the shape (pixel-centre sampling, no
  anti-aliasing).

Each of the 720 shape/scale/orientation masks is rendered once on a padded canvas; every image is
then a shifted window of its mask (a strided view, gathered with one fancy index per chunk).
32 px images are the 2 x 2 box average of the 64 px ones (values 0, 64, 128, 191, 255),
taken from masks averaged once per pixel parity, so they cost less than the 64 px ones.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2.0 * np.pi, 40)
POSITIONS = np.linspace(0.0, 1.0, 32)
FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
GRID_SHAPE = (len(SHAPES), len(SCALES), len(ORIENTATIONS), len(POSITIONS), len(POSITIONS))
N_IMAGES = int(np.prod(GRID_SHAPE))  # 737,280

#: Whole-pixel offset of the centre from (16, 16) for each position value.
OFFSETS = np.rint(32 * POSITIONS).astype(np.int64)

_SIZE = 64
_PAD = 32  # the canvas is padded by the largest offset
_CANVAS = _SIZE + _PAD
_TOL = 1e-9  # boundary tolerance: points on the outline are off, whatever the rounding

# Half extents at scale 1, in pixels.
_SQUARE_HALF = 10.0
_ELLIPSE_HALF = (13.0, 7.0)
# Heart: the algebraic curve (x² + y² − 1)³ − x² y³ = 0 spans x in ±1.1390, y in [−1, 1.2361]
# (point down, notch on top); it is stretched to 20 px x 17 px and its box centred on the centre.
_HEART_X, _HEART_Y = 1.13904, (-1.0, 1.23607)
_HEART_SIZE = (20.0, 17.0)


def _inside(shape: int, scale: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points ``(u, v)`` of the sprite's own frame (v up, pixels) are inside it."""
    if shape == 0:
        half = _SQUARE_HALF * scale
        return np.maximum(np.abs(u), np.abs(v)) < half - _TOL
    if shape == 1:
        a, b = _ELLIPSE_HALF[0] * scale, _ELLIPSE_HALF[1] * scale
        return (u / a) ** 2 + (v / b) ** 2 < 1.0 - _TOL
    width, height = _HEART_SIZE[0] * scale, _HEART_SIZE[1] * scale
    y_lo, y_hi = _HEART_Y
    x = u * (2 * _HEART_X / width)
    y = v * ((y_hi - y_lo) / height) + (y_hi + y_lo) / 2
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 < -_TOL


def render_mask(shape: int, scale: float, orientation: float) -> np.ndarray:
    """Render one sprite centred at the pixel corner (32, 32) of a 64 x 64 boolean image.

    Parameters
    ----------
    shape : int
        0 square, 1 ellipse, 2 heart.
    scale : float
        Linear size factor (1 = the sizes in the module docstring).
    orientation : float
        Counter-clockwise rotation as displayed, radians.
    """
    return _render_on(_SIZE, 32.0, shape, scale, orientation)


def _render_on(side: int, centre: float, shape: int, scale: float, angle: float) -> np.ndarray:
    coords = np.arange(side) + 0.5 - centre
    x = coords[None, :]
    y_up = -coords[:, None]
    cos, sin = np.cos(angle), np.sin(angle)
    # Rotating the sprite by +angle = sampling its frame at the display point rotated by -angle.
    u = x * cos + y_up * sin
    v = -x * sin + y_up * cos
    return _inside(shape, scale, u, v)


def _all_masks() -> np.ndarray:
    """All 720 masks on a ``(96, 96)`` canvas, the sprite centred at canvas pixel corner (48, 48).

    The image for offsets ``(dx, dy)`` is ``canvas[32 - dy : 96 - dy, 32 - dx : 96 - dx]``.
    """
    masks = np.zeros((len(SHAPES), len(SCALES), len(ORIENTATIONS), _CANVAS, _CANVAS), bool)
    centre = 16.0 + _PAD
    for s in range(len(SHAPES)):
        for k, scale in enumerate(SCALES):
            for o, angle in enumerate(ORIENTATIONS):
                masks[s, k, o] = _render_on(_CANVAS, centre, s, float(scale), float(angle))
    return masks.reshape(-1, _CANVAS, _CANVAS)


_WINDOW_CACHE: dict[int, np.ndarray] = {}


def _windows(size: int) -> np.ndarray:
    """Strided views of every mask at every whole-pixel shift.

    For ``size`` 64: ``(720, 33, 33, 64, 64)`` indexed by ``(block, 32 - dy, 32 - dx)``.
    For ``size`` 32: ``(720, 2, 2, 17, 17, 32, 32)`` indexed by ``(block, py, px, ry, rx)`` with
    ``32 - d = 2 r + p``: the masks are box-averaged once for each of the four pixel parities, so a
    32 px image is also a window, never a 64 px image averaged per image.
    """
    if size not in _WINDOW_CACHE:
        masks = _all_masks().astype(np.uint8)
        if size == _SIZE:
            _WINDOW_CACHE[size] = sliding_window_view(masks * np.uint8(255), (_SIZE, _SIZE), (1, 2))
        else:
            padded = np.pad(masks, ((0, 0), (0, 2), (0, 2)))
            half = _CANVAS // 2
            small = np.empty((masks.shape[0], 2, 2, half, half), dtype=np.uint8)
            lut = np.array([0, 64, 128, 191, 255], dtype=np.uint8)  # round(255 * count / 4)
            for py in range(2):
                for px in range(2):
                    crop = padded[:, py : py + _CANVAS, px : px + _CANVAS]
                    counts = crop.reshape(-1, half, 2, half, 2).sum(axis=(2, 4))
                    small[:, py, px] = lut[counts]
            _WINDOW_CACHE[size] = sliding_window_view(small, (size, size), axis=(3, 4))
    return _WINDOW_CACHE[size]


def factor_indices(indices: np.ndarray) -> np.ndarray:
    """Integer factor indices ``(n, 5)`` (shape, scale, orientation, posX, posY) of images."""
    return np.stack(np.unravel_index(np.asarray(indices, dtype=np.int64), GRID_SHAPE), axis=1)


def factor_values(indices: np.ndarray) -> np.ndarray:
    """Factor values ``(n, 5)`` as float64: shape id, scale, orientation (rad), posX, posY."""
    idx = factor_indices(indices)
    return np.stack(
        [
            idx[:, 0].astype(np.float64),
            SCALES[idx[:, 1]],
            ORIENTATIONS[idx[:, 2]],
            POSITIONS[idx[:, 3]],
            POSITIONS[idx[:, 4]],
        ],
        axis=1,
    )


def render(indices: np.ndarray, size: int = 64, chunk: int = 8192) -> np.ndarray:
    """Render the images with the given flat grid indices.

    Parameters
    ----------
    indices : array-like of int
        Flat indices into the 737,280-image grid (factor order as in the module docstring).
    size : {64, 32}
        Output side length; 32 px is the 2 x 2 box average of 64 px.
    chunk : int
        Images gathered at a time.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array ``(n, 1, size, size)``.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if size not in (32, 64):
        raise ValueError(f"dsprites renders at 64 or 32 px, got {size}")
    if indices.size and (indices.min() < 0 or indices.max() >= N_IMAGES):
        raise IndexError(f"dsprites indices must be in [0, {N_IMAGES})")
    out = np.empty((indices.size, 1, size, size), dtype=np.uint8)
    render_into(out, indices, chunk=chunk)
    return out


def render_into(out: np.ndarray, indices: np.ndarray, chunk: int = 8192) -> None:
    """Render ``indices`` into the preallocated ``out`` ``(n, 1, S, S)`` (S = 64 or 32), by chunks.

    ``out`` may be a memory-mapped array; it is filled ``chunk`` images at a time.
    """
    size = out.shape[-1]
    windows = _windows(size)
    idx = factor_indices(indices)
    block = (idx[:, 0] * len(SCALES) + idx[:, 1]) * len(ORIENTATIONS) + idx[:, 2]
    rows = _PAD - OFFSETS[idx[:, 4]]
    cols = _PAD - OFFSETS[idx[:, 3]]
    for start in range(0, len(indices), chunk):
        sl = slice(start, start + chunk)
        if size == _SIZE:
            out[sl, 0] = windows[block[sl], rows[sl], cols[sl]]
        else:
            r, c = rows[sl], cols[sl]
            out[sl, 0] = windows[block[sl], r % 2, c % 2, r // 2, c // 2]
