"""The poster's transfer table: critics trained on one domain rank candidates of others.

For each training domain (Numbers, Fashion) and regime (standard, few-shot) a critic is
trained (:func:`tdml_lib.critic.fit_critic`) on a *recipe* of labelled problems; the
probe (:class:`tdml_lib.probe.ProbeScorer`) is trained on the same problems (each regime's,
each seed's); then every
scorer, with silhouette, Calinski–Harabasz and Davies–Bouldin beside them, ranks the
fixed candidate sets (:func:`tdml_lib.evaluate.evaluation_sets`) of test problems from
every test domain, under two feature protocols:

* ``"strict"``: test images go through the PCA fitted on the *training* domain's
  training split (no test domain is seen before scoring);
* ``"standard"``: through a PCA fitted on the *test* domain's unlabelled training
  split, as clustering papers do. Labels of a test domain are used only to score.

The same test problems (same images and classes: :func:`tdml_lib.problems.sample_problems`
draws them from the labels and the seed) are used under both protocols; only their
features differ. Test problems and candidate sets come from an
:class:`~tdml_lib.experiments.seeds.EvaluationSeeds` (development seeds for the chapters,
held-out ones for ``results/``). Every scorer's per-problem rank of the truth is kept,
so regimes and scorers are compared problem by problem (exact McNemar test), and Best /
Top 3 are also reported on a *tier* without the near-truth candidate kinds
(:data:`NEAR_TRUTH_KINDS`, fixed before the held-out run). Explained in chapter 5;
the full-scale run is read by chapter 8.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import evaluate, features
from ..critic import CriticConfig, fit_critic
from ..metrics import ari
from ..probe import ProbeScorer
from ..problems import Problem
from .seeds import DEVELOPMENT, EvaluationSeeds
from .training import (OVERLAP_PAIRS, OVERLAP_PULL, VARIANCE_PRESERVING_SPAN, Recipe, adversarial_training,
                       training_problems)

PROTOCOLS = ("strict", "standard")
REGIMES = ("standard", "few-shot")
ADVERSARIAL_REGIME = "standard + adversarial"
ABLATION_PREFIX = "ablation: "
INDEX_SCORERS = ("silhouette", "calinski_harabasz", "davies_bouldin")
NEAR_TRUTH_KINDS = ("noise_boundary_2", "noise_boundary_5", "noise_nearest_5", "split", "merge_closest")
"""Candidate kinds within a few moves of the truth (2-5 % of points moved, one cluster
split or two merged). Fixed on 2026-11-30, before the held-out run: Best/Top 3 are
reported with and without them, so a reader sees where a scorer fails."""


@dataclass
class CellEval:
    """How one scorer ranked the candidate sets of one test domain."""

    scorer: str
    train: str
    regime: str | None
    protocol: str
    test: str
    critic_seed: int | None
    ranks: np.ndarray              # rank of the truth per problem (1 = Best)
    tier_ranks: np.ndarray         # the same among candidates that are not near-truth kinds
    top_kinds: list[str | None]    # kind of the best negative at or above the truth

    def row(self, k: int = 3) -> dict[str, Any]:
        n = len(self.ranks)
        best, topk = int(np.sum(self.ranks == 1)), int(np.sum(self.ranks <= k))
        tb, tt = int(np.sum(self.tier_ranks == 1)), int(np.sum(self.tier_ranks <= k))
        lo, hi = evaluate.wilson_interval(best, n)
        return {"scorer": self.scorer, "train": self.train, "regime": self.regime, "protocol": self.protocol,
                "test": self.test, "critic_seed": self.critic_seed,
                "best": 100 * best / n, "best_ci_low": lo, "best_ci_high": hi, "top3": 100 * topk / n,
                "mean_rank": float(np.mean(self.ranks)), "best_no_near_truth": 100 * tb / n,
                "top3_no_near_truth": 100 * tt / n, "n_problems": n}


def _tier_rank(scores: np.ndarray, kinds: Sequence[str], correct: int) -> int:
    keep = [i for i, kind in enumerate(kinds) if kind not in NEAR_TRUTH_KINDS]
    s = np.where(np.isnan(scores), -np.inf, scores)[keep]
    return int(1 + np.sum(np.delete(s, keep.index(correct)) >= s[keep.index(correct)]))


def evaluate_cell(model: Any, csets: Sequence[Any], **keys: Any) -> CellEval:
    """Rank every candidate set with one scorer ``model`` (named ``keys["scorer"]``;
    :func:`tdml_lib.evaluate.evaluate_scorer`) and add the rank on the tier without
    near-truth kinds."""
    res = evaluate.evaluate_scorer(model, csets, name=keys["scorer"], progress=False)
    tier = [_tier_rank(s, kinds, c) for s, kinds, c in zip(res.scores, res.kinds, res.correct_indices)]
    return CellEval(ranks=res.ranks, tier_ranks=np.asarray(tier), top_kinds=list(res.top_kinds), **keys)


@dataclass
class TransferResult:
    """Every scorer's ranks on every cell, and what produced them."""

    cells: list[CellEval]
    kind_agreement: pd.DataFrame
    """Per (features' domain, test domain, kind): mean ARI of that kind with the truth."""
    training: dict[str, Any] = field(default_factory=dict)
    """Per critic: training problems, sources and final training history values."""

    def to_frame(self, k: int = 3) -> pd.DataFrame:
        """One row per (scorer, train, regime, protocol, test, critic seed)."""
        return pd.DataFrame([c.row(k) for c in self.cells])

    def table(self) -> pd.DataFrame:
        """One row per (scorer, train, regime, protocol, test): the critic's seeds pooled
        (mean Best and Top 3, with the lowest and highest seed beside them)."""
        df = self.to_frame()
        keys = ["scorer", "train", "regime", "protocol", "test"]
        df = df.assign(regime=df["regime"].fillna(""))
        agg = df.groupby(keys, sort=False).agg(
            best=("best", "mean"), best_seed_min=("best", "min"), best_seed_max=("best", "max"),
            best_ci_low=("best_ci_low", "mean"), best_ci_high=("best_ci_high", "mean"),
            top3=("top3", "mean"), mean_rank=("mean_rank", "mean"),
            best_no_near_truth=("best_no_near_truth", "mean"), top3_no_near_truth=("top3_no_near_truth", "mean"),
            n_seeds=("best", "size"), n_problems=("n_problems", "first")).reset_index()
        agg["regime"] = agg["regime"].replace("", None)
        return agg

    def ranks(self) -> pd.DataFrame:
        """Per-problem ranks, long format (one row per cell and problem)."""
        rows = []
        for c in self.cells:
            for i, (r, t) in enumerate(zip(c.ranks, c.tier_ranks)):
                rows.append({"scorer": c.scorer, "train": c.train, "regime": c.regime, "protocol": c.protocol,
                             "test": c.test, "critic_seed": c.critic_seed, "problem": i, "rank": int(r),
                             "rank_no_near_truth": int(t), "top_kind": c.top_kinds[i]})
        return pd.DataFrame(rows)

    def paired(self, a: str = "critic", b: str | Sequence[str] = ("probe", "silhouette"),
               regime: str | Sequence[str] | None = "standard", other_regime: str | None = None) -> pd.DataFrame:
        """McNemar test of scorer ``a`` (its first critic seed) against each of ``b``,
        cell by cell (:func:`tdml_lib.evaluate.paired_comparison`)."""
        return evaluate.paired_comparison(self.ranks(), a, b, regime, other_regime)

    def to_metrics(self) -> dict[str, Any]:
        """The JSON-ready numbers a chapter exports (the runner stores them)."""
        table = self.table()
        rows = [{**{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()},
                 "best_ci": [r["best_ci_low"], r["best_ci_high"]]} for r in table.to_dict(orient="records")]
        return {"table": rows, "per_seed": self.to_frame().to_dict(orient="records"),
                "ranks": self.ranks().to_dict(orient="records"),
                "kind_agreement": self.kind_agreement.to_dict(orient="records"),
                "near_truth_kinds": list(NEAR_TRUTH_KINDS), "training": self.training}


