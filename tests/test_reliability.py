"""Reliability of the public surface (issues 11 and 21): bad input gives a clear error
naming the problem, never a deep torch traceback; extreme but valid input gives the
correct result; memory stays within the documented budget; a corrupt checkpoint is
refused with the field named; nothing the book ships is overwritten; invariances hold
for any input (hypothesis); same seed, same answer."""
import subprocess
import sys

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
    ("complex labels", X_OK, LAB_OK + 0j, "complex"),
    ("complex X", X_OK + 1j, LAB_OK, "real-valued"),
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


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if not c[0].startswith(("labels", "negative", "fractional", "NaN labels", "string labels", "complex labels"))],
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


def test_shipped_synthetic_critics_record_their_command_and_provenance():
    """The default reward's synthetic members say how they were made: the commands the
    reproduce page gives (seeds 0, 1, 2), and runs from a clean tree; the shipped critic
    weighs one half, the three draws one sixth each."""
    reward = tdml.load_reward(device="cpu")
    assert reward.weights.tolist() == pytest.approx([1 / 2, 1 / 6, 1 / 6, 1 / 6])
    for seed, synthetic in enumerate(reward.critics[1:]):
        meta = synthetic.metadata
        name = "critic_synthetic.pt" if seed == 0 else f"critic_synthetic_seed{seed}.pt"
        assert meta["command"] == ("python -m tdml_lib train-synthetic-critic " + (f"--seed {seed} " if seed else "")
                                   + f"--out tdml_lib/pretrained/{name}")
        assert meta["seed"] == seed and meta["domain"] == "synthetic" and len(meta["families"]) == 6
        assert tuple(meta["config"]["degenerate_kinds"]) == tdml.candidates.DEGENERATE_KINDS
        assert meta["provenance"]["clean"] is True and meta["provenance"]["source_hash"]
        assert np.isfinite(synthetic.score(X_OK, LAB_OK))


def test_the_default_reward_can_be_built_on_another_domain_critic():
    """``load_reward(critic=...)``: a retrained critic takes the shipped critic's half (how
    scripts/compare_shipped.py measures a candidate with the agent)."""
    other = tdml.critic.ClusteringCritic.load(tdml.critic.SYNTHETIC_PRETRAINED_PATHS[1], "cpu")
    reward = tdml.load_reward(device="cpu", critic=other)
    assert reward.critics[0] is other and reward.weights.tolist() == pytest.approx([1 / 2, 1 / 6, 1 / 6, 1 / 6])
    assert tdml.load_reward(device="cpu").critics[0].metadata["domain"] == "numbers"


def test_missing_reward_critic_names_the_command_that_retrains_it(monkeypatch, tmp_path):
    monkeypatch.setattr(tdml.critic, "REWARD_CRITIC_PATH", tmp_path / "critic_numbers_reward.pt")
    with pytest.raises(FileNotFoundError, match="train-critic .*--out tdml_lib/pretrained/critic_numbers_reward.pt"):
        tdml.load_reward(device="cpu")


def test_missing_synthetic_critic_names_the_command(monkeypatch, tmp_path):
    paths = list(tdml.critic.SYNTHETIC_PRETRAINED_PATHS)
    paths[2] = tmp_path / "critic_synthetic_seed2.pt"
    monkeypatch.setattr(tdml.critic, "SYNTHETIC_PRETRAINED_PATHS", tuple(paths))
    with pytest.raises(FileNotFoundError, match="train-synthetic-critic --seed 2 --out "
                                                "tdml_lib/pretrained/critic_synthetic_seed2.pt"):
        tdml.load_reward(device="cpu")


@pytest.mark.parametrize("command,argv", [
    ("train-synthetic-critic", ["--n-problems", "0"]), ("train-synthetic-critic", ["--epochs", "-1"]),
    ("train-synthetic-critic", ["--max-points", "5"]), ("train-synthetic-critic", ["--adversarial-rounds", "-1"]),
    ("train-synthetic-critic", ["--adversarial-budget", "5", "2"]),
    ("train-critic", ["--small-pool-problems", "-1"]), ("train-critic", ["--small-pool-size", "1"]),
    ("train-critic", ["--overlap-pairs", "0"]), ("train-critic", ["--overlap-pull", "0.5", "1.0"])])
