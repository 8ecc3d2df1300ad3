"""Near misses: wrong clusterings that look almost right, for training and evaluation.

The critic learns what a correct clustering looks like by contrast with *proposals*
(block C), and the poster's Best / Top-3 ranks the correct clustering among a
fixed set of them. Both need negatives that are hard: if every negative were a random
partition, silhouette would already rank the truth first and the evaluation would
measure nothing. This module generates, for any point set ``X`` and its correct
clustering, seeded near misses of these kinds:

* **label noise** at several rates: a fraction of points moved to another existing
  cluster, either to the cluster whose centroid is nearest the point (``nearest``),
  to a uniformly drawn other cluster (``uniform``), or, hardest of all, the most
  ambiguous points (closest to another centroid relative to their own) moved to that
  nearest cluster (``boundary``) — one step of k-means away from the truth;
* **merge** of the two clusters whose centroids are closest;
* **split** of one cluster in two (scikit-learn ``KMeans(2)`` on that cluster);
* **k-means** (scikit-learn) with the right K and with K-1, K+1, K+2;
* **agglomerative** (scikit-learn, Ward linkage) with the right K and K±1;
* **random** partitions with K clusters.

Every candidate is a canonical label vector (:func:`tdml_lib.validation.canonical_labels`),
differs from the truth and from every other candidate. Ground-truth labels are used
here only to *make negatives* (for training the critic and for the evaluation's fixed
candidate sets), never by a clustering method. Explained in chapter 3; the evaluation
sets of chapter 5 are built with :func:`candidate_set`.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .problems import Problem
from .validation import canonical_labels, check_labelings, check_labels, check_points

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

# --- helpers ---------------------------------------------------------------------------


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed!r}.")
    return int(seed)


def _centroids(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = int(labels.max()) + 1
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, X)
    return sums / np.bincount(labels, minlength=k)[:, None]


def _point_centroid_dist(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Euclidean distances (n, K) from every point to every centroid."""
    d2 = ((X.astype(np.float64) ** 2).sum(1)[:, None] - 2.0 * X @ centroids.T
          + (centroids ** 2).sum(1)[None, :])
    return np.sqrt(np.maximum(d2, 0.0))


