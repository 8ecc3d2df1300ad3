"""The poster's protocol: fixed candidate sets, Best / Top-k, Wilson intervals."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from tdml_lib import evaluate as E
from tdml_lib.metrics import IndexScorer
from tdml_lib.problems import synthetic_problems


class OracleScorer:
    """Test helper that knows the truth of each point set: score = agreement with it.
    (The library never does this; only a test may.)"""

    name = "oracle"

    def __init__(self, problems):
        self.truth = {p.X.tobytes(): p.labels for p in problems}

    def score_many(self, X, labelings):
        t = self.truth[np.asarray(X, dtype=np.float32).tobytes()]
        return np.array([np.mean(np.asarray(lab) == t) for lab in labelings])


class ConstantScorer:
    def score_many(self, X, labelings):
        return np.zeros(len(labelings))


class WrongShapeScorer:
    def score_many(self, X, labelings):
        return np.zeros(len(labelings) + 1)


@pytest.fixture(scope="module")
def problems():
    return synthetic_problems(5, n_clusters=(2, 4), points_per_class=(10, 20), n_features=(2, 4), seed=0)


@pytest.fixture(scope="module")
def csets(problems):
    return E.evaluation_sets(problems, n_negatives=7, seed=0)


def test_evaluation_sets_are_fixed(problems, csets):
    again = E.evaluation_sets(problems, n_negatives=7, seed=0)
    assert all(np.array_equal(a.labelings, b.labelings) and a.correct_index == b.correct_index
               for a, b in zip(csets, again))
    prefix = E.evaluation_sets(problems[:2], n_negatives=7, seed=0)  # more problems change nothing before
    assert all(np.array_equal(a.labelings, b.labelings) for a, b in zip(prefix, csets))
    other = E.evaluation_sets(problems, n_negatives=7, seed=1)
    assert any(not np.array_equal(a.labelings, b.labelings) for a, b in zip(csets, other))
    assert all(c.n_candidates == 8 for c in csets)


def test_oracle_gets_everything(problems, csets):
    r = E.evaluate_scorer(OracleScorer(problems), csets, progress=False)
    assert r.best == 100.0 and r.topk == 100.0 and r.mean_rank == 1.0
    assert r.name == "oracle" and r.n_problems == len(csets)
    assert r.top_kinds == [None] * len(csets) and sum(r.beat_counts.values()) == 0


def test_constant_scorer_gets_nothing(csets):
    r = E.evaluate_scorer(ConstantScorer(), csets, k=3, progress=False)
    assert r.best == 0.0 and r.topk == 0.0  # ties count against the truth
    assert np.all(r.ranks == 8)
    assert r.beat_counts == r.kind_counts  # every negative tied the truth
    assert all(k is not None and k != "correct" for k in r.top_kinds)
    table = r.kinds_table()
    assert list(table.columns) == ["kind", "family", "n", "beat_truth", "beat_rate", "top_negative"]
    assert table.n.sum() == 7 * len(csets) and np.allclose(table.beat_rate, 1.0)


def test_wilson_interval():
    for s, n in [(0, 20), (3, 20), (20, 20), (78, 100), (1, 1)]:
        low, high = E.wilson_interval(s, n)
        assert low <= 100 * s / n <= high
        ref = binomtest(s, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert low == pytest.approx(100 * ref.low, abs=1e-6) and high == pytest.approx(100 * ref.high, abs=1e-6)
    assert E.wilson_interval(0, 20)[1] > 0  # not empty at 0 %
    with pytest.raises(ValueError, match="successes"):
        E.wilson_interval(5, 4)
    with pytest.raises(ValueError, match="n must"):
        E.wilson_interval(0, 0)


def test_result_intervals_contain_estimates(problems, csets):
    r = E.evaluate_scorer(IndexScorer("silhouette"), csets, progress=False)
    assert r.best_ci[0] <= r.best <= r.best_ci[1]
    assert r.topk_ci[0] <= r.topk <= r.topk_ci[1]
    assert 1 <= r.mean_rank <= 8


def test_compare_scorers_table(problems, csets):
    table = E.compare_scorers({"oracle": OracleScorer(problems), "constant": ConstantScorer(),
                               **E.baseline_scorers()}, csets)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["oracle", "constant", "silhouette", "calinski_harabasz", "davies_bouldin"]
    assert list(table.columns) == ["best", "best_ci_low", "best_ci_high", "top3", "top3_ci_low",
                                   "top3_ci_high", "mean_rank", "n_problems"]
    assert table.loc["oracle", "best"] == 100 and table.loc["constant", "top3"] == 0
    assert (table.n_problems == len(csets)).all()
    assert "top5" in E.compare_scorers({"c": ConstantScorer()}, csets, k=5).columns


def test_baseline_scorers():
    scorers = E.baseline_scorers()
    assert list(scorers) == ["silhouette", "calinski_harabasz", "davies_bouldin"]
    assert all(isinstance(s, IndexScorer) and s.name == n for n, s in scorers.items())


def test_rank_candidates_gives_one_score_per_candidate(problems, csets):
    scores = E.rank_candidates(OracleScorer(problems), csets[0])
    assert scores.shape == (csets[0].n_candidates,) and scores.dtype == np.float64
    assert np.argmax(scores) == csets[0].correct_index


def test_save_load_round_trip(tmp_path, csets):
    r = E.evaluate_scorer(IndexScorer("silhouette"), csets, name="sil", progress=False)
    r.scores[0][0] = -np.inf  # undefined index values survive as -inf
    path = r.save(tmp_path / "sub" / "eval.json")
    back = E.EvalResult.load(path)
    assert back.summary() == r.summary()
    assert np.array_equal(back.ranks, r.ranks) and back.top_kinds == r.top_kinds
    assert back.beat_counts == r.beat_counts and back.kinds == r.kinds
    assert all(np.array_equal(a, b) for a, b in zip(back.scores, r.scores))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        E.EvalResult.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match="EvalResult"):
        E.EvalResult.load(tmp_path / "other.json")


@pytest.mark.parametrize("call, match", [
    (lambda cs: E.evaluate_scorer(object(), cs, progress=False), "score_many"),
    (lambda cs: E.evaluate_scorer(WrongShapeScorer(), cs, progress=False), "one score per candidate"),
    (lambda cs: E.evaluate_scorer(ConstantScorer(), [], progress=False), "empty"),
    (lambda cs: E.evaluate_scorer(ConstantScorer(), cs, k=0, progress=False), "k must"),
    (lambda cs: E.rank_candidates(ConstantScorer(), "not a set"), "CandidateSet"),
    (lambda cs: E.compare_scorers({}, cs), "non-empty"),
    (lambda cs: E.evaluation_sets([], seed=0), "empty"),
    (lambda cs: E.evaluation_sets([cs[0].problem], seed=-3), "seed"),
])
def test_bad_inputs(csets, call, match):
    with pytest.raises(ValueError, match=match):
        call(csets)


class _Fixed:
    """A scorer that returns fixed scores, whatever the clusterings."""

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=float)

    def score_many(self, X, labelings):
        return self.scores[: len(labelings)]


def test_zscore_ensemble_ignores_each_members_scale_and_offset():
    from tdml_lib.evaluate import ZScoreEnsemble

    X, labelings = np.zeros((4, 2)), [np.zeros(4, int)] * 3
    # member b agrees with a up to scale and offset; member c prefers the last candidate
    a, b, c = _Fixed([1.0, 2.0, 3.0]), _Fixed([-100.0, 0.0, 100.0]), _Fixed([0.0, 0.0, 9.0])
    np.testing.assert_allclose(ZScoreEnsemble([a, b]).score_many(X, labelings), [-1.2247449, 0.0, 1.2247449])
    # a huge-scaled member does not dominate: ranks follow both members equally
    assert np.argmax(ZScoreEnsemble([b, c]).score_many(X, labelings)) == 2
    # a member that scores every candidate alike adds nothing (no division by zero)
    flat = ZScoreEnsemble([a, _Fixed([5.0, 5.0, 5.0])]).score_many(X, labelings)
    assert np.all(np.isfinite(flat)) and np.argmax(flat) == 2
    with pytest.raises(ValueError, match="two or more scorers"):
        ZScoreEnsemble([a])


def test_paired_comparison_matches_cells_and_counts_discordant_problems():
    import pandas as pd

    from tdml_lib.evaluate import paired_comparison

    rows = []
    for problem, (critic_rank, probe_rank) in enumerate([(1, 2), (1, 2), (1, 1), (3, 1)]):
        rows += [{"scorer": "critic", "train": "numbers", "regime": "standard", "protocol": "strict", "test": "letters",
                  "critic_seed": 0, "problem": problem, "rank": critic_rank},
                 {"scorer": "critic", "train": "numbers", "regime": "standard", "protocol": "strict", "test": "letters",
                  "critic_seed": 1, "problem": problem, "rank": 5},
                 {"scorer": "probe", "train": "numbers", "regime": "standard", "protocol": "strict", "test": "letters",
                  "critic_seed": None, "problem": problem, "rank": probe_rank}]
    out = paired_comparison(pd.DataFrame(rows), "critic", ["probe"])
    assert len(out) == 1
    row = out.iloc[0]
    # the first critic seed only: Best 75 % against 50 %, two problems only the critic gets first, one only the probe
    assert (row.critic, row.other, row["only critic"], row["only other"]) == (75.0, 50.0, 2, 1)
    assert row.other_scorer == "probe" and 0 < row.p <= 1
    assert paired_comparison(pd.DataFrame(rows), "critic", "silhouette").empty


def test_paired_comparison_takes_the_other_side_at_another_regime():
    """A critic against an ablation of its own recipe: same scorer name, other regime."""
    import pandas as pd

    from tdml_lib.evaluate import paired_comparison

    cell = {"scorer": "critic", "train": "numbers", "protocol": "strict", "test": "letters", "critic_seed": 0}
    rows = [{**cell, "regime": regime, "problem": p, "rank": r}
            for regime, ranks in [("standard", [1, 1, 1, 2]), ("ablation: WGAN-GP", [2, 2, 1, 1])]
            for p, r in enumerate(ranks)]
    out = paired_comparison(pd.DataFrame(rows), "critic", "critic", regime="standard",
                            other_regime="ablation: WGAN-GP")
    row = out.iloc[0]
    assert (row.critic, row.other, row["only critic"], row["only other"]) == (75.0, 50.0, 2, 1)
    # without other_regime the other side is the critic itself at the same regime: no discordant problem
    same = paired_comparison(pd.DataFrame(rows), "critic", "critic").iloc[0]
    assert (same["only critic"], same["only other"]) == (0, 0)



def test_paired_comparison_of_several_regimes_is_one_table_in_their_order():
    """Each regime's critic against the probe of its own regime, regime by regime."""
    import pandas as pd

    from tdml_lib.evaluate import paired_comparison

    cell = {"train": "numbers", "protocol": "strict", "test": "letters", "critic_seed": 0}
    ranks = {("critic", "standard"): [1, 1, 2], ("probe", "standard"): [2, 1, 1],
             ("critic", "few-shot"): [1, 2, 2], ("probe", "few-shot"): [1, 1, 1]}
    rows = pd.DataFrame([{**cell, "scorer": scorer, "regime": regime, "problem": p, "rank": r}
                         for (scorer, regime), rs in ranks.items() for p, r in enumerate(rs)])
    both = paired_comparison(rows, "critic", "probe", regime=["few-shot", "standard"])
    assert both.regime.tolist() == ["few-shot", "standard"] and list(both.columns)[0] == "regime"
    assert both.other.round(1).tolist() == [100.0, 66.7]       # each against its own regime's probe
    for regime in ("standard", "few-shot"):
        one = paired_comparison(rows, "critic", "probe", regime=regime)
        assert one.drop(columns="regime").equals(both[both.regime == regime].drop(columns="regime").reset_index(drop=True))
    assert paired_comparison(rows, "critic", "probe", regime=["ablation: none"]).empty
