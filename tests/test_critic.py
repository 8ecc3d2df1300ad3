"""Block C: the critic as a metric object."""
import numpy as np
import pytest
import torch

from tdml_lib import critic as critic_mod
from tdml_lib.critic import ClusteringCritic, CriticConfig, fit_critic
from tdml_lib.problems import synthetic_problems

TINY = CriticConfig(n_negatives=6, epochs=15, problems_per_step=4, gae_epochs=2, gae_clusterings=2,
                    hidden=16, k=6)


@pytest.fixture(scope="module")
def trained():
    probs = synthetic_problems(10, n_clusters=(2, 4), points_per_class=(15, 30), n_features=(2, 6), seed=0)
    critic, hist, ts = fit_critic(probs, TINY, seed=0, device="cpu", progress=False)
    return critic, hist, ts, probs


def test_training_on_tiny_set_runs_and_logs(trained):
    critic, hist, ts, probs = trained
    assert set(hist) == {"gae", "critic"}
    assert len(hist["critic"]) == TINY.epochs
    assert {"loss", "rank", "margin", "truth_first"} <= set(hist["critic"].columns)
    assert hist["critic"]["loss"].iloc[-1] < hist["critic"]["loss"].iloc[0]
    assert hist["critic"]["truth_first"].iloc[-1] > hist["critic"]["truth_first"].iloc[0]
    assert len(ts.real) == len(probs)
    assert ts.fake[0].shape[0] == TINY.n_negatives + TINY.n_degenerate
    assert critic.metadata["n_train_problems"] == len(probs)


def test_a_statistics_critic_skips_the_gae_without_changing_a_score():
    from dataclasses import replace

    from tdml_lib.gae import ClusteringEmbedder, train_gae

    probs = synthetic_problems(6, n_clusters=(2, 4), points_per_class=(15, 30), n_features=(2, 6), seed=1)
    cfg = replace(TINY, inputs="statistics", epochs=3)
    critic, hist, _ = fit_critic(probs, cfg, seed=0, device="cpu", progress=False)
    assert set(hist) == {"critic"}                      # its GAE was not trained
    # bit-identical to a fit that trains it: training the GAE leaves the global RNG (which
    # initialises block C) alone, and the scores never read the GAE's codes
    embedder = ClusteringEmbedder(k=cfg.k)
    before = torch.get_rng_state()
    train_gae(embedder, [(p.X, p.labels[None]) for p in probs], epochs=1, progress=False)
    assert torch.equal(before, torch.get_rng_state())
    p = probs[0]
    labelings = [p.labels, np.roll(p.labels, 3)]
    scores = critic.score_many(p.X, labelings)
    with torch.no_grad():
        for prm in critic.embedder.gae.parameters():
            prm.add_(1.0)
    assert critic.score_many(p.X, labelings) == pytest.approx(scores, abs=0)


def test_scores_invariant_to_label_renaming(trained):
    critic, _, _, probs = trained
    p = probs[0]
    assert critic.score(p.X, p.labels) == pytest.approx(critic.score(p.X, p.labels * 3 + 7), abs=1e-5)


def test_score_many_equals_looped_score(trained):
    critic, _, _, probs = trained
    p = probs[1]
    rng = np.random.default_rng(0)
    labs = [p.labels] + [rng.integers(0, k, p.n_points) for k in (2, 3, 5)]
    many = critic.score_many(p.X, labs)
    assert many.shape == (4,)
    assert np.allclose(many, [critic.score(p.X, lab) for lab in labs], atol=1e-5)


