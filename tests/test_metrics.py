"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from tdml_lib import metrics


def test_accuracy_hand_computed_and_permutation_invariant():
    truth = [0, 0, 0, 1, 1, 2]
    assert metrics.clustering_accuracy(truth, [5, 5, 5, 9, 9, 1]) == 1.0
    assert metrics.clustering_accuracy(truth, [0, 0, 1, 1, 1, 2]) == pytest.approx(5 / 6)
    assert metrics.clustering_accuracy(truth, [0] * 6) == pytest.approx(3 / 6)


def test_nmi_ari_identical_and_independent():
    a = [0, 0, 1, 1, 2, 2]
    assert metrics.nmi(a, [2, 2, 0, 0, 1, 1]) == pytest.approx(1.0)
    assert metrics.ari(a, a) == pytest.approx(1.0)
    assert metrics.ari([0, 0, 1, 1], [0, 1, 0, 1]) < 0


def test_best_and_topk_with_ties():
    assert metrics.best_and_topk([0.9, 0.1, 0.5], 0) == (True, True)
    assert metrics.best_and_topk([0.5, 0.9, 0.5, 0.7], 0, k=3) == (False, False)
    assert metrics.best_and_topk([1.0, 1.0], 0) == (False, True)   # ties count against
    with pytest.raises(ValueError, match="outside"):
        metrics.rank_of([1, 2], 5)


def test_internal_indices_higher_is_better():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))]
    good, bad = np.r_[np.zeros(20), np.ones(20)].astype(int), rng.integers(0, 2, 40)
    for name in metrics.INTERNAL_INDICES:
        s = metrics.score_clusterings(name, X, [good, bad, np.zeros(40, int)])
        assert s[0] > s[1] and s[2] == -np.inf
    assert metrics.IndexScorer("silhouette").score(X, good) == pytest.approx(s[0] if name == "silhouette" else
                                                                            metrics.score_clusterings("silhouette", X, [good])[0])
    with pytest.raises(ValueError, match="unknown index"):
        metrics.IndexScorer("dunn")
