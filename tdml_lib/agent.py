"""Block A: the evolutionary agent that clusters by maximising a reward.

A DEAP genetic algorithm over label vectors (DESIGN.md "Agent"; DEAP's ``onemax``
example style: ``creator`` classes, a ``Toolbox`` of operators, ``tools.selTournament``,
``HallOfFame``, ``Statistics`` and a ``Logbook``):

* **population** seeded from k-means, Ward agglomerative (scipy) and spectral clusterings
  of the kNN graph (scikit-learn's ``spectral_embedding``, then k-means on its first K
  eigenvectors, as ``SpectralClustering`` does) at several K, plus copies with a few
  points moved to a neighbour's cluster. The spectral seeds follow the data's
  connectivity, so the population holds candidates for non-convex clusters (moons,
  rings) that no centroid method proposes; Gaussian mixtures with full covariances
  (scikit-learn's ``GaussianMixture``) add candidates for clusters of uneven spread and
  shape, which k-means cuts at the midpoint between centres; the reward decides
  between them;
* **mutations**: move points to the cluster of one of their k nearest neighbours (kNN
  computed once), merge two clusters with close centroids, split a cluster with 2-means;
* **crossover**: align the second parent's cluster ids to the first's with the
  Hungarian method (a parent-to-parent alignment, never to a truth), then inherit whole
  clusters from it;
* **selection**: tournaments of 3, with the best ``elite`` kept unchanged (elitism).

The reward of the whole population comes from one batched ``scorer.score_many`` call per
generation (identical individuals are scored once). The agent never sees true labels:
``cluster`` has no argument for them. The number of clusters is found, unless the caller
fixes ``n_clusters``. Explained in chapter 4.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from deap import base, creator, tools
from scipy.optimize import linear_sum_assignment
from scipy.cluster.hierarchy import fcluster, linkage

from . import graphs
from .candidates import kmeans_labels
from .validation import canonical_labels, check_n_clusters, check_points

# DEAP's creator registers classes globally; create them once (re-imports and reloads
# of this module must not fail with "class already created").
if not hasattr(creator, "TDMLFitness"):
    creator.create("TDMLFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "TDMLClustering"):
    creator.create("TDMLClustering", np.ndarray, fitness=creator.TDMLFitness)


@dataclass
class ClusterResult:
    """What the agent found: the best clustering, its reward, and how the search went."""

    labels: np.ndarray
    reward: float
    history: pd.DataFrame
    population: np.ndarray
    population_scores: np.ndarray


def _individual(labels: np.ndarray) -> Any:
    """A DEAP individual holding a copy of ``labels`` (already canonical: the population's
    seeds and every operator's output are). A view plus its own Fitness instance, since
    DEAP's ndarray constructor converts the array through a Python list, element by element."""
    ind = np.array(labels, dtype=np.int64).view(creator.TDMLClustering)
    ind.fitness = creator.TDMLFitness()
    return ind


class _Operators:
    """Mutation and crossover on label vectors, drawing from one seeded generator."""

    def __init__(self, X: np.ndarray, knn: np.ndarray, rng: np.random.Generator, fixed_k: int | None) -> None:
        self.X, self.knn, self.rng, self.fixed_k = X, knn, rng, fixed_k

    def move(self, labels: np.ndarray) -> np.ndarray:
        n = len(labels)
        m = max(1, int(self.rng.uniform(0.005, 0.05) * n))
        pts = self.rng.choice(n, size=m, replace=False)
        out = labels.copy()
        out[pts] = labels[self.knn[pts, self.rng.integers(0, self.knn.shape[1], size=m)]]
        return out

    def merge(self, labels: np.ndarray) -> np.ndarray:
        K = labels.max() + 1
        if K < 2:
            return labels
        cent = np.stack([self.X[labels == k].mean(0) for k in range(K)])
        d = ((cent[:, None] - cent[None]) ** 2).sum(-1)
        d[np.diag_indices(K)] = np.inf
        pairs = np.dstack(np.unravel_index(np.argsort(d, axis=None)[: 2 * min(3, K - 1)], d.shape))[0]
        a, b = pairs[self.rng.integers(len(pairs))]
        out = labels.copy()
        out[out == b] = a
        return out

    def split(self, labels: np.ndarray) -> np.ndarray:
        counts = np.bincount(labels)
        big = np.flatnonzero(counts >= 4)
        if big.size == 0:
            return labels
        c = self.rng.choice(big, p=counts[big] / counts[big].sum())
        idx = np.flatnonzero(labels == c)
        sub = kmeans_labels(self.X[idx], 2, int(self.rng.integers(2**31)), n_init=1)
        out = labels.copy()
        out[idx[sub == 1]] = labels.max() + 1
        return out

    def _keep_k(self, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
        out = canonical_labels(out)
        if self.fixed_k and out.max() + 1 != self.fixed_k:
            return labels  # a move emptied a cluster: keep K as asked
        return out

    def mutate(self, labels: np.ndarray) -> np.ndarray:
        ops = [self.move, self.move] if self.fixed_k else [self.move, self.move, self.merge, self.split]
        return self._keep_k(labels, ops[self.rng.integers(len(ops))](labels))

    def perturb(self, labels: np.ndarray) -> np.ndarray:
        """A few points moved to a neighbour's cluster, K kept when it is fixed."""
        return self._keep_k(labels, self.move(labels))

    def crossover(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        Ka, Kb = a.max() + 1, b.max() + 1
        cont = np.zeros((Kb, Ka), dtype=np.int64)
        np.add.at(cont, (b, a), 1)
        rows, cols = linear_sum_assignment(-cont)          # align b's ids to a's
        mapping = np.arange(Kb) + Ka                        # unmatched clusters get new ids
        mapping[rows] = cols
        b_aligned = mapping[b]
        take = self.rng.random(max(Ka, Kb) + Kb) < 0.5      # inherit these clusters from b
        child = a.copy()
        inherit = take[b_aligned]
        child[inherit] = b_aligned[inherit]
        return self._keep_k(a, child)


def _knn(X: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(X) - 1)
    return NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]


SPECTRAL_MAX_POINTS = 20_000
"""Largest point set that gets spectral seeds (a sparse eigenproblem; seconds at this size)."""
MIXTURE_MAX_POINTS = 5_000
"""Largest point set that gets Gaussian-mixture seeds (EM with full d x d covariances at
every K: seconds at this size; above it the agent's time is the critic's, chapter 9)."""
HIERARCHY_MAX_POINTS = 5_000
"""Largest point set that gets Ward seeds (scipy's linkage needs O(n^2) memory)."""


def _spectral_embedding(knn: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """The first ``n_components`` Laplacian eigenvectors of the symmetrised kNN graph."""
    import warnings

    from scipy.sparse import csr_matrix
    from sklearn.manifold import spectral_embedding

    n, k = knn.shape
    graph = csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), knn.ravel())), shape=(n, n))
    with warnings.catch_warnings():  # "graph is not fully connected": then components split first
        warnings.simplefilter("ignore", UserWarning)
        return spectral_embedding(0.5 * (graph + graph.T), n_components=n_components,
                                  random_state=seed, drop_first=False)


