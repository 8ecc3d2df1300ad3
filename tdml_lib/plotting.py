"""One figure style for the whole book (seaborn theme, SVG-friendly sizes)."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def set_theme() -> None:
    """The book's figure theme; call once at the top of a chapter."""
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10")
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def scatter_clustering(ax: plt.Axes, X: np.ndarray, labels: np.ndarray, title: str = "",
                       s: float = 12) -> plt.Axes:
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
               title: str = "", cmap: str = "gray_r") -> plt.Figure:
    """A grid of 2-D images (e.g. 28x28), optionally captioned by their labels."""
    images = np.asarray(images)
    n = len(images)
    n_rows = int(np.ceil(n / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * 0.9, n_rows * 1.0), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
