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

Submodules are imported lazily (on first use of a name), as in the top-level package: a
chapter that runs a baseline then loads neither the critic nor the agent, and a stored
result depends only on the modules its chapter loaded (``tdml_lib.runner.registry.freshness``).
"""
from __future__ import annotations

from .._lazy import make_lazy

_LAZY = {
    # name -> (module, attribute); module "..methods" is the top-level tdml_lib.methods
    "evaluate_baseline": (".baselines", "evaluate_baseline"),
    "METHODS": (".clustering", "METHODS"),
    "DomainComparison": (".clustering", "DomainComparison"),
    "WholeSetResult": (".clustering", "WholeSetResult"),
    "agent_scale_case": (".clustering", "agent_scale_case"),
    "cluster_whole_set": (".clustering", "cluster_whole_set"),
    "compare_on_domains": (".clustering", "compare_on_domains"),
    "kmeans_silhouette_k": (".clustering", "kmeans_silhouette_k"),
    "summarise": (".clustering", "summarise"),
    "DEVELOPMENT": (".seeds", "DEVELOPMENT"),
    "HELD_OUT": (".seeds", "HELD_OUT"),
    "EvaluationSeeds": (".seeds", "EvaluationSeeds"),
    "evaluation_seeds": (".seeds", "evaluation_seeds"),
    "AGENT_ENSEMBLE_K_FOUND": ("..methods", "AGENT_ENSEMBLE_K_FOUND"),
    "DEFAULT_REWARD_TRAINING": ("..methods", "DEFAULT_REWARD_TRAINING"),
    "SHIPPED_CRITIC_TRAINING": ("..methods", "SHIPPED_CRITIC_TRAINING"),
    "SYNTHETIC_METHODS": (".synthetic", "SYNTHETIC_METHODS"),
    "SYNTHETIC_TEST_K": (".synthetic", "SYNTHETIC_TEST_K"),
    "SYNTHETIC_TRAINING": (".synthetic", "SYNTHETIC_TRAINING"),
    "SyntheticComparison": (".synthetic", "SyntheticComparison"),
    "compare_on_synthetic": (".synthetic", "compare_on_synthetic"),
    "compare_rewards_on_synthetic": (".synthetic", "compare_rewards_on_synthetic"),
    "compare_training_protocols": (".synthetic", "compare_training_protocols"),
    "protocol_runs": (".synthetic", "protocol_runs"),
    "protocol_summary": (".synthetic", "protocol_summary"),
    "adversarial_training": (".training", "adversarial_training"),
    "noise_augmented": (".training", "noise_augmented"),
    "training_problems": (".training", "training_problems"),
    "Recipe": (".transfer", "Recipe"),
    "TransferResult": (".transfer", "TransferResult"),
    "recipes_from_parameters": (".transfer", "recipes_from_parameters"),
    "run_transfer": (".transfer", "run_transfer"),
}

_SUBMODULES = {"baselines", "clustering", "robustness", "seeds", "synthetic", "training", "transfer"}

__all__ = sorted(_LAZY)


make_lazy(__name__, _LAZY, _SUBMODULES)
