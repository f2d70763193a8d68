"""Tests for cka_sim.plot: rendered files and the artists on the axes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cka_sim import CKAResult

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cka_sim.plot import heatmap, layer_curve  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _result(values, rows=None, cols=None, **extra) -> CKAResult:
    values = np.asarray(values, dtype=float)
    rows = rows or [f"r{i}" for i in range(values.shape[0])]
    cols = cols or [f"c{j}" for j in range(values.shape[1])]
    return CKAResult(values, rows, cols, "linear", 100, {}, **extra)


def _tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


def test_heatmap_png_names_and_fixed_scale(tmp_path) -> None:
    res = _result([[1.0, 0.3, np.nan], [0.2, 0.9, 0.5]], ["enc.0", "enc.1"], ["a", "b", "c"])
    out = tmp_path / "heat.png"
    ax = heatmap(res, annotate=True, save=out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE and out.stat().st_size > 1000
    assert _tick_texts(ax.get_xticklabels()) == ["a", "b", "c"]
    assert _tick_texts(ax.get_yticklabels()) == ["enc.0", "enc.1"]
    image = ax.images[0]
    assert image.get_clim() == (0.0, 1.0)
    assert image.get_cmap().name == "viridis"
    assert image.get_array().mask[0, 2]  # the NaN cell is masked and drawn in the 'bad' colour
    assert mpl.colors.to_hex(image.get_cmap().get_bad()) == mpl.colors.to_hex("0.75")
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["1.00", "0.30", "NaN", "0.20", "0.90", "0.50"])
    assert len(ax.figure.axes) == 2  # the axes and its colour bar


def test_heatmap_diverging_when_negative_and_pdf(tmp_path) -> None:
    res = _result([[0.8, -0.1], [-0.05, 0.4]])
    ax = heatmap(res, save=tmp_path / "heat.pdf")
    assert (tmp_path / "heat.pdf").read_bytes()[:4] == b"%PDF"
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert ax.images[0].get_cmap().name.startswith("RdBu_r")
    explicit = heatmap(res, vmin=-0.2, vmax=0.9, cmap="magma", colorbar=False)
    assert explicit.images[0].get_clim() == (-0.2, 0.9)
    assert len(explicit.figure.axes) == 1


def test_heatmap_marks_nonsignificant_cells() -> None:
    pvalues = np.array([[0.001, 0.4], [0.2, 0.01]])
    ax = heatmap(_result([[0.9, 0.1], [0.05, 0.7]], pvalues=pvalues))
    (marks,) = ax.collections
    np.testing.assert_array_equal(sorted(map(tuple, marks.get_offsets())), [(0, 1), (1, 0)])
    assert len(heatmap(_result([[0.9]], pvalues=[[0.5]]), alpha=None).collections) == 0


def test_result_plot_draws_on_given_axes() -> None:
    _, ax = plt.subplots()
    assert _result([[0.5]]).plot(ax=ax, title="hello") is ax
    assert ax.get_title() == "hello"


def test_layer_curve_lines_bands_and_names(tmp_path) -> None:
    names = ["conv1", "conv2", "fc"]
    with_ci = _result(
        np.diag([0.9, 0.7, 0.4]) + 0.01,
        names,
        names,
        ci_low=np.full((3, 3), 0.0),
        ci_high=np.full((3, 3), 1.0),
    )
    other = _result(
        [[0.8, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.3]], ["x", "y", "z"], ["u", "v", "w"]
    )
    out = tmp_path / "curve.png"
    ax = layer_curve([with_ci, other], labels=["A vs B", "A vs C"], save=out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.91, 0.71, 0.41])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.8, 0.6, 0.3])  # the diagonal
    assert len(ax.collections) == 1  # one band: only the first result has intervals
    assert _tick_texts(ax.get_xticklabels()) == names
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A vs B", "A vs C"]


def test_layer_curve_matches_shared_names_in_any_order() -> None:
    res = _result([[0.1, 0.9], [0.8, 0.2]], ["a", "b"], ["b", "a"])
    ax = layer_curve(res)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.9, 0.8])  # (a, a) then (b, b)


def test_plot_argument_errors() -> None:
    with pytest.raises(TypeError, match="result must be a CKAResult"):
        heatmap(np.eye(2))
    with pytest.raises(ValueError, match="labels has 1 entries for 2 results"):
        layer_curve([_result([[1.0]]), _result([[1.0]])], labels=["one"])
    with pytest.raises(ValueError, match="results is empty"):
        layer_curve([])


def test_missing_matplotlib_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "cka-sim\[plot\]"'):
        heatmap(_result([[1.0]]))


def test_import_cka_sim_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, cka_sim, cka_sim.stats; print('matplotlib' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
