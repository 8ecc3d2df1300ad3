"""Retrain one critic of the stored transfer run and compare its held-out ranks with the stored ones.

A reader who re-runs chapter 5 wants to know how closely the stored numbers come back. The
code, the package versions and the seeds fix every input, but not the processor: BLAS and
torch pick their kernels by CPU, and a hundred epochs of critic training carry the last-bit
differences in floating point into different weights. This retrains the critic of one
training domain, regime and critic seed exactly as chapter 5 does (the stored run's
parameters, :func:`~tdml_lib.experiments.transfer.recipes_from_parameters`), ranks the
same held-out candidate sets under the strict protocol, and counts the problems whose rank
of the truth equals the stored one. Nothing is chosen on it. Writes
``<out>/<train>_<regime>_seed<seed>_<cpu>.json`` (per test domain: problems, equal ranks,
Best retrained and stored; both processors; the command; provenance)::

    python scripts/check_retrain.py --train numbers --regime standard --seed 0
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_records import command_line  # noqa: E402
from tdml_lib import features  # noqa: E402
from tdml_lib.critic import fit_critic  # noqa: E402
from tdml_lib.experiments import HELD_OUT, recipes_from_parameters  # noqa: E402
from tdml_lib.experiments.transfer import rank_trained  # noqa: E402
from tdml_lib.io import code_state, provenance, write_json  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="numbers", choices=["numbers", "fashion"])
    ap.add_argument("--regime", default="standard", choices=["standard", "few-shot"])
    ap.add_argument("--seed", type=int, default=0, help="a critic seed of the stored run")
    ap.add_argument("--out", default="results/development/retrain")
    args = ap.parse_args()
    stored = json.loads((ROOT / "results/transfer/result.json").read_text())
    params = stored["params"]
    if args.seed not in params["CRITIC_SEEDS"]:
        raise SystemExit(f"--seed must be one of the stored run's critic seeds {params['CRITIC_SEEDS']}.")
    t0, state = time.time(), code_state()
    standard, few_shot, config = recipes_from_parameters(params)
    recipe = standard if args.regime == "standard" else few_shot
    problems = recipe.problems(args.train, features.fit_feature_map(args.train), seed=args.seed)
    critic = fit_critic(problems, config, seed=args.seed, device="cpu", progress=True)[0]
    ranks = rank_trained({"critic": critic}, args.train, params["TEST_DOMAINS"], ("strict",),
                         params["N_EVAL_PROBLEMS"], params["EVAL_NEGATIVES"], HELD_OUT).ranks()
    rows = []
    for test, part in ranks.groupby("test", sort=False):
        before = sorted((r for r in stored["metrics"]["ranks"] if r["scorer"] == "critic" and r["train"] == args.train
                         and r["regime"] == args.regime and r["protocol"] == "strict" and r["test"] == test
                         and r["critic_seed"] == args.seed), key=lambda r: r["problem"])
        old, new = np.array([r["rank"] for r in before]), part.sort_values("problem")["rank"].to_numpy()
        rows.append({"test": test, "n_problems": len(new), "equal_ranks": int(np.sum(old == new)),
                     "best_retrained": 100 * float(np.mean(new == 1)), "best_stored": 100 * float(np.mean(old == 1))})
    record = provenance(params=vars(args), device="cpu", state=state)
    cpu = re.sub(r"[^a-z0-9]+", "_", record["host"]["cpu"].lower()).strip("_")
    write_json(Path(args.out) / f"{args.train}_{args.regime.replace('-', '_')}_seed{args.seed}_{cpu}.json", {
        "command": command_line(),
        "cells": rows, "stored_cpu": stored["host"]["cpu"], "stored_commit": stored["git_commit"],
        "retrained_cpu": record["host"]["cpu"], "wall_time_s": time.time() - t0, "provenance": record})
    for row in rows:
        print(f"{args.train} -> {row['test']} (strict): {row['equal_ranks']} of {row['n_problems']} ranks equal; "
              f"Best {row['best_retrained']:.0f} retrained, {row['best_stored']:.0f} stored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