def _mixture_labels(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The most likely component of each point under a K-component Gaussian mixture."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    # EM on d x d covariances makes many tiny BLAS calls: threads only add overhead there
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed)
        return gm.fit(X).predict(X)


def _initial_population(X: np.ndarray, size: int, ks: list[int], ops: _Operators) -> list[np.ndarray]:
    n = len(X)
    ward = linkage(X, method="ward") if n <= HIERARCHY_MAX_POINTS else None  # built once, cut per K
    spectral = (_spectral_embedding(ops.knn, min(max(ks), n - 1), int(ops.rng.integers(2**31)))
                if n <= SPECTRAL_MAX_POINTS and max(ks) < n - 1 else None)
    seeds = []  # (labels, the K asked for)
    for k in ks:
        seeds.append((kmeans_labels(X, k, int(ops.rng.integers(2**31))), k))
        if ward is not None:
            seeds.append((fcluster(ward, k, criterion="maxclust"), k))
        if spectral is not None:
            seeds.append((kmeans_labels(spectral[:, :k], k, int(ops.rng.integers(2**31))), k))
        if n <= MIXTURE_MAX_POINTS and n >= 2 * k:
            seeds.append((_mixture_labels(X, k, int(ops.rng.integers(2**31))), k))
    # ties in a hierarchy, or duplicate points, can give fewer than K clusters
    pop = ([canonical_labels(s) for s, k in seeds if np.unique(s).size == k]
           or [canonical_labels(seeds[0][0])])
    while len(pop) < size:
        pop.append(ops.perturb(pop[int(ops.rng.integers(len(pop)))]))
    return pop[:size] if len(pop) > size else pop


def _scorer_from(critic: Any, scorer: Any) -> Any:
    if scorer is not None:
        return scorer
    if critic is not None:
        return critic
    from .critic import load_critic

    return load_critic()


