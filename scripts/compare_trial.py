"""Measure a recipe step under trial, or a critic configuration, on the development seeds.

The base recipe is the one the stored transfer run trained (its parameters are read from
``results/transfer/result.json``), so a gain here is a gain over what chapter 8 shows.
Writes ``<out>/<name>.csv`` (one row per cell, :func:`compare_recipes`) and
``<out>/<name>.json`` (the command, the recipes, provenance, the wall time).

    python scripts/compare_trial.py boundary_numbers_standard --train numbers --regime standard
    python scripts/compare_trial.py wider_numbers_standard --config hidden=128 epochs=200
    python scripts/compare_trial.py spread_numbers_few_shot --trial spread --regime few-shot
    python scripts/compare_trial.py average_fashion_standard --train fashion --average-last 25

A recipe trial (``--trial boundary``, the default: :class:`~tdml_lib.experiments.trials.BoundaryRecipe`;
``--trial spread``: the recipe with ``Recipe.interpolation_span``, by default
:data:`~tdml_lib.experiments.training.VARIANCE_PRESERVING_SPAN`) trains
the stored recipe and the recipe with the step, both with the stored configuration
(:func:`compare_recipes`); ``--config KEY=VALUE ...`` instead trains the stored recipe with
the stored configuration and with those fields changed (:func:`compare_configs`);
``--average-last K`` compares each critic with the average of its own weights over its last
``K`` epochs (:func:`compare_tail_average`; the record names it ``tail_average_epochs``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tdml_lib.critic import CriticConfig  # noqa: E402
from tdml_lib.experiments import DEVELOPMENT, Recipe  # noqa: E402
from tdml_lib.experiments.recipe_comparison import (  # noqa: E402
    compare_configs, compare_recipes, compare_tail_average)
from tdml_lib.experiments.training import VARIANCE_PRESERVING_SPAN  # noqa: E402
from tdml_lib.experiments.trials import BoundaryRecipe  # noqa: E402
from tdml_lib.io import atomic_path, code_state, provenance, write_json  # noqa: E402


def stored_recipes(params: dict) -> tuple[dict, dict, CriticConfig]:
    """Keyword arguments of the stored run's standard and few-shot recipes, and its config
    (as chapter 5 builds them from its parameters)."""
    standard = dict(n_problems=params["N_TRAIN_PROBLEMS"], noise_copies=params["NOISE_COPIES"],
                    n_synthetic=params["N_SYNTHETIC"],
                    small_pool_problems=round(params["SMALL_POOL_SHARE"] * params["N_TRAIN_PROBLEMS"]),
                    small_pool_size=params["FEW_SHOT_EXAMPLES_PER_CLASS"], overlap_copies=params["OVERLAP_COPIES"],
                    overlap_pull=tuple(params["OVERLAP_PULL"]), overlap_pairs=params["OVERLAP_PAIRS"])
    few_shot = dict(n_problems=params["FEW_SHOT_PROBLEMS"], noise_copies=params["NOISE_COPIES"],
                    n_synthetic=params["N_SYNTHETIC"], examples_per_class=params["FEW_SHOT_EXAMPLES_PER_CLASS"],
                    interpolate_to=tuple(params["FEW_SHOT_POINTS"]), overlap_copies=params["OVERLAP_COPIES"],
                    interpolation_span=VARIANCE_PRESERVING_SPAN if params.get("FEW_SHOT_KEEP_SPREAD") else 0.0)
    config = CriticConfig(n_negatives=params["N_NEGATIVES"], n_degenerate=params["N_DEGENERATE"],
                          epochs=params["EPOCHS"], gae_epochs=params["GAE_EPOCHS"], inputs=params["CRITIC_INPUTS"],
                          average_tail=params.get("CRITIC_AVERAGE_TAIL", 0.0))
    return standard, few_shot, config


def config_changes(pairs: list[str], config: CriticConfig) -> dict:
    """``["hidden=128", "epochs=200"]`` as ``CriticConfig`` fields, each cast to the type of
    the stored value (a clear error for an unknown field or a bad value)."""
    known = {f.name for f in fields(CriticConfig)}
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--config takes FIELD=VALUE with FIELD one of {sorted(known)}; got {pair!r}.")
        current = getattr(config, key)
        if isinstance(current, (tuple, list)):
            raise SystemExit(f"--config cannot set {key!r} (a sequence); change it in code.")
        try:
            changes[key] = type(current)(value)
        except ValueError:
            raise SystemExit(f"--config {key}: {value!r} is not of type {type(current).__name__}.") from None
    return changes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--train", default="numbers")
    ap.add_argument("--regime", default="standard", choices=["standard", "few-shot"])
    ap.add_argument("--critic-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--test-domains", nargs="+", default=["numbers", "letters", "fashion"])
    ap.add_argument("--trial", default="boundary", choices=["boundary", "spread"],
                    help="the recipe step under trial (trials.BoundaryRecipe, or Recipe.interpolation_span)")
    ap.add_argument("--span", type=float, default=None,
                    help="Recipe.interpolation_span of the variant; default: training.VARIANCE_PRESERVING_SPAN")
    ap.add_argument("--boundary-share", type=float, nargs=2, default=None,
                    help="BoundaryRecipe.boundary_share (lowest, highest); default: the trial's default")
    ap.add_argument("--boundary-reach", type=float, nargs=2, default=None,
                    help="BoundaryRecipe.boundary_reach (lowest, highest); default: the trial's default")
    ap.add_argument("--config", nargs="+", default=None, metavar="FIELD=VALUE",
                    help="a configuration trial: these CriticConfig fields changed in the variant")
    ap.add_argument("--average-last", type=int, default=None, metavar="K",
                    help="a training trial: each critic against the mean of its weights over its last K epochs")
    ap.add_argument("--out", default="results/development")
    args = ap.parse_args()
    params = json.loads((ROOT / "results/transfer/result.json").read_text())["params"]
    standard, few_shot, config = stored_recipes(params)
    kwargs = standard if args.regime == "standard" else few_shot
    trial = {name: tuple(value) for name, value in (("boundary_share", args.boundary_share),
                                                    ("boundary_reach", args.boundary_reach)) if value}
    if args.trial == "spread" and trial:
        raise SystemExit("--boundary-* flags belong to --trial boundary.")
    if args.trial == "boundary" and args.span is not None:
        raise SystemExit("--span belongs to --trial spread.")
    if args.trial == "spread":
        trial = {"interpolation_span": VARIANCE_PRESERVING_SPAN if args.span is None else args.span}
    if args.config and (trial or args.trial != "boundary"):
        raise SystemExit("--config measures a configuration on the stored recipe; drop --trial and its flags.")
    if args.average_last is not None and (trial or args.trial != "boundary" or args.config):
        raise SystemExit("--average-last measures the stored recipe and configuration; drop --trial, --config "
                         "and their flags.")
    common = dict(train=args.train, regime=args.regime, test_domains=args.test_domains,
                  critic_seeds=args.critic_seeds, n_eval_problems=args.n_eval, seeds=DEVELOPMENT, device="cpu")
    t0, state = time.time(), code_state()   # the code as the run starts, before any output exists
    if args.average_last is not None:
        base = variant = Recipe(**kwargs)
        variant_config = config
        table = compare_tail_average(base, config, average_last=args.average_last, **common)
    elif args.config:
        base = variant = Recipe(**kwargs)
        variant_config = replace(config, **config_changes(args.config, config))
        table = compare_configs(base, config, variant_config, **common)
    else:
        step = Recipe if args.trial == "spread" else BoundaryRecipe
        base, variant, variant_config = Recipe(**kwargs), step(**kwargs, **trial), config
        table = compare_recipes(base, variant, critic_config=config, **common)
    out = Path(args.out)
    with atomic_path(out / f"{args.name}.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_json(out / f"{args.name}.json", {
        "command": "python " + shlex.join(["scripts/compare_trial.py", *sys.argv[1:]]),
        "base": base.as_dict(), "variant": variant.as_dict(), "config": config.as_dict(),
        "variant_config": {**variant_config.as_dict(),
                           **({} if args.average_last is None else {"tail_average_epochs": args.average_last})},
        "wall_time_s": time.time() - t0, "seeds": "development",
        "provenance": provenance(params=vars(args), device="cpu", state=state)})
    print(table.drop(columns=["train"]).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
