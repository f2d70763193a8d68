"""Sample grids of every dataset, for ``docs/datasets.md`` and for eyeballing the generators.

``python -m vae_zoo.datasets --preview docs/figures/datasets.png`` writes one row per available
dataset: one test image per class for labelled sets; for dSprites the three shapes at several
orientations, scales and positions; for Shapes3D-like a spread of factor combinations.
"""

from __future__ import annotations

import os

import numpy as np

from . import dsprites, shapes3d
from .registry import available, load

#: Number of images per row.
COLUMNS = 10


def _dsprites_samples() -> np.ndarray:
    picks = [
        (shape, scale, orient, px, py)
        for shape, scale, orient, px, py in [
            (0, 5, 0, 15, 15), (1, 5, 0, 15, 15), (2, 5, 0, 15, 15), (2, 5, 10, 15, 15),
            (2, 5, 20, 15, 15), (1, 5, 5, 15, 15), (0, 5, 5, 4, 4), (1, 0, 0, 25, 8),
            (2, 2, 30, 6, 27), (0, 3, 15, 30, 30),
        ]
    ]  # fmt: skip
    idx = np.ravel_multi_index(np.array(picks).T, dsprites.GRID_SHAPE)
    return dsprites.render(idx, 64)


def _shapes3d_samples() -> np.ndarray:
    picks = [
        (k % 10, (3 * k + 5) % 10, (7 * k + 2) % 10, k % 8, k % 4, (4 * k) % 15)
        for k in range(COLUMNS)
    ]
    idx = np.ravel_multi_index(np.array(picks).T, shapes3d.GRID_SHAPE)
    return shapes3d.render(idx, 64)


def _class_samples(name: str) -> np.ndarray:
    ds = load(name, split="test", size=64)
    firsts = [int(np.flatnonzero(ds.labels == c)[0]) for c in np.unique(ds.labels)[:COLUMNS]]
    return np.asarray(ds.images[firsts])


def sample_rows(data_dir: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """``name -> uint8 (COLUMNS, C, 64, 64)`` samples for every available dataset."""
    rows = {}
    for name, status in available(data_dir).items():
        if not status.ok:
            continue
        if name == "dsprites":
            rows[name] = _dsprites_samples()
        elif name == "shapes3d":
            rows[name] = _shapes3d_samples()
        else:
            rows[name] = _class_samples(name)
    return rows


def save_preview(
    path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> None:
    """Write a PNG grid with one labelled row of samples per available dataset (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sample_rows(data_dir)
    fig, axes = plt.subplots(
        len(rows), COLUMNS, figsize=(COLUMNS * 0.8, len(rows) * 0.85), squeeze=False
    )
    for r, (name, images) in enumerate(rows.items()):
        for c in range(COLUMNS):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                image = images[c].transpose(1, 2, 0)
                if image.shape[2] == 1:
                    ax.imshow(image[:, :, 0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(image)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    fig.savefig(path, dpi=72)
    plt.close(fig)