@functools.lru_cache(maxsize=1)
def _thread_pools() -> "ThreadpoolController":
    """One threadpoolctl controller for the process. ``threadpool_limits(1)`` builds a
    new one per call, which scans every loaded library: profiled in a critic's training,
    that scan took 40 % of the time of its thousands of small k-means fits."""
    from sklearn.cluster import KMeans  # noqa: F401  (its OpenMP and BLAS are loaded first)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def kmeans_labels(X: np.ndarray, k: int, random_state: int, n_init: int = 2) -> np.ndarray:
    """scikit-learn KMeans on one BLAS thread (10x faster than oversubscribed threads on
    small problems, measured on a 2-core machine)."""
    from sklearn.cluster import KMeans

    with _thread_pools().limit(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on duplicate points
        return KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit_predict(X)


# --- the kinds -------------------------------------------------------------------------
# Each kind takes (X, labels, rng, context) and returns a label vector or None when it
# does not apply to this problem (e.g. a split when every cluster has one point).


@dataclass
class _Context:
    """Quantities of one (X, truth) pair shared by all kinds, computed once."""

    X: np.ndarray
    labels: np.ndarray
    k: int
    _dist: np.ndarray | None = field(default=None, repr=False)

    @property
    def dist(self) -> np.ndarray:
        """(n, K) distances from each point to each true centroid."""
        if self._dist is None:
            self._dist = _point_centroid_dist(self.X, _centroids(self.X, self.labels))
        return self._dist

    def nearest_other(self) -> tuple[np.ndarray, np.ndarray]:
        """Per point: the nearest centroid other than its own, and the margin
        ``d(own) - d(nearest other)`` (larger = more ambiguous)."""
        d = self.dist.copy()
        n = len(self.labels)
        own = d[np.arange(n), self.labels].copy()
        d[np.arange(n), self.labels] = np.inf
        other = d.argmin(axis=1)
        return other, own - d[np.arange(n), other]


def _n_moved(rate: float, n: int) -> int:
    return int(min(n, max(1, round(rate * n))))


def label_noise(X: np.ndarray, labels: np.ndarray, rate: float, mode: str = "nearest",
                seed: int = 0) -> np.ndarray | None:
    """Move a fraction ``rate`` of the points (at least one) to another existing cluster.

    Args:
        X: points (n, d).
        labels: the clustering to perturb (n,).
        rate: fraction of points moved, in (0, 1].
        mode: ``"nearest"`` — randomly drawn points go to the cluster whose centroid is
            nearest to them (hard negatives); ``"uniform"`` — to a uniformly drawn other
            cluster; ``"boundary"`` — the points drawn among the ``2 m`` most ambiguous
            ones (smallest gap between own and nearest other centroid) go to that
            nearest cluster (the hardest: one k-means-like step away from the truth).
        seed: seed of the draw.

    Returns:
        canonical labels, or ``None`` when the clustering has a single cluster (there is
        no other cluster to move points to).
    """
    Xc = check_points(X)
    lab = check_labels(labels, Xc.shape[0])
    if not 0 < rate <= 1:
        raise ValueError(f"rate must be a fraction in (0, 1], got {rate!r}.")
    return _label_noise(_Context(Xc, lab, int(lab.max()) + 1), rate, mode,
                        np.random.default_rng(_check_seed(seed)))


def _label_noise(ctx: _Context, rate: float, mode: str, rng: np.random.Generator) -> np.ndarray | None:
    if mode not in ("nearest", "uniform", "boundary"):
        raise ValueError(f"mode must be 'nearest', 'uniform' or 'boundary', got {mode!r}.")
    if ctx.k < 2:
        return None
    n = len(ctx.labels)
    m = _n_moved(rate, n)
    out = ctx.labels.copy()
    if mode == "uniform":
        idx = rng.choice(n, size=m, replace=False)
        shift = rng.integers(1, ctx.k, size=m)  # any other cluster, uniformly
        out[idx] = (out[idx] + shift) % ctx.k
    else:
        other, margin = ctx.nearest_other()
        if mode == "nearest":
            idx = rng.choice(n, size=m, replace=False)
        else:
            pool = np.argsort(-margin, kind="stable")[: min(n, 2 * m)]
            idx = rng.choice(pool, size=m, replace=False)
        out[idx] = other[idx]
    return canonical_labels(out)


def merge_closest(X: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Merge the two clusters whose centroids are closest (Euclidean).

    With K = 2 the result is a single cluster: still a legitimate (easy) negative.

    Returns:
        canonical labels, or ``None`` when there is a single cluster.
    """
    Xc = check_points(X)
    lab = check_labels(labels, Xc.shape[0])
    return _merge_closest(_Context(Xc, lab, int(lab.max()) + 1))


def _merge_closest(ctx: _Context) -> np.ndarray | None:
    if ctx.k < 2:
        return None
    c = _centroids(ctx.X, ctx.labels)
    d = _point_centroid_dist(c.astype(np.float32), c)
    d[np.diag_indices_from(d)] = np.inf
    a, b = np.unravel_index(np.argmin(d), d.shape)
    out = ctx.labels.copy()
    out[out == max(a, b)] = min(a, b)
    return canonical_labels(out)


def split_one(X: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """Split one cluster in two with scikit-learn ``KMeans(2)`` on that cluster's points.

    The cluster is drawn at random (seeded) among those with at least 2 distinct points;
    clusters of one point cannot be split.

    Returns:
        canonical labels, or ``None`` when no cluster can be split.
    """
    Xc = check_points(X)
    lab = check_labels(labels, Xc.shape[0])
    return _split_one(_Context(Xc, lab, int(lab.max()) + 1), np.random.default_rng(_check_seed(seed)))


def _split_one(ctx: _Context, rng: np.random.Generator) -> np.ndarray | None:
    sizes = np.bincount(ctx.labels, minlength=ctx.k)
    eligible = list(np.flatnonzero(sizes >= 2))
    rng.shuffle(eligible)
    for c in eligible:
        idx = np.flatnonzero(ctx.labels == c)
        sub = kmeans_labels(ctx.X[idx], 2, int(rng.integers(2**31 - 1)))
        if len(np.unique(sub)) == 2:  # identical points cannot be split
            out = ctx.labels.copy()
            out[idx[sub == 1]] = ctx.k
            return canonical_labels(out)
    return None


def _kmeans_kind(offset: int) -> Callable[[_Context, np.random.Generator], np.ndarray | None]:
    def make(ctx: _Context, rng: np.random.Generator) -> np.ndarray | None:
        k = ctx.k + offset
        if k < 1 or k > len(ctx.labels):
            return None
        return canonical_labels(kmeans_labels(ctx.X, k, int(rng.integers(2**31 - 1))))
    return make


def _agglomerative_kind(offset: int) -> Callable[[_Context, np.random.Generator], np.ndarray | None]:
    def make(ctx: _Context, rng: np.random.Generator) -> np.ndarray | None:
        from sklearn.cluster import AgglomerativeClustering

        k = ctx.k + offset
        if k < 1 or k > len(ctx.labels):
            return None
        if k == 1:
            return np.zeros(len(ctx.labels), dtype=np.int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(ctx.X)
        return canonical_labels(lab)
    return make


def random_partition(n_points: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """A uniformly random partition of ``n_points`` points into exactly ``n_clusters``
    non-empty clusters (the easiest negative)."""
    if not 1 <= n_clusters <= n_points:
        raise ValueError(f"n_clusters={n_clusters} must be between 1 and n_points={n_points}.")
    return _random_partition(n_points, n_clusters, np.random.default_rng(_check_seed(seed)))


def _random_partition(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    lab = rng.integers(k, size=n)
    lab[rng.permutation(n)[:k]] = np.arange(k)  # every cluster non-empty
    return canonical_labels(lab)


def _noise_kind(rate: float, mode: str) -> Callable[[_Context, np.random.Generator], np.ndarray | None]:
    return lambda ctx, rng: _label_noise(ctx, rate, mode, rng)


@dataclass(frozen=True)
class _Kind:
    make: Callable[[_Context, np.random.Generator], np.ndarray | None]
    stochastic: bool  # False: the same output every call, so one try is enough


_NOISE = [("boundary", (2, 5, 10)), ("nearest", (5, 10, 20)), ("uniform", (10, 20, 40))]

#: Every kind of near miss, by name. ``noise_<mode>_<percent>``, ``kmeans_K+1`` etc.
KINDS: dict[str, _Kind] = {
    **{f"noise_{mode}_{pct}": _Kind(_noise_kind(pct / 100, mode), True)
       for mode, pcts in _NOISE for pct in pcts},
    "merge_closest": _Kind(lambda ctx, rng: _merge_closest(ctx), False),
    "split": _Kind(_split_one, True),
    **{f"kmeans_K{o:+d}" if o else "kmeans_K": _Kind(_kmeans_kind(o), True) for o in (-1, 0, 1, 2)},
    **{f"agglomerative_K{o:+d}" if o else "agglomerative_K": _Kind(_agglomerative_kind(o), False)
       for o in (-1, 0, 1)},
    "random_K": _Kind(lambda ctx, rng: _random_partition(len(ctx.labels), ctx.k, rng), True),
}

#: Kinds tried at most this many times in a row without a new candidate (k-means
#: often converges to the same partition) before the generator gives up on them.
_MAX_FAILS = 3


def kind_family(kind: str) -> str:
    """The family of a kind name: ``"noise_nearest_5"`` -> ``"noise"``,
    ``"kmeans_K+1"`` -> ``"kmeans"``, ``"agent"`` -> ``"agent"``."""
    return kind.split("_", 1)[0]


@dataclass(frozen=True)
class Candidate:
    """One near miss: a canonical label vector and the kind that made it."""

    labels: np.ndarray
    kind: str


def _check_kinds(kinds: Sequence[str] | None) -> list[str]:
    """Kind names, or prefixes naming a family (``"noise"``, ``"kmeans"``), to names."""
    if kinds is None:
        return list(KINDS)
    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = list(kinds)
    # an exact name is that kind only ("kmeans_K" is not also "kmeans_K+1"); else a prefix
    per_kind = [[k] if k in KINDS else [n for n in KINDS if n.startswith(str(k))] for k in kinds]
    names = [name for group in per_kind for name in group]
    unknown = [k for k, group in zip(kinds, per_kind) if not group]
    if unknown or not names:
        raise ValueError(f"unknown or no kinds {unknown or kinds!r}; give names or prefixes of {list(KINDS)}.")
    return list(dict.fromkeys(names))


def near_misses(X: object, true_labels: object, n_candidates: int | None = None,
                kinds: Sequence[str] | None = None, seed: int = 0,
                strict: bool = True) -> list[Candidate]:
    """Seeded near misses of a correct clustering, none equal to it or to each other.

    Args:
        X: point set (n, d).
        true_labels: the correct clustering (any integer ids; renaming them does not
            change the result, since they are canonicalised first).
        n_candidates: ``None`` — every kind once (kinds that do not apply, or that
            reproduce the truth or an earlier candidate, are left out); a number — exactly
            that many, kinds taken round-robin in a seeded order so the mix stays
            balanced, stochastic kinds (noise, split, k-means, random) drawn again when
            deterministic ones are used up.
        kinds: names from :data:`KINDS`, or prefixes naming families such as
            ``"noise"`` or ``"kmeans"`` (default: all).
        seed: the same seed gives the same candidates.
        strict: with ``n_candidates`` set, raise when fewer distinct near misses exist
            (a tiny problem); ``False`` returns those found.

    Returns:
        list of :class:`Candidate`.

    Raises:
        ValueError: bad inputs, or (``strict``) fewer than ``n_candidates`` distinct
            near misses exist for this problem.
    """
    Xc = check_points(X)
    truth = check_labels(true_labels, Xc.shape[0], "true_labels")
    kinds = _check_kinds(kinds)
    if n_candidates is not None and (isinstance(n_candidates, bool)
                                     or not isinstance(n_candidates, (int, np.integer))
                                     or n_candidates < 0):
        raise ValueError(f"n_candidates must be None or a non-negative int, got {n_candidates!r}.")
    rng = np.random.default_rng(_check_seed(seed))
    ctx = _Context(Xc, truth, int(truth.max()) + 1)
    seen = {truth.tobytes()}
    out: list[Candidate] = []

    def attempt(kind: str) -> bool:
        lab = KINDS[kind].make(ctx, rng)
        if lab is None or lab.tobytes() in seen:
            return False
        seen.add(lab.tobytes())
        out.append(Candidate(lab.astype(np.int64), kind))
        return True

    if n_candidates is None:
        for kind in kinds:
            attempt(kind)
        return out

    fails = dict.fromkeys(kinds, 0)
    active = list(kinds)
    while len(out) < n_candidates and active:
        for i in rng.permutation(len(active)):
            if len(out) >= n_candidates:
                break
            kind = active[i]
            if attempt(kind):
                fails[kind] = 0
            else:
                fails[kind] += 1
            if not KINDS[kind].stochastic or fails[kind] >= _MAX_FAILS:
                fails[kind] = _MAX_FAILS  # exhausted
        active = [k for k in active if fails[k] < _MAX_FAILS]
    if strict and len(out) < n_candidates:
        raise ValueError(f"only {len(out)} distinct near misses of kinds {kinds} exist for this problem "
                         f"({Xc.shape[0]} points, K={ctx.k}); ask for fewer (n_candidates) or allow more kinds.")
    return out


def training_negatives(problem: Problem, n: int, seed: int) -> np.ndarray:
    """``n`` fresh near misses of a problem's correct clustering, as an int64 array
    (n, n_points), for training the critic (a new draw for every seed).

    A tiny problem with fewer than ``n`` distinct near misses gives all it has
    (fewer rows) rather than an error: training only needs some negatives.
    """
    _check_problem(problem)
    cands = near_misses(problem.X, problem.labels, n_candidates=n, seed=seed, strict=False)
    if not cands:
        return np.zeros((0, problem.n_points), dtype=np.int64)
    return np.stack([c.labels for c in cands])


#: Degenerate clusterings an optimiser finds first when a reward has holes. They are
#: always among the critic's training negatives (never in the evaluation candidate sets,
#: which stay as they were fixed): a single cluster, one cluster per point, 5 % of the
#: points split off as singletons, random labels with the true K and with a large K, and
#: every true cluster cut in two (``split_each``: the agent's answer on two rings, each
#: ring halved, before it was a training negative; measured on the development seeds).
DEGENERATE_KINDS = ("one_cluster", "all_singletons", "singletons_5", "random_K", "random_large_K", "split_each")

#: The degenerate kinds the shipped Numbers critic (``critic_numbers.pt``) was trained
#: with, before ``split_each`` joined them; ``train-critic --degenerate-kinds`` with
#: these reproduces that file.
DEGENERATE_KINDS_V1 = DEGENERATE_KINDS[:5]


def _split_each(X: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Every true cluster of two or more distinct points cut in two by ``KMeans(2)`` on its
    own points (``None`` when no cluster can be cut)."""
    out, k = truth.copy(), int(truth.max()) + 1
    for c in range(k):
        idx = np.flatnonzero(truth == c)
        if len(idx) >= 2:
            sub = kmeans_labels(X[idx], 2, int(rng.integers(2**31 - 1)))
            out[idx[sub == 1]] = k + c
    return None if np.array_equal(out, truth) else canonical_labels(out)


def split_random(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """One true cluster of two or more points (chosen at random) dealt at random into two
    halves, interleaved in space: a cut no sensible reward prefers to the truth, and the
    one the separation gate exists for (chapter 3; ``critic.SEPARATION_GATE``). ``None``
    when no cluster has two points. Never a training negative."""
    truth = np.asarray(truth)
    sizes = np.bincount(truth)
    splittable = np.flatnonzero(sizes >= 2)
    if len(splittable) == 0:
        return None
    idx = rng.permutation(np.flatnonzero(truth == rng.choice(splittable)))
    out = truth.copy()
    out[idx[: len(idx) // 2]] = truth.max() + 1
    return canonical_labels(out)


def merge_random(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Two true clusters chosen at random (not the closest) given one label; ``None`` with
    fewer than three clusters. Never a training negative."""
    truth = np.asarray(truth)
    k = int(truth.max()) + 1
    if k < 3:
        return None
    a, b = rng.choice(k, size=2, replace=False)
    return canonical_labels(np.where(truth == b, a, truth))


def check_degenerate_kinds(kinds: object) -> tuple[str, ...]:
    """``kinds`` as a tuple of names from :data:`DEGENERATE_KINDS` (at least one, no
    repeats); anything else raises a ``ValueError`` naming the valid kinds."""
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise ValueError(f"degenerate kinds must be a non-empty list of names from {list(DEGENERATE_KINDS)}, "
                         f"got {kinds!r}.")
    unknown = [k for k in kinds if k not in DEGENERATE_KINDS]
    if unknown or len(set(kinds)) != len(kinds):
        raise ValueError(f"unknown or repeated degenerate kinds {unknown or list(kinds)}; "
                         f"choose from {list(DEGENERATE_KINDS)}.")
    return tuple(kinds)


def degenerate_clustering(kind: str, truth: np.ndarray, rng: np.random.Generator,
                          X: np.ndarray | None = None) -> np.ndarray | None:
    """One degenerate clustering of kind ``kind`` (:data:`DEGENERATE_KINDS`) of a problem
    whose correct labels are ``truth`` (``split_each`` also needs its points ``X``);
    ``None`` when the kind does not apply."""
    check_degenerate_kinds([kind])
    n, k = len(truth), int(truth.max()) + 1
    if kind == "one_cluster":
        return np.zeros(n, dtype=np.int64)
    if kind == "all_singletons":
        return np.arange(n, dtype=np.int64)
    if kind == "singletons_5":
        out = truth.copy()
        pts = rng.choice(n, size=max(1, round(0.05 * n)), replace=False)
        out[pts] = k + np.arange(len(pts))
        return canonical_labels(out)
    if kind == "random_K":
        return _random_partition(n, k, rng) if k >= 2 else None
    if kind == "split_each":
        if X is None:
            raise ValueError("the split_each kind cuts each cluster by its points: pass X.")
        return _split_each(np.asarray(X), truth, rng)
    large = min(n, max(3 * k, 10))
    return _random_partition(n, large, rng)


def degenerate_negatives(problem: Problem, n: int, seed: int,
                         kinds: Sequence[str] = DEGENERATE_KINDS) -> np.ndarray:
    """``n`` degenerate clusterings of a problem (``kinds`` taken in turn, random ones
    drawn anew), as an int64 array (m, n_points), m <= n: those equal to the truth or to
    each other are dropped."""
    _check_problem(problem)
    kinds = check_degenerate_kinds(kinds)
    rng = np.random.default_rng(_check_seed(seed))
    seen = {problem.labels.tobytes()}
    out = []
    for i in range(4 * n):
        if len(out) == n:
            break
        lab = degenerate_clustering(kinds[i % len(kinds)], problem.labels, rng, problem.X)
        if lab is not None and lab.tobytes() not in seen:
            seen.add(lab.tobytes())
            out.append(lab)
    return np.stack(out) if out else np.zeros((0, problem.n_points), dtype=np.int64)


def _check_problem(problem: object) -> None:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a tdml_lib.problems.Problem, got {type(problem).__name__}; "
                         "build one with Problem(X, labels).")


@dataclass
class CandidateSet:
    """A problem's fixed candidates: its correct clustering among near misses.

    Attributes:
        problem: the problem (its ``labels`` are the correct clustering; scorers get only
            ``problem.X`` and ``labelings``).
        labelings: int64 array (B, n_points), canonical label vectors, all distinct.
        kinds: B kind names; ``"correct"`` at ``correct_index``, ``"agent"`` for extras.
        correct_index: where the correct clustering is.
    """

    problem: Problem
    labelings: np.ndarray
    kinds: list[str]
    correct_index: int

    @property
    def n_candidates(self) -> int:
        return int(self.labelings.shape[0])

    def __repr__(self) -> str:
        return (f"CandidateSet({self.problem!r}, n_candidates={self.n_candidates}, "
                f"correct_index={self.correct_index})")


def candidate_set(problem: Problem, n_negatives: int = 19, seed: int = 0,
                  extra: Sequence[object] | np.ndarray | None = None) -> CandidateSet:
    """The poster's fixed candidates for one problem.

    The correct clustering plus ``n_negatives`` near misses (:func:`near_misses`), plus
    ``extra`` negatives (e.g. the agent's proposals, kind ``"agent"``), in a seeded
    shuffled order so that the truth is not always first.

    Args:
        problem: a :class:`~tdml_lib.problems.Problem`.
        n_negatives: number of generated near misses (19 gives 20 candidates).
        seed: the same seed gives the same set.
        extra: more negatives, label vectors of length n_points. Those equal to the truth
            or to another candidate (up to renaming) are dropped, since an exact copy of
            the truth is not a negative.

    Returns:
        a :class:`CandidateSet`.
    """
    _check_problem(problem)
    seed = _check_seed(seed)
    truth = problem.labels
    cands = near_misses(problem.X, truth, n_candidates=n_negatives, seed=seed)
    labs = [truth] + [c.labels for c in cands]
    kinds = ["correct"] + [c.kind for c in cands]
    if extra is not None and len(extra):
        seen = {lab.tobytes() for lab in labs}
        for lab in check_labelings(extra, problem.n_points):
            if lab.tobytes() not in seen:
                seen.add(lab.tobytes())
                labs.append(lab)
                kinds.append("agent")
    order = np.random.default_rng([seed, 1]).permutation(len(labs))
    return CandidateSet(problem, np.stack([labs[i] for i in order]).astype(np.int64),
                        [kinds[i] for i in order], int(np.flatnonzero(order == 0)[0]))
