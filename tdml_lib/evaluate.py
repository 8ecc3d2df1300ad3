"""The poster's evaluation protocol: rank fixed candidates, report Best and Top-k.

For each test problem a fixed candidate set holds the correct clustering among seeded
near misses (:func:`tdml_lib.candidates.candidate_set`). A *scorer* — any object with
``score_many(X, labelings) -> np.ndarray``, higher = better: the learned critic,
:class:`tdml_lib.metrics.IndexScorer` for silhouette, Calinski–Harabasz or
Davies–Bouldin — scores every candidate from ``X`` alone. *Best* is the percentage of
problems where the correct clustering is ranked first, *Top k* where it is among the
first ``k`` (the poster's Best / Top 3); ties count against the truth
(:func:`tdml_lib.metrics.rank_of`). Each percentage comes with a Wilson 95 % interval,
since a book run has tens of problems, not thousands.

A scorer never sees the true labels: they are used only to know where the truth sits
in each candidate set after scoring. Explained in chapter 3; the transfer table in
chapter 5.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from .candidates import CandidateSet, _check_seed, candidate_set, kind_family
from .io import write_json
from .metrics import INTERNAL_INDICES, IndexScorer, rank_of
from .problems import Problem

#: The two-sided 95 % normal quantile (``scipy.stats.norm.ppf(0.975)``).
Z95 = 1.959963984540054


class Scorer(Protocol):
    """Anything that grades many clusterings of one point set (higher = better)."""

    def score_many(self, X: Any, labelings: Any) -> np.ndarray: ...  # pragma: no cover


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, in percent.

    E. B. Wilson (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22(158):209–212. Unlike the normal (Wald) interval it stays inside
    [0, 100] and is not empty at 0 % or 100 %, which matters for tens of problems.
    Equal to ``scipy.stats.binomtest(successes, n).proportion_ci(method="wilson")``.

    Args:
        successes: number of successes (0..n).
        n: number of trials (>= 1).
        z: normal quantile (1.96 for 95 %).

    Returns:
        (low, high) in percent.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}.")
    if int(successes) != successes or not 0 <= successes <= n:
        raise ValueError(f"successes must be an int in 0..n={n}, got {successes!r}.")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(100 * max(0.0, centre - half)), float(100 * min(1.0, centre + half))


def evaluation_sets(problems: Sequence[Problem], n_negatives: int = 19, seed: int = 0,
                    progress: bool = False) -> list[CandidateSet]:
    """The fixed candidate sets of a list of test problems, one per problem.

    Problem ``i`` gets the seed ``SeedSequence([seed, i])``, so every scorer ranks the
    same candidates and adding problems does not change the earlier sets.

    Args:
        problems: test problems.
        n_negatives: near misses per problem (19 gives 20 candidates).
        seed: base seed.
        progress: show a progress bar (tqdm).
    """
    from tqdm.auto import tqdm

    seed = _check_seed(seed)
    if len(problems) == 0:
        raise ValueError("problems is empty; give at least one test problem.")
    seeds = [int(np.random.SeedSequence([seed, i]).generate_state(1)[0]) for i in range(len(problems))]
    return [candidate_set(p, n_negatives=n_negatives, seed=s)
            for p, s in tqdm(list(zip(problems, seeds)), desc="candidate sets", disable=not progress)]


def rank_candidates(scorer: Scorer, cset: CandidateSet) -> np.ndarray:
    """Score every candidate of a set with ``scorer.score_many(X, labelings)``.

    Only ``cset.problem.X`` and ``cset.labelings`` reach the scorer, never the truth.

    Returns:
        float64 scores (B,) in the order of ``cset.labelings`` (higher = better; NaN
        counts as the worst). The truth's rank is
        ``metrics.rank_of(scores, cset.correct_index)``.

    Raises:
        ValueError: the scorer has no ``score_many`` or returns the wrong shape.
    """
    if not callable(getattr(scorer, "score_many", None)):
        raise ValueError(f"scorer must have a score_many(X, labelings) method, got {type(scorer).__name__}.")
    if not isinstance(cset, CandidateSet):
        raise ValueError(f"cset must be a CandidateSet (see evaluation_sets), got {type(cset).__name__}.")
    scores = scorer.score_many(cset.problem.X, cset.labelings)
    if hasattr(scores, "detach"):  # a torch tensor
        scores = scores.detach().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2 and 1 in scores.shape:  # (B, 1) or (1, B)
        scores = scores.reshape(-1)
    if scores.shape != (cset.n_candidates,):
        raise ValueError(f"{type(scorer).__name__}.score_many returned shape {np.shape(scores)}; "
                         f"expected one score per candidate ({cset.n_candidates},).")
    return scores


@dataclass
class EvalResult:
    """How one scorer ranked the fixed candidates of many problems.

    Attributes:
        name: the scorer's name.
        k: the *Top k* cut-off (the poster's 3).
        ranks: int array (n_problems,), 1-based rank of the truth (ties against it).
        n_candidates: int array (n_problems,), candidates per problem.
        top_kinds: per problem, the kind of the best-scored *negative* that outranked or
            tied the truth (``None`` when the truth is Best).
        beat_counts: per kind, how many candidates of that kind scored at least as high
            as the truth, over all problems (the hardest negatives for this scorer).
        kind_counts: per kind, how many candidates of that kind were ranked in all.
        scores: per problem, the candidates' scores (for plots; may be empty).
        kinds: per problem, the candidates' kinds (parallel to ``scores``).
        correct_indices: per problem, where the truth is in ``scores``.
    """

    name: str
    k: int
    ranks: np.ndarray
    n_candidates: np.ndarray
    top_kinds: list[str | None]
    beat_counts: dict[str, int]
    kind_counts: dict[str, int]
    scores: list[np.ndarray] = field(default_factory=list, repr=False)
    kinds: list[list[str]] = field(default_factory=list, repr=False)
    correct_indices: list[int] = field(default_factory=list, repr=False)

    @property
    def n_problems(self) -> int:
        return int(len(self.ranks))

    @property
    def n_best(self) -> int:
        return int(np.sum(self.ranks == 1))

    @property
    def n_topk(self) -> int:
        return int(np.sum(self.ranks <= self.k))

    @property
    def best(self) -> float:
        """% of problems where the truth is ranked first."""
        return 100.0 * self.n_best / self.n_problems

    @property
    def topk(self) -> float:
        """% of problems where the truth is in the first ``k``."""
        return 100.0 * self.n_topk / self.n_problems

    @property
    def best_ci(self) -> tuple[float, float]:
        """Wilson 95 % interval of :attr:`best`, in percent."""
        return wilson_interval(self.n_best, self.n_problems)

    @property
    def topk_ci(self) -> tuple[float, float]:
        """Wilson 95 % interval of :attr:`topk`, in percent."""
        return wilson_interval(self.n_topk, self.n_problems)

    @property
    def mean_rank(self) -> float:
        return float(np.mean(self.ranks))

    def kinds_table(self) -> pd.DataFrame:
        """Per kind of negative: how many were ranked, how many scored at least as high
        as the truth, that share, and on how many problems it was the top negative above
        the truth. Sorted hardest first."""
        top = Counter(k for k in self.top_kinds if k is not None)
        rows = [{"kind": kind, "family": kind_family(kind), "n": n, "beat_truth": self.beat_counts.get(kind, 0),
                 "beat_rate": self.beat_counts.get(kind, 0) / n if n else np.nan, "top_negative": top.get(kind, 0)}
                for kind, n in self.kind_counts.items()]
        df = pd.DataFrame(rows, columns=["kind", "family", "n", "beat_truth", "beat_rate", "top_negative"])
        return df.sort_values(["beat_rate", "top_negative"], ascending=False, kind="stable").reset_index(drop=True)

    def summary(self) -> dict[str, Any]:
        """One row for a results table: name, best, top-k, CIs (percent), mean rank, n."""
        (bl, bh), (tl, th) = self.best_ci, self.topk_ci
        return {"scorer": self.name, "best": self.best, "best_ci_low": bl, "best_ci_high": bh,
                f"top{self.k}": self.topk, f"top{self.k}_ci_low": tl, f"top{self.k}_ci_high": th,
                "mean_rank": self.mean_rank, "n_problems": self.n_problems}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite scores become ``None``)."""
        return {
            "name": self.name, "k": self.k, "summary": self.summary(),
            "ranks": self.ranks.tolist(), "n_candidates": self.n_candidates.tolist(),
            "top_kinds": list(self.top_kinds), "beat_counts": dict(self.beat_counts),
            "kind_counts": dict(self.kind_counts),
            "scores": [[float(v) if np.isfinite(v) else None for v in s] for s in self.scores],
            "kinds": [list(k) for k in self.kinds], "correct_indices": [int(i) for i in self.correct_indices],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvalResult":
        """Inverse of :meth:`to_dict` (``None`` scores come back as ``-inf``)."""
        try:
            return cls(name=str(data["name"]), k=int(data["k"]),
                       ranks=np.asarray(data["ranks"], dtype=np.int64),
                       n_candidates=np.asarray(data["n_candidates"], dtype=np.int64),
                       top_kinds=list(data["top_kinds"]),
                       beat_counts={str(k): int(v) for k, v in data["beat_counts"].items()},
                       kind_counts={str(k): int(v) for k, v in data["kind_counts"].items()},
                       scores=[np.array([-np.inf if v is None else v for v in s], dtype=np.float64)
                               for s in data.get("scores", [])],
                       kinds=[list(k) for k in data.get("kinds", [])],
                       correct_indices=[int(i) for i in data.get("correct_indices", [])])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an EvalResult dict (missing or bad field: {exc}).") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON, atomically (:func:`tdml_lib.io.write_json`)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EvalResult":
        """Read a result written by :meth:`save`."""
        import json

        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return (f"EvalResult({self.name!r}, best={self.best:.1f}%, top{self.k}={self.topk:.1f}%, "
                f"n_problems={self.n_problems})")


def _scorer_name(scorer: object) -> str:
    name = getattr(scorer, "name", None)
    return name if isinstance(name, str) and name else type(scorer).__name__


def evaluate_scorer(scorer: Scorer, csets: Sequence[CandidateSet], k: int = 3, name: str | None = None,
                    progress: bool = True, keep_scores: bool = True) -> EvalResult:
    """Rank every candidate set with ``scorer``; Best and Top-k with Wilson intervals.

    Args:
        scorer: any object with ``score_many(X, labelings)`` (higher = better).
        csets: fixed candidate sets (:func:`evaluation_sets`).
        k: the Top-k cut-off (the poster's 3).
        name: the scorer's name in tables (default: its ``name`` attribute or class).
        progress: show a progress bar (tqdm).
        keep_scores: keep every candidate's score in the result (for plots).

    Returns:
        an :class:`EvalResult`.
    """
    from tqdm.auto import tqdm

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    if isinstance(csets, CandidateSet):
        csets = [csets]
    if len(csets) == 0:
        raise ValueError("csets is empty; build candidate sets with evaluation_sets(problems).")
    name = name or _scorer_name(scorer)
    ranks, sizes, top_kinds, all_scores, all_kinds, corrects = [], [], [], [], [], []
    beat: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for cset in tqdm(csets, desc=f"ranking ({name})", disable=not progress):
        scores = rank_candidates(scorer, cset)
        s = np.where(np.isnan(scores), -np.inf, scores)
        ci = cset.correct_index
        r = rank_of(s, ci)
        neg = [i for i in range(len(s)) if i != ci]
        counts.update(cset.kinds[i] for i in neg)
        beaten = [i for i in neg if s[i] >= s[ci]]
        beat.update(cset.kinds[i] for i in beaten)
        top_kinds.append(None if r == 1 else cset.kinds[max(beaten, key=lambda i: s[i])])
        ranks.append(r)
        sizes.append(cset.n_candidates)
        if keep_scores:
            all_scores.append(scores)
            all_kinds.append(list(cset.kinds))
            corrects.append(ci)
    return EvalResult(name, int(k), np.asarray(ranks, dtype=np.int64), np.asarray(sizes, dtype=np.int64),
                      top_kinds, dict(beat), dict(counts), all_scores, all_kinds, corrects)


def compare_scorers(scorers: Mapping[str, Scorer], csets: Sequence[CandidateSet], k: int = 3,
                    progress: bool = False) -> pd.DataFrame:
    """Evaluate several scorers on the same candidate sets.

    Returns:
        DataFrame indexed by scorer name with columns ``best``, ``best_ci_low``,
        ``best_ci_high``, ``top{k}``, ``top{k}_ci_low``, ``top{k}_ci_high`` (percent),
        ``mean_rank`` and ``n_problems``.
    """
    if not isinstance(scorers, Mapping) or not scorers:
        raise ValueError("scorers must be a non-empty dict {name: scorer}.")
    rows = [evaluate_scorer(s, csets, k=k, name=str(n), progress=progress, keep_scores=False).summary()
            for n, s in scorers.items()]
    return pd.DataFrame(rows).set_index("scorer")


def baseline_scorers() -> dict[str, IndexScorer]:
    """The internal indices that rank the same candidates as the critic: silhouette,
    Calinski–Harabasz and Davies–Bouldin (negated, so higher = better), all from
    scikit-learn via :class:`tdml_lib.metrics.IndexScorer`."""
    return {name: IndexScorer(name) for name in INTERNAL_INDICES}


class ZScoreEnsemble:
    """Several scorers as one: each member's scores of a batch of clusterings are
    standardised over that batch (z-scores), then averaged.

    Members trained from different seeds disagree on near misses (chapter 8's seed
    spread); averaging their *standardised* scores keeps any one member's scale from
    dominating. The scores are relative to the batch: they rank the candidates of one
    problem (the poster's protocol), they are not a reward for a single clustering (a
    batch of one scores 0). The choice of three seed critics was measured on the
    development seeds before the held-out run (chapter 5).

    Args:
        members: two or more scorers (``score_many(X, labelings)``, higher = better).
        name: the name in tables.
    """

    def __init__(self, members: Sequence[Scorer], name: str = "ensemble") -> None:
        if len(members) < 2 or not all(callable(getattr(m, "score_many", None)) for m in members):
            raise ValueError("members must be two or more scorers with a score_many(X, labelings) method.")
        self.members, self.name = list(members), name

    def score_many(self, X: Any, labelings: Any) -> np.ndarray:
        """Mean z-score of each clustering (B,). When every member is a critic with the same
        separation gate (``critic.SEPARATION_GATE``), the members' *learned* scores are
        standardised and the gate is applied once to the mean: a gated candidate's penalty
        would otherwise swamp each member's spread and flatten the z-scores of the rest."""
        from contextlib import ExitStack

        gates = {getattr(m, "separation_gate", "none") for m in self.members}
        gate = gates.pop() if len(gates) == 1 and isinstance(next(iter(gates), None), float) else None
        total = None
        with ExitStack() as stack:
            if gate is not None:
                from .critic import learned_scores_only

                for member in self.members:
                    stack.enter_context(learned_scores_only(member))
            for member in self.members:
                s = np.asarray(member.score_many(X, labelings), dtype=np.float64)
                spread = np.nanstd(s)
                z = (s - np.nanmean(s)) / spread if spread > 0 else np.zeros_like(s)
                total = z if total is None else total + z
        total = total / len(self.members)
        if gate is not None:
            from .critic import GATE_PENALTY
            from .graphs import separation_many

            total = total - GATE_PENALTY * (separation_many(X, labelings) < gate)
        return total


def mcnemar(a_first: np.ndarray, b_first: np.ndarray) -> dict[str, float]:
    """Exact McNemar test of two scorers' Best on the same problems: of the problems
    where exactly one of them ranks the truth first, how often is it ``a``? Two-sided
    binomial test of those discordant pairs against 1/2 (``scipy.stats.binomtest``)."""
    from scipy.stats import binomtest

    a_first, b_first = np.asarray(a_first, bool), np.asarray(b_first, bool)
    only_a, only_b = int(np.sum(a_first & ~b_first)), int(np.sum(~a_first & b_first))
    p = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"only_a": only_a, "only_b": only_b, "p_value": float(p)}


def paired_comparison(ranks: pd.DataFrame, a: str = "critic", b: str | Sequence[str] = "probe",
                      regime: str | Sequence[str] | None = "standard", other_regime: str | None = None) -> pd.DataFrame:
    """McNemar's exact test of scorer ``a`` against each scorer in ``b``, cell by cell,
    from per-problem ranks (long format: ``scorer, train, regime, protocol, test,
    critic_seed, problem, rank``, as :meth:`TransferResult.ranks` gives and chapter 5
    stores).

    ``a`` is taken at its first critic seed (all rows when it has none, e.g. an
    ensemble) and at ``regime``; each ``b`` is matched on training domain, protocol and
    test domain, and on regime when it is trained (the indices have none). Both rank the
    same candidate sets, so the test is paired. Several regimes give one table, each
    regime's rows after the previous one's.

    ``other_regime`` takes each ``b`` at that regime instead: with ``b == a`` it compares
    a critic with an ablation of its recipe (e.g. ``other_regime="ablation: WGAN-GP"``).

    Returns:
        one row per cell and other scorer: ``regime`` (``a``'s), ``train, protocol, test,
        <a>, other_scorer, other`` (Best %, each), ``only <a>, only other`` (discordant
        problems) and ``p``.
    """
    columns = ["regime", "train", "protocol", "test", a, "other_scorer", "other", f"only {a}", "only other", "p"]
    if ranks is None or len(ranks) == 0:
        return pd.DataFrame(columns=columns)
    if regime is not None and not isinstance(regime, str):
        parts = [part for one in regime if len(part := paired_comparison(ranks, a, b, one, other_regime))]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    others = [b] if isinstance(b, str) else list(b)
    left = ranks[(ranks.scorer == a) & ((ranks.regime == regime) if regime is not None else ranks.regime.isna())]
    if left["critic_seed"].notna().any():
        left = left[left["critic_seed"] == left["critic_seed"].min()]
    out = []
    for other_name in others:
        right = ranks[ranks.scorer == other_name]
        right = right[right.regime == other_regime] if other_regime is not None else \
            right[(right.regime == regime) | right.regime.isna()]
        if right["critic_seed"].notna().any():
            right = right[right["critic_seed"] == right["critic_seed"].min()]
        for (train, protocol, test), group in left.groupby(["train", "protocol", "test"], sort=False):
            other = right[(right.train == train) & (right.protocol == protocol) & (right.test == test)]
            other = other.drop_duplicates("problem").set_index("problem").reindex(group["problem"])
            if other["rank"].isna().any():
                continue
            a_first, b_first = group["rank"].to_numpy() == 1, other["rank"].to_numpy() == 1
            t = mcnemar(a_first, b_first)
            out.append({"regime": regime, "train": train, "protocol": protocol, "test": test,
                        a: 100 * float(np.mean(a_first)),
                        "other_scorer": other_name, "other": 100 * float(np.mean(b_first)),
                        f"only {a}": t["only_a"], "only other": t["only_b"], "p": t["p_value"]})
    return pd.DataFrame(out, columns=columns)
