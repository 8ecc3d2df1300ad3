"""The front page's findings: one sentence per part of the replication, written from the
stored results when the book is built.

Apart from :mod:`tdml_lib.reference` on purpose: no experiment chapter loads this module,
so a change of wording here leaves every stored result current (a result depends on the
modules its chapter loaded, :func:`tdml_lib.runner.registry.freshness`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from .methods import AGENT_TRUE_K, KMEANS_TRUE_K
from .reference import ENSEMBLE, NOT_RUN, PROTOCOLS, headline_table, poster_comparison, seed_spread

#: The feature protocol of the front page's table and sentences: the one clustering papers
#: use (PCA fitted on the test domain's unlabelled training split, chapter 5). Chapter 8
#: shows both protocols.
FRONT_PROTOCOL = "standard"


def _pct(x: float, digits: int = 0) -> str:
    return f"{x:.{digits}f} %"


def _words(items: Sequence[str], joiner: str = "and") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {joiner} {items[-1]}"


def front_table(results: Mapping[str, Mapping[str, Any]], protocol: str = FRONT_PROTOCOL,
                scorer: str = "critic", digits: int = 0) -> pd.DataFrame:
    """The front page's table: :func:`tdml_lib.reference.headline_table` under the front
    page's feature protocol (a stored transfer run reports both)."""
    return headline_table(results, protocol, scorer=scorer, digits=digits)


def _cell_name(row: Mapping[str, Any]) -> str:
    return f"{row['train'].capitalize()} ({row['regime']}) tested on {row['test'].capitalize()}"


def _critic_finding(results: Mapping[str, Mapping[str, Any]], scorer: str, protocol: str) -> str:
    comp = poster_comparison(results, scorer=scorer, protocol=protocol).dropna(subset=["ours best"])
    if not len(comp):
        return f"The critic (block C): the transfer table under the {protocol} feature protocol is {NOT_RUN}."
    below = comp[comp["diff best"] < 0]
    verdict = "falls short of the poster" if len(below) > len(comp) / 2 else "matches or beats the poster in most cells"
    sentence = (f"Under the {protocol} feature protocol, the critic (block C) {verdict}: its Best is below "
                f"the poster's in {len(below)} of the {len(comp)} cells we ran")
    if len(below):
        worst = below.loc[below["diff best"].idxmin()]
        sentence += (f"; its widest gap is {_cell_name(worst)}, {_pct(worst['ours best'])} against the "
                     f"poster's {_pct(worst['poster best'], 1)}")
    few = comp[comp["regime"] == "few-shot"]
    std = comp[comp["regime"] == "standard"]
    if len(few) and len(std) and few["ours best"].mean() < std["ours best"].mean():
        sentence += (f", and the few-shot critics fall furthest behind (mean Best "
                     f"{_pct(few['ours best'].mean())} against {_pct(few['poster best'].mean(), 1)})")
    return sentence + "."


def _ensemble_finding(results: Mapping[str, Mapping[str, Any]], protocol: str) -> str | None:
    """The critics of all training seeds as one scorer, or None when no run stored it."""
    comp = poster_comparison(results, scorer=ENSEMBLE, protocol=protocol).dropna(subset=["ours best"])
    if not len(comp):
        return None
    reached = int((comp["diff best"] >= 0).sum())
    spread = seed_spread(results)
    seeds = f"all {int(spread['n_seeds'].max())}" if "n_seeds" in spread and spread["n_seeds"].notna().any() else "all"
    top = comp.loc[comp["diff best"].idxmax()]
    where = "it leads the poster most on" if top["diff best"] >= 0 else "it comes closest on"
    return (f"The critics of {seeds} training seeds as one scorer (the *critic ensemble*, chapter 8) "
            f"reach the poster's Best in {reached} of the {len(comp)} cells under the same protocol; "
            f"{where} {_cell_name(top)}, {_pct(top['ours best'])} against {_pct(top['poster best'], 1)}.")


