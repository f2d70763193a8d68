"""Figures for CKA results: layer x layer heatmaps and layer-wise curves along depth.

matplotlib is an optional extra (``pip install "cka-sim[plot]"``); it is imported inside the
functions, never by ``import cka_sim``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the result module imports this one (CKAResult.plot); no import back
    from .result import CKAResult

_MISSING = 'cka_sim.plot needs matplotlib; install the plot extra: pip install "cka-sim[plot]"'
_NAN_COLOUR = "0.75"


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(_MISSING) from err
    return plt


def _is_result(value: Any) -> bool:
    """A :class:`~cka_sim.CKAResult`, recognised by its class without importing its module."""
    return any(
        c.__name__ == "CKAResult" and c.__module__ == "cka_sim.result" for c in type(value).__mro__
    )


def _check_result(result: Any, name: str) -> CKAResult:
    if not _is_result(result):
        raise TypeError(
            f"{name} must be a CKAResult (e.g. from cka_sim.cka_matrix); got {type(result).__name__}"
        )
    return result


def _save(fig: Any, save: str | os.PathLike[str] | None) -> None:
    if save is not None:
        fig.savefig(os.fspath(save), bbox_inches="tight", dpi=150)


def heatmap(
    result: CKAResult,
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
    import matplotlib as mpl

    result = _check_result(result, "result")
    values = result.values
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
    colours = colours.with_extremes(bad=_NAN_COLOUR)
    if ax is None:
        rows, cols = result.shape
        width = min(14.0, 2.0 + 0.55 * cols + (1.2 if colorbar else 0.0))
        _, ax = plt.subplots(figsize=(max(4.0, width), max(3.5, min(12.0, 1.5 + 0.5 * rows))))
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=colours,
        vmin=lo,
        vmax=hi,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_xticks(range(result.shape[1]), result.col_names, rotation=45, ha="right")
    ax.set_yticks(range(result.shape[0]), result.row_names)
    ax.set_xlabel(str(result.metadata.get("col_label", "layers (columns)")))
    ax.set_ylabel(str(result.metadata.get("row_label", "layers (rows)")))
    ax.set_title(title if title is not None else f"CKA ({result.estimator}, n={result.n_examples})")
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            text = "NaN" if np.isnan(v) else f"{v:.2f}"
            shade = image.norm(v) if np.isfinite(v) else 0.5
            dark = shade < 0.5 if not negative else abs(shade - 0.5) > 0.3
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    label = "CKA"
    if alpha is not None and result.pvalues is not None:
        rows_ns, cols_ns = np.nonzero(result.pvalues > alpha)
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
    _save(ax.figure, save)
    return ax


def _corresponding(result: CKAResult) -> tuple[list[str], list[int], list[int]]:
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
    results: CKAResult | Sequence[CKAResult],
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
    if _is_result(results):
        results = [results]
    results = [_check_result(r, f"results[{i}]") for i, r in enumerate(results)]
    if not results:
        raise ValueError("results is empty; pass at least one CKAResult")
    if labels is None:
        labels = [f"comparison {i + 1}" for i in range(len(results))]
    if len(labels) != len(results):
        raise ValueError(
            f"labels has {len(labels)} entries for {len(results)} results; give one each"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 4.0))
    lowest = 0.0
    tick_names: list[str] = []
    for result, label in zip(results, labels, strict=True):
        names, rows, cols = _corresponding(result)
        depth = np.arange(len(names))
        y = result.values[rows, cols]
        (line,) = ax.plot(depth, y, marker="o", label=str(label))
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
        if len(names) > len(tick_names):
            tick_names = names if not tick_names else tick_names + names[len(tick_names) :]
    ax.set_xticks(range(len(tick_names)), tick_names, rotation=45, ha="right")
    ax.set_xlabel("layer (depth)")
    ax.set_ylabel("CKA")
    ax.set_ylim(ylim if ylim is not None else (min(0.0, lowest - 0.05), 1.05))
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title)
    ax.legend()
    _save(ax.figure, save)
    return ax
