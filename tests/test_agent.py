"""Block A: the agent is seeded, honours K, finds K when the reward points there, never
sees true labels, survives odd data and checks every parameter."""
import importlib
import inspect
import logging

import numpy as np
import pandas as pd
import pytest

from tdml_lib import agent
from tdml_lib.metrics import IndexScorer, clustering_accuracy
from tdml_lib.problems import synthetic_problem

SIL = IndexScorer("silhouette")


@pytest.fixture(scope="module")
def blobs():
    return synthetic_problem("blobs", n_clusters=3, points_per_class=(30, 40), n_features=4, seed=3)


def run(X, **kw):
    return agent.cluster(X, reward=kw.pop("reward", SIL), generations=kw.pop("generations", 8),
                         population_size=kw.pop("population_size", 16), **kw)


class _OracleScorer:
    """A reward that knows the truth (tests only): ACC against it, maximal at the truth
    and nowhere else (extra or missing clusters count as errors)."""

    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth

    def score_many(self, X, labelings):
        return np.array([clustering_accuracy(self.truth, lab) for lab in labelings])


def test_seeded_runs_are_reproducible(blobs):
    a, b = run(blobs.X, seed=1), run(blobs.X, seed=1)
    assert np.array_equal(a.labels, b.labels) and a.history.equals(b.history)
    assert list(a.history.columns) == ["generation", "best", "median", "mean", "std", "n_clusters_best", "n_k"]
    assert a.history.best.is_monotonic_increasing  # elitism never loses the best


def test_well_separated_blobs_are_found(blobs):
    res = run(blobs.X, seed=0)
    assert clustering_accuracy(blobs.labels, res.labels) > 0.95
    assert res.n_clusters == 3


def test_n_clusters_is_honoured(blobs):
    for k in (2, 5):
        res = run(blobs.X, n_clusters=k, seed=0)
        assert res.labels.max() + 1 == k
        assert all(lab.max() + 1 == k for lab in res.population)
        assert list(res.best_per_k.K) == [k]


class Recorder:
    """A scorer that records what it is given."""

    def __init__(self):
        self.calls = []

    def score_many(self, X, labelings):
        self.calls.append((np.asarray(X).shape, np.asarray(labelings).shape))
        return SIL.score_many(X, labelings)


def test_agent_never_sees_true_labels(blobs):
    params = inspect.signature(agent.cluster).parameters
    assert not any("true" in p or p in ("y", "labels", "target") for p in params)
    rec = Recorder()
    res = run(blobs.X, reward=rec, generations=3, seed=0)
    n, search = blobs.n_points, rec.calls[:4]
    assert all(xs == (n, blobs.n_features) and ls[1] == n for xs, ls in search), \
        "one batched call per generation (initial + 3) on the whole point set"
    m = int(agent.SUBSAMPLE_FRACTION * n)
    assert rec.calls[4:] == [((m, blobs.n_features), (len(res.best_per_k), m))] * agent.SUBSAMPLES, \
        "then one call per subsample, with the best clustering of each K, to choose K"


def test_one_reward_argument():
    params = inspect.signature(agent.cluster).parameters
    assert "reward" in params and "critic" not in params and "scorer" not in params


@pytest.mark.parametrize("family,k", [("blobs", 2), ("blobs", 5), ("anisotropic", 3), ("varied_density", 3),
                                      ("moons", 2)])
def test_k_is_found_when_the_reward_points_there(family, k):
    """With a reward maximal at the truth, the agent left to choose K finds the true K
    (searching 2..12) and the truth itself, whatever K is. (The oracle knows the labels of
    the whole point set only, so K is chosen by the reward on all points.)"""
    p = synthetic_problem(family, n_clusters=k, points_per_class=(40, 60), seed=7)
    res = run(p.X, reward=_OracleScorer(p.labels), generations=15, population_size=24, seed=0,
              k_choice="reward")
    assert res.n_clusters == k
    assert clustering_accuracy(p.labels, res.labels) > 0.9
    table = res.best_per_k
    assert list(table.columns) == ["K", "reward", "labels"] and table.K.is_monotonic_increasing
    assert table.reward.idxmax() == table.index[table.K == k][0]
    assert len(table) >= 6, "the search keeps several K values alive"
    best = table[table.K == k].iloc[0]
    assert np.array_equal(best.labels, res.labels) and best.reward == res.reward


