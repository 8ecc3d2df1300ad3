"""Pilot: does a random split's pair of halves stand apart from the truth's closest pair of classes?

Random cuts as degenerate negatives cost the critics Best on every domain
(``results/development/cuts_*``): to the neighbour-graph statistics, a cluster dealt at random
into two halves looks like two classes that overlap completely, and Fashion's truths have
classes that overlap heavily. What separates the two is whether the two clusters are
*distributed alike*. A random split's halves share their centre: the squared distance between
their centroids is about what sampling alone gives, the sum of each centroid's variance,
``tr(S_a) / n_a + tr(S_b) / n_b``. Two classes, however much they overlap, differ in their
centres by more. This pilot measures, per clustering, the **closest-pair separation**

    min over pairs (a, b) of ||mu_a - mu_b||^2 / (tr(S_a) / n_a + tr(S_b) / n_b)

(a two-sample statistic in the spirit of Hotelling's T^2 with diagonal covariances; about 1
for a random split, scale-free, O(K^2 d + n d) per clustering), on development problems of
each domain (standard protocol): for each truth, for a random split of it
(``check_random_cuts.split_random``, one draw) and for the project's near misses (one
candidate set per problem). Nothing here trains a critic; it says whether the statistic is
worth a trial. Writes ``<out>/split_separation.csv`` (quantiles per domain and kind) and
``.json`` (the command, the seeds, the share of problems where the truth's value is above the
random split's, provenance)::

    python scripts/pilot_split_separation.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from check_random_cuts import domain_test_problems  # noqa: E402
from script_records import save_table  # noqa: E402
from tdml_lib.candidates import split_random  # noqa: E402
from tdml_lib.evaluate import evaluation_sets  # noqa: E402
from tdml_lib.experiments import DEVELOPMENT  # noqa: E402
from tdml_lib.io import code_state  # noqa: E402

DOMAINS = ("numbers", "letters", "fashion")


def closest_pair_separation(X: np.ndarray, labels: np.ndarray) -> float:
    """The smallest, over pairs of clusters of two or more points, squared distance between
    their centroids over the sum of their centroids' sampling variances (module docstring);
    ``inf`` with fewer than two such clusters. The centres-only, float64 form this pilot and
    the gate's development and first confirmation runs measured; it stays to reproduce
    them. The library's statistic (:func:`tdml_lib.graphs.closest_pair_separation`) also
    compares spreads (``results/development/adoption_rules.md``, amendment)."""
    ids = [c for c in np.unique(labels) if np.sum(labels == c) >= 2]
    mu = np.stack([X[labels == c].mean(0) for c in ids]) if ids else np.zeros((0, X.shape[1]))
    se = np.array([X[labels == c].var(0, ddof=1).sum() / np.sum(labels == c) for c in ids])
    if len(ids) < 2:
        return float("inf")
    dist = ((mu[:, None] - mu[None]) ** 2).sum(-1) / (se[:, None] + se[None])
    return float(dist[np.triu_indices(len(ids), 1)].min())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-problems", type=int, default=60)
    ap.add_argument("--out", default="results/development/pilots")
    args = ap.parse_args()
    t0, state = time.time(), code_state()
    rows, above = [], {}
    for d, domain in enumerate(DOMAINS):
        problems = domain_test_problems(domain, args.n_problems, DEVELOPMENT.problems)
        csets = evaluation_sets(problems, n_negatives=19, seed=DEVELOPMENT.candidates)
        rng = np.random.default_rng([DEVELOPMENT.candidates, d])
        truth, cut = [], []
        for p, cset in zip(problems, csets):
            truth.append(closest_pair_separation(p.X, p.labels))
            cut.append(closest_pair_separation(p.X, split_random(p.labels, rng)))
            for kind, lab in zip(cset.kinds, cset.labelings):
                if kind != "correct":
                    rows.append({"domain": domain, "kind": kind, "value": closest_pair_separation(p.X, lab)})
        rows += [{"domain": domain, "kind": "correct", "value": v} for v in truth]
        rows += [{"domain": domain, "kind": "split_random", "value": v} for v in cut]
        above[domain] = float(np.mean(np.array(truth) > np.array(cut)))
    values = pd.DataFrame(rows)
    values = values[np.isfinite(values.value)]
    table = values.groupby(["domain", "kind"])["value"].describe(percentiles=[0.1, 0.5, 0.9])
    table = table[["count", "min", "10%", "50%", "90%", "max"]].reset_index()
    save_table(table, Path(args.out) / "split_separation.csv", args, t0, state, seeds="development",
               truth_above_random_split=above)
    shown = table[table.kind.isin(["correct", "split_random", "split", "merge_closest", "noise_boundary_2"])]
    print(shown.round(2).to_string(index=False))
    print("truth's value above the random split's, share of problems:", above)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