ENSEMBLE = "critic ensemble"
"""The scorer name of the critics of all seeds (of one training domain and regime),
averaged as z-scores."""

ABLATIONS = ("domain only", "synthetic only", "no noisy copies", "no shrunk copies", "no small-pool problems",
             "no overlapping copies", "weaker overlapping copies", "WGAN-GP", "GAE codes", "last-epoch weights",
             "few-shot, no interpolation", "few-shot, plain interpolation", "few-shot, interpolated fills only",
             "few-shot, no overlapping copies")
"""The ablations chapter 5 can run (:func:`ablations`)."""


def ablations(names: Sequence[str], standard: Recipe, config: CriticConfig,
              few_shot: Recipe | None = None) -> dict[str, tuple[Recipe, CriticConfig]]:
    """Recipes and configurations that differ from the standard (or few-shot) ones in one respect:

    * ``"domain only"``: the domain's problems alone (no copies, no synthetic or
      small-pool problems);
    * ``"synthetic only"``: synthetic problems (and their shrunk copies) alone;
    * ``"no noisy copies"``, ``"no shrunk copies"``, ``"no small-pool problems"``,
      ``"no overlapping copies"``: the standard recipe without them
      (``Recipe.small_pool_problems``, ``Recipe.overlap_copies``);
    * ``"weaker overlapping copies"``: the standard recipe with the default overlapping
      copies (:data:`~tdml_lib.experiments.training.OVERLAP_PAIRS` pairs, pull
      :data:`~tdml_lib.experiments.training.OVERLAP_PULL`, as the few-shot regime's)
      instead of its own stronger ones;
    * ``"WGAN-GP"``: the standard recipe with the per-problem WGAN-GP objective;
    * ``"GAE codes"``: the other choice of what block C reads (:data:`tdml_lib.critic.INPUTS`):
      the whole embedding, learned GAE codes included, when ``config`` reads the
      statistics, and the statistics alone when it reads the whole embedding;
    * ``"last-epoch weights"``: the standard recipe with the MLP's last weights, not their
      average over the final epochs (``CriticConfig.average_tail`` 0);
    * ``"few-shot, no interpolation"``: the ``few_shot`` recipe with its problems as
      drawn from the pool, not filled up at all (``Recipe.interpolate_to``, and no
      unlabelled images either);
    * ``"few-shot, plain interpolation"``: the ``few_shot`` recipe filled up by plain
      interpolation (``Recipe.interpolation_span`` 0), whatever its own span;
    * ``"few-shot, interpolated fills only"``: the ``few_shot`` recipe with every problem
      filled by interpolation, none with the domain's unlabelled images
      (``Recipe.unlabelled_share`` 0);
    * ``"few-shot, no overlapping copies"``: the ``few_shot`` recipe without them.

    Raises:
        ValueError: an unknown name; a few-shot ablation without ``few_shot``; ``"weaker
            overlapping copies"`` when the standard recipe's copies are the weaker ones
            already (or absent), so that the ablation would be the standard critic again.
    """
    other_inputs = "embedding" if config.inputs == "statistics" else "statistics"
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablations {unknown}; choose from {ABLATIONS}.")
    weaker = replace(standard, overlap_pull=OVERLAP_PULL, overlap_pairs=OVERLAP_PAIRS)
    if "weaker overlapping copies" in names and (weaker == standard or not standard.overlap_copies):
        raise ValueError("the ablation 'weaker overlapping copies' needs a standard recipe with overlap_copies=True "
                         f"and stronger copies than the defaults (overlap_pairs={OVERLAP_PAIRS}, "
                         f"overlap_pull={OVERLAP_PULL}); this one would train the standard critic again.")
    table = {
        "domain only": (replace(standard, noise_copies=False, n_synthetic=0, shrunk_copies=False,
                                subsampled_copies=False, small_pool_problems=0, overlap_copies=False), config),
        "synthetic only": (replace(standard, n_problems=0, noise_copies=False, small_pool_problems=0,
                                   overlap_copies=False,
                                   n_synthetic=standard.n_synthetic or standard.n_problems), config),
        "no noisy copies": (replace(standard, noise_copies=False), config),
        "no shrunk copies": (replace(standard, shrunk_copies=False), config),
        "no small-pool problems": (replace(standard, small_pool_problems=0), config),
        "no overlapping copies": (replace(standard, overlap_copies=False), config),
        "weaker overlapping copies": (weaker, config),
        "WGAN-GP": (standard, CriticConfig(**{**config.as_dict(), "objective": "wgan-gp"})),
        "GAE codes": (standard, CriticConfig(**{**config.as_dict(), "inputs": other_inputs})),
        "last-epoch weights": (standard, replace(config, average_tail=0.0)),
    }
    if few_shot is not None:
        table["few-shot, no interpolation"] = (replace(few_shot, interpolate_to=None, unlabelled_share=0.0), config)
        table["few-shot, interpolated fills only"] = (replace(few_shot, unlabelled_share=0.0), config)
        table["few-shot, plain interpolation"] = (replace(few_shot, interpolation_span=0.0), config)
        table["few-shot, no overlapping copies"] = (replace(few_shot, overlap_copies=False), config)
    lacking = [n for n in names if n not in table]   # only the few-shot ones can be: the names are known
    if lacking:
        raise ValueError(f"the ablations {lacking} need the few-shot recipe: pass few_shot=.")
    return {name: table[name] for name in names}


