"""Tests of tdml_lib.baselines: Selective Pseudo-Label Clustering and CBSwR (chapters 6, 7)."""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tdml_lib import baselines as B
from tdml_lib import experiments as E
from tdml_lib.baselines import common

spc = importlib.import_module("tdml_lib.baselines.spc")
cb = importlib.import_module("tdml_lib.baselines.cbswr")

SPC_FAST = dict(n_members=2, rounds=1, epochs=1, pretrain_epochs=1, device="cpu")
CBSWR_FAST = dict(epochs=1, pretrain_epochs=1, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """200 8x8 digit images of three classes (scikit-learn's load_digits)."""
    d = load_digits()
    keep = np.flatnonzero(np.isin(d.target, [0, 1, 7]))[:200]
    return d.images[keep], d.target[keep]


# --- end to end ------------------------------------------------------------------------

def test_spc_end_to_end(digits):
    X, _ = digits
    res = B.selective_pseudo_label_clustering(X, 3, seed=0, **SPC_FAST)
    assert res.labels.shape == (len(X),) and res.labels.dtype == np.int64
    assert set(np.unique(res.labels)) <= {0, 1, 2}
    assert res.embeddings is None
    assert len(res.confident_fraction) == 2 and all(0 <= f <= 1 for f in res.confident_fraction)
    assert list(res.rounds["round"]) == [0, 1]
    assert len(res.round_labels) == 2
    assert {"pretrain", "train"} == set(res.history["phase"])
    assert np.isfinite(res.history["loss"]).all()
    assert res.params["reducer"] in ("umap", "spectral")


def test_cbswr_end_to_end(digits):
    X, _ = digits
    res = B.cbswr(X, 3, seed=0, **CBSWR_FAST)
    assert res.labels.shape == (len(X),)
    assert res.embeddings.shape == (len(X), 32)
    assert np.allclose(np.linalg.norm(res.embeddings, axis=1), 1, atol=1e-5)
    train = res.history[res.history["phase"] == "train"]
    assert len(train) == 1 and np.isfinite(train[["loss", "metric", "rim"]].to_numpy()).all()
    total = 0.9 * train["metric"] + 0.001 * train["reconstruction"] + 0.3 * train["rim"]
    assert np.allclose(total, train["loss"], rtol=1e-4)


def test_cbswr_variants_run(digits):
    X, _ = digits
    res = B.cbswr(X, 3, seed=0, centroids="learned", positive="centroid", embedding_batchnorm=False,
                  **CBSWR_FAST)
    assert res.params["centroids"] == "learned" and not res.params["embedding_batchnorm"]
    assert np.isfinite(res.history["loss"]).all()


def test_feature_vectors_use_the_mlp_variant():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (30, 6)), rng.normal(6, 1, (30, 6))])
    assert B.selective_pseudo_label_clustering(X, 2, seed=0, **SPC_FAST).labels.shape == (60,)
    assert B.cbswr(X, 2, seed=0, **CBSWR_FAST).embeddings.shape == (60, 32)


# --- reproducibility and no label leak -------------------------------------------------

@pytest.mark.parametrize("method,kw", [("spc", SPC_FAST), ("cbswr", CBSWR_FAST)])
def test_same_seed_same_result(digits, method, kw):
    X, y = digits
    r1, s1 = E.evaluate_baseline(method, X, y, seed=3, **kw)
    r2, s2 = E.evaluate_baseline(method, X, y, seed=3, **kw)
    assert np.array_equal(r1.labels, r2.labels)
    assert s1 == s2
    if r1.embeddings is not None:
        assert np.array_equal(r1.embeddings, r2.embeddings)


def test_run_leaves_the_global_rng_alone(digits):
    X, _ = digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    B.cbswr(X, 3, seed=0, **CBSWR_FAST)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("method,kw", [("spc", SPC_FAST), ("cbswr", CBSWR_FAST)])
