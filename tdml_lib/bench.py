"""Performance measurements (chapter 9, ``python -m tdml_lib bench``).

Timings on shared machines are noisy, so the book reports *ratios measured in one run*
(batched vs one-by-one, critic vs ``silhouette_score``) beside absolute numbers, with the
device recorded.
"""
from __future__ import annotations

import time
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