def evaluation_problems(test: str, n_problems: int, seeds: EvaluationSeeds,
                  feature_map: features.FeatureMap) -> list[Problem]:
    """The test problems of a domain (test split), through ``feature_map``."""
    return features.domain_problems(test, n_problems, split="test", feature_map=feature_map, seed=seeds.problems)


def _kind_agreement(csets: Sequence[Any], features_from: str, test: str) -> list[dict[str, Any]]:
    rows = []
    for cs in csets:
        truth = cs.labelings[cs.correct_index]
        for lab, kind in zip(cs.labelings, cs.kinds):
            if kind != "correct":
                rows.append({"features_from": features_from, "test": test, "kind": kind, "ari": ari(truth, lab)})
    return rows


def candidate_sets(train_domains: Sequence[str], test_domains: Sequence[str], protocols: Sequence[str],
                   maps: Mapping[str, features.FeatureMap], n_eval_problems: int, eval_negatives: int,
                   seeds: EvaluationSeeds, progress: bool = True) -> tuple[dict[tuple[str, str], list[Any]], list[dict[str, Any]]]:
    """The fixed candidate sets every scorer ranks, keyed by (features' domain, test
    domain): under the strict protocol a test domain's images go through the training
    domain's feature map, under the standard one through its own. Also each candidate
    kind's agreement with the truth (rows for :attr:`TransferResult.kind_agreement`)."""
    csets: dict[tuple[str, str], list[Any]] = {}
    agreement: list[dict[str, Any]] = []
    for protocol in protocols:
        for train in train_domains:
            for test in test_domains:
                fdom = train if protocol == "strict" else test
                if (fdom, test) not in csets:
                    probs = evaluation_problems(test, n_eval_problems, seeds, maps[fdom])
                    csets[(fdom, test)] = evaluate.evaluation_sets(probs, n_negatives=eval_negatives,
                                                                   seed=seeds.candidates, progress=progress)
                    agreement += _kind_agreement(csets[(fdom, test)], fdom, test)
    return csets, agreement


