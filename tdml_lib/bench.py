"""Performance measurements (chapter 9, ``python -m tdml_lib bench``).

Timings on shared machines are noisy, so the book reports *ratios measured in one run*
(batched vs one-by-one, critic vs ``silhouette_score``) beside absolute numbers, with the
device recorded.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

#: Where ``python -m tdml_lib bench`` writes unless ``--out`` says otherwise: never over
#: the stored results (``results/benchmarks/``), which only an explicit ``--out`` replaces.
DEFAULT_OUT = "runs/benchmarks"
#: The stored benchmarks of the book (in a clone; absent from an installed package).
STORED_DIR = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def random_clusterings(n_points: int, batch: int, n_clusters: int = 10, seed: int = 0,
                       n_features: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian point set and ``batch`` clusterings of it (k-means-like by proximity
    to random centres, then relabelled at random for a share of points)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_points, n_features)).astype(np.float32)
    centres = X[rng.choice(n_points, size=n_clusters, replace=False)]
    base = ((X[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    labs = np.repeat(base[None], batch, axis=0)
    noise = rng.random(labs.shape) < rng.uniform(0, 0.3, size=(batch, 1))
    labs[noise] = rng.integers(0, n_clusters, size=int(noise.sum()))
    return X, labs


def embedding_throughput(embedder: Any, n_points: int = 1000, batch: int = 64, repeats: int = 3,
                         one_by_one: int = 8, seed: int = 0) -> dict[str, float]:
    """Clusterings embedded per second: batched (one call, kNN reused) vs one-by-one
    (a call per clustering, as a user's loop over ``embed`` does)."""
    X, labs = random_clusterings(n_points, batch, seed=seed)
    ps = embedder.prepare(X)
    t_batch = _best_time(lambda: embedder.embed_many(X, labs, point_set=ps), repeats)
    m = min(one_by_one, batch)
    t_one = _best_time(lambda: [embedder.embed(X, labs[i]) for i in range(m)], 1) / m
    return {"n_points": n_points, "batch": batch, "batched_per_s": batch / t_batch,
            "one_by_one_per_s": 1.0 / t_one, "speedup": (batch / t_batch) * t_one,
            "device": str(embedder.device)}


class PeakRSS:
    """Peak resident memory (MB) of this process and all its children (Jupyter kernels,
    ``jupyter-book``), sampled every ``interval_s`` by a background thread (psutil)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        import threading

        self.interval_s, self.peak_mb = interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _measure(self) -> None:
        import psutil

        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:  # a child ended between listing and reading
                pass
        self.peak_mb = max(self.peak_mb, total / 2**20)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._measure()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._measure()  # a block shorter than the thread's start-up still gets a sample


class PeakMemory:
    """Peak memory (MB, in ``.mb``) while the block runs: on a GPU the CUDA max allocated
    (its counter reset on entry), on a CPU the peak RSS of this process and its children
    (:class:`PeakRSS`), so each benchmark case reports its own peak."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mb = device, 0.0
        self._rss = PeakRSS(interval_s=0.05) if device.type != "cuda" else None

    def __enter__(self) -> "PeakMemory":
        if self._rss is None:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rss is None:
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._rss.__exit__(*exc)
            self.mb = self._rss.peak_mb


def silhouette_rate(n_points: int, labelings: int = 4, repeats: int = 3, seed: int = 0) -> float:
    """scikit-learn's ``silhouette_score`` on ``labelings`` random clusterings of an
    ``n_points`` problem, in clusterings per second: the best of ``repeats`` passes.

    It does not depend on how many clusterings the critic scores at once, so
    :func:`run_benchmarks` measures it once per problem size and every batch row shares
    it (timed per row, one pass each, it scattered by a third across the rows of one
    size)."""
    from sklearn.metrics import silhouette_score

    X, labs = random_clusterings(n_points, labelings, seed=seed)
    return labelings / _best_time(lambda: [silhouette_score(X, lab) for lab in labs], repeats)


def scoring_case(critic: Any, n_points: int, batch: int, one_by_one: int = 4, silhouette: int = 4,
                 precision: str = "fp32", seed: int = 0,
                 silhouette_per_s: float | None = None) -> dict[str, Any]:
    """Clusterings scored per second for one (n_points, batch) case: the critic batched
    (``score_many``, one kNN), the critic one-by-one (``score`` in a loop, as a user would),
    and scikit-learn's ``silhouette_score`` in a loop, the reference a user would pick.

    ``silhouette_per_s``: that reference measured already for this problem size
    (:func:`silhouette_rate`); without it, ``min(silhouette, batch)`` clusterings are
    timed once here."""
    device = critic.device
    X, labs = random_clusterings(n_points, batch, seed=seed)
    critic.score_many(X, labs[:1])                                      # warm-up
    t_batch = _best_time(lambda: critic.score_many(X, labs, precision=precision), 2 if batch <= 64 else 1)
    m1 = min(one_by_one, batch)
    t_one = _best_time(lambda: [critic.score(X, labs[i]) for i in range(m1)], 1) / m1
    if silhouette_per_s is None:
        silhouette_per_s = silhouette_rate(n_points, min(silhouette, batch), repeats=1, seed=seed)
    t_sil = 1 / silhouette_per_s
    # memory in a pass of its own: the RSS sampler must not share the cores being timed
    with PeakMemory(device) as memory:
        critic.score_many(X, labs, precision=precision)
    return {"n_points": n_points, "batch": batch, "precision": precision, "device": str(device),
            "batched_per_s": batch / t_batch, "one_by_one_per_s": 1 / t_one, "silhouette_per_s": 1 / t_sil,
            "batched_vs_one_by_one": (batch / t_batch) * t_one, "batched_vs_silhouette": (batch / t_batch) * t_sil,
            "peak_memory_mb": memory.mb}


def agent_case(critic: Any, n_points: int, generations: int = 20, population_size: int = 48,
               seed: int = 0) -> dict[str, Any]:
    """Wall time of the agent clustering an n-point problem (blobs in 32-D) with the critic."""
    from .agent import cluster
    from .problems import synthetic_problem

    p = synthetic_problem("blobs", n_clusters=8, points_per_class=n_points // 8, n_features=32, seed=seed)
    device = critic.device
    run = dict(reward=critic, generations=generations, population_size=population_size, seed=seed)
    t0 = time.perf_counter()
    res = cluster(p.X, **run)
    wall = time.perf_counter() - t0
    with PeakMemory(device) as memory:  # a second, untimed run (see scoring_case)
        cluster(p.X, **run)
    from .metrics import clustering_accuracy

    return {"n_points": p.n_points, "generations": generations, "population_size": population_size,
            "wall_s": wall, "acc": clustering_accuracy(p.labels, res.labels), "device": str(device),
            "peak_memory_mb": memory.mb}


def book_root() -> Path:
    """The clone's root (``_toc.yml``); chapter and book timings need the sources.

    Raises:
        FileNotFoundError: the library was installed without the book (not a clone).
    """
    from .runner import BOOK_DIR

    root = BOOK_DIR.parent
    if not (root / "_toc.yml").exists():
        raise FileNotFoundError("chapter and book timings need the book's sources: run "
                                "`python -m tdml_lib bench --book` inside a clone of the book.")
    return root


def chapter_cases(chapters: list[str] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Each chapter executed at its defaults (papermill, one after another, as a reader
    runs them): wall time and peak RSS of this process plus the kernel."""
    import tempfile

    from tqdm.auto import tqdm

    from .runner import run_chapter, toc_files

    root = book_root()
    if chapters is None:
        chapters = [d for d in toc_files(root) if (root / f"{d}.ipynb").exists()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="tdml-bench-") as tmp:
        for doc in tqdm(chapters, desc="chapters", disable=not progress):
            with PeakRSS() as mem:
                rec = run_chapter(root / f"{doc}.ipynb", out_dir=Path(tmp) / Path(doc).name,
                                  progress=False)
            rows.append({"chapter": Path(doc).name, "status": rec.status,
                         "wall_s": rec.wall_time, "peak_rss_mb": mem.peak_mb})
    return rows


def book_case(timeout_s: int = 3600) -> dict[str, Any]:
    """The whole book built from scratch (``jupyter-book build``, every chapter executed,
    into a fresh output folder so no cache is reused): wall time and peak RSS."""
    import subprocess
    import sys
    import tempfile

    root = book_root()
    jb = Path(sys.executable).parent / "jupyter-book"
    with tempfile.TemporaryDirectory(prefix="tdml-bench-book-") as tmp:
        cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "--path-output", tmp]
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "peak_rss_mb": mem.peak_mb,
            "status": "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})",
            "command": "jupyter-book build . (fresh output folder, every chapter executed)"}


def cpu_busy_warning(load_average: float | None = None, cpu_count: int | None = None) -> str | None:
    """A warning when other processes hold the CPU, or None.

    Timings taken beside another job are not the machine's: two jobs on two cores, each
    with its own OpenMP threads, slowed batched scoring up to 37x in this book's runs.
    The one-minute load average (``os.getloadavg``) at half the core count or more means
    at least one busy process per two cores before the benchmark starts.
    """
    import os

    load = os.getloadavg()[0] if load_average is None else load_average
    cores = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    if load < 0.5 * cores:
        return None
    return (f"the CPU is busy (1-minute load average {load:.1f} on {cores} cores) before the benchmark: "
            "its timings will be slower than the machine's. Run it alone (stop other jobs) before storing them.")


def load_summary(provenance: dict[str, Any]) -> str:
    """How busy the machine was when a stored benchmark ran, in words, from the load
    average its provenance records (``""`` for a run that recorded none)."""
    load = provenance.get("load_average")
    if not load:
        return ""
    before, after = load["before"][0], load["after"][0]
    cores = provenance.get("host", {}).get("cpu_count") or 1
    # the benchmark's own threads add about one per core by its end, so half a core more
    # than that per core means another job ran beside it
    busy = cpu_busy_warning(before, cores) is not None or after >= 1.5 * cores
    return (f"load average {before:.1f} before, {after:.1f} after on {cores} cores"
            + (" (busy: other processes held the CPU, so these timings understate the machine)" if busy else ""))


def _with_load(out: dict[str, Any], load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Record the load average before and after a benchmark in its provenance."""
    import os

    out["provenance"]["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    return out


def run_benchmarks(critic: Any = None, sizes: tuple[int, ...] = (256, 1000, 10000),
                   batches: tuple[int, ...] = (1, 64, 1024), agent_sizes: tuple[int, ...] = (1000, 10000),
                   agent_generations: int = 20, precisions: tuple[str, ...] = ("fp32",),
                   progress: bool = True, load_before: tuple[float, ...] | None = None) -> dict[str, Any]:
    """All scoring and agent cases; returns {"scoring": [...], "agent": [...], "provenance": {...}}.

    ``load_before``: the load average when the command started (default: now); a
    command that runs several benchmarks passes its own, since the first one's threads
    raise the load average the next one would measure."""
    from tqdm.auto import tqdm

    from .critic import load_critic
    from .io import provenance

    import os

    critic = critic or load_critic()
    load_before = load_before or os.getloadavg()
    cases = [(n, b, p) for n in sizes for b in batches for p in precisions]
    silhouette = {n: silhouette_rate(n) for n in tqdm(sizes, desc="silhouette", disable=not progress)}
    scoring = [scoring_case(critic, n, b, precision=p, silhouette_per_s=silhouette[n])
               for n, b, p in tqdm(cases, desc="scoring", disable=not progress)]
    agent = [agent_case(critic, n, generations=agent_generations)
             for n in tqdm(agent_sizes, desc="agent", disable=not progress)]
    params = {"sizes": list(sizes), "batches": list(batches), "agent_sizes": list(agent_sizes),
              "agent_generations": agent_generations, "precisions": list(precisions)}
    return _with_load({"scoring": scoring, "agent": agent,
                       "provenance": provenance(params=params, device=str(critic.device))}, load_before)


def run_book_benchmarks(progress: bool = True, load_before: tuple[float, ...] | None = None) -> dict[str, Any]:
    """Chapter timings and the whole book build; ``{"chapters", "book", "provenance"}``
    (``load_before`` as for :func:`run_benchmarks`)."""
    import os

    from .io import provenance

    load_before = load_before or os.getloadavg()
    chapters = chapter_cases(progress=progress)
    # provenance records the host (cpu_count) and, with device=None, the device in use
    return _with_load({"chapters": chapters, "book": book_case(), "provenance": provenance()}, load_before)


# --- limits (book/limits.md) -----------------------------------------------------------------

#: kNN grid of the limits benchmark: points, dimensions, methods.
KNN_SIZES = (4096, 10_000, 70_000, 200_000)
KNN_DIMS = (2, 8, 10, 32)
KNN_COMPARED = ("cdist", "kd_tree", "ball_tree", "brute")
#: Bytes per element of a pass (:data:`tdml_lib.graphs.MAX_ELEMENTS_PER_PASS`) assumed
#: by the stated memory bound; measured below in :func:`memory_case`.
BYTES_PER_ELEMENT = 16
#: The stated bound on what one ``score_many`` call adds to the process's memory
#: (peak RSS during the call minus RSS before it): two passes' worth of the budget
#: (one pass and the allocator's slack) plus 256 MB for the kNN search and the label
#: arrays: ``2 * 16 B * 2**24 + 256 MB`` = 768 MB, for any K, as long as one clustering
#: fits the budget (n * (K + 48) <= 2**24).
SCORE_MEMORY_BOUND_MB = 2 * BYTES_PER_ELEMENT * 2 ** 24 / 2 ** 20 + 256


def _time_knn(X: np.ndarray, k: int, method: str) -> float:
    from .graphs import _knn_cdist, _knn_sklearn

    t0 = time.perf_counter()
    if method == "cdist":
        _knn_cdist(torch.as_tensor(X), k)
    else:
        _knn_sklearn(X, k, method)
    return time.perf_counter() - t0


def knn_cases(sizes: tuple[int, ...] = KNN_SIZES, dims: tuple[int, ...] = KNN_DIMS,
              methods: tuple[str, ...] = KNN_COMPARED, k: int = 10, skip_s: float = 60.0,
              extra: tuple[tuple[int, int], ...] = ((1_000_000, 2),), seed: int = 0,
              progress: bool = True) -> list[dict[str, Any]]:
    """Wall time of each exact kNN search on Gaussian points (float32, the worst case
    for trees: no low-dimensional structure), one row per (n, d, method).

    A method is skipped at a size where its time at the previous size, scaled by
    (n / n_prev)**2, predicts more than ``skip_s`` seconds (the row says so, with the
    prediction), except the method ``knn_graph`` picks (``"auto"``), which always runs.
    ``extra`` adds (n, d) cases run with the picked method only (the largest point set).
    """
    from tqdm.auto import tqdm

    from .graphs import choose_knn_method

    rows: list[dict[str, Any]] = []
    last: dict[tuple[int, str], tuple[int, float]] = {}
    cases = [(n, d, m) for n in sizes for d in dims for m in methods]
    cases += [(n, d, choose_knn_method(n, d)) for n, d in extra]
    rng = np.random.default_rng(seed)
    warm = rng.normal(size=(200, 2)).astype(np.float32)
    for method in set(methods) | {m for _, _, m in cases}:
        _time_knn(warm, k, method)      # imports and thread pools start outside the timings
    data: dict[tuple[int, int], np.ndarray] = {}
    for n, d, method in tqdm(cases, desc="kNN", disable=not progress):
        if (n, d) not in data:
            data.clear()
            data[(n, d)] = rng.normal(size=(n, d)).astype(np.float32)
        chosen = choose_knn_method(n, d)
        row: dict[str, Any] = {"n_points": n, "n_features": d, "method": method, "chosen": method == chosen}
        prev = last.get((d, method))
        predicted = prev[1] * (n / prev[0]) ** 2 if prev else 0.0
        if method != chosen and predicted > skip_s:
            row.update(wall_s=None, status=f"skipped: predicted {predicted:.0f} s")
        else:
            wall = _time_knn(data[(n, d)], k, method)
            last[(d, method)] = (n, wall)
            row.update(wall_s=wall, status="ok")
        rows.append(row)
    return rows


def memory_case(critic: Any, n_points: int, n_clusters: int, batch: int, n_features: int = 32,
                seed: int = 0) -> dict[str, Any]:
    """Peak memory of one ``score_many`` call on ``batch`` clusterings of ``n_points``
    Gaussian points into ``n_clusters`` clusters (``n_clusters = n_points``: one
    cluster per point, each clustering a random permutation), kNN search included.

    Reports the RSS before the call and the peak during it (CPU; on a GPU the CUDA
    peak), the passes :func:`tdml_lib.graphs.pass_slices` made and whether the rise
    stayed under :data:`SCORE_MEMORY_BOUND_MB`.
    """
    import gc

    import psutil

    from .graphs import MAX_ELEMENTS_PER_PASS, PASS_NODE_WIDTH, pass_slices

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_points, n_features)).astype(np.float32)
    if n_clusters == n_points:
        labs = np.stack([rng.permutation(n_points) for _ in range(batch)])
    else:
        labs = np.stack([rng.permutation(np.arange(n_points) % n_clusters) for _ in range(batch)])
    from .validation import canonical_labels

    labs = np.stack([canonical_labels(lab) for lab in labs])
    passes = len(pass_slices(labs, n_points))
    gc.collect()
    device = critic.device
    before = psutil.Process().memory_info().rss / 2 ** 20 if device.type != "cuda" else 0.0
    t0 = time.perf_counter()
    with PeakMemory(device) as memory:
        critic.score_many(X, labs)
    wall = time.perf_counter() - t0
    rise = memory.mb - before
    per_clustering = n_points * (n_clusters + PASS_NODE_WIDTH)
    return {"n_points": n_points, "n_clusters": n_clusters, "batch": batch, "n_features": n_features,
            "passes": passes, "elements_per_clustering": per_clustering,
            "fits_budget": per_clustering <= MAX_ELEMENTS_PER_PASS, "wall_s": wall,
            "rss_before_mb": before, "peak_mb": memory.mb, "rise_mb": rise,
            "bound_mb": SCORE_MEMORY_BOUND_MB, "within_bound": bool(rise <= SCORE_MEMORY_BOUND_MB),
            "device": str(device)}


def precision_cases(critic: Any, seed: int = 1) -> list[dict[str, Any]]:
    """The dynamic range the library handles: the same clusterings scored on a problem
    moved far from the origin, scaled to extreme magnitudes, given one outlier far from
    the rest, or stored in Fortran order; each row is the largest change of any score
    against the plain problem, or the error raised."""
    from .problems import synthetic_problem

    p = synthetic_problem("blobs", n_clusters=3, points_per_class=30, n_features=4, seed=seed)
    X = p.X.astype(np.float64)
    rng = np.random.default_rng(seed)
    labs = np.stack([p.labels, rng.permutation(p.labels), np.arange(p.n_points) % 5])
    base = critic.score_many(X, labs)
    spread = float(np.abs(X).max())

    def outlier(ratio: float) -> np.ndarray:
        Y = X.copy()
        Y[0] = ratio * spread
        return Y

    cases = [("offset 1e7", X + 1e7, True), ("offset 1e12", X + 1e12, True),
             ("scale 1e19", X * 1e19, True), ("scale 1e-30", X * 1e-30, True),
             ("scale 1e300", X * 1e300, True), ("scale 1e-300", X * 1e-300, True)]
    cases += [(f"one outlier at {r:.0e} x the spread", outlier(r), False) for r in (1e3, 1e5, 1e7, 1e9)]
    rows = []
    for name, Y, comparable in cases:
        try:
            s = critic.score_many(Y, labs)
            row = {"case": name, "status": "ok",
                   "max_score_change": float(np.abs(s - base).max()) if comparable else None}
        except ValueError as exc:
            row = {"case": name, "status": "ValueError", "message": str(exc)}
        rows.append(row)
    Y = outlier(1e5)
    c_order = critic.score_many(np.ascontiguousarray(Y), labs)
    f_order = critic.score_many(np.asfortranarray(Y), labs)
    rows.append({"case": "one outlier at 1e+05: C vs Fortran order", "status": "ok",
                 "max_score_change": float(np.abs(c_order - f_order).max())})
    return rows


def checkpoint_limits() -> dict[str, Any]:
    """Sizes a saved critic may have, and the size of the shipped one."""
    from .critic import MAX_HIDDEN, PRETRAINED_PATH
    from .gae import MAX_K, MAX_WIDTH
    from .io import MAX_LOAD_BYTES

    return {"shipped_critic_bytes": PRETRAINED_PATH.stat().st_size if PRETRAINED_PATH.exists() else None,
            "max_critic_hidden": MAX_HIDDEN, "max_gcn_width": MAX_WIDTH, "max_k": MAX_K,
            "max_file_bytes": MAX_LOAD_BYTES}


def limit_parameters() -> dict[str, Any]:
    """The documented limits as the library holds them (module constants)."""
    from . import graphs, validation

    return {name: getattr(graphs, name) for name in
            ("MAX_ELEMENTS_PER_PASS", "PASS_NODE_WIDTH", "MAX_POINTS", "TREE_MAX_DIM", "BRUTE_MIN_DIM",
             "MAX_KNN_WORK", "CDIST_MAX_POINTS")} | {"MAX_MERGED_SHARE": validation.MAX_MERGED_SHARE,
                                     "SCORE_MEMORY_BOUND_MB": SCORE_MEMORY_BOUND_MB}


def run_limits(critic: Any = None, knn: bool = True, progress: bool = True,
               memory: tuple[tuple[int, int, int], ...] = ((4000, 4000, 40), (200_000, 10, 4)),
               load_before: tuple[float, ...] | None = None) -> dict[str, Any]:
    """Everything ``book/limits.md`` shows: kNN timings, peak memory of ``score_many``
    (``memory``: (n, K, batch) cases), the dynamic range, checkpoint sizes, with
    provenance (and the machine's load average, since the machine may be shared)."""
    import os

    from .critic import load_critic
    from .io import provenance

    critic = critic or load_critic()
    load_before = load_before or os.getloadavg()
    out = {"parameters": limit_parameters(), "checkpoints": checkpoint_limits(),
           "precision": precision_cases(critic),
           "memory": [memory_case(critic, n, k, b) for n, k, b in memory],
           "knn": knn_cases(progress=progress) if knn else []}
    out["provenance"] = provenance(params={"memory": [list(m) for m in memory], "knn": knn},
                                   device=str(critic.device))
    return _with_load(out, load_before)


def stored_limits(path: str | Path | None = None) -> dict[str, Any] | None:
    """The stored limits benchmark (``results/benchmarks/limits_cpu.json``), or None
    when absent (a package installed without the book's results)."""
    import json

    path = Path(path) if path is not None else STORED_DIR / "limits_cpu.json"
    return json.loads(path.read_text()) if path.exists() else None


def limits_tables(limits: dict[str, Any]) -> dict[str, Any]:
    """The tables of ``book/limits.md`` from a limits record (:func:`run_limits`):
    ``knn`` (seconds, n x method per dimension), ``memory``, ``precision``."""
    import pandas as pd

    knn = pd.DataFrame(limits["knn"])
    if len(knn):
        knn["seconds"] = [s if pd.isna(w) else f"{w:.2f}" + (" (auto)" if c else "")
                          for w, c, s in zip(knn["wall_s"], knn["chosen"], knn["status"])]
        knn = knn.pivot_table(index=["n_features", "n_points"], columns="method", values="seconds",
                              aggfunc="first").fillna("")
    memory = pd.DataFrame(limits["memory"])
    if len(memory):
        # the columns that fit the book's column; the stored file keeps the others
        memory = memory[["n_points", "n_clusters", "batch", "passes", "wall_s", "rise_mb", "bound_mb",
                         "within_bound"]].round(1).rename(columns={
            "n_points": "n", "n_clusters": "K", "batch": "clusterings", "wall_s": "seconds",
            "rise_mb": "rise (MB)", "bound_mb": "bound (MB)", "within_bound": "within"})
    precision = pd.DataFrame(limits["precision"])
    if "message" in precision:
        precision["message"] = precision["message"].fillna("").str.slice(0, 90)
    if "max_score_change" in precision:
        # two significant digits: the changes span 0 to about 1e-1, and a fixed six
        # decimals would print 3e-5 as 0.000031 and a change below 5e-7 as 0
        precision["max_score_change"] = [f"{v:.2g}" if pd.notna(v) else "" for v in precision["max_score_change"]]
    return {"knn": knn, "memory": memory, "precision": precision.fillna("")}


def limits_summary(limits: dict[str, Any]) -> Any:
    """One row per documented limit: the library's value, what the stored benchmark
    measured about it, and the function of this module that measured it (called by
    ``python -m tdml_lib bench --limits-only``; shown in ``book/limits.md``)."""
    import pandas as pd

    par, ck = limits["parameters"], limits["checkpoints"]
    knn = pd.DataFrame(limits["knn"])

    def knn_time(n: int, d: int) -> str:
        row = knn[(knn.n_points == n) & (knn.n_features == d) & knn.chosen] if len(knn) else knn
        if not len(row) or pd.isna(row.wall_s.iloc[0]):
            return "not measured"
        return f"{row.wall_s.iloc[0]:.1f} s ({row.method.iloc[0]}) for {n:,} points in {d}-D"

    from .graphs import knn_work

    big = knn[knn.chosen & knn.wall_s.notna()].sort_values("n_points").iloc[-1] if len(knn) else None
    # each picked search at its largest measured size, scaled to the work limit
    work_rows = []
    if len(knn):
        picked = knn[knn.chosen & knn.wall_s.notna()]
        for d, rows in picked.groupby("n_features"):
            r = rows.sort_values("n_points").iloc[-1]
            work = knn_work(int(r.n_points), int(d), r.method)
            work_rows.append((r.wall_s * par["MAX_KNN_WORK"] / work, r))
    if work_rows:
        at_limit, r = max(work_rows, key=lambda t: t[0])
        work_text = (f"slowest picked search: {r.wall_s:.0f} s for {r.n_points:,} points in {r.n_features}-D "
                     f"({r.method}); scaled to the limit about {at_limit / 60:.0f} min")
    else:
        work_text = "not measured"
    mem = pd.DataFrame(limits["memory"])
    mem_text = "; ".join(f"n = {r.n_points:,}, K = {r.n_clusters:,}, {r.batch} clusterings: +{r.rise_mb:.0f} MB "
                         f"in {r.passes} pass(es), {r.wall_s:.0f} s" for r in mem.itertuples())
    prec = pd.DataFrame(limits["precision"])
    exact = prec[prec.max_score_change.notna()] if "max_score_change" in prec else prec.iloc[:0]
    refused = prec[prec.status != "ok"]
    offset7 = exact[exact.case == "offset 1e7"].max_score_change
    scales = exact[exact.case.str.startswith("scale")]
    range_text = (f"largest score change: {float(offset7.iloc[0]):.1e} at an offset of 1e7, "
                  f"{scales.max_score_change.max():.1e} at scales 1e-300 to 1e300; "
                  f"refused: {', '.join(refused.case) or 'none'}")
    rows = [
        ("points per point set", f"MAX_POINTS = {par['MAX_POINTS']:,}",
         knn_time(int(big.n_points), int(big.n_features)) if big is not None else "not measured"),
        ("kNN work on a CPU", f"n**2 * d (tree) or n**2 * max(d, {par['BRUTE_MIN_DIM']}) (brute) <= MAX_KNN_WORK "
                              f"= {par['MAX_KNN_WORK']:.0e}", work_text),
        ("kNN method", f"cdist up to CDIST_MAX_POINTS = {par['CDIST_MAX_POINTS']:,} points, k-d tree up to "
                       f"TREE_MAX_DIM = {par['TREE_MAX_DIM']}, brute force above",
         f"{knn_time(70_000, 2)}; {knn_time(70_000, 32)}"),
        ("memory of one pass", f"MAX_ELEMENTS_PER_PASS = 2**{int(np.log2(par['MAX_ELEMENTS_PER_PASS']))} "
                               f"elements, B * n * (K + {par['PASS_NODE_WIDTH']}) each", mem_text),
        ("memory of one score_many call", f"at most +{par['SCORE_MEMORY_BOUND_MB']:.0f} MB",
         "within the bound in every case" if len(mem) and mem.within_bound.all() else "EXCEEDED in a case"),
        ("dynamic range", f"float32 cast may merge <= MAX_MERGED_SHARE = {par['MAX_MERGED_SHARE']:.0%} "
                          "of the distinct points", range_text),
        ("checkpoints", f"critic hidden <= {ck['max_critic_hidden']}, GCN width <= {ck['max_gcn_width']}, "
                        f"k <= {ck['max_k']}, file <= {ck['max_file_bytes'] / 2**30:.0f} GiB",
         f"shipped critic: {ck['shipped_critic_bytes'] / 1024:.0f} KB" if ck.get("shipped_critic_bytes")
         else "no shipped critic"),
    ]
    out = pd.DataFrame(rows, columns=["limit", "value in the library", "measured"])
    out["measured by"] = ["knn_cases", "knn_cases", "knn_cases", "memory_case", "memory_case",
                          "precision_cases", "checkpoint_limits"]
    out["measured by"] = "tdml_lib.bench." + out["measured by"]
    return out


# --- command line ----------------------------------------------------------------------------

def add_cli(sub: Any) -> None:
    import argparse

    from .validation import argparse_type, check_int

    size = argparse_type(check_int, "a size", 3)
    count = argparse_type(check_int, "a count", 1)
    p = sub.add_parser("bench", help="measure critic scoring throughput, agent wall time and the limits",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Performance benchmarks (chapter 9) and measured limits (book/limits.md). "
                                   f"Results go to {DEFAULT_OUT}/ unless --out names another folder; the "
                                   "stored results/benchmarks/ are only replaced with --out results/benchmarks.")
    p.add_argument("--sizes", type=size, nargs="+", default=[256, 1000, 10000],
                   help="points per problem of the scoring cases")
    p.add_argument("--batches", type=count, nargs="+", default=[1, 64, 1024],
                   help="clusterings scored per call in the scoring cases")
    p.add_argument("--agent-sizes", type=size, nargs="*", default=[1000, 10000],
                   help="points per problem of the agent cases (none: no agent case)")
    p.add_argument("--agent-generations", type=argparse_type(check_int, "--agent-generations", 0), default=20,
                   help="generations of each agent case")
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                   help="precisions of the scoring cases")
    p.add_argument("--book", action="store_true",
                   help="also time every chapter at its defaults and the whole book build")
    p.add_argument("--book-only", action="store_true",
                   help="only the chapter and book timings (bench_<device>_book.json)")
    p.add_argument("--limits", action="store_true",
                   help="also measure the limits of book/limits.md (limits_<device>.json; about 15 min on 2 cores)")
    p.add_argument("--limits-only", action="store_true", help="only the limits (limits_<device>.json)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default=DEFAULT_OUT, help="folder for the JSON and CSV files")
    p.set_defaults(func=_cli_bench)


def _cli_bench(args: Any) -> int:
    import shlex
    import sys

    import pandas as pd

    from .critic import load_critic
    from .device import resolve_device
    from .io import atomic_path, write_json

    command = "python -m tdml_lib " + shlex.join(sys.argv[1:])
    resolve_device(args.device)   # a bad --device fails before anything runs
    import os

    load_start = os.getloadavg()   # each file records the load at the command's start
    busy = cpu_busy_warning(load_start[0])
    if busy:
        print(f"warning: {busy}", file=sys.stderr)
    out = Path(args.out)
    only = args.book_only or args.limits_only
    if not only:
        critic = load_critic(device=args.device)
        res = run_benchmarks(critic, tuple(args.sizes), tuple(args.batches), tuple(args.agent_sizes),
                             args.agent_generations, tuple(args.precisions), load_before=load_start)
        res["provenance"]["command"] = command
        tag = critic.device.type
        write_json(out / f"bench_{tag}.json", res)
        with atomic_path(out / f"bench_{tag}_scoring.csv") as tmp:
            pd.DataFrame(res["scoring"]).to_csv(tmp, index=False)
        print(pd.DataFrame(res["scoring"]).round(2).to_string(index=False))
        if res["agent"]:
            print(pd.DataFrame(res["agent"]).round(2).to_string(index=False))
        print(f"written to {out}/bench_{tag}.json")
    if args.limits or args.limits_only:
        critic = load_critic(device=args.device)
        lim = run_limits(critic, load_before=load_start)
        lim["provenance"]["command"] = command
        tag = critic.device.type
        write_json(out / f"limits_{tag}.json", lim)
        for name, table in limits_tables(lim).items():
            print(f"--- {name}\n{table.to_string()}")
        print(f"written to {out}/limits_{tag}.json")
    if args.book or args.book_only:
        book = run_book_benchmarks(load_before=load_start)
        book["provenance"]["command"] = command
        tag = book["provenance"]["device"].split(":")[0]
        write_json(out / f"bench_{tag}_book.json", book)
        print(pd.DataFrame(book["chapters"]).round(1).to_string(index=False))
        print(f"whole book: {book['book']['wall_s']:.0f} s ({book['book']['status']}); "
              f"written to {out}/bench_{tag}_book.json")
    return 0
