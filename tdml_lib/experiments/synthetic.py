"""The agent against k-means on synthetic families where k-means is known to fail.

Uses the truth to *score* (never to cluster), so it lives here, above the agent.
Test problems come from a seed set (:mod:`.seeds`): the book develops on
``DEVELOPMENT`` and stores results on ``HELD_OUT``, drawn once and never redrawn.
Explained in chapter 4.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..critic import CriticConfig, CriticEnsemble, fit_critic
from ..problems import SYNTHETIC_FAMILIES, synthetic_problem, synthetic_problems
from ..methods import (AGENT_ENSEMBLE_K_FOUND, AGENT_K_FOUND, AGENT_TRUE_K, KMEANS_SILHOUETTE, KMEANS_TRUE_K,
                       ONE_RUN_METHODS)
from ..validation import check_positive_int
from .clustering import run_methods, score_rows, summarise
from .seeds import DEVELOPMENT, EvaluationSeeds
from .training import adversarial_training, cli_command, save_trained_critic

SYNTHETIC_METHODS = (KMEANS_TRUE_K, KMEANS_SILHOUETTE, AGENT_TRUE_K, AGENT_K_FOUND)
"""The methods compared on each synthetic test problem."""

CRITIC_FREE_METHODS = (KMEANS_TRUE_K, KMEANS_SILHOUETTE)
"""Methods whose answer does not depend on the critic: :func:`compare_training_protocols`
runs them once per seed and shares their labels between training protocols."""


@dataclass
class SyntheticComparison:
    """Agent vs k-means on synthetic families, each with a critic that never saw it."""

    scores: pd.DataFrame
    """One row per (family, problem, method): acc, nmi, ari, K_found, K_true."""
    examples: dict[str, dict[str, Any]]
    """Per family, the test problem where k-means (true K) scored lowest, the failure the
    family is named for: ``{"problem", "X", "truth", "labels": {method: labels}}``. Picked
    after scoring, to show; it steers nothing."""
    training_families: dict[str, tuple[str, ...]]
    """Per test family, the families its critic was trained on (all the others, or all
    of them with ``training="all_families"``); empty when one given reward served every
    family."""
    seeds: EvaluationSeeds = DEVELOPMENT
    """The seed set the test problems were drawn from."""
    seed: int = 0
    """The seed of the critics' training and of the agent (problem ``i``: ``seed + i``)."""
    critics: dict[str, Any] = field(default_factory=dict)
    """Per test family, the reward the agent maximised there (the trained critic, or
    the given reward); kept in memory, never stored."""

    @property
    def n_critics(self) -> int:
        """How many critics the reward averages: 1, or the most members of a
        :class:`CriticEnsemble` among the families' rewards."""
        return max((len(getattr(c, "critics", [c])) for c in self.critics.values()), default=1)

    def to_frame(self) -> pd.DataFrame:
        """The per-problem rows (a copy)."""
        return self.scores.copy()

    def summary(self, confidence: float = 0.95) -> pd.DataFrame:
        """Per family and method: mean ACC/NMI with bootstrap intervals, the share of
        problems whose K is the true K (Wilson interval) (:func:`.clustering.summarise`)."""
        return summarise(self.scores, "family", confidence)


SYNTHETIC_TEST_K = {"moons": 2, "circles": 2, "varied_density": 3, "blobs": 4, "anisotropic": 3}
"""Clusters per test problem in :func:`compare_on_synthetic` (three uneven blobs: with two,
k-means rarely fails)."""


SYNTHETIC_TRAINING = ("leave_one_out", "all_families")
"""What a synthetic critic of :func:`compare_on_synthetic` is trained on: ``"leave_one_out"``,
the other families only (the reward transfers to a family it never saw);
``"all_families"``, every family of :data:`tdml_lib.problems.SYNTHETIC_FAMILIES`, the
test family included (other draws than the test problems: the reward is in its own
distribution)."""