def _check_protocols(protocols: Sequence[str]) -> None:
    for name in protocols:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r}; choose from {PROTOCOLS}.")


def _kind_table(agreement: list[dict[str, Any]]) -> pd.DataFrame:
    kinds = pd.DataFrame(agreement)
    return kinds.groupby(["features_from", "test", "kind"], as_index=False)["ari"].mean() if len(kinds) else kinds


def _rank_cells(scorer: Any, csets: Mapping[tuple[str, str], list[Any]], name: str, train: str, regime: str | None,
                seed: int | None, protocols: Sequence[str], test_domains: Sequence[str]) -> list[CellEval]:
    return [evaluate_cell(scorer, csets[(train if protocol == "strict" else test, test)], scorer=name, train=train,
                          regime=regime, protocol=protocol, test=test, critic_seed=seed)
            for protocol in protocols for test in test_domains]


def _feature_maps(train_domains: Sequence[str], test_domains: Sequence[str],
                  protocols: Sequence[str]) -> dict[str, Any]:
    """The feature maps the cells need: the training domains' (the strict protocol) and,
    under the standard protocol, each test domain's own."""
    domains = {*train_domains, *(test_domains if "standard" in protocols else ())}
    return {d: features.fit_feature_map(d) for d in domains}


def rank_trained(scorers: Mapping[str, Any], train: str = "numbers",
                 test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                 protocols: Sequence[str] = PROTOCOLS, n_eval_problems: int = 100, eval_negatives: int = 19,
                 seeds: EvaluationSeeds = DEVELOPMENT, progress: bool = True) -> TransferResult:
    """Rank the candidate sets of :func:`run_transfer` with scorers already trained on
    ``train`` (e.g. the shipped critic and one retrained to replace it), under each
    feature protocol: the same cells, problems and candidates as a transfer run with the
    same seeds. Each scorer is reported as regime ``None`` under its own name.

    Raises:
        ValueError: no scorer, or an unknown protocol.
    """
    if not scorers:
        raise ValueError("rank_trained needs at least one scorer.")
    _check_protocols(protocols)
    maps = _feature_maps((train,), test_domains, protocols)
    csets, agreement = candidate_sets((train,), test_domains, protocols, maps, n_eval_problems, eval_negatives,
                                      seeds, progress)
    cells = [cell for name, scorer in scorers.items()
             for cell in _rank_cells(scorer, csets, name, train, None, None, protocols, test_domains)]
    return TransferResult(cells, _kind_table(agreement))


