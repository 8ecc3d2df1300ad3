"""Clustering problems: a point set X and its correct clustering.

A *problem* is what every block of the book takes: the GAE embeds clusterings of its
``X``, the critic grades them, the agent searches them. Problems are sampled from a
labelled source (K classes, a varying number of points per class, features standardised
per problem; the book's replication-choices page) or generated from synthetic families. Explained in chapter 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .validation import canonical_labels, check_int, check_labels, check_nonempty, check_points, check_real

SYNTHETIC_FAMILIES = ("blobs", "anisotropic", "moons", "circles", "varied_density", "spirals")


@dataclass(frozen=True)
class Problem:
    """A point set and its correct clustering.

    Attributes:
        X: float32 array (n_points, n_features), standardised per problem.
        labels: int64 array (n_points,), the correct clustering, ids 0..K-1. Used to
            train and to score, never by a clustering method.
        source: where the points come from, e.g. ``"numbers"`` or ``"synthetic:moons"``.
        classes: the source's class ids behind labels 0..K-1 (empty for synthetic).
            Given, like ``labels``, in the caller's numbering (``classes[i]`` is the class
            of raw label ``i``); both are renumbered together in order of first appearance.
    """

    X: np.ndarray
    labels: np.ndarray
    source: str = ""
    classes: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        X = check_points(self.X)
        labels = check_labels(self.labels, X.shape[0])
        if self.classes:
            raw = np.asarray(self.labels).astype(np.int64)
            if raw.max() >= len(self.classes):
                raise ValueError(f"classes names {len(self.classes)} classes but labels use id {raw.max()}.")
            first = np.unique(labels, return_index=True)[1]  # where new ids 0..K-1 first appear
            object.__setattr__(self, "classes", tuple(int(self.classes[raw[i]]) for i in first))
        object.__setattr__(self, "X", X.astype(np.float32))
        object.__setattr__(self, "labels", labels)

    @property
    def n_points(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1

    def __repr__(self) -> str:
        return (f"Problem(source={self.source!r}, n_points={self.n_points}, "
                f"n_features={self.n_features}, n_clusters={self.n_clusters})")


def standardize(X: np.ndarray) -> np.ndarray:
    """Z-score each feature (constant features become 0), as float32."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return ((X - X.mean(axis=0)) / std).astype(np.float32)


def _check_range(value: int | Sequence[int], name: str, low: int) -> tuple[int, int]:
    """An int >= ``low`` or an inclusive range (lo, hi) of them, as (lo, hi)."""
    if isinstance(value, (bool, str, bytes)) or not (np.isscalar(value) or hasattr(value, "__len__")):
        raise ValueError(f"{name} must be an int >= {low} or a range (lo, hi), got {value!r}.")
    if np.isscalar(value):
        lo = hi = check_int(value, name, low)
    else:
        if len(value) != 2:
            raise ValueError(f"{name} must be an int >= {low} or a range (lo, hi) of two ints, got {value!r}.")
        lo, hi = (check_int(v, f"{name} ({which})", low) for v, which in zip(value, ("lo", "hi")))
        if hi < lo:
            raise ValueError(f"{name} must be a range (lo, hi) with lo <= hi, got {value!r}.")
    return lo, hi


def sample_problems(features: np.ndarray, labels: np.ndarray, n_problems: int,
                    n_clusters: int | Sequence[int] = (2, 10),
                    points_per_class: int | Sequence[int] = (20, 100),
                    seed: int = 0, source: str = "",
                    classes: Sequence[int] | None = None) -> list[Problem]:
    """Sample clustering problems from a labelled source.

    Each problem draws K classes (uniform in the ``n_clusters`` range) among
    ``classes`` (default: all), then for each class a size uniform in
    ``points_per_class`` and that many distinct examples. Features are standardised
    per problem.

    Args:
        features: array (N, d) of the source (images are flattened to rows).
        labels: array (N,) of class ids.
        n_problems: how many problems.
        n_clusters: K, or an inclusive range (lo, hi).
        points_per_class: points per class, or an inclusive range (lo, hi).
        seed: seed of the sampler; the same seed gives the same problems.
        source: name recorded on each problem.
        classes: restrict sampling to these class ids.

    Raises:
        ValueError: bad ranges, K larger than the number of classes available, or a
            class with fewer examples than asked for.
    """
    features = np.asarray(features)
    if features.ndim > 2:
        features = features.reshape(len(features), -1)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"features (N, d) and labels (N,) must match; got {features.shape} and {labels.shape}.")
    n_problems = check_int(n_problems, "n_problems", 1)
    k_lo, k_hi = _check_range(n_clusters, "n_clusters", 2)
    s_lo, s_hi = _check_range(points_per_class, "points_per_class", 1)
    pool = np.unique(labels) if classes is None else np.asarray(sorted(set(classes)))
    if k_hi > len(pool):
        raise ValueError(f"n_clusters up to {k_hi} asked for, but only {len(pool)} classes are available.")
    index_by_class = {int(c): np.flatnonzero(labels == c) for c in pool}
    smallest = min(len(v) for v in index_by_class.values())
    if s_hi > smallest:
        raise ValueError(f"points_per_class up to {s_hi} asked for, but a class has only {smallest} examples.")
    rng = np.random.default_rng(seed)
    problems = []
    for _ in range(int(n_problems)):
        k = int(rng.integers(k_lo, k_hi + 1))
        chosen = rng.choice(pool, size=k, replace=False)
        rows, labs = [], []
        for j, c in enumerate(chosen):
            size = int(rng.integers(s_lo, s_hi + 1))
            rows.append(rng.choice(index_by_class[int(c)], size=size, replace=False))
            labs.append(np.full(size, j))
        idx, lab = np.concatenate(rows), np.concatenate(labs)
        perm = rng.permutation(len(idx))  # no information in point order
        problems.append(Problem(standardize(features[idx[perm]]), lab[perm], source,
                                tuple(int(c) for c in chosen)))
    return problems


