"""Scoring clusterings: against the truth (ACC, NMI, ARI) and without it (internal indices).

External metrics compare a clustering with the correct one and are used only to
*report*; internal indices (silhouette, Calinski–Harabasz, Davies–Bouldin) grade a
clustering from X alone and are the baselines the learned critic must beat. All come
from scikit-learn/scipy. Explained in chapter 1; the poster's Best/Top-3 in chapter 5.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

from .validation import (as_real_array, check_index, check_labelings, check_labels, check_points,
                         check_positive_int)


def _pair(labels_true: object, labels_pred: object) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(labels_true)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"labels_true must be a non-empty 1-D array, got shape {t.shape}.")
    t = check_labels(t, t.shape[0], "labels_true")
    return t, check_labels(labels_pred, t.shape[0], "labels_pred")


def clustering_accuracy(labels_true: object, labels_pred: object) -> float:
    """Unsupervised clustering accuracy: the best one-to-one match of cluster ids to
    classes (Hungarian method, ``scipy.optimize.linear_sum_assignment``), as a fraction.

    Invariant to renaming clusters; extra clusters count as errors.
    """
    t, p = _pair(labels_true, labels_pred)
    contingency = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(contingency, (p, t), 1)
    rows, cols = linear_sum_assignment(-contingency)
    return float(contingency[rows, cols].sum() / t.size)


def nmi(labels_true: object, labels_pred: object) -> float:
    """Normalised mutual information (scikit-learn, arithmetic normalisation)."""
    return float(skm.normalized_mutual_info_score(*_pair(labels_true, labels_pred)))


def ari(labels_true: object, labels_pred: object) -> float:
    """Adjusted Rand index (scikit-learn)."""
    return float(skm.adjusted_rand_score(*_pair(labels_true, labels_pred)))


def external_scores(labels_true: object, labels_pred: object) -> dict[str, float]:
    """ACC, NMI and ARI in one dict."""
    return {"acc": clustering_accuracy(labels_true, labels_pred),
            "nmi": nmi(labels_true, labels_pred), "ari": ari(labels_true, labels_pred)}


def rank_of(scores: Sequence[float], correct_index: int) -> int:
    """1-based rank of ``scores[correct_index]``; ties count against it (pessimistic),
    so a scorer that gives every candidate the same score never gets a Best. NaN scores
    rank last.

    Raises:
        ValueError: see :func:`best_and_topk`.
    """
    s = as_real_array(scores, "scores", "(n_candidates,)").astype(np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {s.shape}.")
    correct_index = check_index(correct_index, "correct_index", s.size)
    s = np.where(np.isnan(s), -np.inf, s)
    others = np.delete(s, correct_index)
    return int(1 + np.sum(others >= s[correct_index]))


def best_and_topk(scores: Sequence[float], correct_index: int, k: int = 3) -> tuple[bool, bool]:
    """The poster's criteria for one problem: is the correct clustering ranked first
    (*Best*), and is it among the first ``k`` (*Top k*)? Higher score = better.

    Raises:
        ValueError: scores not a non-empty 1-D sequence of numbers, ``correct_index``
            not an integer position in it (floats and bools are refused), or ``k`` not a
            positive integer.
    """
    k = check_positive_int(k, "k")
    r = rank_of(scores, correct_index)
    return r == 1, r <= k


# --- internal indices ------------------------------------------------------------------

def _valid_k(labels: np.ndarray) -> bool:
    k = labels.max() + 1
    return 2 <= k <= len(labels) - 1


def _silhouette(X: np.ndarray, labels: np.ndarray) -> float:
    return float(skm.silhouette_score(X, labels))


def _calinski_harabasz(X: np.ndarray, labels: np.ndarray) -> float:
    return float(skm.calinski_harabasz_score(X, labels))


def _davies_bouldin(X: np.ndarray, labels: np.ndarray) -> float:
    # Lower is better for DB: negated so that every scorer here ranks higher = better.
    return -float(skm.davies_bouldin_score(X, labels))


INTERNAL_INDICES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "silhouette": _silhouette,
    "calinski_harabasz": _calinski_harabasz,
    "davies_bouldin": _davies_bouldin,
}


def score_clusterings(name: str, X: object, labelings: Sequence[object]) -> np.ndarray:
    """Score many clusterings of one point set with an internal index, higher = better.

    Args:
        name: ``"silhouette"``, ``"calinski_harabasz"`` or ``"davies_bouldin"`` (negated).
        X: point set (n, d).
        labelings: clusterings of X, each a label vector of length n.

    Returns:
        float array (B,). A clustering with one cluster, or one cluster per point, where
        the index is undefined, gets ``-inf`` (ranked last).
    """
    if name not in INTERNAL_INDICES:
        raise ValueError(f"unknown index {name!r}; choose one of {sorted(INTERNAL_INDICES)}.")
    Xc = check_points(X)
    labs = check_labelings(labelings, Xc.shape[0])
    fn = INTERNAL_INDICES[name]
    return np.array([fn(Xc, lab) if _valid_k(lab) else -np.inf for lab in labs], dtype=np.float64)


class IndexScorer:
    """An internal index behind the same ``score_many`` interface as the learned critic,
    so that the agent and the evaluation take either (a *scorer*, higher = better)."""

    def __init__(self, name: str = "silhouette") -> None:
        if name not in INTERNAL_INDICES:
            raise ValueError(f"unknown index {name!r}; choose one of {sorted(INTERNAL_INDICES)}.")
        self.name = name

    def score_many(self, X: object, labelings: Sequence[object]) -> np.ndarray:
        """Scores of many clusterings of X (see :func:`score_clusterings`)."""
        return score_clusterings(self.name, X, labelings)

    def score(self, X: object, labels: object) -> float:
        """Score of one clustering of X."""
        return float(self.score_many(X, [labels])[0])

    def __repr__(self) -> str:
        return f"IndexScorer({self.name!r})"