def recipes_from_parameters(params: Mapping[str, Any]) -> tuple[Recipe, Recipe, CriticConfig]:
    """The standard and the few-shot recipe, and the critic configuration, of chapter 5's
    parameters (``params``: the chapter's parameter names with their values, or a stored
    transfer run's ``params``). Chapter 5 builds its recipes with it, and the trials of
    ``scripts/compare_trial.py`` start from the recipes the stored run trained with it;
    names it does not use are ignored. Names added after a run was stored take the value
    that run used: ``CRITIC_AVERAGE_TAIL`` and ``FEW_SHOT_KEEP_SPREAD`` are off,
    ``FEW_SHOT_UNLABELLED_SHARE`` is 0 (every few-shot problem filled by interpolation), and
    ``FEW_SHOT_SYNTHETIC`` (the few-shot recipe's synthetic problems) is ``N_SYNTHETIC``.
    With ``FEW_SHOT_POINTS`` None nothing is filled, and the share is 0 too.

    Raises:
        ValueError: a parameter the recipes need is missing.
    """
    needed = ["N_TRAIN_PROBLEMS", "NOISE_COPIES", "N_SYNTHETIC", "SMALL_POOL_SHARE", "FEW_SHOT_PROBLEMS",
              "FEW_SHOT_EXAMPLES_PER_CLASS", "FEW_SHOT_POINTS", "OVERLAP_COPIES", "OVERLAP_PULL", "OVERLAP_PAIRS",
              "N_NEGATIVES", "N_DEGENERATE", "EPOCHS", "GAE_EPOCHS", "CRITIC_INPUTS"]
    missing = [name for name in needed if name not in params]
    if missing:
        raise ValueError(f"the parameters lack {missing}; pass a transfer run's params "
                         "(results/transfer/result.json) or chapter 5's parameter cell.")
    p = params
    standard = Recipe(n_problems=p["N_TRAIN_PROBLEMS"], noise_copies=p["NOISE_COPIES"], n_synthetic=p["N_SYNTHETIC"],
                      small_pool_problems=round(p["SMALL_POOL_SHARE"] * p["N_TRAIN_PROBLEMS"]),
                      small_pool_size=p["FEW_SHOT_EXAMPLES_PER_CLASS"], overlap_copies=p["OVERLAP_COPIES"],
                      overlap_pull=tuple(p["OVERLAP_PULL"]), overlap_pairs=p["OVERLAP_PAIRS"])
    few_shot = Recipe(n_problems=p["FEW_SHOT_PROBLEMS"], noise_copies=p["NOISE_COPIES"],
                      n_synthetic=p.get("FEW_SHOT_SYNTHETIC", p["N_SYNTHETIC"]),
                      examples_per_class=p["FEW_SHOT_EXAMPLES_PER_CLASS"],
                      interpolate_to=tuple(p["FEW_SHOT_POINTS"]) if p["FEW_SHOT_POINTS"] else None,
                      interpolation_span=VARIANCE_PRESERVING_SPAN if p.get("FEW_SHOT_KEEP_SPREAD") else 0.0,
                      unlabelled_share=p.get("FEW_SHOT_UNLABELLED_SHARE", 0.0) if p["FEW_SHOT_POINTS"] else 0.0,
                      overlap_copies=p["OVERLAP_COPIES"])
    config = CriticConfig(n_negatives=p["N_NEGATIVES"], n_degenerate=p["N_DEGENERATE"], epochs=p["EPOCHS"],
                          gae_epochs=p["GAE_EPOCHS"], inputs=p["CRITIC_INPUTS"],
                          average_tail=p.get("CRITIC_AVERAGE_TAIL", 0.0))
    return standard, few_shot, config


@dataclass(frozen=True)
class _Shared:
    """What every job of a transfer run reads: the candidate sets it ranks, the feature
    maps its training problems go through, the cells' keys and the critics' device."""

    csets: Mapping[tuple[str, str], list[Any]]
    maps: Mapping[str, Any]
    protocols: tuple[str, ...]
    test_domains: tuple[str, ...]
    device: Any


