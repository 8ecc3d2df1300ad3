"""Published numbers, and the tables that set our committed results beside them (chapter 8).

Two constant tables, each with its source:

* :data:`POSTER_TABLE`: the poster's transfer table (Best / Top 3, %), the only
  numbers the TDML authors published (Alami Chehboune, Kaddah, Read, IDA 2023 poster);
* :data:`PUBLISHED_CLUSTERING`: clustering accuracy of other methods on the full
  datasets, as published by their authors (each row names its source).

And readers for ``results/<experiment>/result.json`` (written by
``python -m tdml_lib run CHAPTER ... --out results/<experiment>``; schema in
``results/README.md``): :func:`load_results`, :func:`poster_comparison`,
:func:`clustering_comparison`, :func:`baseline_table` (the front page's sentences on
them: :mod:`tdml_lib.findings`). A number that no result file
holds is ``NaN`` in the numeric tables and :data:`NOT_RUN` in the displayed ones:
nothing is ever filled in by hand.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .io import source_hash
from .methods import (AGENT_ENSEMBLE_K_FOUND, AGENT_K_FOUND, DEFAULT_REWARD_TRAINING, KMEANS_SILHOUETTE,
                      ONE_RUN_REWARDS, SHIPPED_CRITIC_TRAINING)
from .runner.registry import STORED_EXPERIMENTS, freshness

NOT_RUN = "not yet run"

POSTER_SOURCE = ("Alami Chehboune, Kaddah & Read, 'Transferable Deep Metric Learning for "
                 "Clustering', IDA 2023, poster: results table (Best / Top 3, % of test "
                 "problems).")

#: The poster's transfer table: one row per (training domain, regime, test domain).
#: Best = % of test problems where the critic ranks the correct clustering first;
#: Top 3 = % where it ranks it among the first three.
POSTER_TABLE: tuple[dict[str, Any], ...] = tuple(
    {"train": train, "regime": regime, "test": test, "best": best, "top3": top3}
    for (train, regime), cells in {
        ("numbers", "standard"): ((78.3, 92.5), (86.0, 97.5), (69.2, 87.2)),
        ("numbers", "few-shot"): ((75.8, 82.1), (83.3, 92.0), (65.1, 83.9)),
        ("fashion", "standard"): ((70.1, 83.1), (85.0, 98.6), (76.9, 94.7)),
        ("fashion", "few-shot"): ((67.9, 77.4), (83.5, 95.3), (70.2, 88.0)),
    }.items()
    for test, (best, top3) in zip(("numbers", "letters", "fashion"), cells))

TRAIN_DOMAINS = ("numbers", "fashion")
REGIMES = ("standard", "few-shot")
ADVERSARIAL_REGIME = "standard + adversarial"
"""Our extra regime (chapter 5): the standard critic after the adversarial loop. The
poster has no such row; it answers whether the loop improves transfer."""
TEST_DOMAINS = ("numbers", "letters", "fashion")
ABLATION_PREFIX = "ablation: "
"""Regimes named ``"ablation: <name>"`` are critics trained on another recipe or objective
(chapter 5's ablations), reported beside the poster's rows."""
PROTOCOLS = ("strict", "standard")
ENSEMBLE = "critic ensemble"
"""The scorer of chapter 5's standard critics of every training seed, their scores
averaged as per-problem z-scores (:class:`tdml_lib.evaluate.ZScoreEnsemble`)."""

#: Clustering scores published by other methods' authors, on the full datasets
#: (Numbers = MNIST, Fashion = Fashion-MNIST, 70 000 images each). ``None``: not listed.
PUBLISHED_CLUSTERING: tuple[dict[str, Any], ...] = (
    {"method": "N2D", "dataset": "numbers", "acc": 0.979, "nmi": 0.942,
     "source": "McConville et al., N2D: (Not Too) Deep Clustering, ICPR 2020 (arXiv:1908.05968)"},
    {"method": "N2D", "dataset": "fashion", "acc": 0.672, "nmi": 0.684,
     "source": "McConville et al., N2D: (Not Too) Deep Clustering, ICPR 2020 (arXiv:1908.05968)"},
    # DEC: the paper's own number (its Table 2, MNIST: 84.30 %); later comparison tables
    # re-report 0.863, which is noted beside it, not used.
    {"method": "DEC", "dataset": "numbers", "acc": 0.843, "nmi": None,
     "source": "Xie, Girshick & Farhadi, Unsupervised Deep Embedding for Clustering "
               "Analysis, ICML 2016, Table 2 (later comparison tables re-report 0.863)"},
    {"method": "ClusterGAN", "dataset": "numbers", "acc": 0.964, "nmi": None,
     "source": "Mukherjee et al., ClusterGAN, AAAI 2019"},
    {"method": "ClusterGAN", "dataset": "fashion", "acc": 0.630, "nmi": None,
     "source": "Mukherjee et al., ClusterGAN, AAAI 2019"},
    {"method": "IIC", "dataset": "numbers", "acc": 0.992, "nmi": None,
     "source": "Ji, Henriques & Vedaldi, Invariant Information Clustering, ICCV 2019"},
)

#: The full-scale experiments the book expects under results/ (name -> what makes it):
#: the chapter runs of the one registry, ``tdml_lib.runner.registry.STORED_EXPERIMENTS``.
EXPERIMENTS: tuple[dict[str, str], ...] = tuple(
    {"experiment": e.name, "chapter": str(e.chapter)[:2], "what": e.what}
    for e in STORED_EXPERIMENTS if e.kind == "chapter")

#: Methods and datasets the clustering table reports (ours; missing ones show NOT_RUN).
OUR_METHODS = ("agent", "agent_true_k", "kmeans", "kmeans_silhouette_k", "agent_whole_test_set",
               "kmeans_whole_test_set", "spc", "udml")
CLUSTERING_DATASETS = ("numbers", "letters", "fashion")
WHOLE_SET_METHODS = ("agent_whole_test_set", "kmeans_whole_test_set", "spc", "udml")
WHOLE_SET_DATASETS = ("numbers", "fashion")
"""The whole-dataset methods run on Numbers and Fashion only (the datasets with published
clustering scores); Letters has no "not yet run" rows for them."""


# ------------------------------------------------------------------------ validation

def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_transfer_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: a table row must be an object, got {row!r}.")
    for key in ("train", "test"):
        if not isinstance(row.get(key), str) or not row.get(key):
            raise ValueError(f"{where}: '{key}' must be a domain name such as 'numbers', "
                             f"got {row.get(key)!r}.")
    regime = row.get("regime")
    if regime not in (*REGIMES, ADVERSARIAL_REGIME, None) and not (
            isinstance(regime, str) and regime.startswith(ABLATION_PREFIX)):
        raise ValueError(f"{where}: 'regime' must be one of {(*REGIMES, ADVERSARIAL_REGIME)} (or null for a scorer "
                         f"that is not trained), got {row.get('regime')!r}.")
    for key in ("best", "top3"):
        if not _is_number(row.get(key)) or not 0 <= row[key] <= 100:
            raise ValueError(f"{where}: '{key}' must be a percentage in [0, 100], got "
                             f"{row.get(key)!r}.")
    scorer = row.get("scorer", "critic")
    if not isinstance(scorer, str):
        raise ValueError(f"{where}: 'scorer' must be a string, got {scorer!r}.")
    return {**row, "scorer": scorer}


def _check_clustering_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: a clustering row must be an object, got {row!r}.")
    for key in ("dataset", "method"):
        if not isinstance(row.get(key), str) or not row.get(key):
            raise ValueError(f"{where}: '{key}' must be a non-empty string, got "
                             f"{row.get(key)!r}.")
    for key, low in (("acc", 0.0), ("nmi", 0.0), ("ari", -1.0)):
        value = row.get(key)
        if value is None and key != "acc":
            continue
        if not _is_number(value) or not low <= value <= 1:
            raise ValueError(f"{where}: '{key}' must be a fraction in [{low:g}, 1] (not a %), "
                             f"got {value!r}.")
    return dict(row)


def load_results(root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read every ``root/<experiment>/result.json``, checking the metrics' schema.

    Rows of ``metrics.baselines`` (scorers that rank the same candidates, with
    ``features_from`` naming the domain the features were fitted on) are merged into
    ``metrics.table`` with ``train = features_from`` and ``regime = None``.

    Args:
        root: the results folder (``results/`` in the repository).

    Returns:
        ``{experiment: result}``, sorted by name; ``{}`` when the folder is missing or
        empty. Failed runs are included (their ``status`` says so).

    Raises:
        ValueError: a file that is not valid JSON or whose metrics break the schema
            (the message names the file and the row).
    """
    root = Path(root)
    results: dict[str, dict[str, Any]] = {}
    # hidden folders are a run in progress (.<name>.new) or a failed one kept aside
    for path in sorted(p for p in root.glob("*/result.json") if not p.parent.name.startswith(".")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        metrics = data.get("metrics") or {}
        baselines = []
        for i, row in enumerate(metrics.get("baselines") or []):
            where = f"{path} metrics.baselines[{i}]"
            if not isinstance(row, Mapping) or not isinstance(row.get("scorer"), str):
                raise ValueError(f"{where}: a baseline row needs a 'scorer' name, got {row!r}.")
            baselines.append(_check_transfer_row(
                {**row, "train": row.get("train", row.get("features_from")),
                 "regime": row.get("regime")}, where))
        data["metrics"] = {
            **metrics,
            "table": [_check_transfer_row(r, f"{path} metrics.table[{i}]")
                      for i, r in enumerate(metrics.get("table") or [])] + baselines,
            "clustering": [_check_clustering_row(r, f"{path} metrics.clustering[{i}]")
                           for i, r in enumerate(metrics.get("clustering") or [])],
        }
        results[path.parent.name] = data
    return results


# ---------------------------------------------------------------------------- tables

def _short_commit(commit: str | None) -> str:
    """``abcdef123456`` or ``abcdef123456-dirty`` from a recorded ``git_commit``."""
    commit = commit or ""
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def experiment_status(results: Mapping[str, Mapping[str, Any]],
                      book_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per expected (and any extra) experiment: status, device, time, commit,
    whether it is current, and the command.

    ``current`` (:func:`tdml_lib.runner.registry.freshness`) is ``"yes"`` when the
    result was made, from a clean tree, by the library sources and the chapter code that
    are here now, with the registry's parameters; otherwise it says why not (``"no:
    library changed"``...), or ``"unknown: ..."`` for a result recorded before source
    hashes. A result that is not current may still be right, but it is no longer
    evidence about this version of the code: ``python -m tdml_lib reproduce NAME``
    makes it again.

    Args:
        results: from :func:`load_results`.
        book_dir: where the chapters are (default: the book this library belongs to).
    """
    names = [e["experiment"] for e in EXPERIMENTS]
    names += [n for n in results if n not in names]
    info = {e["experiment"]: e for e in EXPERIMENTS}
    registry = {e.name: e for e in STORED_EXPERIMENTS}
    library_hash = source_hash()
    rows = []
    for name in names:
        res = results.get(name)
        rows.append({
            "experiment": name,
            "chapter": info.get(name, {}).get("chapter", res.get("chapter") if res else ""),
            "status": res.get("status", "?") if res else NOT_RUN,
            "device": (res.get("gpu") or res.get("device") or "?") if res else "",
            "wall time (min)": round(res["wall_time"] / 60, 1) if res and "wall_time" in res
            else np.nan,
            "git commit": _short_commit(res.get("git_commit")) if res else "",
            "current": freshness(res, registry.get(name), library_hash=library_hash,
                                 book_dir=book_dir) if res else "",
            "command": res.get("command", "") if res else "",
        })
    return pd.DataFrame(rows)


def transfer_rows(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """All transfer-table rows of all results, long format, with their experiment.

    Raises:
        ValueError: two results report the same (scorer, train, regime, protocol, test)
            cell. Rows without a feature protocol are the strict protocol (the only one
            before chapter 5 had two).
    """
    rows = [{"experiment": name, "protocol": "strict", **row} for name, res in results.items()
            if res.get("status") == "ok" for row in res["metrics"]["table"]]
    cols = ["experiment", "scorer", "train", "regime", "protocol", "test", "best", "top3"]
    df = pd.DataFrame(rows) if rows else pd.DataFrame(columns=cols)
    key = ["scorer", "train", "regime", "protocol", "test"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        raise ValueError("the same transfer cell is reported twice: "
                         + dup[["experiment", *key]].to_string(index=False))
    return df


def adversarial_effect(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic") -> pd.DataFrame:
    """The standard critic before and after the adversarial loop, cell by cell.

    One row per (train, test) cell that both regimes report: Best, Top 3 and, where
    present, the mean rank of the truth, before ("standard") and after
    (:data:`ADVERSARIAL_REGIME`), and the change in Best and Top 3 (percentage points).
    Empty when no result holds the adversarial regime.
    """
    rows = transfer_rows(results)
    rows = rows[rows["scorer"] == scorer]
    cols = [c for c in ("best", "top3", "mean_rank") if c in rows]
    before = rows[rows["regime"] == "standard"].set_index(["train", "protocol", "test"])[cols]
    after = rows[rows["regime"] == ADVERSARIAL_REGIME].set_index(["train", "protocol", "test"])[cols]
    both = before.join(after, how="inner", lsuffix=" (standard)", rsuffix=" (adversarial)")
    for metric in ("best", "top3"):
        both[f"change {metric}"] = both[f"{metric} (adversarial)"] - both[f"{metric} (standard)"]
    return both.reset_index()


def poster_comparison(results: Mapping[str, Mapping[str, Any]],
                      scorer: str = "critic", protocol: str = "strict") -> pd.DataFrame:
    """The poster's 12 cells beside ours under one feature protocol: poster/ours/diff for
    Best and Top 3.

    ``ours`` and ``diff`` (ours − poster, percentage points) are NaN where no result
    file reports the cell.
    """
    ours = transfer_rows(results)
    ours = ours[(ours["scorer"] == scorer) & (ours["protocol"] == protocol)].set_index(["train", "regime", "test"])
    rows = []
    for cell in POSTER_TABLE:
        key = (cell["train"], cell["regime"], cell["test"])
        row = {"train": cell["train"], "regime": cell["regime"], "test": cell["test"]}
        for metric in ("best", "top3"):
            mine = float(ours.loc[key, metric]) if key in ours.index else np.nan
            row[f"poster {metric}"] = cell[metric]
            row[f"ours {metric}"] = mine
            row[f"diff {metric}"] = mine - cell[metric]
        n = ours.loc[key, "n_problems"] if key in ours.index and "n_problems" in ours else np.nan
        row["n_problems"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def clustering_comparison(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Published clustering scores and ours in one long table.

    Columns: dataset, method, kind ("published" or "ours"), acc, nmi, ari, n_points,
    source. Our expected (dataset, method) pairs with no result have NaN scores and
    source :data:`NOT_RUN`.
    """
    rows = [{"dataset": r["dataset"], "method": r["method"], "kind": "published",
             "acc": r["acc"], "nmi": np.nan if r["nmi"] is None else r["nmi"], "ari": np.nan,
             "n_points": 70000, "source": r["source"]} for r in PUBLISHED_CLUSTERING]
    seen = set()
    for name, res in results.items():
        if res.get("status") != "ok":
            continue
        for r in res["metrics"]["clustering"]:
            seen.add((r["dataset"], r["method"]))
            rows.append({"dataset": r["dataset"], "method": r["method"], "kind": "ours",
                         "acc": r["acc"], "nmi": r.get("nmi", np.nan),
                         "ari": r.get("ari", np.nan), "n_points": r.get("n_points", np.nan),
                         "source": f"results/{name}"})
    for dataset in CLUSTERING_DATASETS:
        for method in OUR_METHODS:
            not_run_here = method in WHOLE_SET_METHODS and dataset not in WHOLE_SET_DATASETS
            if (dataset, method) not in seen and not not_run_here:
                rows.append({"dataset": dataset, "method": method, "kind": "ours",
                             "acc": np.nan, "nmi": np.nan, "ari": np.nan, "n_points": np.nan,
                             "source": NOT_RUN})
    df = pd.DataFrame(rows).astype({"acc": float, "nmi": float, "ari": float})
    datasets = {d: i for i, d in enumerate(CLUSTERING_DATASETS)}
    df["_d"] = df["dataset"].map(lambda d: datasets.get(d, len(datasets)))
    df["_k"] = (df["kind"] == "ours").astype(int)
    return df.sort_values(["_d", "dataset", "_k"], kind="stable") \
        .drop(columns=["_d", "_k"]).reset_index(drop=True)


def baseline_table(results: Mapping[str, Mapping[str, Any]],
                   exclude: Sequence[str] = ("critic",)) -> pd.DataFrame:
    """Best / Top 3 of the other scorers (internal indices, probe) on the same candidates."""
    df = transfer_rows(results)
    df = df[~df["scorer"].isin(exclude)]
    cols = ["scorer", "train", "regime", "test", "best", "top3"]
    return df[[c for c in cols if c in df] + [c for c in ("n_problems",) if c in df]] \
        .reset_index(drop=True)


#: Scorers the baseline table expects when no result lists any (chapter 5's names).
EXPECTED_SCORERS = ("critic", "silhouette", "calinski_harabasz", "davies_bouldin", "probe")


def scorer_summary(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Best / Top 3 of every scorer per test domain, as "best / top3" text.

    One row per scorer and training setting ("features from D" for scorers that are
    not trained, "D, regime" for the critic and the probe). With no result at all the
    rows of :data:`EXPECTED_SCORERS` say :data:`NOT_RUN`.
    """
    rows = transfer_rows(results)
    if not len(rows):
        return pd.DataFrame([{"scorer": s, "setting": "—",
                              **{t: NOT_RUN for t in TEST_DOMAINS}} for s in EXPECTED_SCORERS])
    order = {s: i for i, s in enumerate(("critic", ENSEMBLE, *EXPECTED_SCORERS[1:]))}
    out = []
    rows = rows[~rows["regime"].fillna("").str.startswith(ABLATION_PREFIX)]
    for (scorer, train, regime, protocol), group in rows.fillna({"regime": ""}).groupby(
            ["scorer", "train", "regime", "protocol"], sort=False):
        line = {"scorer": scorer, "protocol": protocol,
                "setting": f"{train}, {regime}" if regime else f"{train} (as features)"}
        for test in TEST_DOMAINS:
            hit = group[group["test"] == test]
            line[test] = (f"{hit['best'].iloc[0]:.0f} / {hit['top3'].iloc[0]:.0f}" if len(hit)
                          else NOT_RUN)
        out.append(line)
    df = pd.DataFrame(out)
    df["_o"] = df["scorer"].map(lambda s: order.get(s, len(order)))
    return df.sort_values(["protocol", "_o", "scorer", "setting"], kind="stable").drop(columns="_o") \
        .reset_index(drop=True)


def format_estimate(value: Any, interval: Any = None, digits: int = 0,
                    missing: str = NOT_RUN) -> str:
    """A number as the book prints it: rounded, with its interval when known.

    ``format_estimate(49.0, (39.42, 58.65))`` gives ``"49 [39, 59]"``; a NaN or None
    value gives ``missing``. Rounding to whole percentage points is the default because
    with a hundred test problems the intervals are several points wide.

    Raises:
        ValueError: an interval that is not two numbers, or negative ``digits``.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be a non-negative int, got {digits!r}.")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    text = f"{round(float(value), digits) + 0.0:.{digits}f}"
    if interval is None or (isinstance(interval, float) and math.isnan(interval)):
        return text
    try:
        low, high = (float(v) for v in interval)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"an interval must be two numbers (low, high), got {interval!r}.") from exc
    # "+ 0.0" turns the -0 of a bound like -1e-16 into 0
    return f"{text} [{round(low, digits) + 0.0:.{digits}f}, {round(high, digits) + 0.0:.{digits}f}]"


def for_display(df: pd.DataFrame, columns: Sequence[str] | None = None, digits: int = 1,
                missing: str = NOT_RUN, rows: Sequence[bool] | None = None,
                intervals: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A copy for printing: NaN becomes ``missing``, numbers are rounded, and a value
    with an interval column becomes one text ``"49 [39, 59]"``.

    Args:
        df: a numeric table.
        columns: the columns to convert (default: all).
        digits: decimals kept.
        missing: the text for a missing number (default :data:`NOT_RUN`).
        rows: optional mask; in rows where it is False a NaN becomes "—" (a number the
            source does not report, as opposed to one we have not run yet).
        intervals: ``{value column: interval column}``; each value is printed with its
            interval (:func:`format_estimate`) and the interval column is dropped.

    Raises:
        ValueError: an interval column that is not in ``df``.
    """
    intervals = dict(intervals or {})
    absent = [c for pair in intervals.items() for c in pair if c not in df]
    if absent:
        raise ValueError(f"for_display: columns {absent} are not in the table; it has {list(df.columns)}.")
    out = df.copy().astype(object)
    mask = [True] * len(df) if rows is None else list(rows)
    for col in columns if columns is not None else df.columns:
        if col not in out or col in intervals.values():
            continue
        values = []
        for i, (v, ours) in enumerate(zip(df[col], mask)):
            if isinstance(v, float) and math.isnan(v):
                values.append(missing if ours else "—")
            elif col in intervals:
                values.append(format_estimate(v, df[intervals[col]].iloc[i], digits, missing))
            elif isinstance(v, float) and col in ("n_problems", "n_points") and v.is_integer():
                values.append(int(v))
            elif isinstance(v, float):
                values.append(round(v, digits))
            else:
                values.append(v)
        out[col] = values
    return out.drop(columns=list(intervals.values()))


def _interval(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def headline_table(results: Mapping[str, Mapping[str, Any]], protocol: str, scorer: str = "critic",
                   digits: int = 0) -> pd.DataFrame:
    """The poster's transfer table beside ours under one feature protocol, ready to print
    (the front page).

    One row per poster cell (training domain, regime, test domain), with the poster's
    Best and Top 3 as published (one decimal) and ours, rounded to ``digits``; ours carry their interval where the
    result holds one (``best_ci``, ``top3_ci``), as ``"49 [39, 59]"``, and say
    :data:`NOT_RUN` where no result reports the cell under ``protocol``.

    Args:
        results: what :func:`load_results` returns.
        protocol: the feature protocol shown (one of :data:`PROTOCOLS`): a stored run reports
            every cell under each, and a table of the poster's cells shows one.
        scorer: whose numbers are "ours" (default the critic).
        digits: decimals kept (percentages).

    Raises:
        ValueError: an unknown protocol.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown feature protocol {protocol!r}; choose from {PROTOCOLS}.")
    ours = transfer_rows(results)
    ours = ours[(ours["scorer"] == scorer) & (ours["protocol"] == protocol)]
    index = {(r["train"], r["regime"], r["test"]): r for r in ours.to_dict("records")}
    rows = []
    for cell in POSTER_TABLE:
        mine = index.get((cell["train"], cell["regime"], cell["test"]), {})
        rows.append({
            "trained on": cell["train"].capitalize(), "regime": cell["regime"],
            "tested on": cell["test"].capitalize(),
            "Best: poster": format_estimate(cell["best"], None, 1),
            "Best: ours": format_estimate(mine.get("best"), _interval(mine, "best_ci"), digits),
            "Top 3: poster": format_estimate(cell["top3"], None, 1),
            "Top 3: ours": format_estimate(mine.get("top3"), _interval(mine, "top3_ci"), digits),
        })
    return pd.DataFrame(rows)


def plot_difference_heatmap(ax: Any, comparison: pd.DataFrame, metric: str = "best",
                            limit: float = 30.0, ylabels: bool = True) -> Any:
    """Heatmap of ours − poster (percentage points) for one metric, on a matplotlib axis.

    Rows: training domain and regime; columns: test domain (the poster's layout).
    Missing cells are grey and say :data:`NOT_RUN`. Returns the image (for a colorbar).
    """
    import matplotlib.pyplot as plt

    row_keys = [(t, r) for t in TRAIN_DOMAINS for r in REGIMES]
    grid = np.full((len(row_keys), len(TEST_DOMAINS)), np.nan)
    idx = comparison.set_index(["train", "regime", "test"])
    for i, (t, r) in enumerate(row_keys):
        for j, test in enumerate(TEST_DOMAINS):
            if (t, r, test) in idx.index:
                grid[i, j] = idx.loc[(t, r, test), f"diff {metric}"]
    cmap = plt.get_cmap("RdBu").copy()
    cmap.set_bad("0.9")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-limit, vmax=limit,
                      aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            text = NOT_RUN if np.isnan(grid[i, j]) else f"{grid[i, j]:+.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="0.35" if np.isnan(grid[i, j]) else "black")
    ax.set_xticks(range(len(TEST_DOMAINS)), [d.capitalize() for d in TEST_DOMAINS])
    ax.set_yticks(range(len(row_keys)),
                  [f"{t.capitalize()}, {r}" for t, r in row_keys] if ylabels else [])
    ax.set_xlabel("tested on")
    if ylabels:
        ax.set_ylabel("trained on")
    ax.grid(False)
    return image


def format_scores(table: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """A table of :func:`tdml_lib.evaluate.compare_scorers` as the book prints it: Best and
    Top k as ``"49 [39, 59]"`` (percent, Wilson 95 % interval), the mean rank of the truth
    to one decimal, and the number of problems."""
    need = ["best", "best_ci_low", "best_ci_high", f"top{k}", f"top{k}_ci_low", f"top{k}_ci_high", "mean_rank"]
    absent = [c for c in need if c not in table]
    if absent:
        raise ValueError(f"format_scores needs the columns of evaluate.compare_scorers; missing {absent}.")
    out = pd.DataFrame(index=table.index)
    out["Best (%)"] = [format_estimate(b, (lo, hi)) for b, lo, hi in
                       zip(table["best"], table["best_ci_low"], table["best_ci_high"])]
    out[f"Top {k} (%)"] = [format_estimate(b, (lo, hi)) for b, lo, hi in
                           zip(table[f"top{k}"], table[f"top{k}_ci_low"], table[f"top{k}_ci_high"])]
    out["mean rank of the truth"] = table["mean_rank"].round(1)
    if "n_problems" in table:
        out["problems"] = table["n_problems"].astype(int)
    return out


def _row_label(train: str, regime: str) -> str:
    return f"{train}, {regime}"


def transfer_table(table: pd.DataFrame, scorer: str = "critic", metric: str = "best") -> pd.DataFrame:
    """The transfer table as the book prints it: one row per (training domain, regime),
    one column per (feature protocol, test domain), each cell ``"49 [39, 59] (poster 78)"``.

    Args:
        table: rows with ``scorer, train, regime, protocol, test, best, best_ci_low,
            best_ci_high`` (``TransferResult.table()``, or the stored ``metrics.table``).
        scorer: whose rows to show.
        metric: ``"best"`` (with its interval) or ``"top3"``.
    """
    rows = table[table["scorer"] == scorer]
    poster = {(c["train"], c["regime"], c["test"]): c[metric] for c in POSTER_TABLE}
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows.to_dict(orient="records"):
        interval = (r.get("best_ci_low"), r.get("best_ci_high")) if metric == "best" else None
        if interval is not None and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in interval):
            interval = None
        text = format_estimate(r[metric], interval)
        ref = poster.get((r["train"], r["regime"], r["test"]))
        if ref is not None:
            text += f" (poster {ref:.0f})"
        out.setdefault((r.get("protocol") or "strict", r["test"]), {})[_row_label(r["train"], r["regime"])] = text
    df = pd.DataFrame(out)
    order = [c for p in ("strict", "standard") for t in TEST_DOMAINS for c in [(p, t)] if c in df.columns]
    df = df[order + [c for c in df.columns if c not in order]]
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["protocol", "tested on"])
    return df.rename_axis("trained on").fillna(NOT_RUN)


def poster_difference(table: pd.DataFrame, protocol: str = "strict", scorer: str = "critic",
                      metric: str = "best") -> pd.DataFrame:
    """Ours minus the poster, in percentage points, for one feature protocol: rows
    ``"<train>, <regime>"`` of the poster's table, columns its test domains (NaN where we
    have no number)."""
    rows = table[(table["scorer"] == scorer) & (table.get("protocol", "strict") == protocol)]
    ours = {(r["train"], r["regime"], r["test"]): r[metric] for r in rows.to_dict(orient="records")}
    out = pd.DataFrame(index=[_row_label(t, r) for t in TRAIN_DOMAINS for r in REGIMES], columns=list(TEST_DOMAINS),
                       dtype=float)
    for cell in POSTER_TABLE:
        value = ours.get((cell["train"], cell["regime"], cell["test"]))
        if value is not None:
            out.loc[_row_label(cell["train"], cell["regime"]), cell["test"]] = value - cell[metric]
    return out


# ----------------------------------------------------------- the transfer run, in depth

def transfer_result(results: Mapping[str, Mapping[str, Any]], name: str = "transfer") -> Mapping[str, Any]:
    """The metrics of one stored transfer run (``{}`` when it is missing or failed)."""
    res = results.get(name) or {}
    return res.get("metrics", {}) if res.get("status") == "ok" else {}


def poster_cells(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic") -> pd.DataFrame:
    """Per cell of the poster's table: the poster's Best, ours under each feature
    protocol, the better of the two (``ours (better protocol)``, and its name in
    ``better protocol``: ties go to the first of :data:`PROTOCOLS`, missing where no
    protocol has a row), and whether it reaches the poster's number."""
    rows = transfer_rows(results)
    rows = rows[rows["scorer"] == scorer]
    out = []
    for cell in POSTER_TABLE:
        line = {"train": cell["train"], "regime": cell["regime"], "test": cell["test"], "poster": cell["best"]}
        for protocol in PROTOCOLS:
            hit = rows[(rows["train"] == cell["train"]) & (rows["regime"] == cell["regime"])
                       & (rows["test"] == cell["test"]) & (rows["protocol"] == protocol)]
            line[protocol] = float(hit["best"].iloc[0]) if len(hit) else np.nan
        measured = [p for p in PROTOCOLS if not np.isnan(line[p])]
        better = max(measured, key=lambda p: line[p], default=None)   # max keeps the first of a tie
        best = line[better] if better else np.nan
        line["ours (better protocol)"] = best
        line["better protocol"] = better
        line["gap"] = best - cell["best"]
        line["reached"] = bool(best >= cell["best"]) if not np.isnan(best) else None
        out.append(line)
    return pd.DataFrame(out)


def paired_comparison(results: Mapping[str, Mapping[str, Any]], a: str = "critic",
                      b: str | Sequence[str] = ("probe", "silhouette"), regime: str | Sequence[str] = "standard",
                      name: str = "transfer", other_regime: str | None = None) -> pd.DataFrame:
    """McNemar's exact test of scorer ``a`` against each of ``b``, cell by cell, from the
    stored per-problem ranks (:func:`tdml_lib.evaluate.paired_comparison`; ``other_regime``
    takes ``b`` at another regime, e.g. an ablation of ``a``'s recipe)."""
    from .evaluate import paired_comparison as paired

    return paired(pd.DataFrame(transfer_result(results, name).get("ranks", [])), a, b, regime, other_regime)


def seed_mean_below(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic", other: str = "probe",
                    regime: str = "standard") -> pd.DataFrame:
    """The cells where ``scorer``'s Best, as the mean over its training seeds (the
    transfer table's number), is below ``other``'s: columns ``train``, ``protocol``,
    ``test``, ``best`` and ``best_other``, and ``attrs["n_cells"]``, the cells compared.
    :func:`paired_comparison` tests one seed problem by problem; this says where the seed
    mean disagrees with it."""
    rows = transfer_rows(results)   # with its columns even when nothing is stored
    keys = ["train", "protocol", "test"]
    rows = rows[rows["regime"] == regime]
    means = rows[rows["scorer"] == scorer][[*keys, "best"]].merge(
        rows[rows["scorer"] == other][[*keys, "best"]], on=keys, suffixes=("", "_other"))
    out = means[means["best"] < means["best_other"]].reset_index(drop=True)
    out.attrs["n_cells"] = len(means)
    return out


def regime_table(results: Mapping[str, Mapping[str, Any]], train: str = "numbers", protocol: str = "strict",
                 metric: str = "best", scorer: str = "critic") -> pd.DataFrame:
    """Best (or another metric) of every regime of one training domain, ablations
    included, per test domain: what each training recipe and objective contributes."""
    rows = transfer_rows(results)
    rows = rows[(rows["scorer"] == scorer) & (rows["train"] == train) & (rows["protocol"] == protocol)]
    if rows.empty:
        return pd.DataFrame()
    return rows.pivot_table(index="regime", columns="test", values=metric, sort=False)[
        [t for t in TEST_DOMAINS if t in set(rows["test"])]]


def seed_spread(results: Mapping[str, Mapping[str, Any]], scorer: str = "critic") -> pd.DataFrame:
    """Per cell of the poster's rows: mean Best over the critic's training seeds, the
    lowest and highest seed, and (column ``best_ensemble``, when stored) the Best of the
    seeds' critics as one scorer (:data:`ENSEMBLE`)."""
    all_rows = transfer_rows(results)
    keys = ["train", "regime", "protocol", "test"]
    cols = [*keys, "best", "best_seed_min", "best_seed_max", "n_seeds"]
    rows = all_rows[(all_rows["scorer"] == scorer) & all_rows["regime"].isin(REGIMES)]
    rows = rows[[c for c in cols if c in rows]].reset_index(drop=True)
    ensemble = all_rows[all_rows["scorer"] == ENSEMBLE] if len(all_rows) else all_rows
    if scorer == "critic" and len(ensemble) and len(rows):
        rows = rows.merge(ensemble[keys + ["best"]].rename(columns={"best": "best_ensemble"}), on=keys, how="left")
    return rows


def candidate_difficulty(results: Mapping[str, Mapping[str, Any]], name: str = "transfer",
                         regime: str = "standard", scorer: str = "critic") -> pd.DataFrame:
    """Per candidate kind: its mean agreement with the truth (ARI, per test domain's own
    features) and how often it was the top negative above the truth for the critic
    (every training seed, standard regime, both protocols pooled), closest to the truth
    first."""
    metrics = transfer_result(results, name)
    kinds = pd.DataFrame(metrics.get("kind_agreement", []))
    ranks = pd.DataFrame(metrics.get("ranks", []))
    if kinds.empty:
        return pd.DataFrame()
    ari_table = kinds[kinds["features_from"] == kinds["test"]].pivot_table(index="kind", columns="test", values="ari")
    if not ranks.empty:
        mine = ranks[(ranks.scorer == scorer) & (ranks.regime == regime)]
        top = mine["top_kind"].dropna().value_counts()
        ari_table["top negative (problems)"] = top.reindex(ari_table.index).fillna(0).astype(int)
    near = set(metrics.get("near_truth_kinds", []))
    ari_table["near truth"] = ["yes" if k in near else "" for k in ari_table.index]
    return ari_table.sort_values(ari_table.columns[0], ascending=False)


def top_negative_counts(results: Mapping[str, Mapping[str, Any]], name: str = "transfer",
                        regime: str = "standard", scorer: str = "critic",
                        order: Sequence[str] | None = None) -> pd.DataFrame:
    """How often each candidate kind was the top negative above the truth, per transfer
    direction (columns ``"Train → Test"``; every training seed and both protocols pooled),
    kinds in ``order`` (default: :func:`candidate_difficulty`'s, closest to the truth
    first; pass its index when it is already computed), others after. Empty when nothing
    is stored."""
    ranks = pd.DataFrame(transfer_result(results, name).get("ranks", []))
    if ranks.empty:
        return pd.DataFrame()
    beaten = ranks[(ranks.scorer == scorer) & (ranks.regime == regime)].dropna(subset=["top_kind"])
    if beaten.empty:
        return pd.DataFrame()
    counts = pd.crosstab(beaten.top_kind, beaten.train.str.capitalize() + " → " + beaten.test.str.capitalize(),
                         rownames=["top negative"], colnames=["trained on → tested on"])
    if order is None:
        order = candidate_difficulty(results, name, regime, scorer).index
    return counts.loc[[k for k in order if k in counts.index] + [k for k in counts.index if k not in set(order)]]


def format_clustering_summary(summary: pd.DataFrame, by: str = "domain") -> pd.DataFrame:
    """A summary of :func:`tdml_lib.experiments.clustering.summarise` as the book prints
    it: mean ACC and NMI with their bootstrap intervals, and the share of problems where
    the true K was found with its Wilson interval (percent), in few columns."""
    def est(row: Mapping[str, Any], col: str, scale: float = 1.0, digits: int = 2) -> str:
        low, high = row.get(f"{col}_low"), row.get(f"{col}_high")
        interval = None if low is None or high is None or np.isnan(low) else (scale * low, scale * high)
        return format_estimate(scale * row[col], interval, digits)

    rows = [{by: r[by], "method": r["method"], "problems": int(r["n_problems"]), "ACC": est(r, "acc"),
             "NMI": est(r, "nmi"), "true K found (%)": est(r, "k_exact", 100.0, 0)}
            for r in summary.to_dict(orient="records")]
    return pd.DataFrame(rows)


TRAINING_LABELS = {"leave_one_out": "the other families", "all_families": "all six families",
                   DEFAULT_REWARD_TRAINING: "the default reward",
                   SHIPPED_CRITIC_TRAINING: "its Numbers critic alone"}
"""How tables name the rewards compared on the synthetic families: the critics' training
protocols (``SYNTHETIC_TRAINING``), the default reward (``load_reward()``: its Numbers
critic for one half and the three shipped synthetic critics for one sixth each) and that
Numbers critic alone."""
DOMAIN_REWARD = "the default reward"
"""How :func:`choosing_k_table` names the agent's reward on the domains' test problems."""
ENSEMBLE_K_FOUND = AGENT_ENSEMBLE_K_FOUND
"""The method name of the agent whose reward averages the critic seeds (:mod:`tdml_lib.methods`)."""


def _over_seeds(row: Mapping[str, Any], col: str, scale: float, digits: int) -> str:
    """The mean over critic seeds with the lowest and highest seed in brackets (the mean
    alone with one seed, or when every seed gives the same value)."""
    low, high = scale * row[f"{col}_min"], scale * row[f"{col}_max"]
    spread = (low, high) if row["n_seeds"] > 1 and high > low else None
    return format_estimate(scale * row[col], spread, digits)


PROTOCOL_VALUES = {"k_exact": ("true K found (%)", 100.0, 0), "acc": ("ACC", 1.0, 2)}
"""What :func:`format_protocol_summary` can show: column -> (name, scale, digits)."""


def format_protocol_summary(summary: pd.DataFrame, value: str = "k_exact") -> pd.DataFrame:
    """A summary of :func:`tdml_lib.experiments.protocol_summary` as the book prints it:
    one row per family and method, one column per reward (training protocol, default
    reward, its Numbers critic alone), each cell ``value`` (``"k_exact"``: the true K found,
    %; ``"acc"``: the mean ACC) as the mean over critic seeds with the lowest and highest
    seed in brackets; empty where that reward did not run that method. One value per
    table keeps it narrow enough for the page with four rewards."""
    if value not in PROTOCOL_VALUES:
        raise ValueError(f"value must be one of {sorted(PROTOCOL_VALUES)}, got {value!r}.")
    name, scale, digits = PROTOCOL_VALUES[value]
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for r in summary.to_dict(orient="records"):
        row = rows.setdefault((r["family"].replace("_", " "), r["method"]), {})
        row[TRAINING_LABELS.get(r["training"], r["training"])] = _over_seeds(r, value, scale, digits)
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("")
    # each family's methods together (an ensemble's rows come after every seed's)
    families = list(dict.fromkeys(family for family, _ in table.index))
    table = table.loc[sorted(table.index, key=lambda fm: families.index(fm[0]))]
    table.index = pd.MultiIndex.from_tuples(table.index, names=["family", "method"])
    table.columns.name = f"{name}, by reward"
    return table


def protocol_comparison(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One sentence from the stored clustering run: on how many synthetic families the
    critics trained on all six families let the agent find the true K more often (mean
    over critic seeds) than the critics that never saw the family; ``""`` when the run
    lacks either protocol."""
    res = results.get("clustering")
    summary = pd.DataFrame((res or {}).get("metrics", {}).get("synthetic_protocols") or [])
    if not len(summary) or not {"leave_one_out", "all_families"} <= set(summary.training):
        return ""
    agent = summary[summary.method == AGENT_K_FOUND]
    found = agent.pivot_table(index="family", columns="training", values="k_exact")
    more = int((found.all_families > found.leave_one_out).sum())
    return (f"Trained on all six families, the critics let the agent find the true K more often than the "
            f"critics that never saw the family on {more} of {len(found)} synthetic families (mean over "
            "critic seeds).")


def choosing_k_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """How often the methods that choose K found the true K, from the stored clustering
    run: on the domains' test problems (the default reward as the agent's reward) and on
    the synthetic families (critics trained on the other families or on all of them;
    mean over critic seeds with the seed range; where the run has it, the agent with the
    mean of those critics as one reward; and the one-run rewards, the default reward and
    its Numbers critic alone), beside k-means with K chosen by silhouette. Empty when the
    clustering run is missing."""
    res = results.get("clustering")
    if not res or res.get("status") != "ok":
        return pd.DataFrame()
    metrics = res["metrics"]
    rows = []
    domains = pd.DataFrame(metrics.get("clustering") or [])
    for dataset in CLUSTERING_DATASETS:
        part = domains[domains.dataset == dataset].set_index("method") if len(domains) else pd.DataFrame()
        if {"agent", "kmeans_silhouette_k"} <= set(part.index):
            rows.append({"problems": dataset, "agent's reward": DOMAIN_REWARD,
                         AGENT_K_FOUND: format_estimate(100 * part.loc["agent", "k_exact"]),
                         ENSEMBLE_K_FOUND: "",
                         KMEANS_SILHOUETTE: format_estimate(100 * part.loc["kmeans_silhouette_k", "k_exact"]),
                         "problems × seeds": f"{int(part.loc['agent', 'n_problems'])} × 1"})
    summary = pd.DataFrame(metrics.get("synthetic_protocols") or [])
    for (training, family), part in (summary.groupby(["training", "family"], sort=False) if len(summary) else []):
        by = part.set_index("method")
        one_run = training in ONE_RUN_REWARDS
        cell = {m: _over_seeds(by.loc[m], "k_exact", 100.0, 0) if m in by.index else NOT_RUN
                for m in (AGENT_K_FOUND, ENSEMBLE_K_FOUND, KMEANS_SILHOUETTE)}
        if one_run:  # a given reward: no seeds to average into an ensemble
            cell[ENSEMBLE_K_FOUND] = ""
        rows.append({"problems": family.replace("_", " "),
                     "agent's reward": TRAINING_LABELS[training] if one_run else
                     f"critic trained on {TRAINING_LABELS.get(training, training)}", **cell,
                     "problems × seeds": f"{int(by.n_problems.max())} × {int(by.n_seeds.max())}"})
    return pd.DataFrame(rows)
