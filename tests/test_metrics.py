"""Metrics against hand-computed cases."""
import numpy as np
import pytest

from tdml_lib import metrics


def test_accuracy_hand_computed_and_permutation_invariant():
    truth = [0, 0, 0, 1, 1, 2]
    assert metrics.clustering_accuracy(truth, [5, 5, 5, 9, 9, 1]) == 1.0
    assert metrics.clustering_accuracy(truth, [0, 0, 1, 1, 1, 2]) == pytest.approx(5 / 6)
    assert metrics.clustering_accuracy(truth, [0] * 6) == pytest.approx(3 / 6)
    # extra clusters count as errors: 4 clusters for 3 classes, best match covers 5 of 6
    assert metrics.clustering_accuracy(truth, [0, 0, 3, 1, 1, 2]) == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    perm = rng.permutation(4)
    assert metrics.clustering_accuracy(t, perm[p]) == pytest.approx(metrics.clustering_accuracy(t, p))
    with pytest.raises(ValueError, match="entries"):
        metrics.clustering_accuracy([0, 1], [0, 1, 1])


def test_nmi_ari_identical_and_independent():
    a = [0, 0, 1, 1, 2, 2]
    assert metrics.nmi(a, [2, 2, 0, 0, 1, 1]) == pytest.approx(1.0)
    assert metrics.ari(a, a) == pytest.approx(1.0)
    assert metrics.ari([0, 0, 1, 1], [0, 1, 0, 1]) < 0
    # hand-computed: truth {0,1},{2,3}; prediction {0,1,2},{3}. Pairs: same/same 1, index
    # sum_ij C(n_ij, 2) = 1, rows 1+1 = 2, cols 3+0 = 3, C(4,2) = 6 -> expected 2*3/6 = 1;
    # ARI = (1 - 1) / ((2 + 3)/2 - 1) = 0
    assert metrics.ari([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.0)
    assert metrics.nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert metrics.external_scores(a, a) == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})


def test_best_and_topk_with_ties():
    assert metrics.best_and_topk([0.9, 0.1, 0.5], 0) == (True, True)
    assert metrics.best_and_topk([0.5, 0.9, 0.5, 0.7], 0, k=3) == (False, False)
    assert metrics.best_and_topk([1.0, 1.0], 0) == (False, True)   # ties count against
    assert metrics.best_and_topk([0.5, 0.9, 0.5, 0.5, 0.1], 0, k=3) == (False, False)  # rank 4 with ties
    assert metrics.best_and_topk([float("nan"), 0.1], 0) == (False, True)  # NaN ranks last
    assert metrics.rank_of([0.2, 0.7, 0.5], 2) == 2
    with pytest.raises(ValueError, match="outside"):
        metrics.rank_of([1, 2], 5)


def _two_blobs():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))]
    good = np.r_[np.zeros(20), np.ones(20)].astype(int)
    return X, good, rng.integers(0, 2, 40)


@pytest.mark.parametrize("name", sorted(metrics.INTERNAL_INDICES))
def test_internal_indices_higher_is_better_and_undefined_is_minus_inf(name):
    X, good, bad = _two_blobs()
    s = metrics.score_clusterings(name, X, [good, bad, np.zeros(40, int), np.arange(40)])
    assert s.shape == (4,) and s[0] > s[1]
    assert s[2] == -np.inf and s[3] == -np.inf        # one cluster; one cluster per point


def test_silhouette_hand_computed():
    # 1-D points 0, 1 | 10, 11: a(i) = 1; b(i) = mean distance to the other cluster
    # = 10.5, 9.5, 9.5, 10.5 -> s(i) = 1 - a/b
    X = np.array([[0.0], [1.0], [10.0], [11.0]])
    expected = np.mean([1 - 1 / 10.5, 1 - 1 / 9.5, 1 - 1 / 9.5, 1 - 1 / 10.5])
    assert metrics.score_clusterings("silhouette", X, [[0, 0, 1, 1]])[0] == pytest.approx(expected, rel=1e-6)


def test_score_clusterings_errors():
    X, good, _ = _two_blobs()
    with pytest.raises(ValueError, match="unknown index"):
        metrics.score_clusterings("dunn", X, [good])
    with pytest.raises(ValueError, match="labelings is empty"):
        metrics.score_clusterings("silhouette", X, [])
    with pytest.raises(ValueError, match="has 39 entries"):
        metrics.score_clusterings("silhouette", X, [good[:-1]])
    with pytest.raises(ValueError, match="2-D"):
        metrics.score_clusterings("silhouette", X[:, 0], [good])
    with pytest.raises(ValueError, match="NaN"):
        metrics.score_clusterings("silhouette", np.where(X > 4, np.nan, X), [good])
    with pytest.raises(ValueError, match="list of label vectors"):
        metrics.score_clusterings("silhouette", X, good)


def test_index_scorer_matches_score_clusterings():
    X, good, bad = _two_blobs()
    scorer = metrics.IndexScorer("davies_bouldin")
    assert np.array_equal(scorer.score_many(X, [good, bad]), metrics.score_clusterings("davies_bouldin", X, [good, bad]))
    assert scorer.score(X, good) == pytest.approx(metrics.score_clusterings("davies_bouldin", X, [good])[0])
    assert scorer.score(X, good) < 0                       # DB is negated: higher = better
    assert repr(scorer) == "IndexScorer('davies_bouldin')"
    with pytest.raises(ValueError, match="unknown index"):
        metrics.IndexScorer("dunn")
