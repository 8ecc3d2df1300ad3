"""The front page's findings: one sentence per part of the replication, written from the
stored results when the book is built.

Apart from :mod:`tdml_lib.reference` on purpose: no experiment chapter loads this module,
so a change of wording here leaves every stored result current (a result depends on the
modules its chapter loaded, :func:`tdml_lib.runner.registry.freshness`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from .methods import AGENT_TRUE_K, KMEANS_TRUE_K
from .reference import NOT_RUN, poster_comparison


def _pct(x: float, digits: int = 0) -> str:
    return f"{x:.{digits}f} %"


def _words(items: Sequence[str], joiner: str = "and") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {joiner} {items[-1]}"


def _critic_finding(results: Mapping[str, Mapping[str, Any]], scorer: str) -> str:
    comp = poster_comparison(results, scorer=scorer).dropna(subset=["ours best"])
    if not len(comp):
        return f"The critic (block C): the transfer table is {NOT_RUN}."
    below = int((comp["diff best"] < 0).sum())
    verdict = "falls short of the poster" if below > len(comp) / 2 else "matches or beats the poster in most cells"
    cells = [(row[f"diff {m}"], name, row) for _, row in comp.iterrows()
             for m, name in (("best", "Best"), ("top3", "Top 3")) if not math.isnan(row[f"diff {m}"])]
    gap, name, row = max(cells, key=lambda c: c[0])
    metric = "best" if name == "Best" else "top3"
    closest = (f"its closest cell is {name} for {row['train'].capitalize()} ({row['regime']}) tested on "
               f"{row['test'].capitalize()}, {_pct(row[f'ours {metric}'])} against the poster's "
               f"{_pct(row[f'poster {metric}'], 1)}")
    sentence = (f"The critic (block C) {verdict}: its Best is below the poster's in {below} of the "
                f"{len(comp)} cells we ran; {closest}")
    few = comp[comp["regime"] == "few-shot"]
    std = comp[comp["regime"] == "standard"]
    if len(few) and len(std) and few["ours best"].mean() < std["ours best"].mean():
        sentence += (f", and the few-shot critics fall furthest behind (mean Best "
                     f"{_pct(few['ours best'].mean())} against {_pct(few['poster best'].mean(), 1)})")
    return sentence + "."


def _agent_finding(results: Mapping[str, Mapping[str, Any]]) -> str:
    res = results.get("clustering")
    rows = pd.DataFrame(res["metrics"]["clustering"]) if res and res.get("status") == "ok" else pd.DataFrame()
    if not len(rows) or not {"agent", "kmeans"} <= set(rows["method"]):
        return f"The agent (block A): the clustering comparison is {NOT_RUN}."
    acc = rows.pivot_table(index="dataset", columns="method", values="acc").dropna(subset=["agent", "kmeans"])
    better = [d.capitalize() for d in acc.index if acc.loc[d, "agent"] > acc.loc[d, "kmeans"]]
    worse = [d.capitalize() for d in acc.index if acc.loc[d, "agent"] <= acc.loc[d, "kmeans"]]
    sentence = ("The agent (block A), with the default reward (the shipped critic averaged with three "
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


def headline_findings(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic") -> dict[str, str]:
    """One sentence per part of the replication on what worked and what did not,
    written from the stored results (the front page prints them).

    Keys: ``"critic"`` (block C: the transfer table against the poster), ``"agent"``
    (block A: clustering against k-means) and ``"baselines"`` (the two rebuilt
    methods against k-means on the same pixels). A part whose result is missing says
    :data:`NOT_RUN`. Every number comes from ``results`` and the wording follows the
    comparison (below / above, more / less accurate), so the sentences stay true when
    the results are replaced by a new run with the same schema.
    """
    return {"critic": _critic_finding(results, scorer), "agent": _agent_finding(results),
            "baselines": _baselines_finding(results)}