def test_k_search_covers_the_range_and_stays_in_it(blobs):
    res = run(blobs.X, k_max=9, generations=6, seed=0)
    assert res.best_per_k.K.min() == 2 and res.best_per_k.K.max() <= 9
    assert set(range(2, 10)) <= set(res.best_per_k.K), "every K seeded when the population allows"
    assert all(2 <= lab.max() + 1 <= 9 for lab in res.population)
    # a wide range seeds K values spread over all of it, not the first few
    wide = run(blobs.X, k_max=40, population_size=8, generations=0, seed=0)
    assert wide.best_per_k.K.min() == 2 and wide.best_per_k.K.max() == 40
    assert len(wide.best_per_k) == agent.SEEDED_KS


def test_never_returns_one_cluster_unless_asked(blobs):
    """A reward that prefers fewer clusters still gets K >= 2 when K is searched."""

    class FewerIsBetter:
        def score_many(self, X, labelings):
            return -np.array([lab.max() for lab in labelings], dtype=float)

    res = run(blobs.X, reward=FewerIsBetter(), seed=0)
    assert res.n_clusters == 2
    assert run(blobs.X, n_clusters=1).n_clusters == 1


def test_degenerate_inputs(blobs):
    with pytest.raises(ValueError, match="at least 3"):
        run(blobs.X[:2])
    with pytest.raises(ValueError, match="between 1 and"):
        run(blobs.X, n_clusters=blobs.n_points + 1)
    same = run(np.ones((12, 3)))
    assert np.all(same.labels == 0)
    one = run(blobs.X, n_clusters=1)
    assert np.all(one.labels == 0)
    dup = run(np.repeat(blobs.X[:10], 3, axis=0), seed=0)
    assert len(dup.labels) == 30
    every = run(blobs.X[:5], n_clusters=5)
    assert every.n_clusters == 5


