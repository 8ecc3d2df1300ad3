"""Near misses: seeded, never the truth, all kinds, invariant to label names, fast."""
import time

import numpy as np
import pytest

from tdml_lib import candidates as C
from tdml_lib.problems import Problem, synthetic_problem
from tdml_lib.validation import canonical_labels


@pytest.fixture(scope="module")
def problem():
    # overlapping blobs: k-means and Ward do not find the truth, so every kind applies
    return synthetic_problem("varied_density", n_clusters=4, points_per_class=(15, 25), n_features=3, seed=1)


def _as_set(cands):
    return {c.labels.tobytes() for c in cands}


def test_same_seed_same_candidates(problem):
    a = C.near_misses(problem.X, problem.labels, n_candidates=12, seed=3)
    b = C.near_misses(problem.X, problem.labels, n_candidates=12, seed=3)
    c = C.near_misses(problem.X, problem.labels, n_candidates=12, seed=4)
    assert [x.kind for x in a] == [x.kind for x in b]
    assert all(np.array_equal(x.labels, y.labels) for x, y in zip(a, b))
    assert _as_set(a) != _as_set(c)


@pytest.mark.parametrize("n", [None, 5, 30])
def test_never_the_truth_and_all_distinct(problem, n):
    cands = C.near_misses(problem.X, problem.labels, n_candidates=n, seed=0)
    keys = [c.labels.tobytes() for c in cands]
    assert problem.labels.tobytes() not in keys
    assert len(set(keys)) == len(keys)
    if n is not None:
        assert len(cands) == n
    for c in cands:
        assert c.labels.dtype == np.int64 and c.labels.shape == (problem.n_points,)
        assert np.array_equal(c.labels, canonical_labels(c.labels))


def test_every_kind_once_by_default(problem):
    kinds = [c.kind for c in C.near_misses(problem.X, problem.labels, seed=0)]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) <= set(C.KINDS)
    assert {C.kind_family(k) for k in kinds} == {"noise", "merge", "split", "kmeans", "agglomerative", "random"}
    assert len(kinds) >= len(C.KINDS) - 2  # at most a couple reproduce another candidate


def test_fixed_size_mix_is_balanced(problem):
    few = [c.kind for c in C.near_misses(problem.X, problem.labels, n_candidates=10, seed=0)]
    assert len(set(few)) == 10  # a first round-robin pass: no kind twice
    many = [c.kind for c in C.near_misses(problem.X, problem.labels, n_candidates=2 * len(C.KINDS), seed=0)]
    counts = np.array([many.count(k) for k in set(many)])
    assert counts.max() <= 4  # deterministic kinds give one each, stochastic ones fill in


def test_kind_prefixes_select_families(problem):
    cands = C.near_misses(problem.X, problem.labels, kinds=["kmeans", "merge_closest"], seed=0)
    assert {c.kind for c in cands} <= {"kmeans_K-1", "kmeans_K", "kmeans_K+1", "kmeans_K+2", "merge_closest"}
    assert "merge_closest" in {c.kind for c in cands}


def test_renaming_the_truth_changes_nothing(problem):
    renamed = np.array([7, 2, 9, 4])[problem.labels]  # other ids, other order
    a = C.near_misses(problem.X, problem.labels, n_candidates=15, seed=5)
    b = C.near_misses(problem.X, renamed, n_candidates=15, seed=5)
    assert [x.kind for x in a] == [x.kind for x in b]
    assert all(np.array_equal(x.labels, y.labels) for x, y in zip(a, b))


def test_label_noise_moves_the_asked_share(problem):
    n = problem.n_points
    for mode in ("nearest", "uniform", "boundary"):
        out = C.label_noise(problem.X, problem.labels, 0.1, mode=mode, seed=0)
        # canonical renumbering may rename ids, so count disagreements up to renaming
        moved = sum(len(np.unique(out[problem.labels == c])) > 1 for c in range(4))
        assert moved >= 1
        from tdml_lib.metrics import clustering_accuracy
        assert clustering_accuracy(problem.labels, out) == pytest.approx(1 - round(0.1 * n) / n, abs=1e-9)


