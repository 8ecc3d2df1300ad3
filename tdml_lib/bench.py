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


def scoring_case(critic: Any, n_points: int, batch: int, one_by_one: int = 4, silhouette: int = 4,
                 precision: str = "fp32", seed: int = 0) -> dict[str, Any]:
    """Clusterings scored per second for one (n_points, batch) case: the critic batched
    (``score_many``, one kNN), the critic one-by-one (``score`` in a loop, as a user would),
    and scikit-learn's ``silhouette_score`` in a loop, the reference a user would pick."""
    from sklearn.metrics import silhouette_score

    device = critic.device
    X, labs = random_clusterings(n_points, batch, seed=seed)
    critic.score_many(X, labs[:1])                                      # warm-up
    t_batch = _best_time(lambda: critic.score_many(X, labs, precision=precision), 2 if batch <= 64 else 1)
    m1, ms = min(one_by_one, batch), min(silhouette, batch)
    t_one = _best_time(lambda: [critic.score(X, labs[i]) for i in range(m1)], 1) / m1
    t_sil = _best_time(lambda: [silhouette_score(X, labs[i]) for i in range(ms)], 1) / ms
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


def run_benchmarks(critic: Any = None, sizes: tuple[int, ...] = (256, 1000, 10000),
                   batches: tuple[int, ...] = (1, 64, 1024), agent_sizes: tuple[int, ...] = (1000, 10000),
                   agent_generations: int = 20, precisions: tuple[str, ...] = ("fp32",),
                   progress: bool = True) -> dict[str, Any]:
    """All scoring and agent cases; returns {"scoring": [...], "agent": [...], "provenance": {...}}."""
    from tqdm.auto import tqdm

    from .critic import load_critic
    from .io import provenance

    critic = critic or load_critic()
    cases = [(n, b, p) for n in sizes for b in batches for p in precisions]
    scoring = [scoring_case(critic, n, b, precision=p)
               for n, b, p in tqdm(cases, desc="scoring", disable=not progress)]
    agent = [agent_case(critic, n, generations=agent_generations)
             for n in tqdm(agent_sizes, desc="agent", disable=not progress)]
    params = {"sizes": list(sizes), "batches": list(batches), "agent_sizes": list(agent_sizes),
              "agent_generations": agent_generations, "precisions": list(precisions)}
    return {"scoring": scoring, "agent": agent,
            "provenance": provenance(params=params, device=str(critic.device))}


def add_cli(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure critic scoring throughput and agent wall time")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1000, 10000])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    p.add_argument("--agent-sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--agent-generations", type=int, default=20)
    p.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--book", action="store_true",
                   help="also time every chapter at its defaults and the whole book build")
    p.add_argument("--book-only", action="store_true",
                   help="only the chapter and book timings (bench_<device>_book.json)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="results/benchmarks", help="folder for bench_<device>.json and .csv")
    p.set_defaults(func=_cli_bench)


def run_book_benchmarks(progress: bool = True) -> dict[str, Any]:
    """Chapter timings and the whole book build; ``{"chapters", "book", "provenance"}``."""
    from .io import provenance

    chapters = chapter_cases(progress=progress)
    # provenance records the host (cpu_count) and, with device=None, the device in use
    return {"chapters": chapters, "book": book_case(), "provenance": provenance()}


def _cli_bench(args: Any) -> int:
    import shlex
    import sys

    import pandas as pd

    from .critic import load_critic
    from .io import atomic_path, write_json

    command = "python -m tdml_lib " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    if not args.book_only:
        critic = load_critic(device=args.device)
        res = run_benchmarks(critic, tuple(args.sizes), tuple(args.batches), tuple(args.agent_sizes),
                             args.agent_generations, tuple(args.precisions))
        res["provenance"]["command"] = command
        tag = critic.device.type
        write_json(out / f"bench_{tag}.json", res)
        with atomic_path(out / f"bench_{tag}_scoring.csv") as tmp:
            pd.DataFrame(res["scoring"]).to_csv(tmp, index=False)
        print(pd.DataFrame(res["scoring"]).round(2).to_string(index=False))
        if res["agent"]:
            print(pd.DataFrame(res["agent"]).round(2).to_string(index=False))
        print(f"written to {out}/bench_{tag}.json")
    if args.book or args.book_only:
        book = run_book_benchmarks()
        book["provenance"]["command"] = command
        tag = book["provenance"]["device"].split(":")[0]
        write_json(out / f"bench_{tag}_book.json", book)
        print(pd.DataFrame(book["chapters"]).round(1).to_string(index=False))
        print(f"whole book: {book['book']['wall_s']:.0f} s ({book['book']['status']}); "
              f"written to {out}/bench_{tag}_book.json")
    return 0
