"""Compare two training recipes problem by problem, on the development seeds.

How the transfer recipe's steps were chosen (chapter 5; the book's replication-choices
page): critics trained on a *base* recipe and on a *variant* (one step added, removed or
made stronger) from the same critic seeds rank the same candidate sets of development
problems, and McNemar's exact test counts the problems where only one of them ranks the
truth first. Every critic seed is a pair of critics; the pairs of all seeds are pooled
(``n_paired`` = seeds x problems), which resolves effects of a few points that one seed
cannot (one seed's Best moves by up to twenty points in some cells).

:func:`compare_configs` does the same for two critic configurations
(:class:`~tdml_lib.critic.CriticConfig`: a larger network, more epochs, more negatives)
trained on one recipe, and :func:`compare_tail_average` for a critic and the average of
its own last epochs' weights.

Pooling treats the same problem under two seeds as two pairs; the per-seed Best is kept
beside the pooled numbers so a reader can see whether one seed carries the difference.
The held-out seeds are refused: nothing may be tuned on them
(:mod:`tdml_lib.experiments.seeds`).

Example (one line per cell; minutes per critic seed at these sizes on a CPU)::

    from dataclasses import replace
    from tdml_lib.experiments.recipe_comparison import compare_recipes
    from tdml_lib.experiments import Recipe
    base = Recipe(n_problems=200, n_synthetic=200, small_pool_problems=100, overlap_copies=True)
    compare_recipes(base, replace(base, overlap_pairs=3, overlap_pull=(0.4, 0.8)), critic_seeds=range(5))
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import features
from ..critic import CriticConfig
from ..evaluate import mcnemar
from ..validation import check_int
from .seeds import DEVELOPMENT, HELD_OUT, EvaluationSeeds
from .training import Recipe
from .transfer import PROTOCOLS, REGIMES, rank_trained, run_transfer
from .trials import AVERAGE_LAST, fit_tail_averaged

CONFIRMATION = EvaluationSeeds(problems=2, candidates=1, synthetic=2000)
"""A second development set, fixed on 2026-12-06 before any run on it: a recipe step
chosen after several trials on :data:`~tdml_lib.experiments.seeds.DEVELOPMENT` is measured
again here, on problems and candidate sets that played no part in choosing it, before a
stored run takes it (a gain picked among several tries on one set is weaker evidence than
one found at the first). Only the comparisons of this module run on it, so it lives here
rather than in :mod:`~tdml_lib.experiments.seeds`, which the stored runs load (a change
there would mark them as made from other code)."""

#: The evaluation seeds a comparison may run on, by name (``scripts/compare_trial.py --seed-set``).
COMPARISON_SEEDS = {"development": DEVELOPMENT, "confirmation": CONFIRMATION}

COLUMNS = ["train", "regime", "protocol", "test", "best_base", "best_variant", "only_base", "only_variant", "p",
           "n_paired", "best_base_per_seed", "best_variant_per_seed"]


def _critic_ranks(base: Recipe, variant: Recipe, **kwargs: Any) -> pd.DataFrame:
    """Both recipes' critic ranks from one :func:`run_transfer` call, so the candidate
    sets are built once: ``base`` takes the standard regime's slot and ``variant`` the
    few-shot one's (the slots only name the recipes: with no probe and no adversarial
    rounds ``run_transfer`` treats both alike). Returns the per-problem ranks with a
    column ``recipe`` (``"base"`` or ``"variant"``)."""
    res = run_transfer(regimes=REGIMES, standard=base, few_shot=variant, probe=False, index_scorers=(),
                       adversarial_rounds=0, **kwargs)
    ranks = res.ranks()
    ranks = ranks[ranks.scorer == "critic"]
    return ranks.assign(recipe=ranks.regime.map({REGIMES[0]: "base", REGIMES[1]: "variant"}))


def _paired_table(ranks: pd.DataFrame, train: str, regime: str, critic_seeds: Sequence[int]) -> pd.DataFrame:
    """The :data:`COLUMNS` table from per-problem ranks with a ``recipe`` column
    (``"base"`` / ``"variant"``): the two critics of each seed paired problem by problem."""
    keys = ["protocol", "test", "critic_seed", "problem"]
    pairs = ranks[ranks.recipe == "base"][keys + ["rank"]].merge(
        ranks[ranks.recipe == "variant"][keys + ["rank"]], on=keys, suffixes=("_base", "_variant"))
    rows = []
    for (protocol, test), cell in pairs.groupby(["protocol", "test"], sort=False):
        first_base, first_variant = cell["rank_base"].to_numpy() == 1, cell["rank_variant"].to_numpy() == 1
        test_result = mcnemar(first_base, first_variant)
        per_seed = cell.assign(b=first_base, v=first_variant).groupby("critic_seed")[["b", "v"]].mean() * 100
        per_seed = per_seed.reindex(critic_seeds)
        rows.append({"train": train, "regime": regime, "protocol": protocol, "test": test,
                     "best_base": 100 * float(np.mean(first_base)), "best_variant": 100 * float(np.mean(first_variant)),
                     "only_base": test_result["only_a"], "only_variant": test_result["only_b"],
                     "p": test_result["p_value"], "n_paired": len(cell),
                     "best_base_per_seed": [round(float(x), 1) for x in per_seed["b"]],
                     "best_variant_per_seed": [round(float(x), 1) for x in per_seed["v"]]})
    return pd.DataFrame(rows, columns=COLUMNS)


def _check_development(seeds: EvaluationSeeds, regime: str, critic_seeds: Sequence[int]) -> list[int]:
    if seeds == HELD_OUT:
        raise ValueError("recipe and config comparisons choose what the stored results train, so they run on "
                         "development seeds only: the held-out seeds are kept for the stored results "
                         "(experiments.seeds).")
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose from {REGIMES}.")
    seeds_list = [int(s) for s in critic_seeds]
    if not seeds_list:
        raise ValueError("critic_seeds is empty: give at least one seed.")
    return seeds_list


def compare_recipes(base: Recipe, variant: Recipe, train: str = "numbers", regime: str = "standard",
                    test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                    protocols: Sequence[str] = PROTOCOLS, critic_config: CriticConfig | None = None,
                    critic_seeds: Sequence[int] = (0, 1, 2), n_eval_problems: int = 60, eval_negatives: int = 19,
                    seeds: EvaluationSeeds = DEVELOPMENT, device: Any = "auto",
                    progress: bool = True) -> pd.DataFrame:
    """Train critics on ``base`` and on ``variant`` (one of each per critic seed) and
    compare their ranks of the truth on the same candidate sets.

    Args:
        base, variant: the two recipes (:class:`~tdml_lib.experiments.training.Recipe`).
        train: the training domain.
        regime: ``"standard"`` or ``"few-shot"``: the regime the two recipes stand for
            (it names the rows; a few-shot recipe carries its own ``examples_per_class``).
        test_domains, protocols, critic_config, n_eval_problems, eval_negatives, device:
            as for :func:`~tdml_lib.experiments.transfer.run_transfer`.
        critic_seeds: one pair of critics per seed; their pairs are pooled.
        seeds: evaluation seeds; the development ones unless another development set is
            given. The held-out seeds are refused.
        progress: show progress bars.

    Returns:
        One row per (protocol, test domain): ``best_base`` and ``best_variant`` (Best %,
        pooled over seeds), ``only_base`` / ``only_variant`` (problems where only that
        recipe's critic ranks the truth first), McNemar's exact ``p``, ``n_paired``, and
        the Best of each critic seed (``best_*_per_seed``, in the order of ``critic_seeds``).

    Raises:
        ValueError: the held-out seeds, an unknown regime, identical recipes, or no seeds.
    """
    critic_seeds = _check_development(seeds, regime, critic_seeds)
    if base == variant:
        raise ValueError("base and variant are the same recipe: nothing to compare.")
    common = dict(train_domains=(train,), test_domains=tuple(test_domains), protocols=tuple(protocols),
                  critic_config=critic_config, critic_seeds=critic_seeds, n_eval_problems=n_eval_problems,
                  eval_negatives=eval_negatives, seeds=seeds, device=device, progress=progress)
    return _paired_table(_critic_ranks(base, variant, **common), train, regime, critic_seeds)


def compare_configs(recipe: Recipe, base: CriticConfig, variant: CriticConfig, train: str = "numbers",
                    regime: str = "standard", test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                    protocols: Sequence[str] = PROTOCOLS, critic_seeds: Sequence[int] = (0, 1, 2),
                    n_eval_problems: int = 60, eval_negatives: int = 19, seeds: EvaluationSeeds = DEVELOPMENT,
                    device: Any = "auto", progress: bool = True) -> pd.DataFrame:
    """Train critics with the ``base`` and the ``variant`` configuration on the same
    ``recipe`` (one of each per critic seed, on the same problems) and compare their
    ranks of the truth on the same candidate sets, as :func:`compare_recipes` does.

    One :func:`run_transfer` call (so the candidate sets are built once): the base critic
    of each seed in the regime's slot, the variant as its one ablation, trained with every
    critic seed (``ablation_seeds``).

    Args and returns: as for :func:`compare_recipes` (``recipe`` is trained by both).

    Raises:
        ValueError: the held-out seeds, an unknown regime, identical configurations, or
            no seeds.
    """
    critic_seeds = _check_development(seeds, regime, critic_seeds)
    if base == variant:
        raise ValueError("base and variant are the same configuration: nothing to compare.")
    res = run_transfer(train_domains=(train,), test_domains=tuple(test_domains), regimes=(REGIMES[0],),
                       protocols=tuple(protocols), standard=recipe, critic_config=base, critic_seeds=critic_seeds,
                       ablations={"variant": (recipe, variant)}, ablation_seeds=critic_seeds,
                       n_eval_problems=n_eval_problems, eval_negatives=eval_negatives, seeds=seeds, probe=False,
                       index_scorers=(), adversarial_rounds=0, device=device, progress=progress)
    ranks = res.ranks()
    ranks = ranks[(ranks.scorer == "critic") & ranks.critic_seed.notna()]
    ranks = ranks.assign(recipe=np.where(ranks.regime == REGIMES[0], "base", "variant"))
    return _paired_table(ranks, train, regime, critic_seeds)


def compare_tail_average(recipe: Recipe, config: CriticConfig, train: str = "numbers", regime: str = "standard",
                         average_last: int = AVERAGE_LAST,
                         test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                         protocols: Sequence[str] = PROTOCOLS, critic_seeds: Sequence[int] = (0, 1, 2),
                         n_eval_problems: int = 60, eval_negatives: int = 19, seeds: EvaluationSeeds = DEVELOPMENT,
                         device: Any = "auto", progress: bool = True) -> pd.DataFrame:
    """Compare each critic seed's trained critic (base) with the tail average of its own
    weights (variant, :func:`~.trials.fit_tail_averaged`) on the same candidate sets, as
    :func:`compare_recipes` does: same table, McNemar's test pooled over seeds.

    Both critics of a seed follow one training trajectory on ``recipe``'s problems of that
    seed (the averaging never steers training), so the base critic is the one
    :func:`compare_configs` trains with that seed and ``config.average_tail`` at 0, and
    each pair differs in the averaging only. ``config.average_tail`` itself is ignored.

    Raises:
        ValueError: the held-out seeds, an unknown regime, no seeds, or ``average_last``
            outside 1..``config.epochs``.
    """
    from tqdm.auto import tqdm

    critic_seeds = _check_development(seeds, regime, critic_seeds)
    check_int(average_last, "average_last", 1, config.epochs)
    feature_map = features.fit_feature_map(train)
    scorers: dict[str, Any] = {}
    for seed in tqdm(critic_seeds, desc="critics", disable=not progress):
        problems = recipe.problems(train, feature_map, seed=seed)
        scorers[f"base/{seed}"], scorers[f"variant/{seed}"] = fit_tail_averaged(
            problems, config, seed=seed, average_last=average_last, device=device)
    ranks = rank_trained(scorers, train, test_domains, protocols, n_eval_problems, eval_negatives, seeds,
                         progress).ranks()
    recipe_seed = ranks.scorer.str.split("/", expand=True)
    ranks = ranks.assign(recipe=recipe_seed[0], critic_seed=recipe_seed[1].astype(int))
    return _paired_table(ranks, train, regime, critic_seeds)


#: Columns of :func:`read_trials`: the trial, what its variant changes, the command that
#: measured it, the processor it ran on and its evaluation seeds, then :data:`COLUMNS`.
TRIAL_COLUMNS = ["trial", "change", "command", "cpu", "seeds", *COLUMNS]


def _changed_fields(base: Mapping[str, Any], variant: Mapping[str, Any]) -> list[str]:
    return [f"{key}={variant[key]}" for key in variant if base.get(key) != variant[key]]


def read_trials(folder: str | os.PathLike = "results/development") -> pd.DataFrame:
    """Every measurement ``scripts/compare_trial.py`` wrote to ``folder``, one row per cell
    (:data:`TRIAL_COLUMNS`): ``trial`` is the file name, ``change`` what the variant
    changes (the recipe and configuration fields that differ from the base, as
    ``field=value``), ``command`` the command that made it, ``cpu`` the processor it ran
    on (empty where the record has no provenance), ``seeds`` the evaluation seed set
    (``"development"``, or ``"confirmation"``: :data:`CONFIRMATION`; records older than
    that field were all made on the development seeds). The two critics of a trial share
    one processor; trials on different processors train different critics from the same
    seeds (floating point differs in its last bits), so their base columns differ too.
    Empty, with the columns, when the folder is missing or holds none.

    Raises:
        ValueError: a table without its ``<name>.json`` (or the other way round), or a
            table whose columns are not :data:`COLUMNS`.
    """
    folder = Path(folder)
    tables = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    records = sorted(folder.glob("*.json")) if folder.is_dir() else []
    unpaired = {p.stem for p in tables} ^ {p.stem for p in records}
    if unpaired:
        raise ValueError(f"{folder}: {sorted(unpaired)} lack their .csv table or .json record; "
                         "re-run scripts/compare_trial.py for them or remove the leftover file.")
    frames = []
    for path in tables:
        table = pd.read_csv(path)
        if list(table.columns) != COLUMNS:
            raise ValueError(f"{path} is not a compare_recipes / compare_configs table (columns {list(table.columns)}).")
        record = json.loads(path.with_suffix(".json").read_text())
        change = _changed_fields(record["base"], record["variant"]) + _changed_fields(
            record["config"], record.get("variant_config", record["config"]))
        frames.append(table.assign(trial=path.stem, change=", ".join(change) or "nothing",
                                   command=record.get("command", ""),
                                   cpu=record.get("provenance", {}).get("host", {}).get("cpu", ""),
                                   seeds=record.get("seeds", "development")))
    if not frames:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    return pd.concat(frames, ignore_index=True)[TRIAL_COLUMNS]


def read_shipped_comparisons(folder: str | os.PathLike = "results/development/shipped") -> list[dict[str, Any]]:
    """Every measurement ``scripts/compare_shipped.py`` wrote to ``folder`` (a retrained
    critic against the shipped one, development seeds), by file name: per file its
    ``name``, ``command`` (without its ``--rule``), ``rule`` (fixed before the run; empty
    where none was stored),
    and as tables ``transfer`` (Best % per cell, one column per critic), ``paired``
    (McNemar, candidate against shipped), ``holes`` (share of problems where the truth
    beats each degenerate kind) and ``agent`` (true K found % and mean ACC of the agent with the
    default reward built on each critic, image domains and synthetic families). Empty
    when the folder is missing.

    Raises:
        ValueError: a file that is not such a record.
    """
    folder = Path(folder)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        missing = {"transfer", "paired", "holes", "agent_domains", "agent_synthetic"} - set(record)
        if missing:
            raise ValueError(f"{path} is not a scripts/compare_shipped.py record (it lacks {sorted(missing)}).")
        transfer = pd.DataFrame(record["transfer"]).pivot_table(index=["protocol", "test"], columns="scorer",
                                                                values="best", sort=False)
        domains = pd.DataFrame(record["agent_domains"]).rename(columns={"domain": "problems", "reward": "critic"})
        synthetic = pd.DataFrame(record["agent_synthetic"]).rename(columns={"family": "problems", "training": "critic"})
        agent = pd.concat([domains, synthetic], ignore_index=True).rename(columns={"n_problems": "n"})
        agent = agent.assign(**{"true K found (%)": 100 * agent["k_exact"], "mean ACC": agent["acc"]}).pivot_table(
            index=["problems", "n"], columns="critic", values=["true K found (%)", "mean ACC"], sort=False)
        holes = pd.DataFrame(record["holes"]).pivot_table(index="kind", columns=["critic", "problems"],
                                                          values="truth_wins")
        rule = record.get("rule", "")
        command = record.get("command", "").split(" --rule ")[0]   # the rule is its own field
        out.append({"name": path.stem, "command": command, "rule": rule,
                    "transfer": transfer, "paired": pd.DataFrame(record["paired"]), "holes": 100 * holes,
                    "agent": agent})
    return out


__all__ = ["COLUMNS", "COMPARISON_SEEDS", "CONFIRMATION", "TRIAL_COLUMNS", "compare_configs", "compare_recipes",
           "compare_tail_average", "read_shipped_comparisons", "read_trials"]
