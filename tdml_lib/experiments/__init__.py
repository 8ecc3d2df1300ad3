"""Experiments: the book's measurements, each one function that returns a typed result.

This layer sits above the blocks: it may import the critic (block C), the agent
(block A) and the data, and nothing below imports it. A chapter calls one function
per experiment and explains, plots and writes what it returns.

* :mod:`.training` — labelled training problems of a domain, the adversarial loop
  (agent vs critic), and the ``train-critic`` command;
* :mod:`.transfer` — the poster's transfer table, with the probe and the internal indices;
* :mod:`.synthetic` — the agent against k-means on synthetic families (chapter 4), and
  the ``train-synthetic-critic`` command (the default reward's second critic);
* :mod:`.clustering` — the agent against k-means on image domains: sampled test
  problems, whole test sets, and the agent's time and memory at scale (chapters 4, 8, 9);
* :mod:`.seeds` — development and held-out evaluation seeds, fixed before any run;
* :mod:`.baselines` — run a baseline on unlabelled images, then score it (chapters 6, 7).
"""
from __future__ import annotations

from .baselines import evaluate_baseline
from .clustering import (METHODS, DomainComparison, WholeSetResult, agent_scale_case, cluster_whole_set,
                         compare_on_domains, kmeans_silhouette_k, summarise)
from .seeds import DEVELOPMENT, HELD_OUT, EvaluationSeeds, evaluation_seeds
from ..methods import AGENT_ENSEMBLE_K_FOUND, DEFAULT_REWARD_TRAINING, SHIPPED_CRITIC_TRAINING
from .synthetic import (SYNTHETIC_METHODS, SYNTHETIC_TEST_K, SYNTHETIC_TRAINING, SyntheticComparison,
                        compare_on_synthetic, compare_rewards_on_synthetic, compare_training_protocols,
                        protocol_runs, protocol_summary)
from .training import adversarial_training, noise_augmented, training_problems
from .transfer import Recipe, TransferResult, run_transfer

__all__ = ["DEVELOPMENT", "HELD_OUT", "EvaluationSeeds", "evaluation_seeds", "SYNTHETIC_METHODS", "SYNTHETIC_TEST_K",
           "SYNTHETIC_TRAINING", "AGENT_ENSEMBLE_K_FOUND", "SHIPPED_CRITIC_TRAINING",
           "DEFAULT_REWARD_TRAINING", "compare_rewards_on_synthetic",
           "SyntheticComparison", "adversarial_training", "compare_on_synthetic", "compare_training_protocols",
           "protocol_runs", "protocol_summary", "evaluate_baseline",
           "training_problems", "METHODS", "DomainComparison", "WholeSetResult", "agent_scale_case",
           "cluster_whole_set", "compare_on_domains", "kmeans_silhouette_k", "summarise", "noise_augmented",
           "Recipe", "TransferResult", "run_transfer"]