def _agent_finding(results: Mapping[str, Mapping[str, Any]]) -> str:
    res = results.get("clustering")
    rows = pd.DataFrame(res["metrics"]["clustering"]) if res and res.get("status") == "ok" else pd.DataFrame()
    if not len(rows) or not {"agent", "kmeans"} <= set(rows["method"]):
        return f"The agent (block A): the clustering comparison is {NOT_RUN}."
    acc = rows.pivot_table(index="dataset", columns="method", values="acc").dropna(subset=["agent", "kmeans"])
    better = [d.capitalize() for d in acc.index if acc.loc[d, "agent"] > acc.loc[d, "kmeans"]]
    worse = [d.capitalize() for d in acc.index if acc.loc[d, "agent"] <= acc.loc[d, "kmeans"]]
    sentence = ("The agent (block A), with the default reward (a Numbers critic averaged with three "
                "critics trained on synthetic problems), clusters ")
    if better and worse:
        sentence += (f"more accurately than k-means on {_words(better)} but not on {_words(worse, 'or')} "
                     "(mean over test problems)")
    elif better:
        sentence += f"more accurately than k-means on {_words(better)} (mean over test problems)"
    else:
        sentence += f"no more accurately than k-means on {_words(worse)} (mean over test problems)"
    synthetic = pd.DataFrame(res["metrics"].get("synthetic") or [])
    if {AGENT_TRUE_K, KMEANS_TRUE_K} <= set(synthetic.columns):
        wins = int((synthetic[AGENT_TRUE_K] > synthetic[KMEANS_TRUE_K]).sum())
        sentence += (f"; told the true number of clusters, it beats k-means on {wins} of the "
                     f"{len(synthetic)} held-out synthetic families")
    return sentence + "."


def _baselines_finding(results: Mapping[str, Mapping[str, Any]]) -> str:
    sentences = []
    for experiment, method, name in (("baseline_spc", "spc", "Selective Pseudo-Label Clustering"),
                                     ("baseline_udml", "udml", "CBSwR")):
        res = results.get(experiment)
        if not res or res.get("status") != "ok":
            continue
        pixels = {r["dataset"]: r["acc"] for r in res["metrics"].get("reference") or []
                  if "k-means" in str(r.get("method")) and "pixels" in str(r.get("method"))}
        rows = [r for r in res["metrics"]["clustering"] if r["method"] == method]
        if not rows:
            continue
        scores = _words([f"{r['acc']:.2f} on {r['dataset'].capitalize()}" for r in rows])
        sizes = {int(r["n_points"]) for r in rows if r.get("n_points")}
        size = f" ({_words([f'{n:,}' for n in sorted(sizes)])} images each)" if sizes else ""
        above = [r["dataset"].capitalize() for r in rows if r["dataset"] in pixels and r["acc"] > pixels[r["dataset"]]]
        compared = [r for r in rows if r["dataset"] in pixels]
        if compared:
            versus = ("above k-means on the same pixels on " + ("both" if len(above) == len(compared) == 2 else
                                                                  _words(above) if above else "none"))
            sentences.append(f"{name} reaches an accuracy of {scores}{size}, {versus}")
        else:
            sentences.append(f"{name} reaches an accuracy of {scores}{size}")
    if not sentences:
        return f"The baselines: {NOT_RUN}."
    return "The baselines, rebuilt so that no true label steers them: " + "; ".join(sentences) + "."


def headline_findings(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic",
                      protocol: str = FRONT_PROTOCOL) -> dict[str, str]:
    """One sentence per part of the replication on what worked and what did not,
    written from the stored results (the front page prints them).

    Keys: ``"critic"`` (block C: the transfer table against the poster, under the
    feature ``protocol`` of the front page's table, :func:`front_table`), ``"ensemble"``
    (the critics of all training seeds as one scorer, same protocol; only when stored), ``"agent"``
    (block A: clustering against k-means) and ``"baselines"`` (the two rebuilt
    methods against k-means on the same pixels). A part whose result is missing says
    :data:`NOT_RUN`. Every number comes from ``results`` and the wording follows the
    comparison (below / above, more / less accurate), so the sentences stay true when
    the results are replaced by a new run with the same schema.

    Raises:
        ValueError: an unknown feature protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown feature protocol {protocol!r}; choose from {PROTOCOLS}.")
    found = {"critic": _critic_finding(results, scorer, protocol)}
    ensemble = _ensemble_finding(results, protocol) if scorer == "critic" else None
    if ensemble:
        found["ensemble"] = ensemble
    return {**found, "agent": _agent_finding(results), "baselines": _baselines_finding(results)}