# --- synthetic families -------------------------------------------------------------

def _blobs(rng: np.random.Generator, sizes: list[int], aniso: bool) -> tuple[np.ndarray, np.ndarray]:
    k = len(sizes)
    centers = rng.uniform(-10, 10, size=(k, 2))
    spreads = np.full(k, rng.uniform(0.6, 1.4))
    pts, lab = [], []
    for j, (size, c, s) in enumerate(zip(sizes, centers, spreads)):
        p = rng.normal(size=(size, 2)) * s
        if aniso:
            p = p @ rng.normal(size=(2, 2))
        pts.append(p + c)
        lab.append(np.full(size, j))
    return np.concatenate(pts), np.concatenate(lab)


def _varied_density(rng: np.random.Generator, sizes: list[int], min_gap: float = 2.5,
                    max_gap: float = 3.5) -> tuple[np.ndarray, np.ndarray]:
    # Gaussian clusters whose spreads differ up to 8x (log-uniform in 0.3..2.5, one at each
    # end), each set beside one already placed at min_gap..max_gap times the sum of their
    # spreads, and at least min_gap times that sum from all others. Far enough apart that
    # the truth is recoverable (spectral clustering scores about 0.99), near enough that
    # k-means' equal-distance boundary cuts into the wide cluster (about 0.86): the
    # failure the family is named for. Blobs at uniform random places (an earlier
    # version) overlapped so often that even a Gaussian mixture scored only about 0.90.
    k = len(sizes)
    spreads = np.exp(rng.uniform(np.log(0.3), np.log(2.5), size=k))
    wide, tight = rng.permutation(k)[:2]
    spreads[wide], spreads[tight] = 2.5, 0.3
    centers = [np.zeros(2)]
    for j in range(1, k):
        for attempt in range(1000):
            i = int(rng.integers(j))
            # after many misses the ring widens, so that a crowded layout still ends
            stretch = 1.0 + attempt / 100
            angle = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(min_gap, max_gap) * stretch * (spreads[i] + spreads[j])
            c = centers[i] + dist * np.array([np.cos(angle), np.sin(angle)])
            if all(np.linalg.norm(c - centers[m]) >= min_gap * (spreads[m] + spreads[j]) for m in range(j)):
                break
        centers.append(c)
    pts = [rng.normal(size=(size, 2)) * s + c for size, s, c in zip(sizes, spreads, centers)]
    return np.concatenate(pts), np.concatenate([np.full(size, j) for j, size in enumerate(sizes)])


