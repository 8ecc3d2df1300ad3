"""Pilot: could a sharper pair test gate the random splits the separation gate lets through?

The library's separation gate (``graphs.closest_pair_separation``, ``critic.SEPARATION_GATE``)
gates a clustering when some pair of its clusters differs neither in centre (``C`` below 1.25)
nor in spread (Welch statistic ``W`` below 4). About a quarter of random-split draws pass it
(``results/development/unseen/random_cuts.csv``): for a random split, ``C`` follows roughly
``chi2(nu) / nu`` with ``nu = tr(M)^2 / tr(M^2)``, ``M = S_a / n_a + S_b / n_b`` (the
Satterthwaite degrees of freedom of ``||mu_a - mu_b||^2``), and with ``nu`` near 14 in these
domains a draw lands above 1.25 about one time in four. This pilot measures, on the
development seeds (60 problems per domain, both feature protocols, three random-split draws
per problem), how often each rule gates a truth (its cost: only a gated truth can lose Best)
and a random-split draw (its gain), for

* ``library``: ``C < 1.25`` and ``W < 4`` (the gate as shipped, here over clusters of four or
  more points, where the library counts those of two or more);
* ``centres<c``: ``C < c`` and ``W < 4`` (a higher fixed threshold);
* ``chi2 q``: ``C < chi2.ppf(q, nu) / nu`` and ``W < 4`` (the threshold in the null's units);
* ``centres<c, variances``: ``C < c``, ``W < 4`` and the per-dimension variances alike too,
  ``mean_j (v_aj - v_bj)^2 / (var(v_aj) + var(v_bj)) < 2`` (``var(v)`` from the fourth
  moment; a random split's halves share every variance).

Nothing here trains or scores with a critic, and nothing is chosen: it says whether a rule is
worth a trial on the confirmation seeds. Statistics in float64 on the problems' features
(every one is invariant to a common scale). Writes ``<out>/pair_tests.csv`` and ``.json``::

    python scripts/pilot_pair_tests.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_records import save_table  # noqa: E402
from tdml_lib.candidates import split_random  # noqa: E402
from tdml_lib.experiments import DEVELOPMENT  # noqa: E402
from tdml_lib.features import domain_problems, fit_feature_map  # noqa: E402
from tdml_lib.io import code_state  # noqa: E402

DOMAINS = ("numbers", "letters", "fashion")
PROTOCOLS = ("standard", "strict")
DRAWS = 3
SPREADS = 4.0       # the library's spread bound: SPREAD_UNITS x SEPARATION_GATE = 3.2 x 1.25
VARIANCES = 2.0


def pair_statistics(X: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per pair of clusters of four or more points: ``C``, ``nu``, ``W`` and ``V`` (module
    docstring)."""
    stats = []
    for c in np.unique(labels):
        Z = X[labels == c]
        n = len(Z)
        if n < 4:
            continue
        D = Z - Z.mean(0)
        var = (D ** 2).sum(0) / (n - 1)
        var_of_var = np.maximum((D ** 4).mean(0) - ((D ** 2).mean(0)) ** 2, 1e-12) / n
        sq = (D ** 2).sum(1)
        cov = D.T @ D / (n - 1)
        stats.append((n, Z.mean(0), var, var_of_var, sq.mean() * n / (n - 1), sq.var(ddof=1), cov))
    rows = []
    for a in range(len(stats)):
        for b in range(a + 1, len(stats)):
            na, mua, va, vva, sa, s2a, cova = stats[a]
            nb, mub, vb, vvb, sb, s2b, covb = stats[b]
            M = cova / na + covb / nb
            rows.append({"C": ((mua - mub) ** 2).sum() / np.trace(M), "nu": np.trace(M) ** 2 / np.trace(M @ M),
                         "W": (sa - sb) ** 2 / (s2a / na + s2b / nb),
                         "V": float(np.mean((va - vb) ** 2 / (vva + vvb)))})
    return pd.DataFrame(rows)


def rules() -> dict[str, callable]:
    """Each rule: pair statistics -> whether some pair is gated."""
    def centres(c: float, variances: bool = False):
        return lambda P: bool(((P.C < c) & (P.W < SPREADS) & ((P.V < VARIANCES) if variances else True)).any())

    def chi2_rule(q: float):
        return lambda P: bool(((P.C < chi2.ppf(q, P.nu) / P.nu) & (P.W < SPREADS)).any())
    return {"library": centres(1.25), "centres<1.5": centres(1.5), "centres<2": centres(2.0),
            "chi2 0.9": chi2_rule(0.9), "chi2 0.95": chi2_rule(0.95),
            "centres<2, variances": centres(2.0, True), "centres<3, variances": centres(3.0, True)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-problems", type=int, default=60)
    ap.add_argument("--out", default="results/development/pilots")
    args = ap.parse_args()
    t0, state = time.time(), code_state()
    rows = []
    for d, domain in enumerate(tqdm(DOMAINS, desc="domains")):
        for protocol in PROTOCOLS:
            fm = fit_feature_map(domain if protocol == "standard" else "numbers")
            problems = domain_problems(domain, args.n_problems, split="test", feature_map=fm,
                                       seed=DEVELOPMENT.problems)
            for i, p in enumerate(problems):
                rng = np.random.default_rng([DEVELOPMENT.candidates, d, i])
                X = np.asarray(p.X, dtype=np.float64)
                labelings = [("truth", p.labels)] + [("split_random", split_random(p.labels, rng))
                                                     for _ in range(DRAWS)]
                for kind, labels in labelings:
                    P = pair_statistics(X, labels)
                    for name, rule in rules().items():
                        rows.append({"domain": domain, "protocol": protocol, "problem": i, "kind": kind,
                                     "rule": name, "gated": rule(P) if len(P) else False})
    gated = pd.DataFrame(rows)
    table = (100 * gated.pivot_table(index=["rule", "domain", "protocol"], columns="kind", values="gated",
                                     aggfunc="mean")).rename(columns={"truth": "truths_gated",
                                                                      "split_random": "split_draws_gated"})
    table = table.reset_index()[["rule", "domain", "protocol", "truths_gated", "split_draws_gated"]]
    save_table(table, Path(args.out) / "pair_tests.csv", args, t0, state, seeds="development", draws=DRAWS)
    print(table.round(1).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