def test_critic_ensemble_is_the_mean_of_its_members_on_one_graph(trained):
    """The ensemble's reward is the plain mean of its members' scores (a reward for each
    clustering on its own, unlike a batch z-score), through score_many, score and the
    agent's prepared path; it refuses fewer than two critics and critics with other kNN k."""
    from dataclasses import replace

    from tdml_lib.agent import cluster
    from tdml_lib.critic import CriticEnsemble

    critic, _, _, probs = trained
    other = fit_critic(probs, TINY, seed=1, device="cpu", progress=False)[0]
    ensemble = CriticEnsemble([critic, other])
    p = probs[2]
    rng = np.random.default_rng(0)
    labs = [p.labels] + [rng.integers(0, k, p.n_points) for k in (2, 3)]
    mean = (critic.score_many(p.X, labs) + other.score_many(p.X, labs)) / 2
    assert np.allclose(ensemble.score_many(p.X, labs), mean, atol=1e-6)
    assert ensemble.score(p.X, p.labels) == pytest.approx(mean[0], abs=1e-6)
    # one batch or three single calls: the same rewards (nothing is standardised per batch)
    assert np.allclose([ensemble.score(p.X, lab) for lab in labs], mean, atol=1e-5)
    ps = ensemble.embedder.prepare(p.X)
    prepared = ensemble.score_prepared(ps, torch.as_tensor(np.stack(labs), dtype=torch.long))
    assert np.allclose(prepared.numpy(), mean, atol=1e-5)
    # the agent takes it as its reward and returns a clustering scored by it
    res = cluster(p.X, reward=ensemble, generations=1, population_size=4, seed=0)
    assert res.reward == pytest.approx(ensemble.score(p.X, res.labels), abs=1e-3)
    with pytest.raises(ValueError, match="two or more ClusteringCritic"):
        CriticEnsemble([critic])
    with pytest.raises(ValueError, match="two or more ClusteringCritic"):
        CriticEnsemble([critic, "silhouette"])
    wide = fit_critic(probs[:3], replace(TINY, k=8, epochs=1), seed=0, device="cpu", progress=False)[0]
    with pytest.raises(ValueError, match="different k"):
        CriticEnsemble([critic, wide])
    # weights: normalised, the same on every path; bad ones are refused
    weighted = CriticEnsemble([critic, other], weights=[3, 1])
    wmean = 0.75 * critic.score_many(p.X, labs) + 0.25 * other.score_many(p.X, labs)
    assert np.allclose(weighted.score_many(p.X, labs), wmean, atol=1e-6)
    assert np.allclose(weighted.score_prepared(ps, torch.as_tensor(np.stack(labs), dtype=torch.long)).numpy(),
                       wmean, atol=1e-5)
    for bad in ([1], [1, 0], [1, float("nan")], [1, -2]):
        with pytest.raises(ValueError, match="positive numbers, one per critic"):
            CriticEnsemble([critic, other], weights=bad)


def test_save_load_round_trip(tmp_path, trained):
    critic, _, _, probs = trained
    p = probs[2]
    path = critic.save(tmp_path / "c.pt")
    again = ClusteringCritic.load(path, device="cpu")
    assert again.score(p.X, p.labels) == critic.score(p.X, p.labels)
    assert again.metadata["config"]["epochs"] == TINY.epochs


def test_load_errors_are_clear(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match="train-critic"):
        ClusteringCritic.load(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable critic"):
        ClusteringCritic.load(bad)
    state = trained[0].state()
    state["format"] = 0
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="format"):
        ClusteringCritic.load(tmp_path / "old.pt")