@dataclass(frozen=True)
class _CriticJob:
    """Train one critic (regime ``"ablation: <name>"`` for an ablation), and its probe and
    adversarial successor when asked (``adversarial``: :func:`adversarial_training`'s
    settings), and rank the candidate sets with each."""

    train: str
    regime: str
    seed: int
    recipe: Recipe
    config: CriticConfig
    probe: bool
    adversarial: Mapping[str, int] | None


@dataclass(frozen=True)
class _RankJob:
    """Rank the candidate sets with a scorer trained elsewhere (or an index)."""

    scorer: Any
    name: str
    train: str
    regime: str | None
    seed: int | None


@dataclass
class _JobOutput:
    cells: list[CellEval] = field(default_factory=list)
    probe_cells: list[CellEval] = field(default_factory=list)
    adversarial_cells: list[CellEval] = field(default_factory=list)
    ensemble_cells: list[CellEval] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    critic: Any = None


def _run_job(job: _CriticJob | _RankJob, shared: _Shared) -> _JobOutput:
    """One job of :func:`run_transfer`; it seeds itself, so it gives the same output in
    any process and in any order."""
    def rank(scorer: Any, name: str, regime: str | None, seed: int | None) -> list[CellEval]:
        return _rank_cells(scorer, shared.csets, name, job.train, regime, seed, shared.protocols,
                           shared.test_domains)

    if isinstance(job, _RankJob):
        return _JobOutput(cells=rank(job.scorer, job.name, job.regime, job.seed))
    train, seed, cfg = job.train, job.seed, job.config
    probs = job.recipe.problems(train, shared.maps[train], seed=seed)
    critic, hist, ts = fit_critic(probs, cfg, seed=seed, device=shared.device, progress=False)
    out = _JobOutput(cells=rank(critic, "critic", job.regime, seed), critic=critic)
    ablation = job.regime.startswith(ABLATION_PREFIX)
    out.training[f"{train}/{job.regime}/seed{seed}"] = {
        "n_problems": len(probs), "recipe": job.recipe.as_dict(), **({"config": cfg.as_dict()} if ablation else {}),
        "truth_first_last_epoch": float(hist["critic"]["truth_first"].iloc[-1]),
        **({} if ablation else {"loss_last_epoch": float(hist["critic"]["loss"].iloc[-1])})}
    if job.probe:
        out.probe_cells = rank(ProbeScorer().fit(probs, cfg.n_negatives, cfg.n_degenerate, seed=seed), "probe",
                               job.regime, seed)
    if job.adversarial:
        a = dict(job.adversarial)
        validation = training_problems(train, a.pop("validation"), seed=seed + 100, feature_map=shared.maps[train])
        adv, adv_hist = adversarial_training(critic, probs, ts, cfg, seed=seed, progress=False,
                                             validation=validation, **a)
        out.training[f"{train}/{ADVERSARIAL_REGIME}/seed{seed}"] = adv_hist.to_dict(orient="records")
        out.adversarial_cells = rank(adv, "critic", ADVERSARIAL_REGIME, seed)
    return out


_WORKER_SHARED: list[_Shared] = []
"""A worker process's :class:`_Shared`, set once by :func:`_start_worker`."""


