"""Block B, part 1: the clustering graph and its node features."""
import numpy as np
import pytest
import torch
from sklearn.metrics import silhouette_score

from tdml_lib import graphs
from tdml_lib.problems import synthetic_problem


@pytest.fixture(scope="module")
def problem():
    return synthetic_problem("blobs", n_clusters=4, points_per_class=(15, 30), n_features=5, seed=1)


def feats_of(X, labels, k=6):
    ps = graphs.prepare_point_set(X, k=k, device="cpu")
    return graphs.clustering_features(ps, torch.as_tensor(np.asarray(labels))[None]).x[0]


def test_knn_matches_brute_force(problem):
    ps = graphs.prepare_point_set(problem.X, k=5, device="cpu")
    d = torch.cdist(ps.X, ps.X)
    d.fill_diagonal_(float("inf"))
    expected = d.topk(5, largest=False).values
    assert torch.allclose(ps.knn_dist, expected)
    assert not (ps.knn == torch.arange(ps.n_points)[:, None]).any(), "a point is its own neighbour"


def test_features_invariant_to_scale_translation_and_label_names(problem):
    base = feats_of(problem.X, problem.labels)
    moved = feats_of(problem.X * 7.5 + 3.0, (problem.labels + 5) * 2)
    assert torch.allclose(base, moved, atol=1e-4)


def test_features_follow_point_order(problem):
    perm = np.random.default_rng(0).permutation(problem.n_points)
    base = feats_of(problem.X, problem.labels)
    permuted = feats_of(problem.X[perm], problem.labels[perm])
    assert torch.allclose(base[perm], permuted, atol=1e-5)


def test_silhouette_like_feature_tracks_silhouette(problem):
    s = feats_of(problem.X, problem.labels)[:, graphs.NODE_FEATURES.index("s")].mean()
    assert abs(float(s) - silhouette_score(problem.X, problem.labels)) < 0.1


def test_one_cluster_has_zero_silhouette_and_full_agreement(problem):
    x = feats_of(problem.X, np.zeros(problem.n_points, dtype=int))
    assert torch.all(x[:, graphs.NODE_FEATURES.index("s")] == 0)
    assert torch.all(x[:, graphs.NODE_FEATURES.index("agree")] == 1)


def test_batched_features_equal_one_by_one(problem):
    rng = np.random.default_rng(0)
    labs = np.stack([problem.labels, rng.integers(0, 3, problem.n_points), rng.integers(0, 7, problem.n_points)])
    ps = graphs.prepare_point_set(problem.X, device="cpu")
    batch = graphs.clustering_features(ps, torch.as_tensor(labs)).x
    for i, lab in enumerate(labs):
        one = graphs.clustering_features(ps, torch.as_tensor(lab)[None]).x[0]
        assert torch.allclose(batch[i], one, atol=1e-5)


def test_edges_of_a_batch_are_disjoint_copies(problem):
    ps = graphs.prepare_point_set(problem.X, k=4, device="cpu")
    labs = torch.as_tensor(np.stack([problem.labels, problem.labels]))
    feats = graphs.clustering_features(ps, labs)
    edge_index, weight = graphs.edge_batch(ps, feats.same)
    n, E = ps.n_points, ps.n_points * 4
    assert edge_index.shape == (2, 2 * E)
    assert torch.equal(edge_index[:, E:] - n, edge_index[:, :E])
    assert torch.all((weight > 0) == feats.same.reshape(-1))


def test_pyg_data_for_teaching(problem):
    data = graphs.to_pyg_data(problem.X, problem.labels, k=5)
    assert data.x.shape == (problem.n_points, len(graphs.NODE_FEATURES))
    assert data.edge_index.shape == (2, problem.n_points * 5)
    assert data.edge_attr.shape == (problem.n_points * 5, 2)


def test_identical_points_do_not_divide_by_zero():
    x = feats_of(np.ones((6, 3)), [0, 0, 0, 1, 1, 1], k=3)
    assert torch.isfinite(x).all()


# --- the closest-pair separation (the critics' separation gate, chapter 3) -------------------

def _blobs_and_cuts(seed: int = 0):
    from tdml_lib.candidates import split_random

    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(c, 1.0, (60, 4)) for c in (0.0, 5.0, -5.0)])
    y = np.repeat([0, 1, 2], 60)
    return X, y, [split_random(y, rng) for _ in range(20)]


def test_separation_puts_classes_apart_and_random_halves_together():
    """Three separated blobs: the truth's closest pair is hundreds of sampling units apart,
    a blob dealt at random into two halves about one (most below the gate's 1.25)."""
    X, y, cuts = _blobs_and_cuts()
    sep = graphs.separation_many(X, [y, *cuts])
    assert sep[0] > 100
    assert np.median(sep[1:]) < 1.25 and np.mean(sep[1:] < 1.25) >= 0.7


def test_separation_compares_spreads_so_concentric_rings_stay_apart():
    """Two concentric rings share their centre; their spreads differ, so the truth is far
    above the gate while a random split of one ring is not."""
    from tdml_lib.candidates import split_random

    rng = np.random.default_rng(1)
    t = rng.uniform(0, 2 * np.pi, 200)
    r = np.r_[np.ones(100), 3 * np.ones(100)] + rng.normal(0, 0.1, 200)
    X = np.c_[r * np.cos(t), r * np.sin(t)]
    y = np.repeat([0, 1], 100)
    sep = graphs.separation_many(X, [y, split_random(y, rng)])
    assert sep[0] > 100 and sep[1] < 1.25


def test_separation_is_inf_without_two_clusters_to_compare():
    X, y, _ = _blobs_and_cuts()
    n = len(y)
    singletons_and_one = np.r_[np.zeros(n - 5, int), np.arange(1, 6)]
    sep = graphs.separation_many(X, [np.zeros(n, int), np.arange(n), singletons_and_one])
    assert np.all(np.isinf(sep))


def test_separation_ignores_scale_shift_rotation_order_and_label_names():
    X, y, cuts = _blobs_and_cuts(2)
    labs = np.stack([y, *cuts[:5]])
    base = graphs.separation_many(X, labs)
    rot, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    perm = np.random.default_rng(4).permutation(len(y))
    np.testing.assert_allclose(graphs.separation_many(1e3 * X @ rot + 7.0, labs), base, rtol=1e-3)
    np.testing.assert_allclose(graphs.separation_many(X[perm], labs[:, perm]), base, rtol=1e-3)
    np.testing.assert_allclose(graphs.separation_many(X, (labs + 1) % 7), base, rtol=1e-3)


def test_separation_of_the_features_pass_matches_the_direct_one():
    """The critic reads it from :func:`clustering_features` (expanded distances, batched);
    :func:`separation_many` computes it directly: the same numbers."""
    X, y, cuts = _blobs_and_cuts(5)
    labs = np.stack([y, *cuts[:6]])
    ps = graphs.prepare_point_set(X, device="cpu")
    feats = graphs.clustering_features(ps, graphs.as_label_tensor(labs, ps.device))
    np.testing.assert_allclose(feats.separation.numpy(), graphs.separation_many(X, labs), rtol=1e-3)