def test_shuffled_truth_gives_the_same_clustering(digits, method, kw):
    """No true label reaches training or alignment: the evaluation wrapper with true and
    with shuffled labels gives the identical clustering (only the scores change)."""
    X, y = digits
    shuffled = np.random.default_rng(0).permutation(y)
    r_true, s_true = E.evaluate_baseline(method, X, y, seed=0, **kw)
    r_shuf, s_shuf = E.evaluate_baseline(method, X, shuffled, seed=0, **kw)
    assert np.array_equal(r_true.labels, r_shuf.labels)
    assert s_true["nmi"] != s_shuf["nmi"]


# --- ensemble pieces -------------------------------------------------------------------

def test_alignment_recovers_permuted_members():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 4, 100)
    perm = np.array([2, 0, 3, 1])
    other = perm[ref]
    other[:5] = -1  # noise stays noise
    aligned = B.align_labelings(np.stack([ref, other]), 4, pivot=0)
    assert np.array_equal(aligned[0], ref)
    assert np.array_equal(aligned[1][5:], ref[5:])
    assert (aligned[1][:5] == -1).all()


def test_alignment_rejects_bad_input():
    with pytest.raises(ValueError, match="0..2"):
        B.align_labelings(np.array([[0, 1, 5]]), 3)
    with pytest.raises(ValueError, match="2-D"):
        B.align_labelings(np.array([0, 1, 2]), 3)


def test_vote_and_confidence():
    aligned = np.array([[0, 0, 1, -1, -1],
                        [0, 1, 1, -1, 2],
                        [0, 0, 1, -1, 2]])
    labels, confident, votes = B.ensemble_vote(aligned, 3, agreement=1 / 1.2)
    assert labels.tolist() == [0, 0, 1, -1, 2]
    assert confident.tolist() == [True, False, True, False, False]
    assert votes[4].tolist() == [0, 0, 2]
    _, loose, _ = B.ensemble_vote(aligned, 3, agreement=0.6)
    assert loose.tolist() == [True, True, True, False, True]


def test_density_labels_give_exactly_k():
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(c, 0.3, (40, 2)) for c in ([0, 0], [5, 0], [0, 5], [5, 5])])
    for k in (2, 4, 6):
        lab = spc.density_labels(Z, k)
        assert len(np.unique(lab[lab >= 0])) == k


def test_force_n_clusters_merges_and_splits():
    Z = np.array([[0.0], [0.1], [5.0], [5.1], [10.0], [10.1], [20.0]])
    lab = np.array([0, 0, 1, 1, 2, 2, -1])
    merged = spc.force_n_clusters(Z, lab, 2)
    assert len(np.unique(merged[merged >= 0])) == 2 and merged[-1] == -1
    assert merged[2] == merged[0] or merged[2] == merged[4]
    split = spc.force_n_clusters(Z, lab, 4)
    assert len(np.unique(split[split >= 0])) == 4


# --- losses and evaluation -------------------------------------------------------------

def test_rim_loss_extremes():
    k = 4
    uniform = torch.full((8, k), 1 / k)
    _, cond, marg = cb.rim_loss(uniform)
    assert math.isclose(float(cond), math.log(k), rel_tol=1e-5) and math.isclose(float(marg), math.log(k), rel_tol=1e-5)
    balanced = torch.eye(k).repeat(2, 1)
    loss, cond, marg = cb.rim_loss(balanced)
    assert abs(float(cond)) < 1e-6 and math.isclose(float(loss), -math.log(k), rel_tol=1e-5)


def test_center_metric_loss_by_hand():
    f = torch.tensor([[1.0, 0.0]])
    view = torch.tensor([[0.6, 0.8]])
    cents = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 0.5
    got = float(cb.center_metric_loss(f, view, cents, torch.tensor([0]), temperature=t, alpha=1.0))
    s_pos, s0, s1 = 0.6 / t, 1.0 / t, 0.0 / t
    log_pos = s_pos - math.log(math.exp(s_pos) + math.exp(s1))
    p1 = math.exp(s1) / (math.exp(s0) + math.exp(s1))
    assert math.isclose(got, -(log_pos + math.log(1 - p1)), rel_tol=1e-5)
    got_c = float(cb.center_metric_loss(f, None, cents, torch.tensor([0]), temperature=t))
    assert math.isclose(got_c, -(math.log(1 - p1) + math.log(1 - p1)), rel_tol=1e-5)


