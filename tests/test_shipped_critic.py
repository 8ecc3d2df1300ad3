"""The shipped critic as a reward: no holes an optimiser can find, and rankings that do
not depend on what should not matter (issue: a reward that cannot be gamed)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tdml_lib as tdml
from tdml_lib import evaluate
from tdml_lib.experiments.robustness import degenerate_scores, invariance_table
from tdml_lib.problems import Problem, synthetic_problems


@pytest.fixture(scope="module")
def critic():
    return tdml.load_critic(device="cpu")


def separated_blobs(k: int, seed: int, per: tuple[int, int] = (40, 70)) -> Problem:
    """k isotropic Gaussian blobs whose centres are at least 8 spreads apart (in 2-D)."""
    rng = np.random.default_rng(seed)
    centres = []
    while len(centres) < k:
        c = rng.uniform(-20, 20, size=2)
        if all(np.linalg.norm(c - o) > 8 for o in centres):
            centres.append(c)
    sizes = rng.integers(per[0], per[1] + 1, size=k)
    X = np.vstack([rng.normal(size=(s, 2)) + c for s, c in zip(sizes, centres)])
    y = np.repeat(np.arange(k), sizes)
    perm = rng.permutation(len(y))
    return Problem(X[perm], y[perm], "separated blobs")


@pytest.fixture(scope="module")
def candidate_sets():
    probs = synthetic_problems(6, families=("blobs", "anisotropic", "moons"), n_clusters=(2, 5),
                               points_per_class=(30, 60), seed=123)
    return evaluate.evaluation_sets(probs, n_negatives=9, seed=0)


@pytest.mark.parametrize("which", ["shipped critic", "default reward"])
def test_truth_beats_every_degenerate_clustering(critic, which):
    """Both rewards a user meets: the shipped critic (``load_critic()``) and what the agent
    maximises by default (``load_reward()``, with its own Numbers critic)."""
    reward = critic if which == "shipped critic" else tdml.load_reward(device="cpu")
    blobs = [separated_blobs(k, seed) for k, seed in ((2, 0), (3, 1), (4, 2), (6, 3))]
    numbers = tdml.features.domain_problems("numbers", 4, split="test", seed=77)
    table = degenerate_scores(reward, blobs + numbers)
    losers = table[~table.truth_wins]
    assert losers.empty, f"degenerate clusterings that score at least as high as the truth:\n{losers}"


def test_agent_without_k_finds_four_separated_blobs(critic):
    """Five seeded problems of four separated blobs, K not given: the agent returns the
    truth on at least four (measured: the shipped critic rates a merge of two blobs above
    the truth on one of them; chapter 4 shows the agent's failures too)."""
    found = []
    for seed in range(11, 16):
        p = separated_blobs(4, seed=seed)
        res = tdml.cluster(p.X, reward=critic, generations=15, population_size=32, seed=0)
        found.append(res.labels.max() + 1 == 4 and tdml.ari(p.labels, res.labels) > 0.99)
    assert sum(found) >= 4, found


def test_default_reward_finds_four_separated_blobs():
    """What a user gets from ``tdml.cluster(X)`` with no reward: the same five problems,
    the truth on at least four."""
    found = []
    for seed in range(11, 16):
        p = separated_blobs(4, seed=seed)
        res = tdml.cluster(p.X, generations=15, population_size=32, seed=0)
        found.append(res.labels.max() + 1 == 4 and tdml.ari(p.labels, res.labels) > 0.99)
    assert sum(found) >= 4, found


def test_default_reward_rates_rings_above_their_halves():
    """Two rings, each cut in two, was the agent's answer on circles before the synthetic
    critics saw that cut among their negatives: the default reward now rates the truth
    higher on at least four of five seeded problems (development seeds: 13 of 15)."""
    from tdml_lib.candidates import degenerate_clustering
    from tdml_lib.problems import synthetic_problem

    reward = tdml.load_reward(device="cpu")
    wins = []
    for seed in range(500, 505):
        p = synthetic_problem("circles", 2, (150, 200), seed=seed)
        halves = degenerate_clustering("split_each", p.labels, np.random.default_rng(seed), p.X)
        truth, cut = reward.score_many(p.X, np.stack([p.labels, halves]))
        wins.append(bool(truth > cut))
    assert sum(wins) >= 4, wins


@settings(max_examples=6, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-1e4, 1e4), seed=st.integers(0, 2**31 - 1))
def test_ranking_ignores_scale_shift_rotation_and_order(critic, candidate_sets, scale, shift, seed):
    rng = np.random.default_rng(seed)
    cs = candidate_sets[seed % len(candidate_sets)]
    before = critic.score_many(cs.problem.X, cs.labelings)
    q, _ = np.linalg.qr(rng.normal(size=(cs.problem.n_features,) * 2))
    perm = rng.permutation(cs.problem.n_points)
    X = (cs.problem.X.astype(np.float64) @ q * scale + shift)[perm]
    after = critic.score_many(X, cs.labelings[:, perm])
    assert np.argmax(after) == np.argmax(before)
    assert np.corrcoef(np.argsort(np.argsort(before)), np.argsort(np.argsort(after)))[0, 1] > 0.99


def test_ranking_survives_subsampling_to_a_third(critic):
    """Held-out Numbers problems (the shipped critic's domain) subsampled to a third of each
    class, every candidate restricted to the same points: the candidates' ranking keeps a
    rank correlation above 0.7 with the full problems' (measured: about 0.77; Best falls,
    chapter 3 shows by how much)."""
    probs = tdml.features.domain_problems("numbers", 12, split="test", seed=77)
    csets = evaluate.evaluation_sets(probs, n_negatives=19, seed=0)
    table = invariance_table(critic, csets, transforms=["subsampled to a third"]).iloc[0]
    assert table.spearman > 0.7, table


@pytest.mark.parametrize("which", ["shipped critic", "default reward"])
def test_truth_beats_random_splits_of_itself(critic, which):
    """One true cluster dealt at random into two halves (three draws per problem) on twenty
    held-out Numbers problems: the truth scores above every draw on at least 70 % of them,
    the separation gate's doing (without it the shipped critic managed about a third;
    chapter 3 shows both)."""
    from tdml_lib.candidates import split_random

    reward = critic if which == "shipped critic" else tdml.load_reward(device="cpu")
    wins = []
    for i, p in enumerate(tdml.features.domain_problems("numbers", 20, split="test", seed=77)):
        rng = np.random.default_rng([77, i])
        s = reward.score_many(p.X, np.stack([p.labels] + [split_random(p.labels, rng) for _ in range(3)]))
        wins.append(bool(s[0] > s[1:].max()))
    assert np.mean(wins) >= 0.7, wins
