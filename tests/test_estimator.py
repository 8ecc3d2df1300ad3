"""TDMLClustering: the agent as a scikit-learn clusterer passes scikit-learn's own checks."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import tdml_lib as tdml
from tdml_lib import agent
from tdml_lib.estimator import TDMLClustering
from tdml_lib.metrics import IndexScorer, clustering_accuracy
from tdml_lib.problems import synthetic_problem

SIL = IndexScorer("silhouette")

# Checks that do not apply. scikit-learn itself skips ``check_array_api_input`` unless
# SCIPY_ARRAY_API is set (the agent converts any input to a NumPy float64 array, as
# check_array does). The checks of ``predict``/``transform`` pass without testing
# anything: like AgglomerativeClustering or DBSCAN, the agent clusters the data it is
# fitted on (transductive) and has no ``predict``.
EXPECTED_FAILED: dict[str, str] = {}


@parametrize_with_checks([TDMLClustering(reward=SIL, generations=2, population_size=8)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def blobs():
    return synthetic_problem("blobs", n_clusters=3, points_per_class=(30, 40), n_features=4, seed=3)


@pytest.mark.parametrize("k_choice", agent.K_CHOICES)
def test_same_result_as_cluster_with_the_same_seed(blobs, k_choice):
    est = TDMLClustering(reward=SIL, generations=4, population_size=12, random_state=5,
                         k_choice=k_choice).fit(blobs.X)
    res = agent.cluster(blobs.X, reward=SIL, generations=4, population_size=12, seed=5, k_choice=k_choice)
    assert np.array_equal(est.labels_, res.labels) and est.reward_ == res.reward
    assert est.n_clusters_ == res.n_clusters == 3
    assert est.history_.equals(res.history) and list(est.best_per_k_.K) == list(res.best_per_k.K)
    assert ("subsample_reward" in est.best_per_k_) == (k_choice == "subsample")
    assert est.n_features_in_ == blobs.n_features and est.notes_ == []


def test_fit_predict_in_a_pipeline_and_clone(blobs):
    pipe = make_pipeline(StandardScaler(), TDMLClustering(reward=SIL, generations=3, population_size=8,
                                                          random_state=0))
    labels = pipe.fit_predict(blobs.X * 1000 + 5)
    assert clustering_accuracy(blobs.labels, labels) > 0.95
    est = clone(pipe[-1]).set_params(n_clusters=4)
    assert est.fit(blobs.X).n_clusters_ == 4


@pytest.mark.parametrize("params,fragment", [
    ({"generations": 1.5}, "generations must be an integer"),
    ({"population_size": 10**9}, "population_size must be between 4 and"),
    ({"k_max": 1}, "k_max must be between 2 and"),
    ({"elite": -1}, "elite must be between 0 and"),
    ({"crossover_rate": float("nan")}, "crossover_rate must be a finite number"),
    ({"n_jobs": 0}, "n_jobs must be None, -1"),
    ({"n_jobs": 1.5}, "n_jobs must be None, -1"),
    ({"reward": "silhouette"}, "score_many"),
    ({"k_choice": "votes"}, "k_choice must be one of"),
])
def test_bad_parameters_are_clear_errors_at_fit(blobs, params, fragment):
    est = TDMLClustering(**{"reward": SIL, "generations": 1, "population_size": 4, **params})
    with pytest.raises(ValueError, match=fragment):
        est.fit(blobs.X)


def test_n_jobs_limits_threads_only_during_fit(blobs):
    import torch

    before = torch.get_num_threads()
    seen = []

    class Spy:
        def score_many(self, X, labelings):
            seen.append(torch.get_num_threads())
            return SIL.score_many(X, labelings)

    TDMLClustering(reward=Spy(), generations=1, population_size=4, n_jobs=1, random_state=0).fit(blobs.X)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_odd_data_are_clusterings_or_clear_errors():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=50), rng.normal(size=50) + 8]
    est = TDMLClustering(reward=SIL, generations=2, population_size=8, random_state=0)
    assert est.fit_predict(np.c_[x, 2 * x] * 100).max() == 1      # collinear: two groups
    with pytest.raises(ValueError, match="NaN"):
        est.fit(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="minimum of 3"):
        est.fit(np.zeros((2, 2)))


def test_default_reward_is_the_weighted_mean_of_the_shipped_critics(blobs):
    est = TDMLClustering(generations=1, population_size=4, random_state=0).fit(blobs.X)
    reward = tdml.load_reward()
    assert est.reward_ == pytest.approx(reward.score(blobs.X, est.labels_), abs=1e-4)
    critic, *synthetic = reward.critics
    members = [c.score(blobs.X, est.labels_) for c in reward.critics]
    # the shipped critic one half, the three synthetic draws the other half
    assert len(synthetic) == 3
    assert est.reward_ == pytest.approx(members[0] / 2 + np.mean(members[1:]) / 2, abs=1e-4)
    assert len({round(m, 3) for m in members}) == 4   # four different critics
    # the first member is the reward's own Numbers critic, not the shipped critic (a better
    # ranker that led the agent to the true K less often)
    own = tdml.critic.ClusteringCritic.load(tdml.critic.REWARD_CRITIC_PATH, "cpu")
    assert critic.score(blobs.X, est.labels_) == pytest.approx(own.score(blobs.X, est.labels_), abs=1e-6)
    assert critic.metadata["domain"] == tdml.load_critic().metadata["domain"] == "numbers"
    assert critic.inputs == "embedding" and tdml.load_critic().inputs == "statistics"
    assert tdml.TDMLClustering is TDMLClustering
