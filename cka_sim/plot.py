"""Figures for CKA results: layer x layer heatmaps and layer-wise curves along depth.

matplotlib is an optional extra (``pip install "cka-sim[plot]"``); it is imported inside the
functions, never by ``import cka_sim``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["heatmap", "layer_curve"]

_MISSING = 'cka_sim.plot needs matplotlib; install the plot extra: pip install "cka-sim[plot]"'
_NAN_COLOUR = "0.75"


@runtime_checkable
class PlottableResult(Protocol):
    """What the figures read from a result; :class:`~cka_sim.CKAResult` is one.

    This module draws and knows nothing else about results: any object with these attributes is
    drawn, and anything else is refused with a ``TypeError``.
    """

    values: np.ndarray
    row_names: list[str]
    col_names: list[str]
    estimator: str
    n_examples: int
    metadata: Mapping[str, Any]
    pvalues: np.ndarray | None
    ci_low: np.ndarray | None
    ci_high: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        """The number of rows and columns."""
        ...


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return plt


def _is_result(value: Any) -> bool:
    """A result to draw (a :class:`~cka_sim.CKAResult`), recognised by the attributes read."""
    return isinstance(value, PlottableResult)


def _check_result(result: Any, name: str) -> PlottableResult:
    if not _is_result(result):
        raise TypeError(
            f"{name} must be a CKAResult (e.g. from cka_sim.cka_matrix); got {type(result).__name__}"
        )
    return result


def _save(fig: Any, save: str | os.PathLike[str] | None) -> None:
    if save is not None:
        fig.savefig(os.fspath(save), bbox_inches="tight", dpi=150)


def heatmap(
    result: PlottableResult,
    ax: Any = None,
    *,
    annotate: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: Any = None,
    title: str | None = None,
    alpha: float | None = 0.05,
    colorbar: bool = True,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """Draw a layer x layer CKA matrix.

    Rows are the layers of the first model (top to bottom), columns those of the second.

    Parameters
    ----------
    result : CKAResult
        The matrix to draw, with its layer names.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made when omitted.
    annotate : bool, default False
        Write each value in its cell (two decimals; "NaN" where undefined).
    vmin, vmax : float, optional
        Colour limits. By default a fixed 0..1 scale (``viridis``), so figures are comparable;
        when a finite value is negative (debiased CKA) a diverging palette (``RdBu_r``) centred at
        0 on ``-v..v`` with ``v = max(1, max |value|)``.
    cmap : str or matplotlib colormap, optional
        Overrides the palette.
    title : str, optional
        Axes title; by default the estimator and number of examples.
    alpha : float or None, default 0.05
        When ``result.pvalues`` is present, cells with ``p > alpha`` are marked with a ``×``
        (not significantly different from independence). ``None`` turns the marks off.
    colorbar : bool, default True
        Draw a colour bar beside the axes.
    save : str or os.PathLike, optional
        Also write the figure there (format from the suffix: .png, .pdf, .svg).

    Returns
    -------
    matplotlib.axes.Axes
        The axes; ``ax.images[0]`` is the image, ``ax.figure`` the figure. Undefined (NaN) cells
        are drawn in light grey, without a warning (the warning came when they were computed).

    Raises
    ------
    TypeError
        If ``result`` is not a :class:`~cka_sim.CKAResult`.
    ImportError
        If matplotlib is not installed (the ``plot`` extra).

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML, whose layer x layer CKA heatmaps this draws.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import cka_matrix
    >>> from cka_sim.plot import heatmap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 16))
    >>> acts = {"a": x, "b": np.tanh(x), "c": rng.standard_normal((200, 8))}
    >>> ax = heatmap(cka_matrix(acts, acts), annotate=True)
    >>> ax.images[0].get_array().shape
    (3, 3)
    """
    plt = _pyplot()
    result = _check_result(result, "result")
    ax, image, negative = _draw_matrix(plt, ax, result, vmin, vmax, cmap, colorbar)
    _label_heatmap(ax, result, title)
    if annotate:
        _annotate_cells(ax, image, result.values, negative)
    _mark_and_colorbar(ax, image, result.pvalues, alpha, colorbar)
    _save(ax.figure, save)
    return ax


def _draw_matrix(
    plt: Any,
    ax: Any,
    result: PlottableResult,
    vmin: float | None,
    vmax: float | None,
    cmap: Any,
    colorbar: bool,
) -> tuple[Any, Any, bool]:
    """The matrix as an image (on new axes when ``ax`` is None), NaN cells masked.

    Returns the axes, the image and whether a finite value is negative (a diverging scale).
    """
    lo, hi, colours, negative = _colour_scale(result.values, vmin, vmax, cmap)
    if ax is None:
        ax = _heatmap_axes(plt, result.shape, colorbar)
    image = ax.imshow(
        np.ma.masked_invalid(result.values),
        cmap=colours,
        vmin=lo,
        vmax=hi,
        aspect="auto",
        interpolation="nearest",
    )
    return ax, image, negative


def _colour_scale(
    values: np.ndarray, vmin: float | None, vmax: float | None, cmap: Any
) -> tuple[float, float, Any, bool]:
    """Colour limits, colormap (NaN in light grey), and whether a finite value is negative.

    Fixed 0..1 ``viridis`` by default; ``RdBu_r`` on ``-v..v``, ``v = max(1, max |value|)``, when
    a finite value is negative. ``vmin``, ``vmax`` and ``cmap`` override each part.
    """
    import matplotlib as mpl

    finite = values[np.isfinite(values)]
    negative = finite.size > 0 and bool(finite.min() < 0)
    if negative:
        bound = max(1.0, float(np.abs(finite).max()))
        lo, hi = (-bound if vmin is None else vmin), (bound if vmax is None else vmax)
        palette = "RdBu_r" if cmap is None else cmap
    else:
        lo, hi = (0.0 if vmin is None else vmin), (1.0 if vmax is None else vmax)
        palette = "viridis" if cmap is None else cmap
    colours = mpl.colormaps[palette] if isinstance(palette, str) else palette
    return lo, hi, colours.with_extremes(bad=_NAN_COLOUR), negative


def _heatmap_axes(plt: Any, shape: tuple[int, int], colorbar: bool) -> Any:
    """New axes sized for a ``shape`` matrix (and its colour bar), within 14 x 12 inches."""
    rows, cols = shape
    width = min(14.0, 2.0 + 0.55 * cols + (1.2 if colorbar else 0.0))
    _, ax = plt.subplots(figsize=(max(4.0, width), max(3.5, min(12.0, 1.5 + 0.5 * rows))))
    return ax


def _label_heatmap(ax: Any, result: PlottableResult, title: str | None) -> None:
    """Layer names as ticks, axis labels from the metadata, and the title."""
    ax.set_xticks(range(result.shape[1]), result.col_names, rotation=45, ha="right")
    ax.set_yticks(range(result.shape[0]), result.row_names)
    ax.set_xlabel(str(result.metadata.get("col_label", "layers (columns)")))
    ax.set_ylabel(str(result.metadata.get("row_label", "layers (rows)")))
    ax.set_title(title if title is not None else f"CKA ({result.estimator}, n={result.n_examples})")


def _annotate_cells(ax: Any, image: Any, values: np.ndarray, negative: bool) -> None:
    """Write each value in its cell, in white on dark colours and black on light ones."""
    for (i, j), v in np.ndenumerate(values):
        text = "NaN" if np.isnan(v) else f"{v:.2f}"
        shade = image.norm(v) if np.isfinite(v) else 0.5
        dark = shade < 0.5 if not negative else abs(shade - 0.5) > 0.3
        ax.text(
            j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
        )


def _mark_and_colorbar(
    ax: Any, image: Any, pvalues: np.ndarray | None, alpha: float | None, colorbar: bool
) -> None:
    """A ``×`` on every cell with permutation ``p > alpha`` (where known); the colour bar."""
    label = "CKA"
    if alpha is not None and pvalues is not None:
        rows_ns, cols_ns = np.nonzero(pvalues > alpha)
        if rows_ns.size:
            ax.scatter(
                cols_ns,
                rows_ns,
                marker="x",
                s=60,
                color="black",
                linewidths=1.2,
                label=f"p > {alpha:g}",
            )
        label = f"CKA (× : permutation p > {alpha:g})"
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=label)


def _corresponding(result: PlottableResult) -> tuple[list[str], list[int], list[int]]:
    """Names and (row, col) indices of corresponding layers: shared names, else the diagonal."""
    shared = [name for name in result.row_names if name in result.col_names]
    if shared:
        return (
            shared,
            [result.row_names.index(s) for s in shared],
            [result.col_names.index(s) for s in shared],
        )
    k = min(result.shape)
    names = [
        r if r == c else f"{r} / {c}"
        for r, c in zip(result.row_names[:k], result.col_names[:k], strict=True)
    ]
    return names, list(range(k)), list(range(k))


def layer_curve(
    results: PlottableResult | Sequence[PlottableResult],
    labels: Sequence[str] | None = None,
    ax: Any = None,
    *,
    title: str | None = None,
    ylim: tuple[float, float] | None = None,
    save: str | os.PathLike[str] | None = None,
) -> Any:
    """CKA of corresponding layers along depth, one line per comparison.

    Corresponding layers are those with the same name in rows and columns (in row order); when
    no name is shared, the diagonal ``(0, 0), (1, 1), ...``. Where a result has ``ci_low`` and
    ``ci_high``, the interval is drawn as a shaded band around its line.

    Parameters
    ----------
    results : CKAResult or sequence of CKAResult
        The comparisons, e.g. encoder of model A vs encoder of model B for several pairs.
    labels : sequence of str, optional
        Legend entries, one per result; by default ``"comparison 1"``, ...
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made when omitted.
    title : str, optional
        Axes title; none by default.
    ylim : (float, float), optional
        Limits of the y axis; by default 0..1.05, extended below 0 when a value is negative.
    save : str or os.PathLike, optional
        Also write the figure there (format from the suffix).

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines`` holds one line per result, in order. The x tick labels are the
        corresponding layer names of the first result. An undefined (NaN) value leaves a gap in
        its line.

    Raises
    ------
    TypeError
        If a result is not a :class:`~cka_sim.CKAResult`.
    ValueError
        If ``results`` is empty, or ``labels`` does not give one label per result.
    ImportError
        If matplotlib is not installed (the ``plot`` extra).

    References
    ----------
    Kornblith, Norouzi, Lee & Hinton (2019), *Similarity of Neural Network Representations
    Revisited*, ICML, which compares corresponding layers along depth.

    Examples
    --------
    >>> import numpy as np
    >>> from cka_sim import cka_matrix
    >>> from cka_sim.plot import layer_curve
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 16))
    >>> a = {"layer1": x, "layer2": np.tanh(x @ rng.standard_normal((16, 16)))}
    >>> b = {"layer1": x + rng.standard_normal((200, 16)), "layer2": rng.standard_normal((200, 4))}
    >>> ax = layer_curve(cka_matrix(a, b), labels=["a vs b"])
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['layer1', 'layer2']
    """
    plt = _pyplot()
    results, labels = _checked_curves(results, labels)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 4.0))
    tick_names, lowest = _draw_curves(ax, results, labels)
    _finish_curve_axes(ax, tick_names, lowest, ylim, title)
    _save(ax.figure, save)
    return ax


def _checked_curves(
    results: PlottableResult | Sequence[PlottableResult], labels: Sequence[str] | None
) -> tuple[list[PlottableResult], Sequence[str]]:
    """The results as a non-empty list, each checked, and one label per result."""
    if _is_result(results):
        results = [results]
    checked = [_check_result(r, f"results[{i}]") for i, r in enumerate(results)]
    if not checked:
        raise ValueError("results is empty; pass at least one CKAResult")
    if labels is None:
        labels = [f"comparison {i + 1}" for i in range(len(checked))]
    if len(labels) != len(checked):
        raise ValueError(
            f"labels has {len(labels)} entries for {len(checked)} results; give one each"
        )
    return checked, labels


def _draw_curves(
    ax: Any, results: Sequence[PlottableResult], labels: Sequence[str]
) -> tuple[list[str], float]:
    """One line per result; the x tick names (the longest list of names) and the lowest value."""
    lowest = 0.0
    tick_names: list[str] = []
    for result, label in zip(results, labels, strict=True):
        names, low = _draw_curve(ax, result, str(label))
        lowest = min(lowest, low)
        if len(names) > len(tick_names):
            tick_names = names if not tick_names else tick_names + names[len(tick_names) :]
    return tick_names, lowest


def _draw_curve(ax: Any, result: PlottableResult, label: str) -> tuple[list[str], float]:
    """One result's line (and interval band); its layer names and its lowest value (at most 0)."""
    names, rows, cols = _corresponding(result)
    depth = np.arange(len(names))
    y = result.values[rows, cols]
    (line,) = ax.plot(depth, y, marker="o", label=label)
    lowest = 0.0
    if result.ci_low is not None and result.ci_high is not None:
        ax.fill_between(
            depth,
            result.ci_low[rows, cols],
            result.ci_high[rows, cols],
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
        lowest = min(lowest, float(np.nanmin(result.ci_low[rows, cols])))
    lowest = min(lowest, float(np.nanmin(y)) if np.isfinite(y).any() else 0.0)
    return names, lowest


def _finish_curve_axes(
    ax: Any,
    tick_names: list[str],
    lowest: float,
    ylim: tuple[float, float] | None,
    title: str | None,
) -> None:
    """Layer names as x ticks, axis labels, y limits (0..1.05 or below ``lowest``), legend."""
    ax.set_xticks(range(len(tick_names)), tick_names, rotation=45, ha="right")
    ax.set_xlabel("layer (depth)")
    ax.set_ylabel("CKA")
    ax.set_ylim(ylim if ylim is not None else (min(0.0, lowest - 0.05), 1.05))
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title)
    ax.legend()
