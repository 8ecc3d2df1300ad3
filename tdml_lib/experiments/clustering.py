"""The agent as a clustering algorithm on image domains, beside k-means (chapters 4, 8, 9).

* :func:`compare_on_domains` — sampled test problems of Numbers, Letters, Fashion
  (features of the PCA fitted on Numbers): the agent finding K, the agent told the
  true K, k-means told the true K, and k-means with K chosen by silhouette; one row per
  problem and method, and a summary with 95 % intervals;
* :func:`cluster_whole_set` — every image of a split (10,000 test images, or the
  70,000 of ``"all"``), the agent and k-means on the same features (Table 8.3);
* :func:`agent_scale_case` and the ``agent-scale`` command — the agent's wall time and
  peak memory on such a set (chapter 9), written to ``results/benchmarks/``.

True labels score the results afterwards; they never reach a clustering method.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..agent import DEFAULT_K_MAX, cluster
from ..methods import AGENT_K_FOUND, AGENT_TRUE_K, KMEANS_SILHOUETTE, KMEANS_TRUE_K
from ..metrics import external_scores, score_clusterings
from .seeds import DEVELOPMENT, EvaluationSeeds

METHODS = (AGENT_K_FOUND, AGENT_TRUE_K, KMEANS_TRUE_K, KMEANS_SILHOUETTE)
"""Every method :func:`compare_on_domains` knows, in the order tables show them."""


def kmeans_silhouette_k(X: np.ndarray, k_max: int | None = None, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, 3 starts) at every K in ``2..k_max``, keeping the K whose
    clustering has the best silhouette: the usual way to choose K without labels.

    ``k_max`` defaults to the agent's (``min(12, n // 3)``). Above 10,000 points the
    silhouette is computed on a seeded sample of 10,000 (scikit-learn's ``sample_size``:
    the exact one needs O(n^2) distances).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(X)
    k_max = k_max or max(2, min(DEFAULT_K_MAX, n // 3))
    best: tuple[float, np.ndarray] | None = None
    for k in range(2, min(k_max, n - 1) + 1):
        lab = KMeans(k, n_init=3, random_state=seed).fit_predict(X)
        if n > 10_000:
            s = float(silhouette_score(X, lab, sample_size=10_000, random_state=seed))
        else:
            s = float(score_clusterings("silhouette", X, [lab])[0])
        if best is None or s > best[0]:
            best = (s, lab)
    assert best is not None
    return best[1]


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown or no methods {unknown or methods!r}; choose from {METHODS}.")
    return methods


def run_methods(X: np.ndarray, k_true: int, methods: Sequence[str], reward: Any, generations: int,
                population_size: int, seed: int, k_max: int | None = None,
                progress: bool = False) -> dict[str, np.ndarray]:
    """The clustering of each method (names of :data:`METHODS`) on one point set. Only the
    "true K" methods get ``k_true``, and only as a number of clusters."""
    from sklearn.cluster import KMeans

    run = dict(reward=reward, generations=generations, population_size=population_size, seed=seed,
               k_max=k_max, progress=progress)
    make = {AGENT_K_FOUND: lambda: cluster(X, **run).labels,
            AGENT_TRUE_K: lambda: cluster(X, n_clusters=k_true, **run).labels,
            KMEANS_TRUE_K: lambda: KMeans(k_true, n_init=3, random_state=seed).fit_predict(X),
            KMEANS_SILHOUETTE: lambda: kmeans_silhouette_k(X, k_max, seed)}
    return {m: np.asarray(make[m]()) for m in methods}


def score_rows(truth: np.ndarray, found: dict[str, np.ndarray], **keys: Any) -> list[dict[str, Any]]:
    """One row per method: ``keys``, method, acc, nmi, ari, K_true, K_found."""
    k_true = int(np.unique(truth).size)
    return [{**keys, "method": m, **external_scores(truth, lab), "K_true": k_true,
             "K_found": int(np.unique(lab).size)} for m, lab in found.items()]


def summarise(scores: pd.DataFrame, by: str | Sequence[str] = "domain", confidence: float = 0.95,
              n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean ACC/NMI/ARI per group and method, with intervals.

    ``acc_low``/``acc_high`` (and the same for NMI) are percentile bootstrap intervals of
    the mean over problems (scipy.stats.bootstrap; NaN with one problem);
    ``k_exact`` is the share of problems where the method's K is the true K, with a
    Wilson interval (scipy.stats.binomtest), and ``k1_or_many`` the share where it
    returned one cluster or more than twice the true K (a degenerate answer, which never
    counts as a win however its ACC reads).
    """
    from scipy.stats import binomtest, bootstrap

    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, g in scores.groupby(by + ["method"], sort=False):
        row = dict(zip(by + ["method"], key if isinstance(key, tuple) else (key,)))
        row["n_problems"] = n = len(g)
        for col in ("acc", "nmi", "ari"):
            row[col] = float(g[col].mean())
        for col in ("acc", "nmi"):
            values = g[col].to_numpy(dtype=float)
            if n > 1 and np.ptp(values) > 0:
                ci = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                               method="percentile", random_state=seed).confidence_interval
                row[f"{col}_low"], row[f"{col}_high"] = float(ci.low), float(ci.high)
            else:
                row[f"{col}_low"] = row[f"{col}_high"] = float(values.mean()) if n > 1 else float("nan")
        exact = int((g.K_found == g.K_true).sum())
        ci = binomtest(exact, n).proportion_ci(confidence, method="wilson")
        row.update(k_exact=exact / n, k_exact_low=float(ci.low), k_exact_high=float(ci.high),
                   k1_or_many=float(((g.K_found == 1) | (g.K_found > 2 * g.K_true)).mean()),
                   K_true=float(g.K_true.mean()), K_found=float(g.K_found.mean()))
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class DomainComparison:
    """The agent and k-means on test problems of image domains."""

    scores: pd.DataFrame
    """One row per (domain, problem, method): acc, nmi, ari, K_true, K_found, n_points."""
    seeds: EvaluationSeeds
    params: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The per-problem rows (a copy)."""
        return self.scores.copy()

    def summary(self, confidence: float = 0.95) -> pd.DataFrame:
        """Per domain and method: means and intervals (:func:`summarise`)."""
        return summarise(self.scores, "domain", confidence)


def compare_on_domains(domains: Sequence[str] = ("numbers", "letters", "fashion"), n_problems: int = 2,
                       reward: Any = None, seeds: EvaluationSeeds = DEVELOPMENT,
                       methods: Sequence[str] = METHODS, generations: int = 10, population_size: int = 20,
                       seed: int = 0, k_max: int | None = None, feature_map: Any = None,
                       n_clusters: int | tuple[int, int] = (2, 10),
                       points_per_class: int | tuple[int, int] = (20, 100),
                       progress: bool = False) -> DomainComparison:
    """The agent against k-means on test problems of image domains (chapter 4).

    Problems are drawn from each domain's *test* split with ``seeds.problems``
    (:func:`tdml_lib.features.domain_problems`, features of the PCA fitted on Numbers
    unless ``feature_map`` is given); problem ``i`` is clustered with seed ``seed + i``.

    Args:
        domains: dataset names.
        n_problems: test problems per domain.
        reward: the agent's reward (default: :func:`tdml_lib.load_reward`).
        seeds: :data:`~tdml_lib.experiments.seeds.DEVELOPMENT` while building the book,
            :data:`~tdml_lib.experiments.seeds.HELD_OUT` for stored results.
        methods: names from :data:`METHODS`.
        generations, population_size, k_max: the agent's budget and largest K (k-means
            with silhouette searches the same range).
        n_clusters, points_per_class: as in :func:`tdml_lib.problems.sample_problems`.
    """
    from tqdm.auto import tqdm

    from ..critic import load_reward
    from ..features import domain_problems, fit_feature_map

    methods = _check_methods(methods)
    if reward is None and any(m.startswith("agent") for m in methods):
        reward = load_reward()
    fm = feature_map if feature_map is not None else fit_feature_map("numbers")
    rows = []
    for domain in domains:
        problems = domain_problems(domain, n_problems, split="test", feature_map=fm, seed=seeds.problems,
                                   n_clusters=n_clusters, points_per_class=points_per_class)
        for i, p in enumerate(tqdm(problems, desc=domain, disable=not progress)):
            found = run_methods(p.X, p.n_clusters, methods, reward, generations, population_size, seed + i, k_max)
            rows += score_rows(p.labels, found, domain=domain, problem=i, n_points=p.n_points)
    params = dict(domains=list(domains), n_problems=n_problems, methods=list(methods), generations=generations,
                  population_size=population_size, seed=seed, k_max=k_max, reward=repr(reward))
    return DomainComparison(pd.DataFrame(rows), seeds, params)


# --- whole datasets --------------------------------------------------------------------------------

def whole_set_features(domain: str, split: str = "test", feature_map: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Every image of a split as the book's features: the PCA fitted on Numbers, then
    z-scored per feature (as :func:`tdml_lib.problems.sample_problems` does for a
    problem). Returns (X float32 (N, 32), labels (N,))."""
    from ..data import load
    from ..features import fit_feature_map
    from ..problems import standardize

    ds = load(domain, split)
    fm = feature_map if feature_map is not None else fit_feature_map("numbers")
    return standardize(fm.transform(ds.images)), np.asarray(ds.labels)


