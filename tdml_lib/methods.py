"""The names of the clustering methods the book compares, in one place.

The experiments label their result rows with these names and the results chapter
(:mod:`tdml_lib.reference`) reads the rows by them, so both import them from here.
This module imports nothing, so any layer may use it.
"""
from __future__ import annotations

AGENT_K_FOUND = "agent (K found)"
"""The agent choosing K itself (the reward picks among the best clustering of every K)."""
AGENT_TRUE_K = "agent (true K)"
"""The agent told the true K (the same knowledge as k-means told the true K)."""
KMEANS_TRUE_K = "k-means (true K)"
KMEANS_SILHOUETTE = "k-means (K by silhouette)"
"""k-means at every K of the agent's range, the K of the highest silhouette kept."""
AGENT_ENSEMBLE_K_FOUND = "agent, critic ensemble (K found)"
"""The agent finding K with the mean of several seeds' critics as its reward
(:func:`tdml_lib.experiments.compare_training_protocols` with ``ensemble=True``)."""

SHIPPED_CRITIC_TRAINING = "shipped_critic"
"""The training key of result rows whose agent's reward is the default reward's Numbers
critic alone (trained on Numbers and all six synthetic families,
``critic.REWARD_CRITIC_PATH``; the key predates the shipped critic's retraining), beside
the synthetic critics' protocols ``leave_one_out`` and ``all_families``. One critic: it
has no seed range and no ensemble."""

DEFAULT_REWARD_TRAINING = "default_reward"
"""The training key of result rows whose agent's reward is the default reward
(``load_reward()``: a weighted mean of its Numbers critic, for one half, and the three
shipped synthetic critics, for one sixth each)."""
ONE_RUN_REWARDS = (DEFAULT_REWARD_TRAINING, SHIPPED_CRITIC_TRAINING)
"""Training keys of the given rewards (one run each: no critic seeds, no ensemble)."""
ONE_RUN_METHODS = (KMEANS_SILHOUETTE, AGENT_TRUE_K, AGENT_K_FOUND)
"""The methods chapter 4 runs with each given reward on the synthetic test problems."""
