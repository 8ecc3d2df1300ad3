"""Measure a retrained critic against the shipped one, on the development seeds.

The shipped critic (``load_critic()``) is what a reader grades clusterings with and what
chapters 3 and 5 rank with; the agent's default reward (``load_reward()``) has its own
Numbers critic, and a candidate is measured in that role too. Replacing either is a
choice made on measurements, never on the held-out seeds:

1. transfer: both critics rank the candidate sets of chapter 5's cells trained on Numbers
   (:func:`~tdml_lib.experiments.transfer.rank_trained`; Best and Top 3 per cell and
   McNemar's exact test, problem by problem);
2. no holes: on development problems of Numbers and on separated blobs, the share of
   problems where the truth outscores each degenerate clustering
   (:func:`~tdml_lib.experiments.robustness.degenerate_scores`);
3. the agent: ``tdml.cluster`` with the default reward built on each critic
   (:func:`tdml_lib.load_reward` with ``critic=``), on development problems of the three
   image domains and of the synthetic families chapter 4 tests (K found, ACC).

Writes ``<out>/<name>.json`` (the tables, the command, provenance, the wall time)::

    python scripts/compare_shipped.py chapter5_recipe --candidate runs/critic_numbers_ch5.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_records import command_line  # noqa: E402
from tdml_lib.critic import load_critic, load_reward  # noqa: E402
from tdml_lib.experiments import DEVELOPMENT  # noqa: E402
from tdml_lib.experiments.clustering import compare_on_domains  # noqa: E402
from tdml_lib.experiments.robustness import degenerate_scores  # noqa: E402
from tdml_lib.experiments.synthetic import compare_rewards_on_synthetic, protocol_runs, protocol_summary  # noqa: E402
from tdml_lib.experiments.transfer import rank_trained  # noqa: E402
from tdml_lib.features import domain_problems, fit_feature_map  # noqa: E402
from tdml_lib.io import code_state, file_sha256, provenance, write_json  # noqa: E402
from tdml_lib.methods import AGENT_K_FOUND  # noqa: E402
from tdml_lib.problems import synthetic_problems  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--candidate", required=True, help="the retrained critic (.pt)")
    ap.add_argument("--n-eval", type=int, default=100, help="transfer test problems per domain")
    ap.add_argument("--n-holes", type=int, default=40, help="problems per family of the degenerate check")
    ap.add_argument("--agent-problems", type=int, default=30, help="agent test problems per image domain")
    ap.add_argument("--synthetic-problems", type=int, default=20, help="agent test problems per synthetic family")
    ap.add_argument("--rule", default="", help="the rule for replacing the shipped critic, fixed before the run "
                                                 "(stored with the measurements)")
    ap.add_argument("--generations", type=int, default=25)
    ap.add_argument("--population", type=int, default=40)
    ap.add_argument("--out", default="results/development/shipped")
    args = ap.parse_args()
    t0, state = time.time(), code_state()
    critics = {"shipped": load_critic(device="cpu"), "candidate": load_critic(args.candidate, device="cpu")}

    ranked = rank_trained(critics, train="numbers", n_eval_problems=args.n_eval, seeds=DEVELOPMENT)
    transfer = ranked.table()[["scorer", "protocol", "test", "best", "top3", "best_no_near_truth"]]
    paired = ranked.paired("candidate", "shipped", regime=None)
    print(transfer.round(1).to_string(index=False), paired.round(3).to_string(index=False), sep="\n\n")

    numbers = domain_problems("numbers", args.n_holes, split="test", feature_map=fit_feature_map("numbers"),
                              seed=DEVELOPMENT.problems)
    blobs = synthetic_problems(args.n_holes, families=("blobs",), n_clusters=(2, 6), points_per_class=(30, 100),
                               seed=DEVELOPMENT.synthetic)
    holes = pd.concat([degenerate_scores(critic, probs).assign(critic=name, problems=family)
                       for name, critic in critics.items() for family, probs in (("numbers", numbers), ("blobs", blobs))])
    holes = holes.groupby(["critic", "problems", "kind"], as_index=False)["truth_wins"].mean()
    print(holes.pivot_table(index="kind", columns=["critic", "problems"], values="truth_wins").round(2))

    rewards = {name: load_reward("cpu", critic=critic) for name, critic in critics.items()}
    budget = dict(generations=args.generations, population_size=args.population, seeds=DEVELOPMENT)
    domains = pd.concat([compare_on_domains(n_problems=args.agent_problems, reward=reward, methods=[AGENT_K_FOUND],
                                            **budget).summary().assign(reward=name)
                         for name, reward in rewards.items()], ignore_index=True)
    synthetic = protocol_summary(protocol_runs(compare_rewards_on_synthetic(
        rewards, n_problems=args.synthetic_problems, device="cpu", **budget)))
    synthetic = synthetic[synthetic.method == AGENT_K_FOUND]
    print(domains.round(3).to_string(index=False), synthetic.round(3).to_string(index=False), sep="\n\n")

    write_json(Path(args.out) / f"{args.name}.json", {
        "command": command_line(), "rule": args.rule,
        "candidate": {"path": args.candidate, "sha256": file_sha256(args.candidate),
                      "metadata": {k: str(v) for k, v in critics["candidate"].metadata.items()}},
        "shipped_sha256": file_sha256(ROOT / "tdml_lib/pretrained/critic_numbers.pt"),
        "transfer": transfer.to_dict(orient="records"), "paired": paired.to_dict(orient="records"),
        "holes": holes.to_dict(orient="records"), "agent_domains": domains.to_dict(orient="records"),
        "agent_synthetic": synthetic.to_dict(orient="records"), "seeds": "development",
        "wall_time_s": time.time() - t0, "provenance": provenance(params=vars(args), device="cpu", state=state)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