def _moons(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    # sklearn's make_moons (an upper half-circle and a lower one shifted by (1, 0.5), so
    # that each reaches into the other's hollow), generalised beyond K=2: moons alternate
    # upper/lower along x, and each pair is set 0.5 further right so that two upper (or
    # two lower) moons never touch at their tips.
    pts, lab = [], []
    for j, size in enumerate(sizes):
        t = rng.uniform(0, np.pi, size)
        upper = j % 2 == 0
        p = np.c_[np.cos(t) + j * 1.0 + (j // 2) * 0.5, np.sin(t) if upper else 0.5 - np.sin(t)]
        pts.append(p + rng.normal(scale=0.08, size=p.shape))
        lab.append(np.full(size, j))
    return np.concatenate(pts), np.concatenate(lab)


def _circles(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    pts, lab = [], []
    for j, size in enumerate(sizes):
        t = rng.uniform(0, 2 * np.pi, size)
        r = 1.0 + j * 1.0
        p = np.c_[r * np.cos(t), r * np.sin(t)]
        pts.append(p + rng.normal(scale=0.1, size=p.shape))
        lab.append(np.full(size, j))
    return np.concatenate(pts), np.concatenate(lab)


def _spirals(rng: np.random.Generator, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    # K arms of one Archimedean spiral (r = angle), rotated 2*pi/K apart, each 0.6 of a
    # turn long: long, curved clusters that k-means cuts across.
    k = len(sizes)
    pts, lab = [], []
    for j, size in enumerate(sizes):
        t = rng.uniform(0.5 * np.pi, 1.7 * np.pi, size)
        angle = t + 2 * np.pi * j / k
        p = np.c_[t * np.cos(angle), t * np.sin(angle)]
        pts.append(p + rng.normal(scale=0.1, size=p.shape))
        lab.append(np.full(size, j))
    return np.concatenate(pts), np.concatenate(lab)


_FAMILIES: dict[str, Callable[[np.random.Generator, list[int]], tuple[np.ndarray, np.ndarray]]] = {
    "blobs": lambda rng, s: _blobs(rng, s, aniso=False),
    "anisotropic": lambda rng, s: _blobs(rng, s, aniso=True),
    "varied_density": _varied_density,
    "moons": _moons,
    "circles": _circles,
    "spirals": _spirals,
}


def _check_family(family: object) -> str:
    if not isinstance(family, str) or family not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose among {list(SYNTHETIC_FAMILIES)}.")
    return family


def synthetic_problem(family: str, n_clusters: int = 3, points_per_class: int | Sequence[int] = (20, 100),
                      n_features: int = 2, noise: float = 0.05, seed: int = 0) -> Problem:
    """One synthetic problem from a family in :data:`SYNTHETIC_FAMILIES`.

    2-D shapes are lifted to ``n_features`` dimensions by a random orthonormal
    projection plus Gaussian noise of scale ``noise`` (relative to the data's std).

    Raises:
        ValueError: unknown family, K < 2, n_features < 2 (or either not an int), a bad
            ``points_per_class``, a negative or non-finite ``noise``, or a bad ``seed``.
    """
    _check_family(family)
    n_clusters = check_int(n_clusters, "n_clusters", 2)
    n_features = check_int(n_features, "n_features", 2)
    noise = check_real(noise, "noise", 0.0)
    check_int(seed, "seed", 0)
    s_lo, s_hi = _check_range(points_per_class, "points_per_class", 1)
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(s_lo, s_hi + 1)) for _ in range(int(n_clusters))]
    X2, lab = _FAMILIES[family](rng, sizes)
    X2 = standardize(X2)
    if n_features > 2:
        q, _ = np.linalg.qr(rng.normal(size=(n_features, 2)))
        X = X2 @ q.T + rng.normal(scale=noise, size=(len(X2), n_features))
    else:
        X = X2
    perm = rng.permutation(len(X))
    return Problem(standardize(X[perm]), lab[perm], f"synthetic:{family}")


def synthetic_problems(n_problems: int, families: Sequence[str] = SYNTHETIC_FAMILIES,
                       n_clusters: int | Sequence[int] = (2, 6),
                       points_per_class: int | Sequence[int] = (20, 100),
                       n_features: int | Sequence[int] = 2, seed: int = 0) -> list[Problem]:
    """Many synthetic problems, families taken in turn, K and dimension drawn per problem.

    Raises:
        ValueError: ``n_problems`` not a positive int, ``families`` empty or naming an
            unknown family, or a bad range (see :func:`synthetic_problem`).
    """
    n_problems = check_int(n_problems, "n_problems", 1)
    families = check_nonempty(families, "families")
    for fam in families:
        _check_family(fam)
    check_int(seed, "seed", 0)
    _check_range(points_per_class, "points_per_class", 1)
    k_lo, k_hi = _check_range(n_clusters, "n_clusters", 2)
    d_lo, d_hi = _check_range(n_features, "n_features", 2)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(int(n_problems)):
        fam = families[i % len(families)]
        out.append(synthetic_problem(fam, int(rng.integers(k_lo, k_hi + 1)), points_per_class,
                                     int(rng.integers(d_lo, d_hi + 1)), seed=int(rng.integers(2**31))))
    return out


def few_shot_pool(labels: np.ndarray, examples_per_class: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Indices of a few-shot regime's labelled pool: a seeded draw of ``examples_per_class``
    images of each class, class by class (the pool of :func:`few_shot_problems`, and of
    the unlabelled fill of ``tdml_lib.experiments.training``).

    Raises:
        ValueError: ``examples_per_class`` not an int >= 2, or more than a class has.
    """
    labels = np.asarray(labels)
    examples_per_class = check_int(examples_per_class, "examples_per_class", 2)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < examples_per_class:
        raise ValueError(f"examples_per_class={examples_per_class} but class {classes[counts.argmin()]} has "
                         f"{counts.min()} images; ask for at most that many.")
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=examples_per_class, replace=False)
                           for c in classes])


def few_shot_problems(features: np.ndarray, labels: np.ndarray, n_problems: int, examples_per_class: int,
                      n_clusters: int | Sequence[int] = (2, 10), seed: int = 0, source: str = "") -> list[Problem]:
    """Few-shot training problems: first keep only ``examples_per_class`` labelled examples
    of each class (a seeded draw), then sample every problem from that small pool, with
    ``max(2, examples_per_class // 3)`` to ``examples_per_class`` points per class.

    This is the book's reading of the poster's "few shots" rows (the poster gives no
    numbers): the critic sees few labelled *examples*, not only few problems.
    """
    labels = np.asarray(labels)
    pool = few_shot_pool(labels, examples_per_class, seed)
    lo = max(2, int(examples_per_class) // 3)
    return sample_problems(np.asarray(features)[pool], labels[pool], n_problems, n_clusters,
                           (lo, int(examples_per_class)), seed=seed + 1, source=f"{source} (few-shot)")
