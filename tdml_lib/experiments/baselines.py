"""Baseline runs: a baseline clusters unlabelled images, *then* it is scored.

The true labels are checked, set aside, and handed to the metrics only after the
clustering is finished. Chapters 6 (Selective Pseudo-Label Clustering) and 7 (CBSwR).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..baselines.cbswr import cbswr, embedding_nmi, recall_at_k
from ..baselines.common import BaselineResult
from ..baselines.spc import selective_pseudo_label_clustering
from ..metrics import external_scores
from ..validation import check_labels


def _method(method: str | Callable[..., BaselineResult]) -> Callable[..., BaselineResult]:
    if callable(method):
        return method
    known = {"spc": selective_pseudo_label_clustering, "cbswr": cbswr}
    if method not in known:
        raise ValueError(f"unknown baseline {method!r}; choose one of {sorted(known)} or pass a function.")
    return known[method]


def evaluate_baseline(method: str | Callable[..., BaselineResult], images: object, labels_true: object,
                      n_clusters: int | None = None, **kwargs: Any) -> tuple[BaselineResult, dict[str, float]]:
    """Run a baseline on unlabelled images, then score it against the truth.

    The true labels are checked, set aside, and used only after the clustering is
    finished: the method is called with ``(images, n_clusters, **kwargs)`` and never
    sees them (the tests shuffle them and check the clustering is unchanged).

    Args:
        method: ``"spc"``, ``"cbswr"`` or a function with the same signature.
        images: (N, H, W) images or (N, d) features.
        labels_true: (N,) class ids, for scoring only.
        n_clusters: K; default the number of classes in ``labels_true`` (K known, as in
            both papers' evaluations).
        **kwargs: passed to the method (epochs, seed, device, ...).

    Returns:
        The method's :class:`BaselineResult` and a dict with ``acc``, ``nmi``, ``ari`` of
        its clustering and, when it learned an embedding, ``recall_at_1`` and
        ``embedding_nmi`` (NMI of k-means on the embedding, CBSwR's protocol).
    """
    fn = _method(method)
    n = len(np.asarray(images)) if hasattr(images, "__len__") else 0
    truth = check_labels(labels_true, n, "labels_true")
    k = int(truth.max()) + 1 if n_clusters is None else n_clusters
    result = fn(images, k, **kwargs)
    scores = external_scores(truth, result.labels)
    if result.embeddings is not None:
        scores["recall_at_1"] = recall_at_k(result.embeddings, truth, k=1)
        scores["embedding_nmi"] = embedding_nmi(result.embeddings, truth, seed=kwargs.get("seed", 0))
    return result, scores


def dataset_subset(name: str, split: str, n_images: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A seeded subset of ``n_images`` images of a dataset split (all when None):
    ``(images, labels, source)``."""
    from .. import data

    ds = data.load(name, split)
    idx = np.random.default_rng(seed).permutation(len(ds.labels))
    idx = idx if n_images is None else idx[:n_images]
    return ds.images[idx], np.asarray(ds.labels)[idx], ds.source


def run_on_datasets(method: str, datasets: Sequence[str], split: str, n_images: int | None, seed: int = 0,
                    pca_dim: int = 50, label: str | None = None, reference_label: str = "k-means, {features}",
                    **kwargs: Any) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, BaselineResult]], pd.DataFrame,
                                            dict[str, str]]:
    """Run a baseline on a subset of each dataset, with k-means on pixels and on PCA beside it.

    Chapters 6 and 7: for each dataset, ``n_images`` seeded images of ``split``; the
    baseline through :func:`evaluate_baseline` (K = the number of classes, as both papers
    evaluate), timed; k-means (:func:`tdml_lib.baselines.kmeans_labels`) on the same
    pixels and on a ``pca_dim``-dimensional PCA. For CBSwR, whose output is an embedding,
    the k-means rows also get Recall@1 and embedding NMI of the pixels / PCA features.

    Returns:
        ``(runs {dataset: (images, truth, result)}, one row per dataset and method,
        data sources {dataset: source})``.
    """
    import time

    from sklearn.decomposition import PCA

    from ..baselines import kmeans_labels, prepare_inputs

    label = label or {"spc": "SPC (this book)", "cbswr": "CBSwR (this book)"}.get(method, str(method))
    runs, rows, sources = {}, [], {}
    for name in datasets:
        images, truth, sources[name] = dataset_subset(name, split, n_images, seed)
        k = len(np.unique(truth))
        start = time.perf_counter()
        result, scores = evaluate_baseline(method, images, truth, n_clusters=k, seed=seed, **kwargs)
        rows.append({"dataset": name, "method": label, **scores, "seconds": time.perf_counter() - start})
        runs[name] = (images, truth, result)
        for feats, dim in (("pixels", None), (f"PCA-{pca_dim}", pca_dim)):
            pred = kmeans_labels(images, k, pca_dim=dim, seed=seed)
            row = {"dataset": name, "method": reference_label.format(features=feats), **external_scores(truth, pred)}
            if result.embeddings is not None:
                x = prepare_inputs(images).reshape(len(images), -1)
                x = x if dim is None else PCA(dim, random_state=seed).fit_transform(x)
                row.update(recall_at_1=recall_at_k(x, truth, k=1), embedding_nmi=embedding_nmi(x, truth, seed=seed))
            rows.append(row)
    return runs, pd.DataFrame(rows), sources


def cbswr_embedding_module(images: np.ndarray, n_clusters: int, seed: int = 0, **kwargs: Any) -> pd.DataFrame:
    """CBSwR trained twice on the same images, with the paper's embedding module (linear,
    L2) and with the book's (batch norm, linear, L2): per training epoch, how many
    clusters the pseudo-labels use and the metric loss (chapter 7 explains the choice)."""
    curves = []
    for variant, batchnorm in (("paper: linear, L2", False), ("book: batch norm, linear, L2", True)):
        r = cbswr(images, n_clusters, embedding_batchnorm=batchnorm, seed=seed, **kwargs)
        h = r.history[r.history.phase == "train"]
        curves.append(pd.DataFrame({"embedding module": variant, "epoch": h.epoch,
                                    "clusters used": h.clusters_used, "metric loss": h.metric}))
    return pd.concat(curves, ignore_index=True)
