"""The probe: a pairwise ranker on hand-made statistics, the baseline the critic must beat.

No graph auto-encoder, no network: each clustering is described by hand-made
statistics (:func:`statistics`: the node features pooled over clusters, and the
whole-clustering statistics of :func:`tdml_lib.graphs.clustering_statistics`: kNN label
agreement, silhouette-like quantiles, cluster size balance, centroid side against kNN
majority, top cuts, boundary density) and a *linear* score ``w . f`` is learned from
labelled problems so that, within each problem, the correct clustering scores above
each of its negatives: logistic regression on the differences ``f(truth) - f(negative)``
(the pairwise reduction of RankSVM, Herbrich et al. 2000; Joachims 2002), from
scikit-learn. Trained on the same problems and negatives as the critic, it tells how
much of the critic's ranking the learned embedding and network add (chapters 3 and 5).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import graphs
from .gae import pool_over_clusters
from .problems import Problem
from .validation import check_labelings, check_points


def statistics(X: object, labelings: Sequence[object] | np.ndarray, k: int = graphs.DEFAULT_K) -> np.ndarray:
    """The hand-made statistics of many clusterings of X, (B, 4 * len(NODE_FEATURES) +
    len(STATISTICS)): the node features of :mod:`tdml_lib.graphs` averaged per cluster,
    then their mean, max, min and spread over clusters, and the whole-clustering
    statistics. The critic's embedding holds the same numbers beside the learned GAE
    codes, so the probe measures what the codes and the network add."""
    Xc = check_points(X)
    labs = check_labelings(labelings, Xc.shape[0])
    ps = graphs.prepare_point_set(Xc, k, device="cpu")
    labels = graphs.as_label_tensor(labs, ps.device)
    with torch.inference_mode():
        feats = graphs.clustering_features(ps, labels)
        pooled = pool_over_clusters(feats.x, feats.onehot, feats.counts)
        return torch.cat([pooled, graphs.clustering_statistics(ps, labels, feats)], 1).double().numpy()


class ProbeScorer:
    """A linear pairwise ranker on :func:`statistics` (a *scorer*: higher = better).

    Attributes:
        name: ``"probe"`` (its row in the transfer table).
        coef_: the weights of the linear score (on raw statistics; the fit standardises
            the differences by their spread).
    """

    name = "probe"

    def __init__(self, C: float = 1.0, k: int = graphs.DEFAULT_K) -> None:
        self.C, self.k = float(C), int(k)
        self.coef_: np.ndarray | None = None

    def fit(self, problems: Sequence[Problem], n_negatives: int = 24, n_degenerate: int = 6,
            seed: int = 0) -> "ProbeScorer":
        """Fit on labelled problems, each with its truth and freshly drawn negatives
        (:func:`tdml_lib.candidates.training_negatives` and ``degenerate_negatives``,
        the seeds the critic's training uses, so both see the same negatives)."""
        from sklearn.linear_model import LogisticRegression

        from .candidates import degenerate_negatives, training_negatives

        if len(problems) == 0:
            raise ValueError("ProbeScorer.fit needs at least one labelled problem.")
        diffs = []
        for i, p in enumerate(problems):
            negs = [training_negatives(p, n_negatives, seed=seed * 100_003 + i)]
            if n_degenerate:
                negs.append(degenerate_negatives(p, n_degenerate, seed=seed * 100_003 + i))
            negs = np.vstack(negs)
            if len(negs) == 0:
                continue
            f = statistics(p.X, np.vstack([p.labels[None], negs]), self.k)
            diffs.append(f[0][None] - f[1:])
        D = np.vstack(diffs)
        scale = D.std(0)
        scale[scale == 0] = 1.0
        Z = D / scale
        # both orientations, so that the classes are balanced and no intercept is needed
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000)
        model.fit(np.vstack([Z, -Z]), np.r_[np.ones(len(Z)), np.zeros(len(Z))])
        self.coef_ = model.coef_[0] / scale
        return self

    def score_many(self, X: object, labelings: Sequence[object] | np.ndarray) -> np.ndarray:
        """Scores (B,) of many clusterings of X."""
        if self.coef_ is None:
            raise ValueError("ProbeScorer is not fitted; call fit(problems) first.")
        return statistics(X, labelings, self.k) @ self.coef_

    def score(self, X: object, labels: object) -> float:
        """Score of one clustering of X."""
        return float(self.score_many(X, [labels])[0])

    def __repr__(self) -> str:
        return f"ProbeScorer(C={self.C}, fitted={self.coef_ is not None})"