def cluster(X: object, critic: Any = None, n_clusters: int | None = None, generations: int = 40,
            population_size: int = 48, seed: int = 0, scorer: Any = None, k_max: int | None = None,
            elite: int = 2, crossover_rate: float = 0.4, progress: bool = False) -> ClusterResult:
    """Cluster X by maximising a reward with a genetic algorithm (block A).

    Args:
        X: the point set (n, d).
        critic: the reward; default :func:`tdml_lib.load_critic` (the shipped critic).
        n_clusters: fix K; by default the agent searches K in 2..k_max.
        generations: GA generations.
        population_size: individuals per generation.
        seed: seeds every random choice (NumPy generator, and DEAP's ``random`` use
            inside this call, restored afterwards).
        scorer: any object with ``score_many(X, labelings)``, instead of a critic.
        k_max: largest K in the initial population (default ``min(12, n // 3)``).
        elite: individuals copied unchanged into the next generation.
        crossover_rate: share of offspring made by crossover (the rest by mutation).
        progress: show a tqdm progress bar.

    Returns:
        :class:`ClusterResult`; ``history`` has one row per generation.

    Raises:
        ValueError: bad X (fewer than 3 points, NaN...) or ``n_clusters`` outside 1..n.
    """
    from tqdm.auto import tqdm

    Xc = check_points(X)
    n = Xc.shape[0]
    if n_clusters is not None:
        n_clusters = check_n_clusters(n_clusters, n)
    if population_size < 4 or generations < 0:
        raise ValueError("population_size must be >= 4 and generations >= 0.")
    reward = _scorer_from(critic, scorer)
    if n_clusters == 1 or np.ptp(Xc, axis=0).max() == 0:
        # One cluster asked for, or all points identical: there is nothing to search.
        labels = np.zeros(n, dtype=np.int64)
        r = float(reward.score_many(Xc, [labels])[0])
        hist = pd.DataFrame([{"generation": 0, "best": r, "mean": r, "std": 0.0, "n_clusters_best": 1}])
        return ClusterResult(labels, r, hist, labels[None], np.array([r]))
    rng = np.random.default_rng(seed)
    ops = _Operators(Xc, _knn(Xc, 10), rng, n_clusters)
    k_hi = k_max or max(2, min(12, n // 3))
    ks = [n_clusters] if n_clusters else list(range(2, k_hi + 1))
    if hasattr(reward, "score_prepared"):
        # a critic: its kNN graph is built once, and each generation is scored on it
        # without re-validating labels the operators made (critic.score_prepared)
        reward.eval()
        point_set = reward.embedder.prepare(Xc)

        def score(labelings: np.ndarray) -> np.ndarray:
            labels = graphs.as_label_tensor(labelings, point_set.device)
            return reward.score_prepared(point_set, labels).double().cpu().numpy()
    else:
        def score(labelings: np.ndarray) -> np.ndarray:
            return reward.score_many(Xc, labelings)
    cache: dict[bytes, float] = {}

    def evaluate(pop: list[Any]) -> None:
        todo = [ind for ind in pop if ind.tobytes() not in cache]
        unique = list({ind.tobytes(): ind for ind in todo}.values())
        if unique:
            for ind, s in zip(unique, score(np.stack(unique))):
                cache[ind.tobytes()] = float(s)
        for ind in pop:
            ind.fitness.values = (cache[ind.tobytes()],)

    toolbox = base.Toolbox()
    toolbox.register("select", tools.selTournament, tournsize=3)
    # -inf rewards (e.g. silhouette of one cluster) are left out of the statistics
    stats = tools.Statistics(key=lambda ind: ind.fitness.values[0] if np.isfinite(ind.fitness.values[0]) else np.nan)
    for name, fn in (("best", np.nanmax), ("mean", np.nanmean), ("std", np.nanstd)):
        stats.register(name, fn)
    logbook = tools.Logbook()
    hof = tools.HallOfFame(1, similar=np.array_equal)

    saved = random.getstate()
    random.seed(seed)  # DEAP's selTournament draws from the `random` module
    try:
        pop = [_individual(lab) for lab in _initial_population(Xc, population_size, ks, ops)]
        for gen in tqdm(range(generations + 1), desc="agent", disable=not progress):
            evaluate(pop)
            hof.update(pop)
            record = stats.compile(pop)
            logbook.record(generation=gen, n_clusters_best=int(hof[0].max()) + 1, **record)
            if gen == generations:
                break
            elites = tools.selBest(pop, elite)
            parents = toolbox.select(pop, len(pop) - elite)
            children = []
            for i, p in enumerate(parents):
                if rng.random() < crossover_rate:
                    other = parents[(i + 1) % len(parents)]
                    child = ops.crossover(np.asarray(p), np.asarray(other))
                else:
                    child = ops.mutate(np.asarray(p))
                children.append(_individual(child))
            pop = [_individual(np.asarray(e)) for e in elites] + children
    finally:
        random.setstate(saved)
    order = np.argsort([-ind.fitness.values[0] for ind in pop])
    best = np.asarray(hof[0]).astype(np.int64)
    history = pd.DataFrame(logbook)[["generation", "best", "mean", "std", "n_clusters_best"]]
    return ClusterResult(best, float(hof[0].fitness.values[0]), history,
                         np.stack([np.asarray(pop[i]) for i in order]).astype(np.int64),
                         np.array([pop[i].fitness.values[0] for i in order]))


def make_agent_proposals(X: object, scorer: Any, n: int = 4, seed: int = 0, generations: int = 15,
                         population_size: int = 32) -> list[np.ndarray]:
    """The agent's ``n`` best distinct clusterings of X under ``scorer``: the set D of
    the poster's Eq. (1), used as hard negatives by the adversarial training loop."""
    res = cluster(X, scorer=scorer, generations=generations, population_size=population_size, seed=seed)
    out, seen = [], set()
    for lab in res.population:
        key = lab.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(lab)
        if len(out) == n:
            break
    return out