def test_recall_at_k_by_hand():
    E = np.array([[0.0], [1.0], [5.0], [6.0]])
    labels = [0, 1, 1, 1]
    assert B.recall_at_k(E, labels, k=1) == 0.5
    assert B.recall_at_k(E, labels, k=2) == 0.75
    assert B.recall_at_k(E, labels, k=1, batch_size=1) == 0.5
    with pytest.raises(ValueError, match="k must be"):
        B.recall_at_k(E, labels, k=4)


def test_embedding_nmi_separated_blobs():
    rng = np.random.default_rng(0)
    E = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    assert B.embedding_nmi(E, [0] * 20 + [1] * 20) == pytest.approx(1.0)


def test_kmeans_reference_and_inputs(digits):
    X, y = digits
    lab = B.kmeans_labels(X, 3, pca_dim=10, seed=0)
    assert np.array_equal(lab, B.kmeans_labels(X, 3, pca_dim=10, seed=0))
    u8 = B.prepare_inputs(np.full((3, 5, 5), 255, np.uint8))
    assert u8.shape == (3, 1, 5, 5) and u8.max() == 1.0
    feats = B.prepare_inputs(np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]]))
    assert np.allclose(feats.mean(0), 0) and np.allclose(feats[:, 1], 0)


def test_batches_cover_everything_once():
    gen = torch.Generator().manual_seed(0)
    parts = list(common.batches(11, 5, gen))
    assert sorted(torch.cat(parts).tolist()) == list(range(11))
    assert min(len(p) for p in parts) >= 2


# --- bad inputs ----------------------------------------------------------------------

@pytest.mark.parametrize("fn", [B.selective_pseudo_label_clustering, B.cbswr])
def test_bad_inputs(fn):
    good = np.random.default_rng(0).random((10, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        bad = good.copy()
        bad[2, 3, 3] = np.nan
        fn(bad, 2)
    with pytest.raises(ValueError, match="shape"):
        fn(good[None], 2)
    with pytest.raises(ValueError, match="shape"):
        fn(good[0, 0], 2)
    with pytest.raises(ValueError, match="at least 3"):
        fn(good[:2], 2)
    with pytest.raises(ValueError, match="between 1 and"):
        fn(good, 11)
    with pytest.raises(ValueError, match="at least 2 clusters"):
        fn(good, 1)
    with pytest.raises(ValueError, match="at least 4x4"):
        fn(good[:, :2, :2], 2)
    with pytest.raises(ValueError, match="numbers"):
        fn(np.array([["a"] * 4] * 5), 2)
    with pytest.raises(ValueError, match="epochs"):
        fn(good, 2, epochs=0)


def test_bad_settings():
    good = np.random.default_rng(0).random((10, 8, 8))
    with pytest.raises(ValueError, match="reducer"):
        B.selective_pseudo_label_clustering(good, 2, reducer="tsne")
    with pytest.raises(ValueError, match="agreement"):
        B.selective_pseudo_label_clustering(good, 2, agreement=0)
    with pytest.raises(ValueError, match="positive"):
        B.cbswr(good, 2, positive="anchor")
    with pytest.raises(ValueError, match="centroids"):
        B.cbswr(good, 2, centroids="memory")
    with pytest.raises(ValueError, match="weights"):
        B.cbswr(good, 2, weights=(1.0, -1.0, 0.3))
    with pytest.raises(ValueError, match="unknown baseline"):
        E.evaluate_baseline("dec", good, np.arange(10) % 2)
    with pytest.raises(ValueError, match="labels_true has"):
        E.evaluate_baseline("cbswr", good, [0, 1])


def test_seeded_restores_the_callers_determinism_settings():
    import torch

    from tdml_lib.baselines.common import seeded

    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with seeded(0):
            pass
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # was reset to False
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
