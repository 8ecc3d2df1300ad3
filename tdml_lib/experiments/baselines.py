"""Baseline runs: a baseline clusters unlabelled images, *then* it is scored.

The true labels are checked, set aside, and handed to the metrics only after the
clustering is finished. Chapters 6 (Selective Pseudo-Label Clustering) and 7 (CBSwR).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

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