@dataclass
class WholeSetResult:
    """The agent and k-means on every image of one split."""

    domain: str
    split: str
    n_points: int
    scores: pd.DataFrame
    """One row per method: acc, nmi, ari, K_true, K_found, wall_s."""
    best_per_k: pd.DataFrame
    """The agent's (K found) best reward at each K: K, reward."""
    notes: list[str]

    def to_frame(self) -> pd.DataFrame:
        return self.scores.assign(domain=self.domain, split=self.split, n_points=self.n_points)


def cluster_whole_set(domain: str = "numbers", split: str = "test", reward: Any = None,
                      methods: Sequence[str] = (AGENT_K_FOUND, AGENT_TRUE_K, KMEANS_TRUE_K),
                      generations: int = 20, population_size: int = 32, seed: int = 0,
                      k_max: int | None = None, feature_map: Any = None, progress: bool = True) -> WholeSetResult:
    """Cluster every image of a split (10,000 test images; 70,000 with ``"all"``) with the
    agent and k-means on the same features, then score (Table 8.3).

    The agent's memory stays bounded at any size (chunked reward calls, seeding methods
    that do not scale skipped, mini-batch k-means); its time is mostly the reward's.
    """
    from sklearn.cluster import KMeans

    from ..critic import load_reward

    methods = _check_methods(methods)
    X, truth = whole_set_features(domain, split, feature_map)
    k_true = int(np.unique(truth).size)
    reward = load_reward() if reward is None and any(m.startswith("agent") for m in methods) else reward
    rows, table, notes = [], pd.DataFrame(columns=["K", "reward"]), []
    for method in methods:
        t0 = time.perf_counter()
        if method.startswith("agent"):
            res = cluster(X, reward=reward, n_clusters=k_true if method == AGENT_TRUE_K else None,
                          generations=generations, population_size=population_size, seed=seed, k_max=k_max,
                          progress=progress)
            labels = res.labels
            if method == AGENT_K_FOUND:
                table, notes = res.best_per_k[["K", "reward"]], res.notes
        elif method == KMEANS_TRUE_K:
            labels = KMeans(k_true, n_init=3, random_state=seed).fit_predict(X)
        else:
            labels = kmeans_silhouette_k(X, k_max, seed)
        wall = time.perf_counter() - t0
        rows += [{**r, "wall_s": wall} for r in score_rows(truth, {method: labels})]
    return WholeSetResult(domain, split, len(X), pd.DataFrame(rows), table, notes)