def test_training_commands_refuse_bad_arguments_before_training(command, argv, tmp_path):
    out = tmp_path / "c.pt"
    proc = subprocess.run([sys.executable, "-m", "tdml_lib", command, *argv, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and not out.exists()


def test_train_critic_trains_chapter_5s_recipe_steps(tmp_path):
    """The shipped critic can be trained with chapter 5's recipe: small-pool problems and
    overlapping copies reach the recipe, and its metadata records them."""
    from tdml_lib.__main__ import main

    out = tmp_path / "c.pt"
    assert main(["train-critic", "--n-problems", "4", "--n-synthetic", "0", "--small-pool-problems", "2",
                 "--overlap-copies", "--overlap-pairs", "1", "--overlap-pull", "0.2", "0.3", "--epochs", "1",
                 "--gae-epochs", "1", "--n-negatives", "3", "--n-degenerate", "2", "--adversarial-rounds", "0",
                 "--inputs", "statistics", "--device", "cpu", "--out", str(out)]) == 0
    critic = tdml.load_critic(out, device="cpu")
    recipe = critic.metadata["recipe"]
    assert recipe["small_pool_problems"] == 2 and recipe["overlap_copies"] is True
    assert list(recipe["overlap_pull"]) == [0.2, 0.3] and recipe["overlap_pairs"] == 1
    assert critic.inputs == "statistics"


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


# --- issue 21: the cases of the report, each a clear error or the correct result ---------------
from tdml_lib import bench, graphs  # noqa: E402
from tdml_lib.device import resolve_device  # noqa: E402
from tdml_lib.io import load_torch, save_torch  # noqa: E402


def _outlier(ratio):
    X = X_OK.astype(np.float64)
    X[0] = ratio * float(np.abs(X_OK).max())
    return X


LABS3 = np.stack([LAB_OK, np.arange(30) % 5, np.r_[np.zeros(15, int), np.ones(15, int)]])

# (description, X as the user passes it, X it must score exactly like, or an error fragment).
# Points are centred and scaled in float64 before the float32 cast (validation.scaled_points).
PRECISION_CASES = [
    ("offset 1e7", X_OK.astype(np.float64) + 1e7, X_OK, None),
    ("scale 1e19", X_OK.astype(np.float64) * 1e19, X_OK, None),
    ("scale 1e-30", X_OK.astype(np.float64) * 1e-30, X_OK, None),
    ("scale 1e300", X_OK.astype(np.float64) * 1e300, X_OK, None),
    ("scale 1e-300", X_OK.astype(np.float64) * 1e-300, X_OK, None),
    ("Fortran order, outlier 1e5", np.asfortranarray(_outlier(1e5)), np.ascontiguousarray(_outlier(1e5)), None),
    ("outlier 1e9", _outlier(1e9), None, "dynamic range is too wide"),
]


@pytest.mark.parametrize("case", PRECISION_CASES, ids=[c[0] for c in PRECISION_CASES])
def test_extreme_coordinates_score_correctly_or_fail_clearly(critic, case):
    _, X, same_as, fragment = case
    if fragment:
        with pytest.raises(ValueError, match=fragment):
            critic.score_many(X, LABS3)
        return
    got, want = critic.score_many(X, LABS3), critic.score_many(same_as, LABS3)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, atol=1e-4)
    # not "all points identical"; absolute, as above: gated scores sit near -GATE_PENALTY, where a
    # relative tolerance would call any two of them equal
    assert not np.allclose(got, critic.score_many(np.ones_like(X_OK), LABS3), rtol=0, atol=1e-4)


def test_offset_points_keep_their_neighbour_graph():
    a = graphs.prepare_point_set(X_OK, k=5, device="cpu")
    b = graphs.prepare_point_set(X_OK.astype(np.float64) + 1e7, k=5, device="cpu")
    assert torch.equal(a.knn, b.knn)


@pytest.mark.parametrize("name,transform", [
    ("offset 1e7", lambda X: X + 1e7),
    ("scale 1e-30", lambda X: X * 1e-30),
    ("scale 1e19", lambda X: X * 1e19),
    ("scale 1e300", lambda X: X * 1e300),
])
def test_agent_clusters_extreme_coordinates(name, transform):
    scorer = tdml.metrics.IndexScorer("silhouette")
    base = tdml.cluster(X_OK, reward=scorer, generations=2, population_size=6, progress=False)
    res = tdml.cluster(transform(X_OK.astype(np.float64)), reward=scorer, generations=2, population_size=6,
                       progress=False)
    assert tdml.ari(base.labels, res.labels) == pytest.approx(1.0)


# --- memory: a pass holds at most MAX_ELEMENTS_PER_PASS elements ---------------------------------

def test_pass_slices_bound_points_times_clusters():
    n, budget = 4000, graphs.MAX_ELEMENTS_PER_PASS
    one_per_point = np.tile(np.arange(n), (40, 1))                # K = n for all 40 labelings
    few = np.tile(np.arange(n) % 10, (40, 1))
    for labs in (one_per_point, few, np.vstack([few[:20], one_per_point[:5], few[:20]])):
        slices = graphs.pass_slices(labs, n)
        assert [i for s in slices for i in range(s.start, s.stop)] == list(range(len(labs)))
        for s in slices:
            k = labs[s].max() + 1
            assert (s.stop - s.start) * n * (k + graphs.PASS_NODE_WIDTH) <= budget or s.stop - s.start == 1
    assert len(graphs.pass_slices(one_per_point, n)) == 40        # one clustering per pass
    assert len(graphs.pass_slices(few, n)) == 1                    # 40 * 4000 * 58 < 2**24
    assert len(graphs.pass_slices(few, n, max_batch=7)) == 6
    assert len(graphs.pass_slices(torch.as_tensor(one_per_point), n)) == 40


def test_critic_and_embedder_passes_stay_within_the_budget(critic, monkeypatch):
    """Every pass that reaches block B holds at most the budget (or one clustering)."""
    n = 60
    X = np.random.default_rng(1).normal(size=(n, 3))
    labs = np.vstack([np.tile(np.arange(n), (6, 1)), np.tile(np.arange(n) % 3, (6, 1))])
    expected = critic.score_many(X, labs)
    budget = 2 * n * (n + graphs.PASS_NODE_WIDTH)                  # two one-per-point clusterings
    monkeypatch.setattr(graphs, "MAX_ELEMENTS_PER_PASS", budget)
    seen = []
    original = critic.embedder.embed_with_separation   # the one pass both paths go through

    def spy(ps, labels):
        seen.append((labels.shape[0], int(labels.max()) + 1))
        return original(ps, labels)

    monkeypatch.setattr(critic.embedder, "embed_with_separation", spy)
    np.testing.assert_allclose(critic.score_many(X, labs), expected, atol=1e-5)
    critic.embedder.embed_many(X, labs, batch_size=5)
    assert len(seen) >= 6
    for b, k in seen:
        assert b * n * (k + graphs.PASS_NODE_WIDTH) <= budget or b == 1
    assert all(b <= 5 for b, _ in seen[-4:])


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_batch_size_is_a_positive_int(critic, bad):
    ps = critic.embedder.prepare(X_OK)
    with pytest.raises(ValueError, match="batch_size"):
        critic.score_prepared(ps, torch.as_tensor(LABS3), batch_size=bad)


# --- kNN: method by measurement, same contract, documented maximum ------------------------------

@pytest.mark.parametrize("d", [3, 12])
@pytest.mark.parametrize("method", ["kd_tree", "brute"])
def test_sklearn_knn_matches_cdist(d, method):
    X = torch.as_tensor(np.random.default_rng(d).normal(size=(400, d)).astype(np.float32))
    i0, d0 = graphs.knn_graph(X, 7, method="cdist")
    i1, d1 = graphs.knn_graph(X, 7, method=method)
    assert i1.shape == (400, 7) and i1.dtype == torch.long and d1.dtype == torch.float32
    assert torch.equal(i0, i1)
    assert torch.allclose(d0, d1, atol=1e-5)


def test_knn_method_chosen_by_size_and_dimension():
    assert graphs.choose_knn_method(1000, 32) == "cdist"      # the chapters' sizes: as before
    assert graphs.choose_knn_method(70_000, 2) == "kd_tree"
    assert graphs.choose_knn_method(70_000, 32) == "brute"
    assert graphs.choose_knn_method(70_000, 2, "cuda") == "cdist"


def test_knn_excludes_self_among_duplicates():
    n = graphs.CDIST_MAX_POINTS + 500                          # past cdist: the k-d tree
    X = np.repeat(np.random.default_rng(0).normal(size=(n // 2, 2)), 2, axis=0)
    ps = graphs.prepare_point_set(X, k=4, device="cpu")
    assert not (ps.knn == torch.arange(ps.n_points)[:, None]).any()
    assert torch.all(ps.knn_dist[:, 0] == 0)                   # the twin is the nearest


@pytest.mark.parametrize("shape,fragment", [
    ((graphs.MAX_POINTS + 1, 2), "MAX_POINTS"),
    ((400_000, 32), "MAX_KNN_WORK"),
    ((400_000, 10), "MAX_KNN_WORK"),          # brute force costs n**2 * 32 below 32-D
    ((700_000, 8), "MAX_KNN_WORK"),           # k-d tree
    ((70_000, 784), "MAX_KNN_WORK"),
])
def test_point_sets_beyond_the_knn_limits_are_refused_before_any_work(shape, fragment):
    X = np.broadcast_to(np.float32(0.5), shape)               # no memory behind it
    with pytest.raises(ValueError, match=fragment):
        graphs.prepare_point_set(X, device="cpu")


@pytest.mark.parametrize("k", [0, 30, 2.5, True])
def test_knn_k_is_checked(k):
    with pytest.raises(ValueError, match="k must be"):
        graphs.knn_graph(torch.as_tensor(X_OK), k)


# --- unchecked parameters -------------------------------------------------------------------------

def _no_mps(monkeypatch):
    monkeypatch.setattr(tdml.device, "_mps_available", lambda: False)


def _one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


# (description, call, expected message fragment, set-up of the machine)
PARAMETER_CASES = [
    ("device tpu", lambda: resolve_device("tpu"), "not a device name", None),
    ("device meta", lambda: resolve_device("meta"), "CPU, CUDA or MPS", None),
    ("device 3", lambda: resolve_device(3), "must be a string", None),
    ("device mps absent", lambda: resolve_device("mps"), "MPS", _no_mps),
    ("device cuda:7 on one GPU", lambda: resolve_device("cuda:7"), "1 CUDA device", _one_gpu),
    ("load_critic on tpu", lambda: tdml.load_critic(device="tpu"), "available here", None),
    ("best_and_topk float index", lambda: tdml.best_and_topk([0.1, 0.5, 0.2], 1.0), "integer position", None),
    ("best_and_topk bool index", lambda: tdml.best_and_topk([0.1, 0.5, 0.2], True), "integer position", None),
    ("best_and_topk index 3 of 3", lambda: tdml.best_and_topk([0.1, 0.5, 0.2], 3), "outside", None),
    ("best_and_topk k=0", lambda: tdml.best_and_topk([0.1, 0.5], 0, k=0), "k must be", None),
    ("best_and_topk k=1.5", lambda: tdml.best_and_topk([0.1, 0.5], 0, k=1.5), "k must be", None),
    ("rank_of string scores", lambda: tdml.metrics.rank_of(["a", "b"], 0), "numbers", None),
    ("synthetic_problems families=[]", lambda: tdml.synthetic_problems(3, families=[]), "families is empty",
     None),
    ("synthetic_problems unknown family", lambda: tdml.synthetic_problems(3, families=["blob"]),
     "unknown family", None),
    ("synthetic_problems families='blobs'", lambda: tdml.synthetic_problems(3, families="blobs"),
     "must be a list", None),
    ("synthetic_problems n_problems=2.0", lambda: tdml.synthetic_problems(2.0), "n_problems", None),
    ("synthetic_problem n_clusters=2.5", lambda: tdml.synthetic_problem("blobs", n_clusters=2.5), "n_clusters",
     None),
    ("synthetic_problem noise=nan", lambda: tdml.synthetic_problem("blobs", noise=float("nan")), "noise", None),
    ("synthetic_problem points_per_class=(5, 2)", lambda: tdml.synthetic_problem("blobs", points_per_class=(5, 2)),
     "lo <= hi", None),
    ("prepare_point_set k=0", lambda: graphs.prepare_point_set(X_OK, k=0), "k must be", None),
]


@pytest.mark.parametrize("case", PARAMETER_CASES, ids=[c[0] for c in PARAMETER_CASES])
def test_bad_parameters_give_clear_value_errors(case, monkeypatch):
    _, call, fragment, setup = case
    if setup:
        setup(monkeypatch)
    with pytest.raises(ValueError, match=fragment):
        call()


def test_available_devices_are_accepted():
    for name in tdml.device.available_devices():
        assert isinstance(resolve_device(name), torch.device)
    assert resolve_device(torch.device("cpu")).type == "cpu"


def test_best_and_topk_accepts_numpy_integers():
    assert tdml.best_and_topk(np.array([0.1, 0.5, 0.2]), np.int64(1), k=np.int32(1)) == (True, True)


# --- checkpoints that load but are wrong ------------------------------------------------------------

def _set(path, value):
    def apply(state):
        *parents, last = path
        for key in parents:
            state = state[key]
        state[last] = value(state[last]) if callable(value) else value
    return apply


def _drop(key):
    return lambda state: state.pop(key)


def _nan_at_0(t):
    t = t.clone()
    t[0] = float("nan")
    return t


# (description, change to a valid critic state, expected message fragment or None = loads)
CHECKPOINT_CASES = [
    ("missing net", _drop("net"), "lacks field.*'net'"),
    ("missing emb_std", _drop("emb_std"), "lacks field.*'emb_std'"),
    ("missing embedder config", lambda s: s["embedder"].pop("config"), "lacks field.*'config'"),
    ("wrong weight shape", _set(("net", "net.0.weight"), lambda t: t[:, :-1]), "has shape"),
    ("unexpected weight", _set(("net", "net.9.weight"), torch.zeros(2)), "unexpected"),
    ("hidden 1e9", _set(("hidden",), 10 ** 9), "between 1 and 4096"),
    ("hidden 64.0", _set(("hidden",), 64.0), "must be an integer"),
    ("embedder hidden 1e9", _set(("embedder", "config", "hidden"), 10 ** 9), "between 1 and 4096"),
    ("embedder k 0", _set(("embedder", "config", "k"), 0), r"config\['k'\]"),
    ("embedder weight shape", _set(("embedder", "weights", "gae.encoder.conv1.bias"), torch.zeros(3)),
     "has shape"),
    ("emb_std 0", _set(("emb_std",), torch.zeros_like), "> 0"),
    ("emb_std NaN", _set(("emb_std",), _nan_at_0), "NaN"),
    ("emb_mean NaN", _set(("emb_mean",), _nan_at_0), "NaN"),
    ("NaN weight", _set(("net", "net.0.bias"), _nan_at_0), "NaN"),
    ("emb_mean not a tensor", _set(("emb_mean",), [0.0]), "float tensor"),
    ("format 2", _set(("format",), 2), "has format 2"),
    ("extra field (newer format)", _set(("added_later",), {"x": 1}), None),
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
def test_corrupt_critic_states_are_refused_with_the_field_named(critic, tmp_path, case):
    import copy

    _, change, fragment = case
    state = copy.deepcopy(critic.state())
    change(state)
    path = save_torch(tmp_path / "critic.pt", state)
    if fragment is None:
        loaded = tdml.load_critic(path, device="cpu")
        np.testing.assert_allclose(loaded.score_many(X_OK, LABS3), critic.score_many(X_OK, LABS3), atol=1e-6)
        return
    with pytest.raises(ValueError, match=fragment) as err:
        tdml.load_critic(path, device="cpu")
    assert str(path) in str(err.value) and "train-critic --out" in str(err.value)


def test_corrupt_embedder_state_is_refused(critic, tmp_path):
    state = critic.embedder.state()
    state["config"]["code_dim"] = 10 ** 9
    path = save_torch(tmp_path / "emb.pt", state)
    with pytest.raises(ValueError, match="code_dim"):
        ClusteringEmbedder.load(path, device="cpu")


def test_load_torch_refuses_oversized_files_before_reading(tmp_path):
    path = save_torch(tmp_path / "big.pt", {"w": torch.zeros(1000)})
    with pytest.raises(ValueError, match="more than any critic"):
        load_torch(path, "critic", "train one", max_bytes=100)


def test_checkpointer_reads_through_load_torch(tmp_path):
    from tdml_lib.checkpoint import Checkpointer

    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="(?s)cannot read checkpoint.*Delete it"):
        Checkpointer(path).load()


# --- the command line: defaults never overwrite what the book ships ------------------------------

def _bench_parser():
    import argparse

    parser = argparse.ArgumentParser()
    bench.add_cli(parser.add_subparsers())
    return parser


def test_bench_writes_under_runs_by_default_and_help_shows_every_default():
    args = _bench_parser().parse_args(["bench"])
    assert args.out == bench.DEFAULT_OUT and not bench.DEFAULT_OUT.startswith("results")
    sub = _bench_parser()._subparsers._group_actions[0].choices["bench"]
    text = sub.format_help()
    for action in sub._actions:
        if action.option_strings and action.default is not None and action.dest != "help":
            assert f"(default: {action.default}" in " ".join(text.split()), action.dest


@pytest.mark.parametrize("argv", [["bench", "--sizes", "2"], ["bench", "--batches", "0"],
                                  ["bench", "--agent-generations", "1.5"]])
def test_bench_command_line_refuses_bad_numbers(argv):
    with pytest.raises(SystemExit):
        _bench_parser().parse_args(argv)


def test_bench_default_run_leaves_results_untouched(tmp_path, monkeypatch):
    from tdml_lib.__main__ import main

    stored = {p: p.read_bytes() for p in bench.STORED_DIR.glob("*")}
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--sizes", "40", "--batches", "2", "--agent-sizes", "--device", "cpu"]) == 0
    assert (tmp_path / "runs" / "benchmarks" / "bench_cpu.json").exists()
    assert {p: p.read_bytes() for p in bench.STORED_DIR.glob("*")} == stored
    assert main(["bench", "--device", "tpu", "--limits-only"]) == 2      # clear error, nothing written
    assert not (tmp_path / "runs" / "benchmarks" / "limits_cpu.json").exists()


# --- the stored limits (book/limits.md reads them) -------------------------------------------------

def test_stored_limits_match_the_library_and_keep_their_promises():
    limits = bench.stored_limits()
    assert limits is not None, "results/benchmarks/limits_cpu.json is missing: python -m tdml_lib bench --limits-only"
    assert limits["parameters"] == bench.limit_parameters(), (
        "a documented limit changed since it was measured: rerun "
        "python -m tdml_lib bench --limits-only --out results/benchmarks")
    cases = {(m["n_points"], m["n_clusters"]) for m in limits["memory"]}
    assert {(4000, 4000), (200_000, 10)} <= cases
    assert all(m["within_bound"] and m["rise_mb"] <= bench.SCORE_MEMORY_BOUND_MB for m in limits["memory"])
    knn = [r for r in limits["knn"] if r["chosen"] and r["status"] == "ok"]
    assert max(r["n_points"] for r in knn) == graphs.MAX_POINTS
    assert {r["n_features"] for r in knn if r["n_points"] == 200_000} >= {2, 10, 32}
    summary = bench.limits_summary(limits)
    assert len(summary) == 7 and not summary["measured"].str.contains("not measured").any()
    assert set(bench.limits_tables(limits)) == {"knn", "memory", "precision"}


# --- the validation layer itself (used by the library and the command line) -----------------------
from tdml_lib import validation as V  # noqa: E402

VALIDATOR_CASES = [
    (lambda: V.check_int(3.0, "n", 1), "n must be an integer >= 1, got 3.0"),
    (lambda: V.check_int(np.bool_(True), "n", 1), "n must be an integer"),
    (lambda: V.check_int(11, "n", 1, 10), "between 1 and 10"),
    (lambda: V.check_real(float("inf"), "rate", 0, 1), "finite"),
    (lambda: V.check_real(True, "rate", 0, 1), "real number"),
    (lambda: V.check_real(0.0, "rate", 0, 1, low_open=True), r"in \(0, 1\]"),
    (lambda: V.check_choice("cpu ", "device", ["cpu", "cuda"]), "one of"),
    (lambda: V.check_choice(1.0, "k", [1, 2]), "one of"),
    (lambda: V.check_nonempty((), "sizes"), "empty"),
    (lambda: V.check_nonempty(5, "sizes"), "must be a list"),
    (lambda: V.check_index(2, "i", 2), "outside 0..1"),
    (lambda: V.check_real_range((0.6, 0.4), "share"), r"share must satisfy 0.0 <= lowest <= highest <= 1.0"),
    (lambda: V.check_real_range((0.2, 1.0), "pull", high_open=True), r"highest < 1.0"),
    (lambda: V.check_real_range(0.5, "share"), "two real numbers"),
    (lambda: V.check_real_range((0.1, float("nan")), "reach"), "two real numbers"),
    (lambda: V.check_real_range((0.1, 0.2, 0.3), "reach"), "two real numbers"),
]


@pytest.mark.parametrize("call,fragment", VALIDATOR_CASES)
def test_validators_refuse_with_the_name_and_the_range(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


def test_validators_pass_good_values_through():
    assert V.check_int(np.int16(4), "n", 1, 10) == 4 and type(V.check_int(np.int16(4), "n")) is int
    assert V.check_real(np.float32(0.25), "rate", 0, 1) == 0.25
    assert V.check_choice("cuda", "device", ["cpu", "cuda"]) == "cuda"
    assert V.check_real_range([0, np.float32(1.0)], "share") == (0.0, 1.0)
    assert V.check_nonempty(iter("ab"), "x") == ["a", "b"]


def test_argparse_type_turns_a_check_into_a_command_line_error():
    import argparse

    parse = V.argparse_type(V.check_int, "--epochs", 1)
    assert parse("5") == 5
    for text in ("0", "2.5", "five"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