def _two_blobs(offset, spread=1.0, n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = np.r_[rng.normal(size=(n, 2)) * spread, rng.normal(size=(n, 2)) * spread + offset]
    return X, np.r_[np.zeros(n, int), np.ones(n, int)]


@pytest.mark.parametrize("case", ["collinear", "duplicated", "offset 1e6", "coordinates 1e7", "scale 1e-30"])
def test_odd_data_give_clusterings(case):
    """Data on which seeding methods used to raise inside scikit-learn, or lost their
    structure to a float32 cast before centring, now give the right clustering."""
    rng = np.random.default_rng(0)
    if case == "collinear":
        x = np.r_[rng.normal(size=60), rng.normal(size=60) + 8]
        X, truth = np.c_[x, 2 * x] * 100, np.r_[np.zeros(60, int), np.ones(60, int)]
    elif case == "duplicated":
        X, truth = _two_blobs([8, 8])
        X, truth = np.repeat(X[:20], 6, axis=0), np.repeat(truth[:20], 6)
        X[60:], truth[60:] = X[60:] + 8, 1
    elif case == "offset 1e6":
        X, truth = _two_blobs([1e6, 0])
    elif case == "coordinates 1e7":
        X, truth = _two_blobs([8, 8])
        X = X + 1e7
    else:
        X, truth = _two_blobs([8, 8])
        X = X * 1e-30
    res = run(X, generations=4, seed=0)
    assert res.labels.shape == truth.shape
    assert clustering_accuracy(truth, res.labels) == 1.0


def test_a_failing_seeding_method_drops_its_seed_with_a_note(blobs, monkeypatch, caplog):
    def broken(X, k, seed):
        raise np.linalg.LinAlgError("ill-defined covariance")

    def warns(knn, n_components, seed):
        import warnings
        warnings.warn("overflow encountered", RuntimeWarning)
        return np.zeros((len(knn), n_components))

    monkeypatch.setattr(agent, "_mixture_labels", broken)
    monkeypatch.setattr(agent, "_spectral_embedding", warns)
    with caplog.at_level(logging.INFO, logger="tdml_lib.agent"):
        res = run(blobs.X, seed=0)
    assert clustering_accuracy(blobs.labels, res.labels) > 0.95   # the other seeds carry the run
    assert any("Gaussian mixture seed at K=2 dropped: LinAlgError" in note for note in res.notes)
    assert any("spectral embedding dropped: RuntimeWarning" in note for note in res.notes)
    assert any("dropped" in r.getMessage() for r in caplog.records)


def test_every_method_failing_still_gives_a_clustering(blobs, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("nothing works today")

    for name in ("_mixture_labels", "_spectral_embedding", "_kmeans_seed"):
        monkeypatch.setattr(agent, name, broken)
    monkeypatch.setattr(agent, "HIERARCHY_MAX_POINTS", 0)
    res = run(blobs.X, generations=3, seed=0)
    assert res.labels.shape == (blobs.n_points,) and res.n_clusters >= 2
    assert any("first principal axis" in note for note in res.notes)


@pytest.mark.parametrize("name,value,fragment", [
    ("generations", 1.5, "generations must be an integer"),
    ("generations", "2", "generations must be an integer"),
    ("generations", -1, "generations must be >= 0"),
    ("population_size", 4.5, "population_size must be an integer"),
    ("population_size", 3, "population_size must be between 4 and"),
    ("population_size", 10**9, "population_size must be between 4 and"),
    ("population_size", 1e9, "population_size must be an integer"),
    ("k_max", 0, "k_max must be between 2 and"),
    ("k_max", 1, "k_max must be between 2 and"),
    ("k_max", 1000, "k_max must be between 2 and"),
    ("k_max", True, "k_max must be an integer"),
    ("elite", -1, "elite must be between 0 and"),
    ("elite", 16, "elite must be between 0 and"),
    ("crossover_rate", 2, "crossover_rate must be a finite number between 0 and 1"),
    ("crossover_rate", float("nan"), "crossover_rate must be a finite number"),
    ("crossover_rate", "0.5", "crossover_rate must be a finite number"),
    ("seed", -3, "seed must be >= 0"),
    ("seed", 0.5, "seed must be an integer"),
    ("progress", "yes", "progress must be True or False"),
])
def test_every_parameter_is_checked(blobs, name, value, fragment):
    with pytest.raises(ValueError, match=fragment):
        run(blobs.X, **{name: value})


def test_reward_must_be_a_scorer(blobs):
    with pytest.raises(ValueError, match="score_many"):
        run(blobs.X, reward="silhouette")

    class Wrong:
        def score_many(self, X, labelings):
            return np.zeros(2)

    with pytest.raises(ValueError, match="one score per clustering"):
        run(blobs.X, reward=Wrong())


class _ChunkedCritic:
    """Duck-typed critic (score_prepared + embedder.prepare) that records each call's
    clusterings x points x clusters, the size of a critic's per-cluster tensors."""

    class _Embedder:
        def prepare(self, X):
            from types import SimpleNamespace

            import torch
            return SimpleNamespace(X=torch.as_tensor(X), device=torch.device("cpu"),
                                   knn=torch.as_tensor(agent._knn(np.asarray(X), 5)))

    def __init__(self):
        self.embedder, self.sizes = self._Embedder(), []

    def score_prepared(self, ps, labels):
        import torch
        self.sizes.append(labels.shape[0] * labels.shape[1] * (int(labels.max()) + 1))
        scores = SIL.score_many(ps.X.numpy(), labels.numpy())
        return torch.as_tensor(scores)

    def score_many(self, X, labelings):
        return SIL.score_many(X, labelings)


def test_critic_calls_are_chunked_so_memory_stays_bounded(blobs, monkeypatch):
    monkeypatch.setattr(agent, "SCORE_BUDGET", 4 * blobs.n_points * 12)
    critic = _ChunkedCritic()
    res = run(blobs.X, reward=critic, k_max=12, seed=0)
    assert max(critic.sizes) <= agent.SCORE_BUDGET and len(critic.sizes) > 9
    assert clustering_accuracy(blobs.labels, res.labels) > 0.95
    # the critic's kNN graph is reused: the scorer's points are the agent's scaled points
    assert res.labels.shape == (blobs.n_points,)


def test_cache_keys_are_small_and_distinct():
    a, b = np.array([0, 0, 1]), np.array([0, 1, 1])
    assert len(agent._key(a)) == 16 and agent._key(a) != agent._key(b)


def test_deap_classes_survive_reload(blobs):
    importlib.reload(agent)
    assert run(blobs.X, generations=2, seed=0).labels.shape == (blobs.n_points,)


def test_proposals_are_distinct(blobs):
    props = agent.make_agent_proposals(blobs.X, SIL, n=4, seed=0, generations=3, population_size=12)
    assert 1 <= len(props) <= 4
    assert len({p.tobytes() for p in props}) == len(props)


@pytest.mark.parametrize("family", ["circles", "moons"])
def test_search_reaches_non_convex_clusters(family):
    """Moons and rings are in the agent's reach (spectral seeds + moves): with a
    perfect reward it finds them, where k-means cannot. (Interlocking moons whose tips
    touch the other moon's kNN graph need ~30 generations of moves to finish.)"""
    p = synthetic_problem(family, n_clusters=2, points_per_class=(150, 200), seed=5)
    res = run(p.X, reward=_OracleScorer(p.labels), n_clusters=2, generations=30, seed=0)
    assert clustering_accuracy(p.labels, res.labels) > 0.97


def test_fixed_k_holds_even_with_tiny_seed_clusters():
    """Seeds may hold tiny clusters; perturbing them must never change a fixed K."""
    p = synthetic_problem("moons", n_clusters=2, points_per_class=(40, 50), seed=1)
    for k in (3, 6):
        res = run(p.X, n_clusters=k, seed=2)
        assert res.labels.max() + 1 == k
        assert all(lab.max() + 1 == k for lab in res.population)


def test_large_point_sets_use_minibatch_seeds_and_skip_quadratic_methods(monkeypatch):
    """Above the documented sizes (lowered here to 200 points) Ward and spectral seeds
    are skipped, k-means seeds come from MiniBatchKMeans and mixtures are fitted on a
    subsample of MIXTURE_MAX_POINTS points."""
    import sklearn.cluster
    import sklearn.mixture

    called, fitted_on, subsamples = [], [], set()
    for name in ("HIERARCHY_MAX_POINTS", "MIXTURE_MAX_POINTS", "SPECTRAL_MAX_POINTS", "MINIBATCH_MIN_POINTS"):
        monkeypatch.setattr(agent, name, 200)
    mixture = sklearn.mixture.GaussianMixture

    class MixtureSpy(mixture):
        def fit(self, X, *args, **kwargs):
            fitted_on.append(len(X))
            subsamples.add(np.asarray(X).tobytes())
            return super().fit(X, *args, **kwargs)

    monkeypatch.setattr(sklearn.mixture, "GaussianMixture", MixtureSpy)
    monkeypatch.setattr(agent, "_spectral_embedding", lambda *a: called.append("spectral"))
    monkeypatch.setattr(agent, "linkage", lambda *a, **k: called.append("ward"), raising=False)
    minibatch = sklearn.cluster.MiniBatchKMeans

    class Spy(minibatch):
        def fit(self, X, *args, **kwargs):
            called.append("minibatch")
            return super().fit(X, *args, **kwargs)

    monkeypatch.setattr(sklearn.cluster, "MiniBatchKMeans", Spy)
    p = synthetic_problem("blobs", n_clusters=4, points_per_class=80, n_features=8, seed=0)
    res = run(p.X, n_clusters=4, generations=2, population_size=8, seed=0)
    assert set(called) == {"minibatch"}
    # 320 points, K = 4 told: TOLD_K_MIXTURES mixture seeds, each fitted on 200 of them
    assert fitted_on == [200] * agent.TOLD_K_MIXTURES and len(subsamples) == agent.TOLD_K_MIXTURES
    assert clustering_accuracy(p.labels, res.labels) > 0.95
    fitted_on.clear()
    run(p.X, k_max=5, generations=1, population_size=8, seed=0)
    assert fitted_on == [200] * 4  # a K search: one mixture per seeded K, as before


def test_mixture_seeds_on_large_sets_label_every_point_and_are_seeded(monkeypatch):
    """A mixture fitted on a subsample still labels every point, the same way for the
    same seed; at or below the cap it is fitted on all points, as before."""
    monkeypatch.setattr(agent, "MIXTURE_MAX_POINTS", 100)
    p = synthetic_problem("blobs", n_clusters=3, points_per_class=100, n_features=4, seed=1)
    a = agent._mixture_labels(p.X, 3, seed=4)
    assert a.shape == (300,) and np.unique(a).size == 3
    assert np.array_equal(a, agent._mixture_labels(p.X, 3, seed=4))
    assert clustering_accuracy(p.labels, a) > 0.95
    monkeypatch.setattr(agent, "MIXTURE_MAX_POINTS", 300)
    full = agent._mixture_labels(p.X, 3, seed=4)
    from sklearn.mixture import GaussianMixture
    expected = GaussianMixture(3, covariance_type="full", reg_covar=1e-4, random_state=4).fit(p.X).predict(p.X)
    assert np.array_equal(full, expected)


class _HoleScorer:
    """Silhouette, plus a large bonus for any clustering into ``hole_k`` clusters of the
    whole point set only: a hole tied to one point set, as a critic's holes are."""

    def __init__(self, n_points: int, hole_k: int) -> None:
        self.n_points, self.hole_k = n_points, hole_k

    def score_many(self, X, labelings):
        scores = SIL.score_many(X, labelings)
        if X.shape[0] == self.n_points:
            scores = scores + 10.0 * np.array([lab.max() + 1 == self.hole_k for lab in labelings])
        return scores


def test_k_chosen_on_subsamples_escapes_a_hole_of_the_whole_point_set(blobs):
    """By default K is picked by the mean reward over subsamples of the points, so a
    clustering that wins only on the whole point set is not returned; picked by the reward
    on all points, it is."""
    hole = _HoleScorer(blobs.n_points, hole_k=6)
    fooled = run(blobs.X, reward=hole, seed=0, k_choice="reward")
    assert fooled.n_clusters == 6
    res = run(blobs.X, reward=hole, seed=0)
    assert res.n_clusters == 3 and clustering_accuracy(blobs.labels, res.labels) > 0.95
    table = res.best_per_k
    assert list(table.columns) == ["K", "reward", "labels", "subsample_reward"]
    chosen = table[table.K == res.n_clusters].iloc[0]
    assert chosen.subsample_reward == table.subsample_reward.max()
    assert np.array_equal(chosen.labels, res.labels) and chosen.reward == res.reward
    X64 = agent.scaled_points(blobs.X, dtype=np.float64)[0]
    again = agent.subsample_rewards(X64, hole, list(table.labels), seed=0)
    assert np.allclose(again, table.subsample_reward)


def test_subsample_rewards_restrict_each_clustering_and_are_seeded(blobs):
    labs = [blobs.labels, np.arange(blobs.n_points) % 2]
    a = agent.subsample_rewards(blobs.X, SIL, labs, seed=1)
    assert a.shape == (2,) and a[0] > a[1]
    assert np.array_equal(a, agent.subsample_rewards(blobs.X, SIL, labs, seed=1))
    assert not np.array_equal(a, agent.subsample_rewards(blobs.X, SIL, labs, seed=2))


def test_k_choice_is_checked(blobs):
    with pytest.raises(ValueError, match="k_choice"):
        run(blobs.X, k_choice="silhouette")
