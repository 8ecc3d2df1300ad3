"""Chapter paths that the chapters' small defaults skip, but the stored full-scale runs take.

Chapter 4 at its defaults trains one synthetic critic per protocol, so its critic-ensemble
rows and their markers on the protocol figure run only in the stored run (registry:
``SYNTH_CRITIC_SEEDS: [0, 1, 2]``, ``SYNTH_ENSEMBLE: True``). A figure of that path once
crashed a full run after half an hour; here it runs in a minute, at a tiny budget.
"""
from __future__ import annotations

import json

from tdml_lib import runner
from tdml_lib.critic import SYNTHETIC_PRETRAINED_PATHS
from tdml_lib.experiments import AGENT_ENSEMBLE_K_FOUND
from tdml_lib.experiments.clustering import AGENT_K_FOUND

TINY_ENSEMBLE_RUN = {
    "SYNTH_CRITIC_SEEDS": [0, 1], "SYNTH_ENSEMBLE": True, "SYNTH_TRAINING": ["all_families"],
    "SYNTH_TRAIN_PROBLEMS": 6, "SYNTH_EPOCHS": 3, "SYNTH_NEGATIVES": 4, "SYNTH_ADVERSARIAL_ROUNDS": 0,
    "SYNTH_PROBLEMS": 1, "DOMAINS": ["numbers"], "N_PROBLEMS": 1, "GENERATIONS": 3, "POPULATION": 8,
}


def test_agent_chapter_runs_with_several_critic_seeds_and_their_ensemble(tmp_path) -> None:
    record = runner.run_chapter("04_agent", TINY_ENSEMBLE_RUN, out_dir=tmp_path / "run", progress=False)
    assert record.status == "ok", f"chapter 4 failed with {TINY_ENSEMBLE_RUN}: {record.error}"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    rows = metrics["synthetic_protocols"]
    ensemble = [r for r in rows if r["method"] == AGENT_ENSEMBLE_K_FOUND]
    assert ensemble and all(r["n_critics"] == 2 and r["training"] == "all_families" for r in ensemble)
    one_critic = [r for r in rows if r["method"] == AGENT_K_FOUND and r["training"] == "all_families"]
    assert one_critic and all(r["n_seeds"] == 2 for r in one_critic)
    # the given rewards on the same test problems: the default reward (its Numbers critic
    # and every shipped synthetic-critic draw) and the reward's Numbers critic alone (one)
    given = {r["training"]: r["n_critics"] for r in rows if r["training"] != "all_families"}
    assert given == {"default_reward": 1 + len(SYNTHETIC_PRETRAINED_PATHS), "shipped_critic": 1}
    for r in rows:
        assert r["k_exact_min"] <= r["k_exact"] <= r["k_exact_max"]
