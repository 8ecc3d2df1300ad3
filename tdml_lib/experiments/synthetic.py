"""The agent against k-means on synthetic families where k-means is known to fail.

Uses the truth to *score* (never to cluster), so it lives here, above the agent.
Explained in chapter 4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..agent import cluster
from ..critic import CriticConfig, fit_critic
from ..metrics import external_scores
from ..problems import SYNTHETIC_FAMILIES, synthetic_problem, synthetic_problems
from .training import adversarial_training


@dataclass
class SyntheticComparison:
    """Agent vs k-means on synthetic families, each with a critic that never saw it."""

    scores: pd.DataFrame
    """One row per (family, problem, method): acc, nmi, ari, K_found, K_true."""
    examples: dict[str, dict[str, Any]]
    """Per family, the test problem where k-means (true K) scored lowest, the failure the
    family is named for: ``{"problem", "X", "truth", "labels": {method: labels}}``. Picked
    after scoring, to show; it steers nothing."""
    training_families: dict[str, tuple[str, ...]]
    """Per test family, the families its critic was trained on (all the others)."""


SYNTHETIC_TEST_K = {"moons": 2, "circles": 2, "varied_density": 3, "blobs": 4, "anisotropic": 3}
"""Clusters per test problem in :func:`compare_on_synthetic` (three uneven blobs: with two,
k-means rarely fails)."""


def compare_on_synthetic(test_families: Sequence[str] = ("moons", "circles", "varied_density"),
                         n_train_problems: int = 16, n_problems: int = 2,
                         n_clusters: int | Mapping[str, int] | None = None,
                         points_per_class: tuple[int, int] = (150, 200), critic_config: Any = None,
                         generations: int = 10, population_size: int = 20, seed: int = 0,
                         device: Any = "auto", adversarial_rounds: int = 0,
                         adversarial_problems: int = 8) -> SyntheticComparison:
    """The agent against k-means on families where k-means is known to fail.

    For each test family a critic is trained on the OTHER synthetic families only
    (leave one family out: what it rewards there was learned elsewhere), then each test
    problem is clustered by k-means with the true K, by the agent told the true K (the
    same knowledge as k-means), and by the agent finding K itself. True labels are
    used only to score the results afterwards.

    Args:
        test_families: families of :data:`tdml_lib.problems.SYNTHETIC_FAMILIES` to test on.
        n_train_problems: training problems per critic (2-D to 8-D, K in 2..6, 20 to
            ``max(100, points_per_class[1])`` points per cluster, so that the test
            problems' cluster sizes are inside the training range).
        n_problems: seeded test problems per family (2-D).
        n_clusters: clusters per test problem, one for all or per family (default
            :data:`SYNTHETIC_TEST_K`).
        points_per_class: sizes of the test problems' clusters.
        critic_config: a :class:`tdml_lib.critic.CriticConfig` (default: 30 epochs).
        generations, population_size: the agent's budget.
        seed: seeds the problems, the critics and the agent.
        adversarial_rounds: rounds of :func:`tdml_lib.experiments.adversarial_training` after
            each critic's training (0: near-miss negatives only), each on
            ``adversarial_problems`` of its training problems, the agent searching with
            the same ``generations`` and ``population_size``.
    """
    from sklearn.cluster import KMeans


    unknown = sorted(set(test_families) - set(SYNTHETIC_FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {SYNTHETIC_FAMILIES}.")
    cfg = critic_config or CriticConfig(epochs=30, gae_epochs=4, n_negatives=12)
    ks = n_clusters if isinstance(n_clusters, Mapping) else (
        {f: n_clusters for f in test_families} if n_clusters else SYNTHETIC_TEST_K)
    rows, examples, trained_on = [], {}, {}
    worst_kmeans_acc: dict[str, float] = {}  # which problem examples[family] shows
    for family in test_families:
        k = ks[family]
        others = trained_on[family] = tuple(f for f in SYNTHETIC_FAMILIES if f != family)
        # training clusters as large as the test's: a critic that never saw clusters of 150
        # points prefers to split them into pieces of the sizes it knows (limits.md)
        train = synthetic_problems(n_train_problems, families=others, n_features=(2, 8),
                                   points_per_class=(20, max(100, int(points_per_class[1]))), seed=seed)
        critic, _, training_set = fit_critic(train, cfg, seed=seed, device=device, progress=False)
        if adversarial_rounds:
            critic, _ = adversarial_training(critic, train, training_set, cfg, rounds=adversarial_rounds,
                                             problems_per_round=adversarial_problems,
                                             epochs_per_round=max(1, cfg.epochs // 2), generations=generations,
                                             population_size=population_size, seed=seed, progress=False)
        for i in range(n_problems):
            p = synthetic_problem(family, n_clusters=k, points_per_class=points_per_class,
                                  seed=seed + 1000 + i)
            run = dict(generations=generations, population_size=population_size, seed=seed + i)
            found = {
                "k-means (true K)": KMeans(k, n_init=3, random_state=seed).fit_predict(p.X),
                "agent (true K)": cluster(p.X, critic=critic, n_clusters=k, **run).labels,
                "agent (K found)": cluster(p.X, critic=critic, **run).labels,
            }
            scores = {method: external_scores(p.labels, labels) for method, labels in found.items()}
            rows += [{"family": family, "problem": i, "method": method, "K_true": k,
                      "K_found": int(labels.max()) + 1, **scores[method]} for method, labels in found.items()]
            kmeans_acc = scores["k-means (true K)"]["acc"]
            if kmeans_acc < worst_kmeans_acc.get(family, np.inf):
                worst_kmeans_acc[family] = kmeans_acc
                examples[family] = {"problem": i, "X": p.X, "truth": p.labels, "labels": found}
    return SyntheticComparison(pd.DataFrame(rows), examples, trained_on)
