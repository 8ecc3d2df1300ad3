"""The agent as a scikit-learn clusterer: ``TDMLClustering().fit_predict(X)``.

A thin wrapper of :func:`tdml_lib.agent.cluster` (block A) following scikit-learn's
estimator conventions (``BaseEstimator``, ``ClusterMixin``; parameters stored as given
in ``__init__`` and checked in ``fit``; results in attributes ending with ``_``), so
that it fits in pipelines, ``clone`` and grid searches, and passes the
``check_estimator`` checks that apply to a clusterer (``tests/test_estimator.py`` says
which do not apply and why). Explained in chapter 4.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from .agent import cluster


@contextmanager
def _threads(n_jobs: object) -> Iterator[None]:
    """torch and BLAS threads limited to ``n_jobs`` inside the block (None: unchanged)."""
    if n_jobs is None:
        yield
        return
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be None, -1 (all cores) or a positive integer, got {n_jobs!r}.")
    import torch
    from threadpoolctl import threadpool_limits

    n = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


class TDMLClustering(ClusterMixin, BaseEstimator):
    """Clustering by a learned reward: the book's agent as a scikit-learn estimator.

    A genetic algorithm searches clusterings of X (and their number) that maximise a
    reward, by default the mean of the two critics shipped with the package
    (:func:`tdml_lib.load_reward`, chapters 3 and 4).

    Args:
        n_clusters: K; ``None`` (default) lets the reward choose K in ``2..k_max``.
        reward: the reward, any object with ``score_many(X, labelings)`` (higher =
            better); default :func:`tdml_lib.load_reward`. Named ``reward``, not
            ``critic`` as first proposed, because any scorer fits, e.g.
            :class:`tdml_lib.metrics.IndexScorer` ``("silhouette")``; the same name as
            :func:`tdml_lib.agent.cluster`'s argument.
        generations: generations of the genetic algorithm.
        population_size: clusterings per generation (4 to
            :data:`tdml_lib.agent.MAX_POPULATION`).
        k_max: largest K searched (default ``min(12, n // 3)``).
        elite: clusterings carried unchanged into the next generation.
        crossover_rate: share of children made by crossover, in [0, 1].
        random_state: int, ``numpy.random.RandomState`` or None. An int is the agent's
            seed (``TDMLClustering(random_state=0)`` gives ``cluster(X, seed=0)``'s
            clustering); None draws a fresh seed at every fit.
        n_jobs: threads for the reward's torch and BLAS work during ``fit``: None
            (default) leaves the process's settings as they are, -1 uses every core.
        progress: show progress bars.
        k_choice: when K is searched, how K is picked among the best clustering of each
            K: ``"subsample"`` (default, the mean reward over random subsamples) or
            ``"reward"`` (the reward on the whole set); see :func:`tdml_lib.agent.cluster`.

    Attributes:
        labels_: the cluster of each point of the training data (int64, 0..K-1).
        n_clusters_: K of that clustering.
        reward_: its reward.
        history_: one row per generation (see :class:`tdml_lib.agent.ClusterResult`).
        best_per_k_: the best clustering found at each K (columns ``K``, ``reward``, ``labels``,
            and ``subsample_reward`` when K was picked by subsamples).
        notes_: seeds dropped on odd data, and other things worked around.
        n_features_in_: features seen in ``fit``; ``feature_names_in_`` with a DataFrame.

    Example:
        >>> from sklearn.datasets import make_blobs
        >>> from tdml_lib import TDMLClustering
        >>> from tdml_lib.metrics import IndexScorer
        >>> X, _ = make_blobs(300, centers=3, random_state=0)
        >>> TDMLClustering(reward=IndexScorer("silhouette"), random_state=0).fit(X).n_clusters_
        3
    """

    def __init__(self, n_clusters: int | None = None, reward: Any = None, generations: int = 40,
                 population_size: int = 48, k_max: int | None = None, elite: int = 2,
                 crossover_rate: float = 0.4, random_state: Any = None, n_jobs: int | None = None,
                 progress: bool = False, k_choice: str = "subsample") -> None:
        self.n_clusters = n_clusters
        self.reward = reward
        self.generations = generations
        self.population_size = population_size
        self.k_max = k_max
        self.elite = elite
        self.crossover_rate = crossover_rate
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.progress = progress
        self.k_choice = k_choice

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool) and rs >= 0:
            return int(rs)
        return int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    def fit(self, X: Any, y: Any = None) -> "TDMLClustering":
        """Cluster X (y is ignored: the agent never sees labels).

        Raises:
            ValueError: X is not a 2-D array of at least 3 finite numbers per column, or
                a parameter is of the wrong type or out of range.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=3)
        with _threads(self.n_jobs):
            res = cluster(X, reward=self.reward, n_clusters=self.n_clusters, generations=self.generations,
                          population_size=self.population_size, seed=self._seed(), k_max=self.k_max,
                          elite=self.elite, crossover_rate=self.crossover_rate, progress=self.progress,
                          k_choice=self.k_choice)
        self.labels_ = res.labels
        self.n_clusters_ = res.n_clusters
        self.reward_ = res.reward
        self.history_ = res.history
        self.best_per_k_ = res.best_per_k
        self.notes_ = res.notes
        return self