def agent_scale_case(domain: str = "numbers", split: str = "test", generations: int = 20,
                     population_size: int = 32, seed: int = 0, reward: Any = None,
                     progress: bool = True) -> dict[str, Any]:
    """Wall time and peak memory of the agent (K found) clustering every image of a split
    with the default reward (:func:`tdml_lib.load_reward`, chapter 9). Peak memory is the process's RSS sampled every
    50 ms (:class:`tdml_lib.bench.PeakMemory`), the features already loaded
    (``rss_before_mb``); run one case per process for a clean peak."""
    import psutil
    import torch

    from ..bench import PeakMemory
    from ..critic import load_reward

    X, truth = whole_set_features(domain, split)
    reward = reward if reward is not None else load_reward()
    device = getattr(reward, "device", torch.device("cpu"))
    before = psutil.Process().memory_info().rss / 2**20
    with PeakMemory(device) as memory:
        t0 = time.perf_counter()
        res = cluster(X, reward=reward, generations=generations, population_size=population_size, seed=seed,
                      progress=progress)
        wall = time.perf_counter() - t0
    scores = external_scores(truth, res.labels)
    return {"domain": domain, "split": split, "n_points": len(X), "n_features": X.shape[1],
            "generations": generations, "population_size": population_size, "seed": seed,
            "wall_s": wall, "peak_memory_mb": memory.mb, "rss_before_mb": before, "device": str(device),
            "torch_threads": torch.get_num_threads(), "K_found": res.n_clusters, "K_true": int(np.unique(truth).size),
            **scores, "n_notes": len(res.notes)}


