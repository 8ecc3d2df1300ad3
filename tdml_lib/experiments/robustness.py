"""Can the reward be gamed, and does its ranking survive what should not matter?

Two checks of a reward (any *scorer*: ``score_many(X, labelings)``), used by chapter 3
and by the tests of the shipped critic and the default reward:

* :func:`degenerate_scores` — on labelled problems, the truth against the degenerate
  clusterings an optimiser finds first when a reward has holes (one cluster, one
  cluster per point, singletons split off, random labels at the true and at a large K,
  every true cluster cut in two; :data:`tdml_lib.candidates.DEGENERATE_KINDS`);
* :func:`invariance_table` — the ranking of each problem's fixed candidates after the
  point set is rescaled, translated, rotated, reordered or subsampled to a third
  (stratified: a third of each class, every candidate restricted to the same points).

The truth is used to know which candidate is correct, never by the reward.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..candidates import DEGENERATE_KINDS, degenerate_clustering
from ..metrics import rank_of
from ..problems import Problem
from ..validation import canonical_labels


def degenerate_scores(reward: Any, problems: Sequence[Problem], seed: int = 0) -> pd.DataFrame:
    """One row per problem and degenerate kind: the reward of the truth and of that
    degenerate clustering (random kinds: the best of three draws), and whether the truth
    scores strictly higher."""
    rows = []
    for i, p in enumerate(problems):
        rng = np.random.default_rng([seed, i])
        labs, kinds = [p.labels], ["truth"]
        for kind in DEGENERATE_KINDS:
            for _ in range(3 if kind.startswith("random") or kind.startswith("singletons") else 1):
                lab = degenerate_clustering(kind, p.labels, rng, p.X)
                if lab is not None:
                    labs.append(lab)
                    kinds.append(kind)
        s = np.asarray(reward.score_many(p.X, labs), dtype=np.float64)
        for kind in DEGENERATE_KINDS:
            idx = [j for j, k in enumerate(kinds) if k == kind]
            if idx:
                best = max(s[j] for j in idx)
                rows.append({"problem": i, "source": p.source, "kind": kind, "truth": s[0], "degenerate": best,
                             "truth_wins": bool(s[0] > best)})
    return pd.DataFrame(rows)


def _orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _subsample_third(cset: Any, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    truth = cset.labelings[cset.correct_index]
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(truth == c), size=max(2, (truth == c).sum() // 3),
                                              replace=False) for c in np.unique(truth)]))
    return cset.problem.X[keep], np.stack([canonical_labels(lab[keep]) for lab in cset.labelings]), cset.correct_index


TRANSFORMS: dict[str, Callable[[Any, np.random.Generator], tuple[np.ndarray, np.ndarray, int]]] = {
    "rescaled (x 1000)": lambda cs, rng: (cs.problem.X * 1000.0, cs.labelings, cs.correct_index),
    "translated (+ 1000)": lambda cs, rng: (cs.problem.X + 1000.0, cs.labelings, cs.correct_index),
    "rotated": lambda cs, rng: (cs.problem.X @ _orthogonal(cs.problem.X.shape[1], rng), cs.labelings,
                                cs.correct_index),
    "points reordered": lambda cs, rng: (lambda perm: (cs.problem.X[perm], np.stack(
        [canonical_labels(lab[perm]) for lab in cs.labelings]), cs.correct_index))(
        rng.permutation(cs.problem.n_points)),
    "subsampled to a third": _subsample_third,
}
"""Transformations that should not change a reward's ranking (the last one only a little)."""


def invariance_table(reward: Any, csets: Sequence[Any], seed: int = 0,
                     transforms: Sequence[str] | None = None) -> pd.DataFrame:
    """Per transformation: over the candidate sets, the mean Spearman correlation of the
    candidates' scores before and after, the share of problems whose top candidate is the
    same, and Best (% truth first) before and after."""
    names = list(TRANSFORMS) if transforms is None else list(transforms)
    before = [np.asarray(reward.score_many(cs.problem.X, cs.labelings), dtype=np.float64) for cs in csets]
    rows = []
    for name in names:
        rng = np.random.default_rng(seed)
        rho, same_top, best_after = [], [], []
        for cs, s0 in zip(csets, before):
            X, labs, ci = TRANSFORMS[name](cs, rng)
            s1 = np.asarray(reward.score_many(X, labs), dtype=np.float64)
            rho.append(spearmanr(s0, s1).statistic if np.ptp(s0) > 0 and np.ptp(s1) > 0 else 1.0)
            same_top.append(int(np.argmax(s0)) == int(np.argmax(s1)))
            best_after.append(rank_of(s1, ci) == 1)
        rows.append({"transform": name, "spearman": float(np.nanmean(rho)), "same_top": 100 * float(np.mean(same_top)),
                     "best_before": 100 * float(np.mean([rank_of(s, cs.correct_index) == 1
                                                         for s, cs in zip(before, csets)])),
                     "best_after": 100 * float(np.mean(best_after))})
    return pd.DataFrame(rows)


__all__ = ["TRANSFORMS", "degenerate_scores", "invariance_table"]