def test_nearest_noise_goes_to_nearest_other_centroid():
    X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2], [20.0], [20.1]], dtype=np.float32)
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    out = C.label_noise(X, y, 1.0, mode="nearest", seed=0)  # every point moves
    # cluster 0's points go to cluster 1, cluster 1's to 0, cluster 2's to 1
    assert out[0] == out[1] == out[2] == out[6] == out[7] != out[3]
    assert out[3] == out[4] == out[5]


def test_merge_and_split_edge_cases():
    X = np.array([[0.0, 0], [0.1, 0], [3, 3], [3.1, 3], [10, 10], [10.1, 10]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 2, 2])
    assert np.array_equal(C.merge_closest(X, y), [0, 0, 0, 0, 1, 1])
    assert np.array_equal(C.merge_closest(X[:4], y[:4]), np.zeros(4))  # K = 2 -> one cluster, kept
    assert C.merge_closest(X, np.zeros(6, dtype=int)) is None
    assert C.split_one(X[:3], [0, 1, 2]) is None  # only 1-point clusters: nothing to split
    split = C.split_one(X, y, seed=0)
    assert split.max() + 1 == 4
    p = Problem(X[:3], [0, 1, 2])
    kinds = {c.kind for c in C.near_misses(p.X, p.labels, seed=0)}
    assert "split" not in kinds and any(k.startswith("noise") for k in kinds)


def test_random_partition_has_exactly_k_clusters():
    lab = C.random_partition(10, 10, seed=0)
    assert sorted(lab) == list(range(10))
    with pytest.raises(ValueError, match="n_clusters"):
        C.random_partition(3, 4)


def test_training_negatives_shape(problem):
    negs = C.training_negatives(problem, 7, seed=2)
    assert negs.shape == (7, problem.n_points) and negs.dtype == np.int64
    assert not np.array_equal(negs, C.training_negatives(problem, 7, seed=3))
    assert C.training_negatives(problem, 0, seed=0).shape == (0, problem.n_points)
    tiny = Problem(np.arange(3, dtype=np.float32)[:, None], [0, 0, 1])
    assert 1 <= len(C.training_negatives(tiny, 20, seed=0)) < 20  # as many as exist


def test_candidate_set(problem):
    cs = C.candidate_set(problem, n_negatives=9, seed=0)
    assert cs.labelings.shape == (10, problem.n_points) and cs.labelings.dtype == np.int64
    assert len(cs.kinds) == 10 and cs.kinds[cs.correct_index] == "correct"
    assert cs.kinds.count("correct") == 1
    assert np.array_equal(cs.labelings[cs.correct_index], problem.labels)
    again = C.candidate_set(problem, n_negatives=9, seed=0)
    assert np.array_equal(cs.labelings, again.labelings) and cs.kinds == again.kinds
    positions = {C.candidate_set(problem, n_negatives=9, seed=s).correct_index for s in range(8)}
    assert len(positions) > 1  # the truth is not always first


def test_candidate_set_extra_from_the_agent(problem):
    agent = C.label_noise(problem.X, problem.labels, 0.3, mode="uniform", seed=99)
    renamed_truth = (problem.labels + 1) % 4
    cs = C.candidate_set(problem, n_negatives=5, seed=0, extra=[agent, renamed_truth, agent])
    assert cs.kinds.count("agent") == 1  # the copy of the truth and the duplicate are dropped
    assert cs.n_candidates == 7
    assert np.array_equal(cs.labelings[cs.kinds.index("agent")], agent)


@pytest.mark.parametrize("call, match", [
    (lambda p: C.near_misses(np.full((5, 2), np.nan), [0, 0, 1, 1, 1]), "NaN"),
    (lambda p: C.near_misses(p.X, p.labels[:-1]), "entries"),
    (lambda p: C.near_misses(p.X, p.labels, kinds=["bogus"]), "unknown"),
    (lambda p: C.near_misses(p.X, p.labels, seed=-1), "seed"),
    (lambda p: C.near_misses(p.X, p.labels, n_candidates=-2), "n_candidates"),
    (lambda p: C.near_misses(np.arange(3.0)[:, None], [0, 0, 1], n_candidates=20), "distinct near misses"),
    (lambda p: C.candidate_set((p.X, p.labels)), "Problem"),
    (lambda p: C.label_noise(p.X, p.labels, 0.0), "rate"),
    (lambda p: C.label_noise(p.X, p.labels, 0.1, mode="sideways"), "mode"),
])
def test_bad_inputs(problem, call, match):
    with pytest.raises(ValueError, match=match):
        call(problem)


