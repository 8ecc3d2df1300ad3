"""Block B, part 2: the GAE and the clustering embedding."""
import numpy as np
import pytest
import torch

from tdml_lib import gae, graphs
from tdml_lib.problems import synthetic_problem, synthetic_problems


@pytest.fixture(scope="module")
def embedder():
    torch.manual_seed(0)
    return gae.ClusteringEmbedder(k=6, hidden=16, code_dim=8).eval()


@pytest.fixture(scope="module")
def problem():
    return synthetic_problem("anisotropic", n_clusters=3, points_per_class=(20, 30), n_features=6, seed=2)


def test_dense_knn_gcn_equals_pyg_gcnconv(embedder, problem):
    ps = embedder.prepare(problem.X)
    labs = torch.as_tensor(np.stack([problem.labels, np.roll(problem.labels, 5)]))
    feats = graphs.clustering_features(ps, labs)
    edge_index, weight = graphs.edge_batch(ps, feats.same)
    with torch.no_grad():
        pyg = embedder.gae.encoder(feats.x.reshape(-1, feats.x.shape[-1]), edge_index, weight)
        dense = embedder.gae.encoder.forward_knn(feats.x, ps.knn, weight.reshape(feats.same.shape))
    assert torch.allclose(pyg, dense.reshape(pyg.shape), atol=1e-5)


def test_embedding_shape_any_dimension(embedder):
    for d in (2, 7, 50):
        X = np.random.default_rng(d).normal(size=(40, d))
        e = embedder.embed(X, np.arange(40) % 3)
        assert e.shape == (embedder.embedding_dim,)
        assert torch.isfinite(e).all()
    assert len(gae.embedding_feature_names(embedder)) == embedder.embedding_dim


def test_embedding_invariances(embedder, problem):
    e = embedder.embed(problem.X, problem.labels)
    renamed = embedder.embed(problem.X, (problem.labels + 1) * 10)
    perm = np.random.default_rng(1).permutation(problem.n_points)
    shuffled = embedder.embed(problem.X[perm], problem.labels[perm])
    scaled = embedder.embed(problem.X * 1000.0 - 5, problem.labels)
    for other in (renamed, shuffled, scaled):
        assert torch.allclose(e, other, atol=1e-4)


def test_different_clusterings_give_different_embeddings(embedder, problem):
    noisy = problem.labels.copy()
    noisy[:10] = (noisy[:10] + 1) % 3
    assert not torch.allclose(embedder.embed(problem.X, problem.labels), embedder.embed(problem.X, noisy))


def test_batched_equals_one_by_one(embedder, problem):
    rng = np.random.default_rng(3)
    labs = [problem.labels] + [rng.integers(0, k, problem.n_points) for k in (2, 4, 6)]
    batch = embedder.embed_many(problem.X, labs)
    small_batches = embedder.embed_many(problem.X, labs, batch_size=1)
    for i, lab in enumerate(labs):
        assert torch.allclose(batch[i], embedder.embed(problem.X, lab), atol=1e-5)
    assert torch.allclose(batch, small_batches, atol=1e-5)


def test_training_lowers_loss_and_beats_chance():
    torch.manual_seed(0)
    emb = gae.ClusteringEmbedder(k=6, hidden=16, code_dim=8)
    probs = synthetic_problems(8, n_clusters=(2, 4), points_per_class=(15, 30), seed=0)
    samples = [(p.X, p.labels[None]) for p in probs]
    hist = gae.train_gae(emb, samples[:6], epochs=20, progress=False, seed=0)
    assert list(hist.columns) == ["epoch", "loss"]
    assert hist.loss.iloc[-1] < hist.loss.iloc[0]
    scores = gae.reconstruction_scores(emb, samples[6:], seed=0)
    assert scores["auc"] > 0.6


def test_save_load_round_trip(tmp_path, embedder, problem):
    path = embedder.save(tmp_path / "emb.pt")
    again = gae.ClusteringEmbedder.load(path, device="cpu")
    assert torch.allclose(embedder.embed(problem.X, problem.labels), again.embed(problem.X, problem.labels))


def test_load_errors(tmp_path, embedder):
    with pytest.raises(FileNotFoundError, match="train"):
        gae.ClusteringEmbedder.load(tmp_path / "missing.pt")
    state = embedder.state()
    state["format"] = 999
    with pytest.raises(ValueError, match="format"):
        gae.ClusteringEmbedder.from_state(state)


def test_bad_labels_are_clear_errors(embedder, problem):
    with pytest.raises(ValueError, match="entries"):
        embedder.embed(problem.X, problem.labels[:-1])
    with pytest.raises(ValueError, match="NaN"):
        X = problem.X.copy()
        X[0, 0] = np.nan
        embedder.embed(X, problem.labels)
