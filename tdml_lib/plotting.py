"""One figure style for the whole book, sized for its text column.

The book's HTML column is about 750 px wide. :func:`set_theme` makes every figure
:data:`COLUMN_WIDTH` inches wide at :data:`DPI` dots per inch (so a figure is shown at
its natural size, neither squeezed nor blown up) and turns on matplotlib's
``constrained`` layout, which keeps a suptitle, axis labels and colour bars from
overlapping. :func:`figure` makes a grid of panels in that width; :func:`image_grid`
shows images in it. Choices: the width was measured on the built book (sphinx-book-theme,
1280 px window); ``constrained`` layout is matplotlib's own answer to overlapping labels
(``tight_layout`` ignores suptitles). It does not keep two panels' titles, or a heatmap's
labels, apart: every figure made here warns (:class:`OverlappingTextWarning`) when it is
rendered to an image (shown in a notebook or saved) with texts that overlap
(:func:`overlapping_texts`), and the book's notebook tests fail on that warning.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import warnings

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from .methods import (AGENT_ENSEMBLE_K_FOUND, AGENT_K_FOUND, DEFAULT_REWARD_TRAINING, KMEANS_SILHOUETTE,
                      ONE_RUN_REWARDS, SHIPPED_CRITIC_TRAINING)

COLUMN_WIDTH = 6.8
"""Width of every figure, in inches (the book's text column at :data:`DPI`)."""
DPI = 110
"""Dots per inch of figures shown in a notebook or the book."""
ROW_HEIGHT = 2.6
"""Default height of one row of panels, in inches."""


class OverlappingTextWarning(UserWarning):
    """A figure was drawn with two texts (titles, labels, tick labels, annotations) on top
    of each other."""


def _drawn_tick_labels(axis: Any, coordinate: int) -> list[Any]:
    """The tick labels of ``axis`` inside its view limits: matplotlib lists labels for
    ticks beyond the limits too, but never draws them."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * (high - low)
    return [t for t in axis.get_ticklabels() if low - slack <= t.get_position()[coordinate] <= high + slack]


def _texts(fig: plt.Figure) -> list[Any]:
    """The figure's drawn, non-empty texts: suptitle, and per panel its titles,
    annotations (e.g. a heatmap's numbers) and, when its axes are on, axis labels and the
    tick labels inside the view limits."""
    found = [t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.axison:
            found += [ax.xaxis.label, ax.yaxis.label]
            found += _drawn_tick_labels(ax.xaxis, 0) + _drawn_tick_labels(ax.yaxis, 1)
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def overlapping_texts(fig: plt.Figure, renderer: Any = None) -> list[tuple[str, str]]:
    """Pairs of texts of ``fig`` whose drawn boxes overlap (by more than a pixel each way).

    Args:
        fig: a matplotlib figure.
        renderer: the renderer that drew it (default: the canvas's).

    Returns:
        ``[(text_a, text_b), ...]``; empty when no two texts overlap.
    """
    renderer = renderer or fig.canvas.get_renderer()
    texts = _texts(fig)
    boxes = [t.get_window_extent(renderer).expanded(1.0, 1.0).padded(-1.0) for t in texts]
    pairs = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if boxes[i].width > 0 and boxes[j].width > 0 and boxes[i].overlaps(boxes[j]):
                pairs.append((texts[i].get_text(), texts[j].get_text()))
    return pairs


OVERLAP_WARNING = "overlapping text in a figure"
"""How :func:`watch_overlaps`' warning begins (the book's notebook tests look for it on stderr)."""


def watch_overlaps(fig: plt.Figure) -> plt.Figure:
    """Make ``fig`` warn (:class:`OverlappingTextWarning`) whenever it is rendered to an
    image (``print_figure``: a notebook showing it, ``savefig``) with overlapping texts;
    :func:`figure` and :func:`image_grid` do this for every figure.

    The check follows the final rendering, not every draw: seaborn, for one, draws a
    heatmap with vertical labels to test them before it turns them.
    """
    canvas = fig.canvas
    print_figure = canvas.print_figure

    def print_and_check(*args: Any, **kwargs: Any) -> Any:
        out = print_figure(*args, **kwargs)
        pairs = overlapping_texts(fig)
        if pairs:
            shown = "; ".join(f"{a!r} and {b!r}" for a, b in pairs[:3])
            more = f" (+{len(pairs) - 3} more)" if len(pairs) > 3 else ""
            warnings.warn(f"{OVERLAP_WARNING}: {shown}{more}", OverlappingTextWarning, stacklevel=2)
        return out

    canvas.print_figure = print_and_check
    return fig


def set_theme() -> None:
    """The book's figure theme; call once at the top of a chapter.

    Seaborn's ``whitegrid`` with its ``notebook`` context scaled down to the column,
    figures :data:`COLUMN_WIDTH` inches wide at :data:`DPI`, ``constrained`` layout, and
    bold titles.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10", font_scale=0.8)
    plt.rcParams.update({
        "figure.figsize": (COLUMN_WIDTH, ROW_HEIGHT + 0.6),
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "savefig.bbox": "tight",
        "figure.constrained_layout.use": True,
        "axes.titleweight": "bold",
        "axes.titlesize": "medium",
        "figure.titlesize": "large",
        "legend.fontsize": "small",
    })


def figure(ncols: int = 1, nrows: int = 1, height: float | None = None, width: float = COLUMN_WIDTH,
           **subplots: Any) -> tuple[plt.Figure, Any]:
    """A figure of ``nrows`` x ``ncols`` panels that fits the book's column.

    Args:
        ncols, nrows: the grid of panels.
        height: total height in inches; default :data:`ROW_HEIGHT` per row (plus room
            for a title).
        width: total width in inches; default the column.
        **subplots: passed to :func:`matplotlib.pyplot.subplots` (``sharex``,
            ``squeeze``, ...).

    Returns:
        ``(fig, axes)`` as :func:`matplotlib.pyplot.subplots` returns them, with
        ``constrained`` layout (a suptitle never overlaps the panels), warning when drawn
        with overlapping texts (:func:`watch_overlaps`).

    Raises:
        ValueError: a grid size below 1 or a size that is not positive.
    """
    for name, value in (("ncols", ncols), ("nrows", nrows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    height = ROW_HEIGHT * nrows + 0.6 if height is None else height
    if not (width > 0 and height > 0):
        raise ValueError(f"width and height must be positive inches, got {width!r} x {height!r}.")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **subplots)
    return watch_overlaps(fig), axes


def scatter_clustering(ax: plt.Axes, X: np.ndarray, labels: np.ndarray, title: str = "",
                       s: float = 10) -> plt.Axes:
    """Draw a clustering of a point set; more than 2-D points are drawn by their first two
    principal components."""
    X = np.asarray(X)
    if X.shape[1] > 2:
        from sklearn.decomposition import PCA
        X = PCA(2, random_state=0).fit_transform(X)
    ax.scatter(X[:, 0], X[:, 1], c=np.asarray(labels), cmap="tab10", s=s, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def image_grid(images: np.ndarray, labels: Sequence[object] | None = None, n_cols: int = 10,
               title: str = "", cmap: str = "gray_r", width: float = COLUMN_WIDTH) -> plt.Figure:
    """A grid of 2-D images (e.g. 28x28) in the column's width, optionally captioned by
    their labels.

    Raises:
        ValueError: no images, or ``n_cols`` below 1.
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0 or n_cols < 1:
        raise ValueError(f"image_grid needs images and n_cols >= 1, got {n} images, n_cols={n_cols!r}.")
    n_cols = min(n_cols, n)
    n_rows = int(np.ceil(n / n_cols))
    cell = width / n_cols
    label_room = 0.18 if labels is not None else 0.0
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False, layout="constrained",
                             figsize=(width, n_rows * (cell + label_room) + (0.35 if title else 0.0)))
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=7, pad=2)
    if title:
        fig.suptitle(title)
    return watch_overlaps(fig)


_STAR_STYLES = {DEFAULT_REWARD_TRAINING: ("gold", "agent, the default reward (what tdml.cluster uses)"),
                SHIPPED_CRITIC_TRAINING: ("tab:red", "agent, the reward's Numbers critic alone")}
ONE_RUN_STARS = {key: _STAR_STYLES[key] for key in ONE_RUN_REWARDS}
"""The stars of :func:`k_found_by_protocol`, one per given reward of
:data:`tdml_lib.methods.ONE_RUN_REWARDS` (a new one without a style fails at import):
training key -> (colour, legend label)."""


def k_found_by_protocol(summary: Any, trainings: Sequence[str], labels: Mapping[str, str], title: str,
                        one_run: Mapping[str, tuple[str, str]] | None = None) -> plt.Figure:
    """How often the agent found the true K, per synthetic family (chapter 4's protocol
    figure): a bar per critic training protocol in ``trainings`` (mean over critic seeds,
    whiskers from the lowest to the highest seed), a diamond for the agent whose reward is
    the mean of those seeds' critics, a star per given reward (:data:`ONE_RUN_STARS`: gold
    for the default reward, red for its Numbers critic alone), and a black dash for
    k-means with K chosen by silhouette.

    Args:
        summary: :func:`tdml_lib.experiments.protocol_summary` (columns ``training``,
            ``family``, ``method``, ``k_exact``, ``k_exact_min``, ``k_exact_max``).
        trainings: the protocols drawn as bars, in order.
        labels: how the legend names each protocol (``reference.TRAINING_LABELS``).
        title: the axes' title.
        one_run: ``{training key: (colour, legend label)}`` of the stars (default
            :data:`ONE_RUN_STARS`).
    """
    families = list(dict.fromkeys(summary.family))
    x, width = np.arange(len(families)), 0.8 / max(1, len(trainings))

    def found(training: str | None, method: str) -> Any:
        rows = summary[(summary.method == method) & ((summary.training == training) if training else True)]
        return 100 * rows.groupby("family")[["k_exact", "k_exact_min", "k_exact_max"]].mean().reindex(families)

    fig, ax = figure(height=3.4)
    ensemble_label = "agent, mean of the seeds' critics"   # once in the legend
    for j, training in enumerate(trainings):
        part, at = found(training, AGENT_K_FOUND), x + (j - (len(trainings) - 1) / 2) * width
        ax.bar(at, part.k_exact, width, label=f"agent, critic: {labels.get(training, training)}")
        ax.errorbar(at, part.k_exact, yerr=[part.k_exact - part.k_exact_min, part.k_exact_max - part.k_exact],
                    fmt="none", color="black", capsize=3)
        ensemble = found(training, AGENT_ENSEMBLE_K_FOUND)
        if ensemble.k_exact.notna().any():
            ax.scatter(at, ensemble.k_exact, marker="D", s=30, color="white", edgecolor="black", zorder=4,
                       label=ensemble_label)
            ensemble_label = None
    for training, (colour, label) in (ONE_RUN_STARS if one_run is None else one_run).items():
        star = found(training, AGENT_K_FOUND)
        if star.k_exact.notna().any():
            ax.scatter(x, star.k_exact, marker="*", s=140, color=colour, edgecolor="black", linewidth=0.5,
                       zorder=5, label=label)
    ax.scatter(x, found(None, KMEANS_SILHOUETTE).k_exact, marker="_", s=900, color="black", zorder=3,
               label="k-means (K by silhouette)")
    ax.set(xticks=x, xticklabels=[f.replace("_", " ") for f in families], ylabel="true K found (%)",
           ylim=(0, 110), title=title)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", markerscale=0.4)
    return fig
