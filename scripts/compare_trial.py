"""Measure a recipe step under trial, or a critic configuration, on the development seeds.

The base recipe is the one the stored transfer run trained (its parameters are read from
``results/transfer/result.json``), so a gain here is a gain over what chapter 8 shows.
Writes ``<out>/<name>.csv`` (one row per cell, :func:`compare_recipes`) and
``<out>/<name>.json`` (the command, the recipes, provenance, the wall time).

    python scripts/compare_trial.py boundary_numbers_standard --train numbers --regime standard
    python scripts/compare_trial.py wider_numbers_standard --config hidden=128 epochs=200
    python scripts/compare_trial.py spread_numbers_few_shot --trial spread --regime few-shot
    python scripts/compare_trial.py average_fashion_standard --train fashion --average-last 25
    python scripts/compare_trial.py more_numbers_standard --parameter N_TRAIN_PROBLEMS=400 N_SYNTHETIC=400
    python scripts/compare_trial.py overlap_numbers_few_shot --regime few-shot --recipe overlap_pairs=3 "overlap_pull=[0.4, 0.8]"
    python scripts/compare_trial.py overlap_numbers_few_shot_confirmation --seed-set confirmation --critic-seeds 5 6 7 8 9 ...
    python scripts/compare_trial.py unlabelled_numbers_few_shot_confirmation --regime few-shot --trial unlabelled --seed-set confirmation
    python scripts/compare_trial.py smallpool_unlabelled_numbers_standard_confirmation --trial small-pool-unlabelled --seed-set confirmation

A recipe trial (``--trial boundary``, the default: :class:`~tdml_lib.experiments.trials.BoundaryRecipe`;
``--trial spread``: the recipe with ``Recipe.interpolation_span``, by default
:data:`~tdml_lib.experiments.training.VARIANCE_PRESERVING_SPAN`; ``--trial gentle-shrink``:
``Recipe.shrink_min_factor``, by default :data:`~tdml_lib.experiments.trials.GENTLE_SHRINK`;
``--trial unlabelled``: ``Recipe.unlabelled_share``, few-shot problems partly filled with the
domain's unlabelled images, by default :data:`~tdml_lib.experiments.training.UNLABELLED_SHARE`;
``--trial small-pool-unlabelled``: :class:`~tdml_lib.experiments.trials.SmallPoolUnlabelledRecipe`, the
standard recipe's small-pool problems filled the same way) trains
the stored recipe and the recipe with the step, both with the stored configuration
(:func:`compare_recipes`); ``--config KEY=VALUE ...`` instead trains the stored recipe with
the stored configuration and with those fields changed (:func:`compare_configs`);
``--parameter NAME=VALUE ...`` trains the recipe chapter 5 builds from the stored run's
parameters and the one it builds with those parameters changed (:func:`compare_recipes`;
:func:`~tdml_lib.experiments.transfer.recipes_from_parameters`);
``--recipe FIELD=VALUE ...`` trains the stored recipe and the stored recipe with those
:class:`~tdml_lib.experiments.training.Recipe` fields changed, for a step chapter 5 has no
parameter for yet (:func:`compare_recipes`);
``--average-last K`` compares each critic with the average of its own weights over its last
``K`` epochs (:func:`compare_tail_average`; the record names it ``tail_average_epochs``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from script_records import save_table  # noqa: E402
from tdml_lib.critic import CriticConfig  # noqa: E402
from tdml_lib.experiments.recipe_comparison import (  # noqa: E402
    COMPARISON_SEEDS, compare_configs, compare_recipes, compare_tail_average)
from tdml_lib.experiments.transfer import recipes_from_parameters  # noqa: E402
from tdml_lib.experiments.training import UNLABELLED_SHARE, VARIANCE_PRESERVING_SPAN, Recipe  # noqa: E402
from tdml_lib.experiments.trials import GENTLE_SHRINK, BoundaryRecipe, SmallPoolUnlabelledRecipe  # noqa: E402
from tdml_lib.io import code_state  # noqa: E402


def json_pairs(pairs: list[str], known: Mapping, flag: str, names: str, example: str) -> list[tuple[str, Any, str]]:
    """``["KEY=VALUE", ...]`` as ``(key, value read as JSON, text)``, each key one of
    ``known`` (a clear error naming ``flag`` for an unknown key or a value that is not JSON)."""
    out = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"{flag} takes {names}; got {pair!r}.")
        try:
            out.append((key, json.loads(text), text))
        except json.JSONDecodeError:
            raise SystemExit(f"{flag} {key}: {text!r} is not a JSON value ({example}).") from None
    return out


def parameter_changes(pairs: list[str], params: dict) -> dict:
    """``["N_TRAIN_PROBLEMS=400"]`` as changes to the stored run's parameters, each value
    read as JSON and of the stored value's type (a clear error for an unknown name or a
    bad value)."""
    changes = {}
    for key, value, text in json_pairs(pairs, params, "--parameter",
                                       f"NAME=VALUE with NAME one of chapter 5's parameters {sorted(params)}",
                                       "400, true, [20, 100]"):
        if type(value) is not type(params[key]):
            raise SystemExit(f"--parameter {key}: {text!r} is not of the stored type {type(params[key]).__name__}.")
        changes[key] = value
    return changes


def recipe_changes(pairs: list[str], recipe: Recipe) -> dict:
    """``["overlap_pairs=3", "overlap_pull=[0.4, 0.8]"]`` as changes to ``recipe``'s fields,
    each value read as JSON and of the stored value's type (a list for a tuple field, an
    integer for a real one; a clear error for an unknown field or a bad value)."""
    current = recipe.as_dict()
    changes = {}
    for key, value, text in json_pairs(pairs, current, "--recipe", f"FIELD=VALUE with FIELD one of {sorted(current)}",
                                       "3, true, [0.4, 0.8]"):
        old = current[key]
        if isinstance(old, tuple) and isinstance(value, list) and len(value) == len(old):
            value = tuple(float(v) if isinstance(o, float) and isinstance(v, int) else v for o, v in zip(old, value))
        elif isinstance(old, float) and type(value) is int:
            value = float(value)
        if type(value) is not type(old) or (isinstance(old, tuple) and
                                            [type(v) for v in value] != [type(o) for o in old]):
            raise SystemExit(f"--recipe {key}: {text!r} is not of the stored value's type ({old!r}).")
        changes[key] = value
    return changes


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


#: Each recipe trial's recipe class (``spread`` is a field of the plain Recipe).
TRIAL_RECIPES = {"boundary": BoundaryRecipe, "spread": Recipe, "gentle-shrink": Recipe, "unlabelled": Recipe,
                 "small-pool-unlabelled": SmallPoolUnlabelledRecipe}
#: Each recipe trial's own flags (argparse names) -> the variant's field each one sets.
TRIAL_FLAGS = {"boundary": {"boundary_share": "boundary_share", "boundary_reach": "boundary_reach"},
               "spread": {"span": "interpolation_span"},
               "gentle-shrink": {"shrink_min_factor": "shrink_min_factor"},
               "unlabelled": {"unlabelled_share": "unlabelled_share"},
               "small-pool-unlabelled": {"small_pool_share": "small_pool_unlabelled_share"}}
#: The fields a trial sets when its flags are not given (a trial without an entry keeps
#: its class's own defaults).
TRIAL_DEFAULTS = {"spread": {"interpolation_span": VARIANCE_PRESERVING_SPAN},
                  "gentle-shrink": {"shrink_min_factor": GENTLE_SHRINK},
                  "unlabelled": {"unlabelled_share": UNLABELLED_SHARE}}


def trial_changes(args: argparse.Namespace) -> dict:
    """The variant's fields that ``--trial`` and its own flags set (its defaults where a flag
    is not given; a pair of numbers as a tuple); a clear error for a flag of another trial."""
    for trial, flags in TRIAL_FLAGS.items():
        stray = [name for name in flags if trial != args.trial and getattr(args, name) is not None]
        if stray:
            raise SystemExit(f"--{stray[0].replace('_', '-')} belongs to --trial {trial}.")
    given = {field: tuple(value) if isinstance(value, list) else value
             for name, field in TRIAL_FLAGS[args.trial].items() if (value := getattr(args, name)) is not None}
    return {**TRIAL_DEFAULTS.get(args.trial, {}), **given}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--train", default="numbers")
    ap.add_argument("--regime", default="standard", choices=["standard", "few-shot"])
    ap.add_argument("--critic-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--test-domains", nargs="+", default=["numbers", "letters", "fashion"])
    ap.add_argument("--trial", default="boundary", choices=sorted(TRIAL_RECIPES),
                    help="the recipe step under trial (trials.BoundaryRecipe, Recipe.interpolation_span, "
                         "Recipe.shrink_min_factor, Recipe.unlabelled_share, or trials.SmallPoolUnlabelledRecipe)")
    ap.add_argument("--small-pool-share", type=float, default=None,
                    help="SmallPoolUnlabelledRecipe.small_pool_unlabelled_share; default: the trial's default")
    ap.add_argument("--unlabelled-share", type=float, default=None,
                    help="Recipe.unlabelled_share of the variant; default: training.UNLABELLED_SHARE")
    ap.add_argument("--shrink-min-factor", type=float, default=None,
                    help="Recipe.shrink_min_factor of the variant; default: trials.GENTLE_SHRINK")
    ap.add_argument("--span", type=float, default=None,
                    help="Recipe.interpolation_span of the variant; default: training.VARIANCE_PRESERVING_SPAN")
    ap.add_argument("--boundary-share", type=float, nargs=2, default=None,
                    help="BoundaryRecipe.boundary_share (lowest, highest); default: the trial's default")
    ap.add_argument("--boundary-reach", type=float, nargs=2, default=None,
                    help="BoundaryRecipe.boundary_reach (lowest, highest); default: the trial's default")
    ap.add_argument("--config", nargs="+", default=None, metavar="FIELD=VALUE",
                    help="a configuration trial: these CriticConfig fields changed in the variant")
    ap.add_argument("--parameter", nargs="+", default=None, metavar="NAME=VALUE",
                    help="a recipe trial: the recipe chapter 5 builds with these parameters changed")
    ap.add_argument("--recipe", nargs="+", default=None, metavar="FIELD=VALUE",
                    help="a recipe trial: the stored recipe with these Recipe fields changed")
    ap.add_argument("--average-last", type=int, default=None, metavar="K",
                    help="a training trial: each critic against the mean of its weights over its last K epochs")
    ap.add_argument("--seed-set", default="development", choices=sorted(COMPARISON_SEEDS),
                    help="the evaluation seeds: the development ones, or the confirmation set "
                         "(recipe_comparison.CONFIRMATION) that re-measures a step chosen on them; never the held-out ones")
    ap.add_argument("--out", default="results/development")
    args = ap.parse_args()
    params = json.loads((ROOT / "results/transfer/result.json").read_text())["params"]
    index = 0 if args.regime == "standard" else 1
    recipes = recipes_from_parameters(params)
    recipe, config = recipes[index], recipes[2]
    trial = trial_changes(args)
    changes_given = [flag for flag, value in (("--config", args.config), ("--parameter", args.parameter),
                                              ("--recipe", args.recipe)) if value]
    if changes_given and (trial or args.trial != "boundary"):
        raise SystemExit(f"{changes_given[0]} measures a change to the stored run; drop --trial and its flags.")
    if len(changes_given) > 1:
        raise SystemExit(f"give one of {' or '.join(changes_given)}, not both: a trial changes one thing.")
    if args.average_last is not None and (trial or args.trial != "boundary" or changes_given):
        raise SystemExit("--average-last measures the stored recipe and configuration; drop --trial, --config, "
                         "--parameter, --recipe and their flags.")
    variant_config = config
    if args.parameter:
        changed = recipes_from_parameters({**params, **parameter_changes(args.parameter, params)})
        if changed[2] != config:
            raise SystemExit("--parameter changes the critic's configuration; measure that with --config.")
        if changed[index] == recipe:
            raise SystemExit(f"--parameter {' '.join(args.parameter)} leaves the {args.regime} recipe as it is.")
    common = dict(train=args.train, regime=args.regime, test_domains=args.test_domains,
                  critic_seeds=args.critic_seeds, n_eval_problems=args.n_eval,
                  seeds=COMPARISON_SEEDS[args.seed_set], device="cpu")
    t0, state = time.time(), code_state()   # the code as the run starts, before any output exists
    if args.average_last is not None:
        base = variant = recipe
        table = compare_tail_average(base, config, average_last=args.average_last, **common)
    elif args.config:
        base = variant = recipe
        variant_config = replace(config, **config_changes(args.config, config))
        table = compare_configs(base, config, variant_config, **common)
    elif args.parameter:
        base, variant = recipe, changed[index]
        table = compare_recipes(base, variant, critic_config=config, **common)
    elif args.recipe:
        base, variant = recipe, replace(recipe, **recipe_changes(args.recipe, recipe))
        if variant == base:
            raise SystemExit(f"--recipe {' '.join(args.recipe)} leaves the {args.regime} recipe as it is.")
        table = compare_recipes(base, variant, critic_config=config, **common)
    else:
        base = recipe
        own_fields = {f.name: getattr(recipe, f.name) for f in fields(recipe)}
        variant = TRIAL_RECIPES[args.trial](**{**own_fields, **trial})
        table = compare_recipes(base, variant, critic_config=config, **common)
    save_table(table, Path(args.out) / f"{args.name}.csv", args, t0, state,
               base=base.as_dict(), variant=variant.as_dict(), config=config.as_dict(),
               variant_config={**variant_config.as_dict(),
                               **({} if args.average_last is None else {"tail_average_epochs": args.average_last})},
               seeds=args.seed_set)
    print(table.drop(columns=["train"]).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
