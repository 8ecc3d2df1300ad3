"""Exploratory pilot, not a trial: few-shot problems filled with the training domain's
*unlabelled* images instead of within-class interpolation.

Why: filled-up few-shot problems reverse the kNN cue by which a real truth beats its
boundary-moved near miss (chapter 8, Figure 8.4): each point's neighbours are fills of
its own class. Real images keep real neighbourhoods. Each problem here keeps a draw of
the labelled pool (the same pool of ``examples_per_class`` images per class as
:func:`tdml_lib.problems.few_shot_problems`), and is filled up to 20-100 points per class
with images of the domain's training split whose labels are **never read**: each is
labelled by the vote of its ``k`` nearest pool images (the argmax, or a draw from the vote
with ``sampled``), among the problem's classes, and only images whose overall vote falls
on one of them are used. The domain's unlabelled images are already used by the feature
map (PCA fitted on them), so the few-shot critic still sees 20 labels per class.

The pilot trains the stored few-shot recipe (``results/transfer/result.json``) with these
problems in place of the interpolated ones, for critic seeds 0 and 1, and ranks the
development seeds' candidate sets under the standard protocol; ``interpolated`` trains the
stored recipe as it is, the base to compare with, on the same seeds. Writes ``<out>/<name>.csv`` (per-problem ranks)
and ``<out>/<name>.json`` (command, provenance, wall time, Best per test domain and seed).

    python scripts/pilot_unlabelled_fill.py numbers argmax
    python scripts/pilot_unlabelled_fill.py numbers interpolated    # the base: the stored recipe
    python scripts/pilot_unlabelled_fill.py fashion sampled --out results/development/pilots

A step that earns its place goes through ``scripts/compare_trial.py`` (five critic seeds,
paired tests, a rule written first) before any stored run takes it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdml_lib import data, features  # noqa: E402
from tdml_lib.experiments import training, transfer  # noqa: E402
from tdml_lib.experiments.recipe_comparison import DEVELOPMENT  # noqa: E402
from tdml_lib.io import code_state, provenance, write_json  # noqa: E402
from tdml_lib.problems import Problem, standardize  # noqa: E402


def unlabelled_fill_problems(domain: str, n_problems: int, examples_per_class: int = 20,
                             points: tuple[int, int] = (20, 100), seed: int = 0, feature_map=None,
                             k: int = 10, n_unlabelled: int = 20000, sample_labels: bool = True) -> list[Problem]:
    """Few-shot problems: a draw of the labelled pool per class, filled up with unlabelled
    images of ``domain``'s training split labelled by their ``k`` nearest pool images."""
    ds = data.load(domain, "train")
    fmap = feature_map if feature_map is not None else features.fit_feature_map("numbers", seed=0)
    labels = np.asarray(ds.labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pool = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=examples_per_class, replace=False)
                           for c in classes])          # the same pool draw as few_shot_problems
    rest = np.setdiff1d(np.arange(len(labels)), pool)
    unl = np.sort(rng.choice(rest, size=min(n_unlabelled, len(rest)), replace=False))
    Fp = fmap.transform(ds.images[pool]).astype(np.float64); yp = labels[pool]
    Fu = fmap.transform(ds.images[unl]).astype(np.float64)   # labels[unl] never read
    # (unlabelled, pool) squared distances; the broadcast difference this replaced held an
    # (unlabelled, pool, features) array of about 1 GB for the same neighbours
    near = np.argsort(cdist(Fu, Fp, "sqeuclidean"), 1)[:, :k]
    votes = np.zeros((len(Fu), len(classes)))
    for j in range(k):
        np.add.at(votes, (np.arange(len(Fu)), yp[near[:, j]]), 1.0)
    top = votes.argmax(1)
    lo = max(2, examples_per_class // 3)
    out = []
    for _ in range(n_problems):
        K = int(rng.integers(2, 11))
        C = np.sort(rng.choice(classes, size=K, replace=False))
        elig = np.flatnonzero(np.isin(top, C))
        v = votes[elig][:, C]; v = v / v.sum(1, keepdims=True)
        if sample_labels:
            lab = (v.cumsum(1) > rng.uniform(size=(len(v), 1))).argmax(1)
        else:
            lab = v.argmax(1)
        rows, ys = [], []
        for i, c in enumerate(C):
            own = rng.choice(np.flatnonzero(yp == c), size=int(rng.integers(lo, examples_per_class + 1)), replace=False)
            target = int(rng.integers(points[0], points[1] + 1))
            cand = elig[lab == i]
            fill = rng.choice(cand, size=min(len(cand), max(0, target - len(own))), replace=False)
            rows += [Fp[own], Fu[fill]]
            ys.append(np.full(len(own) + len(fill), i))
        X = np.concatenate(rows); y = np.concatenate(ys)
        order = rng.permutation(len(y))
        out.append(Problem(standardize(X[order]), y[order], f"{domain} (few-shot, unlabelled fill)", tuple(int(c) for c in C)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", choices=["numbers", "fashion"])
    parser.add_argument("labels", choices=["interpolated", "argmax", "sampled", "mixed"],
                        help="how an unlabelled fill is labelled by its vote; 'interpolated': the stored "
                             "recipe as it is (within-class interpolation), the pilot's base; 'mixed': "
                             "every other problem filled by interpolation, as the stored recipe does, the "
                             "others with argmax-labelled unlabelled images")
    parser.add_argument("--out", default="results/development/pilots")
    args = parser.parse_args(argv)
    name = f"unlabelled_fill_{args.train}_{args.labels}" if args.labels != "interpolated" else f"base_{args.train}"
    state, t0 = code_state(), time.time()
    drawn = training.training_problems

    def few_shot_filled(domain, n_problems, seed=0, split="train", feature_map=None, examples_per_class=None,
                        synthetic_points=(20, 100)):
        if examples_per_class is None:
            return drawn(domain, n_problems, seed=seed, split=split, feature_map=feature_map,
                         synthetic_points=synthetic_points)
        if args.labels != "mixed":
            return unlabelled_fill_problems(domain, n_problems, examples_per_class, (20, 100), seed=seed,
                                            feature_map=feature_map, sample_labels=args.labels == "sampled")
        # alternate the two kinds, so that the recipe's shrunk copies (own[::2]) and
        # subsampled copies (own[1::2]) take both
        interpolated = training.interpolated_copies(
            drawn(domain, n_problems - n_problems // 2, seed=seed, feature_map=feature_map,
                  examples_per_class=examples_per_class), (20, 100), seed=seed + 5, span=stored_span)
        filled = unlabelled_fill_problems(domain, n_problems // 2, examples_per_class, (20, 100), seed=seed,
                                          feature_map=feature_map, sample_labels=False)
        return [p for pair in zip(interpolated, filled) for p in pair] + interpolated[len(filled):]

    params = json.loads((ROOT / "results/transfer/result.json").read_text())["params"]
    _, few_shot, config = transfer.recipes_from_parameters(params)
    stored_span = few_shot.interpolation_span
    if args.labels != "interpolated":
        # a pilot: the stored recipe's own problems come from here (Recipe.problems reads
        # the module's training_problems); nothing else of the recipe changes
        training.training_problems = few_shot_filled
        few_shot = replace(few_shot, interpolate_to=None)
    res = transfer.run_transfer(train_domains=(args.train,), regimes=("few-shot",), protocols=("standard",),
                                few_shot=few_shot, critic_config=config, critic_seeds=(0, 1), seeds=DEVELOPMENT,
                                probe=False, index_scorers=(), progress=False)
    ranks = res.ranks()
    best = (ranks.assign(first=ranks["rank"] == 1).groupby(["test", "critic_seed"])["first"].mean().unstack() * 100)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    ranks.to_csv(out / f"{name}.csv", index=False)
    write_json(out / f"{name}.json", {
        "command": "python " + shlex.join(["scripts/pilot_unlabelled_fill.py", *sys.argv[1:]]),
        "recipe": few_shot.as_dict(), "best": best.round(1).to_dict(),
        "wall_time": time.time() - t0, **provenance(vars(args), seed=0, state=state)})
    print(best.round(1).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