def _start_worker(shared: _Shared, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER_SHARED[:] = [shared]


def _run_in_worker(job: _CriticJob | _RankJob) -> _JobOutput:
    return _run_job(job, _WORKER_SHARED[0])


def _run_jobs(jobs: Sequence[_CriticJob | _RankJob], ensembles: Mapping[tuple[str, str], list[int]],
              shared: _Shared, workers: int, progress: bool) -> list[_JobOutput]:
    """Every job's output, in the jobs' order; the critics of each ``ensembles`` group
    (job indices) are ranked together as :data:`ENSEMBLE` once all are trained (the cells
    go with the group's last job). The critics are dropped from the outputs.

    With ``workers`` > 1 the jobs run in a pool of *spawned* processes (a fork would
    copy the Jupyter kernel's threads and any CUDA context): each gets the shared sets
    once and its share of the torch threads; the longest jobs, those with adversarial
    rounds, start first.
    """
    import concurrent.futures as cf
    import multiprocessing

    from tqdm.auto import tqdm

    outputs: dict[int, _JobOutput] = {}
    group_of = {i: key for key, members in ensembles.items() for i in members}
    bar = tqdm(total=len(jobs) + len(ensembles), desc="critics and ranks", disable=not progress)

    def collect(kind: str, key: Any, output: _JobOutput) -> tuple[_RankJob, tuple[str, str]] | None:
        """Keep a job's output; the ensemble job (and its group) this output completes, if any."""
        bar.update()
        if kind == "ensemble":
            outputs[ensembles[key][-1]].ensemble_cells = output.cells
            return None
        outputs[key] = output
        group = group_of.get(key)
        if group is None or not all(i in outputs for i in ensembles[group]):
            return None
        scorer = evaluate.ZScoreEnsemble([outputs[i].critic for i in ensembles[group]], ENSEMBLE)
        return _RankJob(scorer, ENSEMBLE, group[0], group[1], None), group

    if workers == 1:
        for i, job in enumerate(jobs):
            if (ensemble := collect("job", i, _run_job(job, shared))) is not None:
                collect("ensemble", ensemble[1], _run_job(ensemble[0], shared))
    else:
        import torch

        threads = max(1, torch.get_num_threads() // workers)
        order = sorted(range(len(jobs)), key=lambda i: not getattr(jobs[i], "adversarial", None))
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_start_worker, initargs=(shared, threads)) as pool:
            pending = {pool.submit(_run_in_worker, jobs[i]): ("job", i) for i in order}
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    if (ensemble := collect(*pending.pop(future), future.result())) is not None:
                        pending[pool.submit(_run_in_worker, ensemble[0])] = ("ensemble", ensemble[1])
    bar.close()
    for out in outputs.values():
        out.critic = None
    return [outputs[i] for i in range(len(jobs))]


def run_transfer(train_domains: Sequence[str] = ("numbers", "fashion"),
                 test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                 regimes: Sequence[str] = REGIMES, protocols: Sequence[str] = PROTOCOLS,
                 standard: Recipe = Recipe(), few_shot: Recipe = Recipe(n_problems=30, examples_per_class=20, interpolate_to=(20, 100)),
                 critic_config: CriticConfig | None = None, critic_seeds: Sequence[int] = (0,),
                 n_eval_problems: int = 100, eval_negatives: int = 19, seeds: EvaluationSeeds = DEVELOPMENT,
                 adversarial_rounds: int = 0, adversarial_problems: int = 16, adversarial_generations: int = 15,
                 adversarial_population: int = 32, adversarial_validation: int = 8,
                 ablations: Mapping[str, tuple[Recipe, CriticConfig | None]] | None = None,
                 ablation_seeds: Sequence[int] | None = None, probe: bool = True,
                 index_scorers: Sequence[str] = INDEX_SCORERS, pretrained: Mapping[str, Any] | None = None,
                 device: Any = "auto", workers: int = 1, progress: bool = True) -> TransferResult:
    """Train the critics of the poster's rows and rank the candidates of every test domain.

    Args:
        train_domains, test_domains: dataset names (:func:`tdml_lib.data.load`).
        regimes: ``"standard"`` and/or ``"few-shot"``; their recipes are ``standard`` and
            ``few_shot``.
        protocols: feature protocols of the test problems (:data:`PROTOCOLS`).
        critic_config: the critic's hyper-parameters (default :class:`CriticConfig`).
        critic_seeds: one critic of each training domain and regime per seed (the
            spread over seeds is reported); with two or more seeds their
            :class:`~tdml_lib.evaluate.ZScoreEnsemble` is ranked too, as scorer
            :data:`ENSEMBLE`. The probe is trained on every seed's problems of every regime
            (its mean over seeds sits beside the critic's); the adversarial critic uses the
            first seed.
        n_eval_problems, eval_negatives: test problems per domain, near misses per problem.
        seeds: the evaluation seeds (test problems and candidate sets).
        adversarial_rounds: the most rounds of the adversarial loop after the standard
            critic of the first critic seed (0: no ``"standard + adversarial"`` row); it stops
            earlier when the agent no longer beats the truth on ``adversarial_validation``
            held-out labelled problems of the training domain.
        ablations: ``{name: (recipe, config or None)}``: more critics, trained on the first
            training domain, reported as regime ``"ablation: <name>"`` (e.g. the domain's
            problems only, synthetic only, or the WGAN-GP objective), on the same candidate
            sets.
        ablation_seeds: the critic seeds each ablation is trained with (default: the first
            critic seed); with all of ``critic_seeds`` every ablation pairs with the critic
            of each seed (:func:`~tdml_lib.experiments.recipe_comparison.compare_configs`).
        probe: train the probe on each regime's recipe, one per critic seed, on that
            seed's problems (the few-shot probe reads the few-shot critic's labels only).
        index_scorers: internal indices that rank the same candidates.
        pretrained: ``{name: scorer}`` trained elsewhere on the first training domain's
            standard problems, e.g. ``{"shipped critic": tdml.load_critic()}``: ranked on
            that domain's cells as regime ``"standard"`` under their own names (no seed).
        device: for the critics.
        workers: processes the jobs run in (each critic with its probe and its ranks, each
            ablation, each ranking of a scorer trained elsewhere or an index): 1 runs them
            here, one after another; more runs them in that many worker processes
            (:func:`_run_jobs`), with the same results, since every job seeds itself.
        progress: show progress bars.

    Raises:
        ValueError: an unknown regime or protocol, an empty list, or ``workers`` < 1.
    """
    from ..metrics import IndexScorer

    for name in regimes:
        if name not in REGIMES:
            raise ValueError(f"unknown regime {name!r}; choose from {REGIMES}.")
    _check_protocols(protocols)
    if not train_domains or not test_domains or not regimes or not protocols or not critic_seeds:
        raise ValueError("train_domains, test_domains, regimes, protocols and critic_seeds must be non-empty.")
    if ablation_seeds is not None and not len(ablation_seeds):
        raise ValueError("ablation_seeds is empty: give at least one seed, or None for the first critic seed.")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (1: no worker processes), got {workers!r}.")
    cfg = critic_config or CriticConfig()
    recipes = {"standard": standard, "few-shot": few_shot}
    maps = _feature_maps(train_domains, test_domains, protocols)

    csets, agreement = candidate_sets(train_domains, test_domains, protocols, maps, n_eval_problems, eval_negatives,
                                      seeds, progress)
    shared = _Shared(csets, maps, tuple(protocols), tuple(test_domains), device)
    adversarial = {"rounds": adversarial_rounds, "problems_per_round": adversarial_problems,
                   "epochs_per_round": max(1, cfg.epochs // 3), "generations": adversarial_generations,
                   "population_size": adversarial_population, "validation": adversarial_validation}
    # the spread over training seeds is measured on every regime (the poster's rows): one
    # seed's few-shot critic is as much a draw as one seed's standard critic, and so is its
    # probe; the adversarial rounds and the ablations use the first seed
    jobs: list[_CriticJob | _RankJob] = [
        _CriticJob(t, r, int(s), recipes[r], cfg, probe,
                   adversarial if adversarial_rounds and r == "standard" and s == critic_seeds[0] else None)
        for t in train_domains for r in regimes for s in critic_seeds]
    jobs += [_CriticJob(train_domains[0], f"{ABLATION_PREFIX}{name}", int(seed), recipe, config or cfg, False, None)
             for name, (recipe, config) in (ablations or {}).items()
             for seed in (critic_seeds[:1] if ablation_seeds is None else ablation_seeds)]
    jobs += [_RankJob(scorer, name, train_domains[0], REGIMES[0], None) for name, scorer in (pretrained or {}).items()]
    jobs += [_RankJob(IndexScorer(name), name, train, None, None) for train in train_domains for name in index_scorers]
    ensembles = {(t, r): [i for i, job in enumerate(jobs) if isinstance(job, _CriticJob)
                          and (job.train, job.regime) == (t, r)]
                 for t in train_domains for r in regimes} if len(critic_seeds) > 1 else {}
    outputs = _run_jobs(jobs, ensembles, shared, workers, progress)
    cells: list[CellEval] = []
    training: dict[str, Any] = {}
    for out in outputs:   # the order of a run in one process, whatever the workers' order
        training.update(out.training)
        cells += out.cells + out.ensemble_cells + out.probe_cells + out.adversarial_cells
    return TransferResult(cells, _kind_table(agreement), training)


__all__ = ["ABLATIONS", "ABLATION_PREFIX", "ADVERSARIAL_REGIME", "ENSEMBLE", "INDEX_SCORERS", "NEAR_TRUTH_KINDS", "PROTOCOLS",
           "REGIMES", "CellEval", "Recipe", "TransferResult", "ablations", "candidate_sets", "evaluate_cell",
           "evaluation_problems", "rank_trained", "recipes_from_parameters", "run_transfer"]