def synthetic_critic(families: Sequence[str], n_train_problems: int, max_points: int, cfg: Any, seed: int,
                     device: Any, adversarial_rounds: int, adversarial_problems: int, generations: int,
                     population_size: int, metadata: dict[str, Any] | None = None) -> Any:
    """A critic trained on seeded problems of ``families`` (2-D to 8-D, 20 to ``max_points``
    points per cluster), then ``adversarial_rounds`` rounds of the adversarial loop
    (chapter 4's synthetic critics; with every family and the defaults of
    ``train-synthetic-critic``, the synthetic members of :func:`tdml_lib.load_reward`, seeds
    0, 1 and 2)."""
    train = synthetic_problems(n_train_problems, families=families, n_features=(2, 8),
                               points_per_class=(20, max_points), seed=seed)
    critic, _, training_set = fit_critic(train, cfg, seed=seed, device=device, progress=False, metadata=metadata)
    if adversarial_rounds:
        critic, _ = adversarial_training(critic, train, training_set, cfg, rounds=adversarial_rounds,
                                         problems_per_round=adversarial_problems,
                                         epochs_per_round=max(1, cfg.epochs // 2),
                                         generations=generations, population_size=population_size,
                                         seed=seed, progress=False)
    return critic


def compare_on_synthetic(test_families: Sequence[str] = ("moons", "circles", "varied_density"),
                         n_train_problems: int = 16, n_problems: int = 2,
                         n_clusters: int | Mapping[str, int] | None = None,
                         points_per_class: tuple[int, int] = (150, 200), critic_config: Any = None,
                         generations: int = 10, population_size: int = 20, seed: int = 0,
                         device: Any = "auto", adversarial_rounds: int = 0,
                         adversarial_problems: int = 8, adversarial_generations: int | None = None,
                         adversarial_population: int | None = None, seeds: EvaluationSeeds = DEVELOPMENT,
                         reward: Any | Mapping[str, Any] = None, methods: Sequence[str] = SYNTHETIC_METHODS,
                         training: str = "leave_one_out",
                         shared: dict[tuple[str, int], dict[str, np.ndarray]] | None = None,
                         example_problems: Mapping[str, int] | None = None) -> SyntheticComparison:
    """The agent against k-means on families where k-means is known to fail.

    For each test family a critic is trained on the OTHER synthetic families only
    (leave one family out: what it rewards there was learned elsewhere), or, with
    ``training="all_families"``, one critic on every family (the test family's problems
    in training are other draws than its test problems), then each test
    problem is clustered by k-means with the true K, by k-means with K chosen by
    silhouette, by the agent told the true K (the same knowledge as k-means), and by
    the agent finding K itself. True labels are used only to score the results afterwards.

    Args:
        test_families: families of :data:`tdml_lib.problems.SYNTHETIC_FAMILIES` to test on.
        n_train_problems: training problems per critic (2-D to 8-D, K in 2..6, 20 to
            ``max(100, points_per_class[1])`` points per cluster, so that the test
            problems' cluster sizes are inside the training range).
        n_problems: seeded test problems per family (2-D); problem ``i`` is drawn with
            seed ``seeds.synthetic + i``.
        n_clusters: clusters per test problem, one for all or per family (default
            :data:`SYNTHETIC_TEST_K`).
        points_per_class: sizes of the test problems' clusters.
        critic_config: a :class:`tdml_lib.critic.CriticConfig` (default: 30 epochs).
        generations, population_size: the agent's budget.
        seed: seeds the critics' training problems, the critics and the agent (problem
            ``i`` is clustered with seed ``seed + i``).
        adversarial_rounds: rounds of :func:`tdml_lib.experiments.adversarial_training` after
            each critic's training (0: near-miss negatives only), each on
            ``adversarial_problems`` of its training problems.
        adversarial_generations, adversarial_population: the agent's budget when it
            attacks the training problems (default: ``generations`` and
            ``population_size``). A cheaper search on more training problems closes
            more of the critic's holes in less time: measured on the development seeds
            only, it let the agent find the true K more often than a few problems
            attacked at the test budget did, and the stored run uses it (chapter 4).
        seeds: the seed set of the test problems:
            :data:`~tdml_lib.experiments.seeds.DEVELOPMENT` while building the book,
            :data:`~tdml_lib.experiments.seeds.HELD_OUT` for the stored results only.
        reward: a reward for every family instead of the leave-one-family-out critics
            (e.g. the default reward, or :class:`tdml_lib.metrics.IndexScorer`), or one
            per test family (a mapping); then no critic is trained.
        methods: which of :data:`SYNTHETIC_METHODS` to run.
        training: one of :data:`SYNTHETIC_TRAINING`; ignored when ``reward`` is given.
        shared: labels of the :data:`CRITIC_FREE_METHODS` by ``(family, problem)``, filled
            by the first call that runs them and reused by later calls with the same test
            problems and ``seed`` (as :func:`compare_training_protocols` makes them), so
            that k-means runs once however many critics are compared.
        example_problems: which test problem ``examples[family]`` shows, by family; by
            default the one where k-means (true K), or else the first method, did worst.
            :func:`compare_training_protocols` passes its first seed's choice to the
            ensemble's run, which has no k-means to choose by.
    """
    unknown = sorted(set(test_families) - set(SYNTHETIC_FAMILIES))
    if unknown:
        raise ValueError(f"unknown families {unknown}; choose from {SYNTHETIC_FAMILIES}.")
    cfg = critic_config or CriticConfig(epochs=30, gae_epochs=4, n_negatives=12)
    ks = n_clusters if isinstance(n_clusters, Mapping) else (
        {f: n_clusters for f in test_families} if n_clusters else SYNTHETIC_TEST_K)
    bad_examples = {f: i for f, i in (example_problems or {}).items() if not 0 <= int(i) < n_problems}
    if bad_examples:
        raise ValueError(f"example_problems {bad_examples} name no test problem; give indices in "
                         f"0..{n_problems - 1}.")
    methods = tuple(methods)
    if not methods or set(methods) - set(SYNTHETIC_METHODS):
        raise ValueError(f"methods must be some of {SYNTHETIC_METHODS}, got {methods!r}.")
    if training not in SYNTHETIC_TRAINING:
        raise ValueError(f"training must be one of {SYNTHETIC_TRAINING}, got {training!r}.")
    if isinstance(reward, Mapping) and set(test_families) - set(reward):
        raise ValueError(f"reward has no entry for the families {sorted(set(test_families) - set(reward))}; "
                         "give one reward per test family, or one reward for all.")
    # training clusters as large as the test's: a critic that never saw clusters of 150
    # points prefers to split them into pieces of the sizes it knows (limits.md)
    max_points = max(100, int(points_per_class[1]))
    critics: dict[tuple[str, ...], Any] = {}  # one critic per set of training families
    rows, examples, trained_on, used = [], {}, {}, {}
    worst: dict[str, float] = {}  # which problem examples[family] shows
    for family in test_families:
        k = ks[family]
        critic = reward[family] if isinstance(reward, Mapping) else reward
        if reward is None:
            families = trained_on[family] = tuple(f for f in SYNTHETIC_FAMILIES
                                                  if training == "all_families" or f != family)
            if families not in critics:
                critics[families] = synthetic_critic(families, n_train_problems, max_points, cfg, seed, device,
                                                     adversarial_rounds, adversarial_problems,
                                                     generations if adversarial_generations is None
                                                     else adversarial_generations,
                                                     population_size if adversarial_population is None
                                                     else adversarial_population)
            critic = critics[families]
        used[family] = critic
        for i in range(n_problems):
            p = synthetic_problem(family, n_clusters=k, points_per_class=points_per_class,
                                  seed=seeds.synthetic + i)
            reused = shared.get((family, i), {}) if shared is not None else {}
            ran = run_methods(p.X, k, [m for m in methods if m not in reused], critic, generations,
                              population_size, seed + i)
            found = {m: reused[m] if m in reused else ran[m] for m in methods}
            if shared is not None:
                shared.setdefault((family, i), {}).update(
                    {m: found[m] for m in CRITIC_FREE_METHODS if m in found})
            scored = score_rows(p.labels, found, family=family, problem=i)
            rows += scored
            # the example shown: the problem asked for, or where k-means (true K), or else the
            # first method, did worst
            ref = next((r for r in scored if r["method"] == KMEANS_TRUE_K), scored[0])["acc"]
            chosen = (example_problems or {}).get(family)
            if i == chosen if chosen is not None else ref < worst.get(family, np.inf):
                worst[family] = ref
                examples[family] = {"problem": i, "X": p.X, "truth": p.labels, "labels": found}
    columns = ["family", "problem", "method", "K_true", "K_found", "acc", "nmi", "ari"]
    return SyntheticComparison(pd.DataFrame(rows)[columns], examples, trained_on, seeds, seed=int(seed),
                               critics=used)


def compare_training_protocols(critic_seeds: Sequence[int] = (0,), trainings: Sequence[str] = SYNTHETIC_TRAINING,
                               ensemble: bool = False,
                               **kwargs: Any) -> dict[tuple[str, int | str], SyntheticComparison]:
    """:func:`compare_on_synthetic` once per training protocol and critic seed, on the same
    test problems (the seed set of ``kwargs`` draws them; ``seed`` runs over
    ``critic_seeds``), so that a reader sees how much the K found depends on what the
    critic was trained on and on its training draw.

    With ``ensemble=True`` (two or more seeds), each protocol's critics of all seeds are
    then averaged into one reward per test family (:class:`tdml_lib.critic.CriticEnsemble`)
    and the agent finds K with it (method :data:`AGENT_ENSEMBLE_K_FOUND`, seeded with the
    first critic seed) on the same test problems: a wrong K that only one critic rewards
    is outvoted.

    Returns:
        ``{(training, seed): SyntheticComparison}``, in the order of ``trainings`` then
        ``critic_seeds``, and with ``ensemble`` a ``(training, "ensemble")`` entry after
        each protocol's seeds.
    """
    if {"seed", "reward", "training", "shared", "example_problems"} & set(kwargs):
        raise ValueError("seed, reward, training, shared and example_problems are set by "
                         "compare_training_protocols; pass critic_seeds and trainings instead.")
    if not critic_seeds:
        raise ValueError("critic_seeds is empty; give at least one seed, e.g. (0,).")
    seeds = [int(s) for s in critic_seeds]
    if ensemble and len(set(seeds)) < 2:
        raise ValueError(f"an ensemble needs two or more distinct critic seeds, got {seeds}; "
                         "e.g. critic_seeds=(0, 1, 2).")
    shared: dict[int, dict[tuple[str, int], dict[str, np.ndarray]]] = {s: {} for s in seeds}
    out: dict[tuple[str, int | str], SyntheticComparison] = {}
    for t in trainings:
        for s in seeds:
            out[(t, s)] = compare_on_synthetic(seed=s, training=t, shared=shared[s], **kwargs)
        if ensemble:
            members = {f: CriticEnsemble([out[(t, s)].critics[f] for s in seeds]) for f in out[(t, seeds[0])].critics}
            run = {k: v for k, v in kwargs.items() if k != "methods"}
            shown = {f: e["problem"] for f, e in out[(t, seeds[0])].examples.items()}
            comparison = compare_on_synthetic(seed=seeds[0], reward=members, methods=(AGENT_K_FOUND,),
                                              example_problems=shown, **run)
            # a new comparison, not an edited one: its rows named for the ensemble, and what
            # its members were trained on (a given reward records no training families)
            out[(t, "ensemble")] = replace(
                comparison, scores=comparison.scores.assign(method=AGENT_ENSEMBLE_K_FOUND),
                training_families=dict(out[(t, seeds[0])].training_families))
    return out


def protocol_runs(comparisons: Mapping[tuple[str, int | str], SyntheticComparison]) -> pd.DataFrame:
    """The per-problem rows of :func:`compare_training_protocols`, with columns
    ``training``, ``critic_seed`` (the agent's seed; an ensemble's first member's) and
    ``n_critics`` (how many critics the reward averaged) in front."""
    frames = [c.scores.assign(training=t, critic_seed=c.seed, n_critics=c.n_critics)
              for (t, _), c in comparisons.items()]
    rows = pd.concat(frames, ignore_index=True)
    front = ["training", "critic_seed", "n_critics"]
    return rows[front + [c for c in rows.columns if c not in front]]


def protocol_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per training protocol, family and method: the share of problems where K is the true
    K and the mean ACC, each as the mean over critic seeds with the lowest and highest
    seed (``k_exact``, ``k_exact_min``, ``k_exact_max``, ``acc``, ``acc_min``,
    ``acc_max``), how many seeds and problems per seed went in, and how many critics
    each reward averaged (``n_critics``). A mean over equal values can differ from them
    in the last bit, so the mean is clipped into its range: tables and whiskers never
    show a mean outside the seeds' own values."""
    keys = ["training", "family", "method"]
    runs = runs if "n_critics" in runs else runs.assign(n_critics=1)
    per_seed = (runs.assign(exact=runs.K_found == runs.K_true)
                .groupby(keys + ["critic_seed"], sort=False)
                .agg(k_exact=("exact", "mean"), acc=("acc", "mean"), n_problems=("acc", "size"),
                     n_critics=("n_critics", "max")).reset_index())
    summary = (per_seed.groupby(keys, sort=False)
               .agg(k_exact=("k_exact", "mean"), k_exact_min=("k_exact", "min"), k_exact_max=("k_exact", "max"),
                    acc=("acc", "mean"), acc_min=("acc", "min"), acc_max=("acc", "max"),
                    n_seeds=("critic_seed", "nunique"), n_problems=("n_problems", "max"),
                    n_critics=("n_critics", "max")).reset_index())
    for col in ("k_exact", "acc"):
        summary[col] = summary[col].clip(summary[f"{col}_min"], summary[f"{col}_max"])
    return summary


def compare_rewards_on_synthetic(rewards: Mapping[str, Any], seed: int = 0,
                                 methods: Sequence[str] = ONE_RUN_METHODS,
                                 **kwargs: Any) -> dict[tuple[str, int], SyntheticComparison]:
    """:func:`compare_on_synthetic` once per given reward (no critic trained), on the same
    test problems and with the agent seeded alike, keyed like
    :func:`compare_training_protocols` (``{(name, seed): comparison}``), so that both
    feed :func:`protocol_runs`. Chapter 4 compares the default reward with the shipped
    critic alone this way.

    Args:
        rewards: ``{training key: reward}``, e.g. ``{DEFAULT_REWARD_TRAINING: load_reward()}``.
        seed: the agent's seed (problem ``i``: ``seed + i``).
        methods: the methods run with each reward.
        kwargs: the other arguments of :func:`compare_on_synthetic` (test problems, budget).
    """
    if not rewards:
        raise ValueError("rewards is empty; give at least one, e.g. {'default_reward': tdml_lib.load_reward()}.")
    if {"reward", "training", "methods", "seed"} & set(kwargs):
        raise ValueError("reward, training, methods and seed are set by compare_rewards_on_synthetic.")
    return {(name, int(seed)): compare_on_synthetic(reward=reward, methods=methods, seed=seed, **kwargs)
            for name, reward in rewards.items()}


# --- command line ---------------------------------------------------------------------------

SYNTHETIC_CRITIC_RECIPE = {"n_train_problems": 300, "epochs": 100, "gae_epochs": 4, "n_negatives": 24,
                           "adversarial_rounds": 3, "adversarial_problems": 32, "adversarial_generations": 10,
                           "adversarial_population": 24, "max_points": 200}
"""The shipped synthetic critic's recipe: chapter 4's stored run's ``SYNTH_*`` parameters
(all six families, critic seed 0), whose test clusters hold up to 200 points."""


def add_cli(sub: Any) -> None:
    p = sub.add_parser("train-synthetic-critic",
                       help="train a critic on synthetic problems of all six families (chapter 4's recipe) and save it",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r = SYNTHETIC_CRITIC_RECIPE
    p.add_argument("--n-problems", type=int, default=r["n_train_problems"], help="synthetic training problems")
    p.add_argument("--epochs", type=int, default=r["epochs"], help="critic epochs")
    p.add_argument("--gae-epochs", type=int, default=r["gae_epochs"], help="graph auto-encoder epochs")
    p.add_argument("--n-negatives", type=int, default=r["n_negatives"], help="near misses per problem")
    p.add_argument("--max-points", type=int, default=r["max_points"], help="most points per cluster")
    p.add_argument("--adversarial-rounds", type=int, default=r["adversarial_rounds"],
                   help="rounds of the adversarial loop (0: none)")
    p.add_argument("--adversarial-problems", type=int, default=r["adversarial_problems"],
                   help="training problems attacked per round")
    p.add_argument("--adversarial-budget", type=int, nargs=2, metavar=("GENERATIONS", "POPULATION"),
                   default=[r["adversarial_generations"], r["adversarial_population"]],
                   help="the attacking agent's budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and the training")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda...")
    p.add_argument("--out", default="runs/critic_synthetic.pt",
                   help="where to save the critic (.pt); the shipped one is replaced only when you pass "
                        "tdml_lib/pretrained/critic_synthetic.pt (or critic_synthetic_seed1.pt, _seed2.pt)")
    p.set_defaults(func=_cli_train_synthetic)


def _cli_train_synthetic(args: Any) -> int:
    """Check every argument before training (a bad one exits 2, writing nothing)."""
    for name in ("n_problems", "epochs", "gae_epochs", "n_negatives", "adversarial_problems"):
        check_positive_int(getattr(args, name), "--" + name.replace("_", "-"))
    check_positive_int(args.max_points, "--max-points", minimum=20)
    for name in ("adversarial_rounds", "seed"):
        check_positive_int(getattr(args, name), "--" + name.replace("_", "-"), minimum=0)
    generations, population = args.adversarial_budget
    check_positive_int(generations, "--adversarial-budget GENERATIONS")
    check_positive_int(population, "--adversarial-budget POPULATION", minimum=4)
    t0 = time.time()
    command = cli_command("train-synthetic-critic")
    cfg = CriticConfig(epochs=args.epochs, gae_epochs=args.gae_epochs, n_negatives=args.n_negatives)
    critic = synthetic_critic(SYNTHETIC_FAMILIES, args.n_problems, args.max_points, cfg, args.seed, args.device,
                              args.adversarial_rounds, args.adversarial_problems, generations, population,
                              metadata={"domain": "synthetic", "families": list(SYNTHETIC_FAMILIES),
                                        "command": command})
    out = save_trained_critic(critic, args, t0, args.out)
    print(f"saved a critic trained on {args.n_problems} synthetic problems of {len(SYNTHETIC_FAMILIES)} families "
          f"to {out} ({critic.metadata['wall_time_s']} s)")
    return 0