def test_fast_on_a_thousand_points():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(10, 32))
    y = np.repeat(np.arange(10), 100)
    X = centers[y] + rng.normal(size=(1000, 32))
    C.near_misses(X[:50], y[:50], n_candidates=5, seed=0)  # warm-up: imports
    t = time.perf_counter()
    cands = C.near_misses(X, y, n_candidates=20, seed=0)
    elapsed = time.perf_counter() - t
    assert len(cands) == 20
    assert elapsed < 1.0, f"20 near misses of 1000 points took {elapsed:.2f} s"


def test_exact_kind_name_is_that_kind_only():
    assert C._check_kinds(["kmeans_K"]) == ["kmeans_K"]
    assert len(C._check_kinds(["kmeans"])) > 1  # a prefix names the family


def test_degenerate_negatives_are_the_holes_an_optimiser_finds():
    from tdml_lib.candidates import DEGENERATE_KINDS, degenerate_negatives
    from tdml_lib.problems import synthetic_problem

    p = synthetic_problem("blobs", 3, (20, 30), seed=0)
    d = degenerate_negatives(p, len(DEGENERATE_KINDS), seed=0)
    ks = sorted(int(lab.max()) + 1 for lab in d)
    assert 1 in ks and p.n_points in ks                    # one cluster; one cluster per point
    assert len({lab.tobytes() for lab in d}) == len(d)      # distinct
    assert all(not np.array_equal(lab, p.labels) for lab in d)
    assert np.array_equal(d, degenerate_negatives(p, len(DEGENERATE_KINDS), seed=0))


def test_split_each_cuts_every_true_cluster_in_two():
    """The agent's answer on two rings before it was a training negative: each ring halved."""
    from tdml_lib.candidates import degenerate_clustering
    from tdml_lib.metrics import ari
    from tdml_lib.problems import synthetic_problem

    p = synthetic_problem("circles", 2, (60, 80), seed=3)
    lab = degenerate_clustering("split_each", p.labels, np.random.default_rng(0), p.X)
    assert lab.max() + 1 == 4
    for c in range(2):  # each new cluster lies inside one true cluster, two per true cluster
        assert len(np.unique(lab[p.labels == c])) == 2
    assert ari(p.labels, lab) < 1
    with pytest.raises(ValueError, match="pass X"):
        degenerate_clustering("split_each", p.labels, np.random.default_rng(0))


def test_degenerate_kinds_are_chosen_and_checked():
    from tdml_lib.candidates import DEGENERATE_KINDS, DEGENERATE_KINDS_V1, degenerate_negatives
    from tdml_lib.critic import CriticConfig
    from tdml_lib.problems import synthetic_problem

    p = synthetic_problem("blobs", 3, (20, 30), seed=0)
    six = degenerate_negatives(p, 6, seed=0)
    five = degenerate_negatives(p, 6, seed=0, kinds=DEGENERATE_KINDS_V1)
    assert "split_each" in DEGENERATE_KINDS and "split_each" not in DEGENERATE_KINDS_V1
    assert np.array_equal(six[:5], five[:5]) and not np.array_equal(six[5], five[5])
    assert sorted(int(lab.max()) + 1 for lab in degenerate_negatives(p, 1, seed=0, kinds=["split_each"])) == [6]
    for bad in (["split_all"], [], "one_cluster", ["one_cluster", "one_cluster"]):
        with pytest.raises(ValueError, match="degenerate kinds"):
            degenerate_negatives(p, 2, seed=0, kinds=bad)
        with pytest.raises(ValueError, match="degenerate kinds"):
            CriticConfig(degenerate_kinds=bad)
    assert CriticConfig().degenerate_kinds == DEGENERATE_KINDS
