"""Pilot: a fixed, non-learned gate on the closest-pair separation against random splits.

Training the critics against random splits cost them transfer (``results/development/cuts_*``,
``sep_cuts_*``, ``pilots/split_only_*``), although the closest-pair separation
(``pilot_split_separation.py``) puts every development truth above a random split of it. This
pilot asks whether a rule that needs no training closes the hole instead: a clustering whose
closest pair of clusters is no further apart than a random split's halves,

    closest-pair separation < tau,

ranks below every clustering that has no such pair (within each tier the critic's order
stands). Gating a negative can only raise the truth's rank; only a gated truth can lower it.
On development problems of each domain, under both feature protocols, for each ``tau`` of a
grid, it measures: the share of truths gated (full problems and subsampled to a third of
each class, the invariance test's transform), the share of random-split draws gated, the
shipped critic's and the default reward's Best (truth first among the 20 candidates) and
"truth above every random split" (three draws, ``check_random_cuts``' convention) with and
without the gate, and the Spearman correlation of the candidates' ranks between the full and
the subsampled problems; per gated cell, McNemar's exact test of Best and of "truth above every
random split" against the ungated scorer on the same problems (``only_*``: the problems only
one of the two gets right). Nothing here trains a critic. ``--seed-set confirmation`` measures
again on :data:`~tdml_lib.experiments.recipe_comparison.CONFIRMATION`, after ``tau`` is fixed
on the development seeds; ``--statistic library`` reads the library's statistic (centres and
spreads) instead of the centres-only one. The critics score without their own gate
(:func:`~tdml_lib.critic.learned_scores_only`), which this script applies. Writes
``<out>/separation_gate_<seed set>[_library].csv`` and ``.json`` (the command, the seeds,
provenance)::

    python scripts/pilot_separation_gate.py
    python scripts/pilot_separation_gate.py --seed-set confirmation --taus 1.25 --n-problems 100
    python scripts/pilot_separation_gate.py --seed-set confirmation --taus 1.25 --n-problems 100 --statistic library
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from pilot_split_separation import closest_pair_separation  # noqa: E402
from script_records import save_table  # noqa: E402
from tdml_lib.candidates import split_random  # noqa: E402
from tdml_lib.critic import learned_scores_only, load_critic, load_reward  # noqa: E402
from tdml_lib.evaluate import evaluation_sets, mcnemar  # noqa: E402
from tdml_lib.experiments.recipe_comparison import COMPARISON_SEEDS  # noqa: E402
from tdml_lib.experiments.robustness import _subsample_third  # noqa: E402
from tdml_lib.features import domain_problems, fit_feature_map  # noqa: E402
from tdml_lib.graphs import separation_many  # noqa: E402
from tdml_lib.io import code_state  # noqa: E402

DOMAINS = ("numbers", "letters", "fashion")
PROTOCOLS = ("standard", "strict")
TAUS = (1.25, 1.5, 1.75, 2.0)
DRAWS = 3
GATED = 1e6   # subtracted from a gated clustering's score: every gated one ranks below every other


def gated(scores: np.ndarray, separation: np.ndarray, tau: float) -> np.ndarray:
    return scores - GATED * (separation < tau)


def paired_tests(per_problem: pd.DataFrame) -> pd.DataFrame:
    """McNemar's exact test of each gated cell against the ungated scorer, for Best and for
    "truth above every random split"."""
    keys = ["scorer", "domain", "protocol"]
    base = per_problem[per_problem.tau == "none"].set_index([*keys, "problem"])
    rows = []
    for (tau, *cell), part in per_problem[per_problem.tau != "none"].groupby(["tau", *keys]):
        part = part.set_index([*keys, "problem"])
        row = dict(zip(keys, cell), tau=tau)
        for column in ("best", "beats_random_splits"):
            test = mcnemar(part[column], base.loc[part.index, column])
            row |= {f"{column}_only_gated": test["only_a"], f"{column}_only_ungated": test["only_b"],
                    f"{column}_p": test["p_value"]}
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-problems", type=int, default=60)
    ap.add_argument("--seed-set", default="development", choices=sorted(COMPARISON_SEEDS))
    ap.add_argument("--taus", type=float, nargs="+", default=list(TAUS))
    ap.add_argument("--statistic", default="centres", choices=["centres", "library"],
                    help="centres: pilot_split_separation's centres-only statistic (the development and first "
                         "confirmation runs); library: tdml_lib.graphs.closest_pair_separation (centres and spreads)")
    ap.add_argument("--out", default="results/development/pilots")
    args = ap.parse_args()
    seeds = COMPARISON_SEEDS[args.seed_set]
    suffix = "" if args.statistic == "centres" else f"_{args.statistic}"

    def separation(X: np.ndarray, labelings: list | np.ndarray) -> np.ndarray:
        if args.statistic == "library":
            return separation_many(X, np.stack(labelings))
        return np.array([closest_pair_separation(X, lab) for lab in labelings])

    t0, state = time.time(), code_state()
    scorers = {"shipped critic": load_critic(device="cpu"), "default reward": load_reward(device="cpu")}
    rows = []
    for d, domain in enumerate(tqdm(DOMAINS, desc="domains")):
        for protocol in PROTOCOLS:
            fm = fit_feature_map(domain if protocol == "standard" else "numbers")
            problems = domain_problems(domain, args.n_problems, split="test", feature_map=fm, seed=seeds.problems)
            csets = evaluation_sets(problems, n_negatives=19, seed=seeds.candidates)
            for i, cs in enumerate(csets):
                rng = np.random.default_rng([seeds.candidates, d, i])
                X, truth = cs.problem.X, cs.problem.labels
                cuts = [split_random(truth, rng) for _ in range(DRAWS)]
                Xs, labs_s, _ = _subsample_third(cs, rng)
                sep, sep_cut, sep_s = (separation(X, cs.labelings), separation(X, cuts), separation(Xs, labs_s))
                for name, scorer in scorers.items():
                    with learned_scores_only(scorer):   # the critics' own scores; the gate is applied here
                        full = scorer.score_many(X, cs.labelings)
                        cut = scorer.score_many(X, np.stack(cuts))
                        sub = scorer.score_many(Xs, labs_s)
                    t = cs.correct_index
                    for tau in (None, *args.taus):
                        f, c, s = (full, cut, sub) if tau is None else (
                            gated(full, sep, tau), gated(cut, sep_cut, tau), gated(sub, sep_s, tau))
                        others = np.delete(f, t)
                        rows.append({"domain": domain, "protocol": protocol, "scorer": name, "problem": i,
                                     "tau": "none" if tau is None else f"{tau:g}",
                                     "best": bool(f[t] > others.max()),
                                     "beats_random_splits": bool(f[t] > c.max()),
                                     "spearman_third": float(spearmanr(f, s)[0]),
                                     "truth_gated": bool(tau is not None and sep[t] < tau),
                                     "truth_gated_third": bool(tau is not None and sep_s[t] < tau),
                                     "random_splits_gated": float(np.mean(sep_cut < tau)) if tau else 0.0,
                                     "negatives_gated": float(np.mean(np.delete(sep, t) < tau)) if tau else 0.0})
    per_problem = pd.DataFrame(rows)
    table = (per_problem.groupby(["scorer", "domain", "protocol", "tau"])
             [["best", "beats_random_splits", "spearman_third", "truth_gated", "truth_gated_third",
               "random_splits_gated", "negatives_gated"]].mean() * 100).reset_index()
    table["spearman_third"] /= 100
    table = table.merge(paired_tests(per_problem), on=["scorer", "domain", "protocol", "tau"], how="left")
    save_table(table, Path(args.out) / f"separation_gate_{args.seed_set}{suffix}.csv", args, t0, state,
               seeds=args.seed_set, taus=args.taus, draws=DRAWS)
    print(table.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
