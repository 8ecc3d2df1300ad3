"""Exploratory pilot, not a trial: few-shot problems filled with the training domain's
*unlabelled* images instead of within-class interpolation.

Why: filled-up few-shot problems reverse the kNN cue by which a real truth beats its
boundary-moved near miss (chapter 8, Figure 8.4): each point's neighbours are fills of
its own class. Real images keep real neighbourhoods. Each problem here keeps a draw of
the labelled pool (the same pool of ``examples_per_class`` images per class as
:func:`tdml_lib.problems.few_shot_problems`), and is filled up to 20-100 points per class
with images of the domain's training split whose labels are **never read**: each is
labelled by the argmax of the vote of its ten nearest pool images among the problem's
classes, and only images whose overall vote falls on one of them are used
(:func:`tdml_lib.experiments.training.unlabelled_fill_problems`, where this script's own copy
of the fill moved; the same problems, checked). The domain's unlabelled images are already used by the feature
map (PCA fitted on them), so the few-shot critic still sees 20 labels per class.

The pilot trains the stored few-shot recipe (``results/transfer/result.json``) with these
problems in place of the interpolated ones, for critic seeds 0 and 1, and ranks the
development seeds' candidate sets under the standard protocol; ``interpolated`` trains the
stored recipe as it is, the base to compare with, on the same seeds. Writes ``<out>/<name>.csv`` (per-problem ranks)
and ``<out>/<name>.json`` (command, provenance, wall time, Best per test domain and seed).

    python scripts/pilot_unlabelled_fill.py numbers argmax
    python scripts/pilot_unlabelled_fill.py numbers interpolated    # the base: the stored recipe
    python scripts/pilot_unlabelled_fill.py fashion mixed --out results/development/pilots

A step that earns its place goes through ``scripts/compare_trial.py`` (five critic seeds,
paired tests, a rule written first) before any stored run takes it: this one as
``--trial unlabelled`` (``Recipe.unlabelled_share``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_records import command_line  # noqa: E402
from tdml_lib.experiments import transfer  # noqa: E402
from tdml_lib.experiments.recipe_comparison import DEVELOPMENT  # noqa: E402
from tdml_lib.io import code_state, provenance, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", choices=["numbers", "fashion"])
    parser.add_argument("labels", choices=["interpolated", "argmax", "mixed"],
                        help="'interpolated': the stored recipe as it is (within-class interpolation), the "
                             "pilot's base; 'argmax': every problem filled with unlabelled images, each "
                             "labelled by the argmax of its vote; 'mixed': every other problem filled by "
                             "interpolation, as the stored recipe does, the others as 'argmax'")
    parser.add_argument("--out", default="results/development/pilots")
    args = parser.parse_args(argv)
    name = f"unlabelled_fill_{args.train}_{args.labels}" if args.labels != "interpolated" else f"base_{args.train}"
    state, t0 = code_state(), time.time()
    params = json.loads((ROOT / "results/transfer/result.json").read_text())["params"]
    _, few_shot, config = transfer.recipes_from_parameters(params)
    if args.labels != "interpolated":
        # every problem (argmax) or every other one (mixed) filled with unlabelled images; the
        # library makes the very problems this script's own copy made for the stored runs
        # (checked for both domains at seeds 0 and 1 when it moved there)
        few_shot = replace(few_shot, unlabelled_share=1.0 if args.labels == "argmax" else 0.5)
    res = transfer.run_transfer(train_domains=(args.train,), regimes=("few-shot",), protocols=("standard",),
                                few_shot=few_shot, critic_config=config, critic_seeds=(0, 1), seeds=DEVELOPMENT,
                                probe=False, index_scorers=(), progress=False)
    ranks = res.ranks()
    best = (ranks.assign(first=ranks["rank"] == 1).groupby(["test", "critic_seed"])["first"].mean().unstack() * 100)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    ranks.to_csv(out / f"{name}.csv", index=False)
    write_json(out / f"{name}.json", {
        "command": command_line(),
        "recipe": few_shot.as_dict(), "best": best.round(1).to_dict(),
        "wall_time": time.time() - t0, **provenance(vars(args), seed=0, state=state)})
    print(best.round(1).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
