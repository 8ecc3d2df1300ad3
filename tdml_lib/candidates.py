"""Near misses: seeded proposals that are *almost* the correct clustering.

Used twice: as the critic's training negatives (block C) and, with a fixed seed and
count, as the evaluation candidates of the poster's Best/Top-3 protocol (chapter 5).
Kinds (DESIGN.md "Critic"): label noise at several rates (points moved to their nearest
other cluster, the hardest case, or to a random one), the two closest clusters merged,
one cluster split in two (2-means), k-means and agglomerative (Ward) clusterings with
the right K and K-1, K+1, K+2 (scikit-learn), and random partitions. No candidate equals
the correct clustering (compared after canonical renaming).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans

from .problems import Problem
from .validation import canonical_labels, check_labels, check_points

NOISE_RATES = (0.02, 0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True)
class Candidate:
    """A proposed clustering and the kind of near miss it is."""

    labels: np.ndarray
    kind: str


def _centroids(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    K = labels.max() + 1
    return np.stack([X[labels == k].mean(0) for k in range(K)])


def label_noise(X: np.ndarray, labels: np.ndarray, rate: float, rng: np.random.Generator,
                nearest: bool = True) -> np.ndarray:
    """Move a share ``rate`` of the points to another cluster: the nearest other
    centroid's (``nearest=True``, hard) or a uniformly drawn one."""
    K = labels.max() + 1
    out = labels.copy()
    if K < 2:
        return out
    moved = np.flatnonzero(rng.random(len(labels)) < rate)
    if moved.size == 0:
        moved = rng.choice(len(labels), size=1)
    if nearest:
        d = ((X[moved, None, :] - _centroids(X, labels)[None]) ** 2).sum(-1)
        d[np.arange(moved.size), labels[moved]] = np.inf
        out[moved] = d.argmin(1)
    else:
        shift = rng.integers(1, K, size=moved.size)
        out[moved] = (labels[moved] + shift) % K
    return out


def merge_closest(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Merge the two clusters with the closest centroids."""
    c = _centroids(X, labels)
    if len(c) < 2:
        return labels.copy()
    d = ((c[:, None] - c[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    a, b = np.unravel_index(d.argmin(), d.shape)
    out = labels.copy()
    out[out == b] = a
    return canonical_labels(out)


def split_one(X: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Split one cluster (of at least 4 points, drawn at random) in two with 2-means."""
    counts = np.bincount(labels)
    eligible = np.flatnonzero(counts >= 4)
    if eligible.size == 0:
        return None
    c = rng.choice(eligible)
    idx = np.flatnonzero(labels == c)
    sub = KMeans(2, n_init=2, random_state=int(rng.integers(2**31))).fit_predict(X[idx])
    out = labels.copy()
    out[idx[sub == 1]] = labels.max() + 1
    return out


def kmeans_k(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return KMeans(k, n_init=3, random_state=int(rng.integers(2**31))).fit_predict(X)


def agglomerative_k(X: np.ndarray, k: int) -> np.ndarray:
    return AgglomerativeClustering(k, linkage="ward").fit_predict(X)


def random_partition(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, k, size=n)


def _generators(X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> list[tuple[str, Callable[[], np.ndarray | None]]]:
    n, K = len(y), int(y.max()) + 1
    gens: list[tuple[str, Callable[[], np.ndarray | None]]] = []
    for r in NOISE_RATES:
        gens.append((f"noise_nearest_{int(r * 100)}%", lambda r=r: label_noise(X, y, r, rng, nearest=True)))
        gens.append((f"noise_random_{int(r * 100)}%", lambda r=r: label_noise(X, y, r, rng, nearest=False)))
    gens.append(("merge", lambda: merge_closest(X, y)))
    gens.append(("split", lambda: split_one(X, y, rng)))
    for dk in (0, -1, 1, 2):
        k = K + dk
        if 2 <= k < n:
            gens.append((f"kmeans_K{dk:+d}" if dk else "kmeans_K", lambda k=k: kmeans_k(X, k, rng)))
            gens.append((f"agglomerative_K{dk:+d}" if dk else "agglomerative_K", lambda k=k: agglomerative_k(X, k)))
    gens.append(("random", lambda: random_partition(n, max(2, K), rng)))
    return gens


def near_misses(X: object, true_labels: object, n_candidates: int | None = None,
                kinds: Sequence[str] | None = None, seed: int = 0) -> list[Candidate]:
    """Seeded near misses of ``true_labels``, all different from it and from each other.

    Args:
        X: the point set (n, d).
        true_labels: the correct clustering.
        n_candidates: None = every kind once; a number = that many, kinds taken in a
            seeded round-robin so the mix stays balanced.
        kinds: restrict to kinds whose name starts with one of these prefixes.
        seed: the same seed gives the same candidates.
    """
    Xc = check_points(X)
    y = check_labels(true_labels, Xc.shape[0])
    rng = np.random.default_rng(seed)
    gens = _generators(Xc, y, rng)
    if kinds is not None:
        gens = [g for g in gens if any(g[0].startswith(k) for k in kinds)]
        if not gens:
            raise ValueError(f"no near-miss kind matches {list(kinds)}.")
    target = len(gens) if n_candidates is None else int(n_candidates)
    seen = {y.tobytes()}
    out: list[Candidate] = []
    order = list(rng.permutation(len(gens)))
    attempts = 0
    while len(out) < target and attempts < 20 * max(target, 1) + 50:
        kind, gen = gens[order[attempts % len(order)]]
        attempts += 1
        lab = gen()
        if lab is None:
            continue
        lab = canonical_labels(np.asarray(lab))
        key = lab.tobytes()
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(lab, kind))
    return out


def training_negatives(problem: Problem, n: int, seed: int = 0) -> np.ndarray:
    """``n`` near misses of a labelled problem as an array (n, n_points), for training."""
    cands = near_misses(problem.X, problem.labels, n_candidates=n, seed=seed)
    if not cands:
        raise ValueError("could not generate any near miss for this problem (is it tiny?).")
    return np.stack([c.labels for c in cands])


@dataclass
class CandidateSet:
    """A problem's fixed candidates: the correct clustering among ``n_negatives`` near misses."""

    problem: Problem
    labelings: np.ndarray
    kinds: list[str]
    correct_index: int


def candidate_set(problem: Problem, n_negatives: int = 19, seed: int = 0,
                  extra: Sequence[np.ndarray] | None = None) -> CandidateSet:
    """The correct clustering plus ``n_negatives`` near misses (and ``extra`` proposals,
    e.g. the agent's, kind ``"agent"``), in a seeded shuffled order."""
    cands = near_misses(problem.X, problem.labels, n_candidates=n_negatives, seed=seed)
    labs = [problem.labels] + [c.labels for c in cands]
    kinds = ["correct"] + [c.kind for c in cands]
    for e in extra or []:
        e = canonical_labels(check_labels(e, problem.n_points))
        if not any(np.array_equal(e, l) for l in labs):
            labs.append(e)
            kinds.append("agent")
    order = np.random.default_rng(seed + 1).permutation(len(labs))
    return CandidateSet(problem, np.stack([labs[i] for i in order]), [kinds[i] for i in order],
                        int(np.flatnonzero(order == 0)[0]))