def test_checkpoint_resume_gives_same_weights(tmp_path, trained):
    critic, _, ts, _ = trained
    cfg = CriticConfig(**{**TINY.as_dict(), "epochs": 6})
    a = ClusteringCritic(critic.embedder, cfg.hidden)
    b = ClusteringCritic(critic.embedder, cfg.hidden)
    b.net.load_state_dict(a.net.state_dict())
    critic_mod.train_critic_net(a, ts, cfg, seed=1, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    critic_mod.train_critic_net(b, ts, cfg, seed=1, epochs=4, progress=False, checkpoint=ckpt, checkpoint_every=2)
    c = ClusteringCritic(critic.embedder, cfg.hidden)    # a fresh process would start here
    hist = critic_mod.train_critic_net(c, ts, cfg, seed=1, progress=False, checkpoint=ckpt, checkpoint_every=2)
    assert hist["epoch"].tolist() == list(range(6))
    for pa, pc in zip(a.net.parameters(), c.net.parameters()):
        assert torch.allclose(pa, pc, atol=1e-6)


def test_fit_needs_problems():
    with pytest.raises(ValueError, match="at least one"):
        fit_critic([], TINY)


def test_training_is_bitwise_reproducible_and_leaves_torch_as_it_was():
    """Two seeded trainings on two threads give the same scores to the last bit
    (thread-timing-dependent kernels made them differ), and the deterministic mode
    used for training is switched back off afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train = synthetic_problems(6, n_features=(2, 6), points_per_class=(20, 120), seed=0)
        cfg = CriticConfig(epochs=4, gae_epochs=2, n_negatives=4)
        scores = [fit_critic(train, cfg, seed=0, device="cpu", progress=False)[0]
                  .score_many(train[1].X, [train[1].labels]) for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    assert scores[0].tobytes() == scores[1].tobytes()
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_statistics_critic_ignores_the_gae_codes_and_round_trips(tmp_path, trained):
    """``inputs="statistics"``: the MLP reads the embedding without its GAE codes, so the
    scores do not move when the GAE's weights do; the choice survives save/load."""
    from dataclasses import replace

    _, _, _, probs = trained
    cfg = replace(TINY, inputs="statistics", epochs=5)
    critic, _, _ = fit_critic(probs, cfg, seed=0, device="cpu", progress=False)
    emb = critic.embedder
    assert critic.net.net[0].in_features == emb.embedding_dim - emb.code_columns
    p = probs[1]
    labelings = np.stack([p.labels, np.roll(p.labels, 3), np.zeros_like(p.labels)])
    before = critic.score_many(p.X, labelings)
    with torch.no_grad():
        for prm in emb.gae.parameters():
            prm.mul_(-3.0)
    assert np.array_equal(critic.score_many(p.X, labelings), before)
    again = ClusteringCritic.load(critic.save(tmp_path / "s.pt"), device="cpu")
    assert again.inputs == "statistics"
    assert np.array_equal(again.score_many(p.X, labelings), before)


def test_inputs_are_checked_and_old_states_read_the_whole_embedding(tmp_path, trained):
    critic = trained[0]
    assert critic.inputs == "embedding"
    with pytest.raises(ValueError, match="inputs must be one of"):
        CriticConfig(inputs="codes")
    state = critic.state()
    del state["inputs"]                      # a state saved before the field existed
    torch.save(state, tmp_path / "old.pt")
    assert ClusteringCritic.load(tmp_path / "old.pt", device="cpu").inputs == "embedding"
    state["inputs"] = "statistics"           # the MLP's weights do not fit that choice
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="field 'net'"):
        ClusteringCritic.load(tmp_path / "mismatch.pt")
    state["inputs"] = "codes"
    torch.save(state, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="field 'inputs'"):
        ClusteringCritic.load(tmp_path / "unknown.pt")


def test_separation_gate_ranks_random_halves_below_and_can_be_lifted(tmp_path, trained):
    """A clustering whose closest pair is no further apart than a random split's halves
    scores GATE_PENALTY less (critic, ensemble, batch z-score ensemble and the reloaded
    critic alike); ``learned_scores_only`` lifts the gate for its block and restores it."""
    from tdml_lib import graphs
    from tdml_lib.candidates import split_random
    from tdml_lib.critic import GATE_PENALTY, SEPARATION_GATE, CriticEnsemble, learned_scores_only
    from tdml_lib.evaluate import ZScoreEnsemble

    critic, _, _, probs = trained
    p = probs[0]
    rng = np.random.default_rng(0)
    labs = np.stack([p.labels] + [split_random(p.labels, rng) for _ in range(4)])
    gated = graphs.separation_many(p.X, labs) < SEPARATION_GATE
    assert not gated[0] and gated[1:].any()
    with learned_scores_only(critic):
        learned = critic.score_many(p.X, labs)
    assert critic.separation_gate == SEPARATION_GATE
    np.testing.assert_allclose(critic.score_many(p.X, labs), learned - GATE_PENALTY * gated, atol=1e-2)
    again = ClusteringCritic.load(critic.save(tmp_path / "gated.pt"), device="cpu")
    np.testing.assert_allclose(again.score_many(p.X, labs), critic.score_many(p.X, labs), atol=1e-4)
    other = fit_critic(probs, TINY, seed=1, device="cpu", progress=False)[0]
    for scorer in (CriticEnsemble([critic, other]), ZScoreEnsemble([critic, other])):
        s = scorer.score_many(p.X, labs)
        assert np.all(s[gated] < s[~gated].min() - GATE_PENALTY / 2)
    # the batch z-scores of the ungated candidates are those of the learned scores
    z = ZScoreEnsemble([critic, other]).score_many(p.X, labs)
    with learned_scores_only(critic), learned_scores_only(other):
        plain = ZScoreEnsemble([critic, other]).score_many(p.X, labs)
    np.testing.assert_allclose(z[~gated], plain[~gated], atol=1e-6)
    with pytest.raises(RuntimeError):
        with learned_scores_only(critic):
            raise RuntimeError("restored on error too")
    assert critic.separation_gate == SEPARATION_GATE
