"""Reliability of the public surface (issue 11): bad input gives a clear error naming
the problem, never a deep torch traceback; invariances hold for any input (hypothesis);
same seed, same answer."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tdml_lib as tdml
from tdml_lib.critic import ClusteringCritic
from tdml_lib.gae import ClusteringEmbedder

rng = np.random.default_rng(0)
X_OK = rng.normal(size=(30, 4)).astype(np.float32)
LAB_OK = np.arange(30) % 3


@pytest.fixture(scope="module")
def critic():
    torch.manual_seed(0)
    return ClusteringCritic(ClusteringEmbedder(k=5, hidden=8, code_dim=4), hidden=8).eval()


def _with_nan():
    X = X_OK.copy()
    X[3, 1] = np.nan
    return X


def _with_inf():
    X = X_OK.copy()
    X[0, 0] = np.inf
    return X


# (description, X, labels, expected message fragment)
BAD_INPUTS = [
    ("1-D X", X_OK[:, 0], LAB_OK, "2-D"),
    ("3-D X", X_OK[None], LAB_OK, "2-D"),
    ("NaN in X", _with_nan(), LAB_OK, "NaN"),
    ("inf in X", _with_inf(), LAB_OK, "NaN or inf"),
    ("empty X", np.zeros((0, 4)), np.zeros(0, int), "empty"),
    ("two points", X_OK[:2], LAB_OK[:2], "at least 3"),
    ("strings in X", np.array([["a", "b"]] * 5), np.zeros(5, int), "numbers"),
    ("labels too short", X_OK, LAB_OK[:-1], "entries"),
    ("labels 2-D", X_OK, LAB_OK[:, None], "1-D"),
    ("negative labels", X_OK, LAB_OK - 1, "non-negative"),
    ("fractional labels", X_OK, LAB_OK + 0.5, "whole numbers"),
    ("NaN labels", X_OK, np.where(LAB_OK == 0, np.nan, LAB_OK), "whole numbers"),
    ("string labels", X_OK, np.array(["a"] * 30), "integer"),
]


def _entry_points(critic):
    return {
        "critic.score": lambda X, lab: critic.score(X, lab),
        "critic.score_many": lambda X, lab: critic.score_many(X, [lab]),
        "embedder.embed": lambda X, lab: critic.embedder.embed(X, lab),
        "score_clusterings": lambda X, lab: tdml.score_clusterings("silhouette", X, [lab]),
        "Problem": lambda X, lab: tdml.Problem(X, lab),
    }


@pytest.mark.parametrize("entry", ["critic.score", "critic.score_many", "embedder.embed",
                                   "score_clusterings", "Problem"])
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_clear_value_error(critic, entry, case):
    _, X, lab, fragment = case
    with pytest.raises(ValueError, match=fragment):
        _entry_points(critic)[entry](X, lab)


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if not c[0].startswith(("labels", "negative", "fractional", "NaN labels", "string labels"))],
                         ids=lambda c: c[0])
def test_agent_rejects_bad_points(case):
    _, X, _, fragment = case
    with pytest.raises(ValueError, match=fragment):
        tdml.cluster(X, reward=tdml.metrics.IndexScorer("silhouette"), generations=1, population_size=4)


@pytest.mark.parametrize("k", [0, 31, 2.5, "3"])
def test_agent_rejects_bad_n_clusters(k):
    with pytest.raises(ValueError, match="n_clusters"):
        tdml.cluster(X_OK, reward=tdml.metrics.IndexScorer("silhouette"), n_clusters=k, generations=1)


def test_load_critic_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-critic"):
        tdml.load_critic(tmp_path / "nope.pt")
    (tmp_path / "trunc.pt").write_bytes(tdml.critic.PRETRAINED_PATH.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        tdml.load_critic(tmp_path / "trunc.pt")


def test_shipped_critic_loads_safely_and_records_its_command():
    c = tdml.load_critic(device="cpu")
    assert "train-critic" in c.metadata["command"]
    assert np.isfinite(c.score(X_OK, LAB_OK))


@pytest.mark.parametrize("fn", [tdml.clustering_accuracy, tdml.nmi, tdml.ari])
def test_external_metrics_reject_mismatched_lengths(fn):
    with pytest.raises(ValueError, match="entries"):
        fn([0, 1, 1], [0, 1])


def test_non_contiguous_label_ids_work(critic):
    lab = np.where(LAB_OK == 0, 7, np.where(LAB_OK == 1, 42, 3))
    assert critic.score(X_OK, lab) == pytest.approx(critic.score(X_OK, LAB_OK), abs=1e-5)


def test_single_cluster_and_identical_points_give_finite_scores(critic):
    assert np.isfinite(critic.score(X_OK, np.zeros(30, int)))
    assert np.isfinite(critic.score(np.ones((10, 3)), np.arange(10) % 2))
    assert tdml.score_clusterings("silhouette", X_OK, [np.zeros(30, int)])[0] == -np.inf


def test_integer_and_float64_inputs_accepted(critic):
    a = critic.score(X_OK.astype(np.float64), LAB_OK.astype(np.int32))
    b = critic.score((X_OK * 100).astype(np.int64), LAB_OK)
    assert np.isfinite(a) and np.isfinite(b)


def test_sample_problems_errors():
    feats, labs = rng.normal(size=(40, 3)), np.arange(40) % 4
    with pytest.raises(ValueError, match="only 4 classes"):
        tdml.sample_problems(feats, labs, 2, n_clusters=(2, 6), points_per_class=(2, 5))
    with pytest.raises(ValueError, match="only 10 examples"):
        tdml.sample_problems(feats, labs, 2, n_clusters=2, points_per_class=(5, 20))
    with pytest.raises(ValueError, match="n_problems"):
        tdml.sample_problems(feats, labs, 0)


def test_same_seed_same_scores_on_cpu():
    def build():
        torch.manual_seed(3)
        return ClusteringCritic(ClusteringEmbedder(k=5, hidden=8, code_dim=4), hidden=8).eval()
    assert build().score(X_OK, LAB_OK) == build().score(X_OK, LAB_OK)


# --- properties -----------------------------------------------------------------------------
labelings = st.lists(st.integers(0, 5), min_size=4, max_size=40)


@settings(max_examples=60, deadline=None)
@given(labelings, st.permutations(range(6)))
def test_accuracy_and_nmi_ignore_label_names(labels, perm):
    labels = np.array(labels)
    renamed = np.array(perm)[labels]
    assert tdml.clustering_accuracy(labels, renamed) == pytest.approx(1.0)
    assert tdml.nmi(labels, renamed) == pytest.approx(1.0) or len(set(labels)) == 1


@settings(max_examples=60, deadline=None)
@given(labelings, labelings)
def test_metrics_bounded_and_symmetric(a, b):
    n = min(len(a), len(b))
    a, b = np.array(a[:n]), np.array(b[:n])
    acc = tdml.clustering_accuracy(a, b)
    assert 0 < acc <= 1
    assert tdml.nmi(a, b) == pytest.approx(tdml.nmi(b, a))
    assert tdml.ari(a, b) == pytest.approx(tdml.ari(b, a))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=12, max_size=12), st.permutations(range(4)),
       st.floats(0.01, 100), st.permutations(range(12)))
def test_critic_invariances(critic, labels, names, scale, order):
    X = X_OK[:12]
    labels, order = np.array(labels), np.array(order)
    base = critic.score(X, labels)
    assert critic.score(X, np.array(names)[labels]) == pytest.approx(base, abs=1e-4)
    assert critic.score(X * scale, labels) == pytest.approx(base, abs=1e-3)
    assert critic.score(X[order], labels[order]) == pytest.approx(base, abs=1e-3)