def write_agent_scale(case: dict[str, Any], path: str | Path, command: str | None = None) -> Path:
    """Add ``case`` to the ``agent_scale`` list of a JSON file (replacing a case of the same
    domain, split and budget), with the provenance of this run, atomically."""
    import json

    from ..io import provenance, write_json

    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {"agent_scale": []}
    same = ("domain", "split", "generations", "population_size")
    cases = [c for c in data.get("agent_scale", []) if any(c.get(k) != case[k] for k in same)]
    case = {**case, "provenance": {**provenance(params={k: case[k] for k in same + ("seed",)}, seed=case["seed"],
                                                device=case["device"]), "command": command}}
    data["agent_scale"] = sorted(cases + [case], key=lambda c: (c["n_points"], c["domain"]))
    return write_json(path, data)


# --- command line ---------------------------------------------------------------------------------

def add_cli(sub: Any) -> None:
    p = sub.add_parser("agent-scale", help="time the agent on every image of a split (peak memory too)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--domain", default="numbers")
    p.add_argument("--split", default="test", choices=["train", "test", "all"])
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/benchmarks/agent_scale_cpu.json")
    p.set_defaults(func=_cli_scale)


def _cli_scale(args: Any) -> int:
    import shlex
    import sys

    case = agent_scale_case(args.domain, args.split, args.generations, args.population, args.seed)
    command = "python -m tdml_lib " + shlex.join(sys.argv[1:])
    path = write_agent_scale(case, args.out, command)
    print(pd.Series({k: v for k, v in case.items()}).to_string())
    print("written to", path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tdml_lib.experiments.clustering agent-scale ...`` (until the command is
    listed in ``tdml_lib.__main__.CLI_MODULES``)."""
    parser = argparse.ArgumentParser(prog="python -m tdml_lib.experiments.clustering")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    import sys

    sys.exit(main())


def search_snapshots(X: np.ndarray, reward: Any, stops: Sequence[int], population_size: int = 20,
                     seed: int = 0) -> dict[int, Any]:
    """The agent's best clustering after each number of generations in ``stops``
    (chapter 4's figure). The same seed at every stop, so a run of g generations is the
    first g generations of a longer one."""
    return {int(g): cluster(X, reward=reward, generations=int(g), population_size=population_size, seed=seed)
            for g in sorted(set(stops))}


def cluster_whole_sets(domains: Sequence[str], split: str = "test", **kwargs: Any) -> list["WholeSetResult"]:
    """:func:`cluster_whole_set` for each domain, with the same arguments."""
    return [cluster_whole_set(domain, split, **kwargs) for domain in domains]
