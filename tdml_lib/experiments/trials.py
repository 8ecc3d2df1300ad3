"""Recipe steps under trial: measured with :func:`~.recipe_comparison.compare_recipes`
on the development seeds before any of them joins :class:`~.training.Recipe`.

A step lives here while it is being measured, so that trying it changes no module a
chapter loads (the stored results of chapters 4 and 5 stay current); one that earns
its place moves into :class:`~.training.Recipe`, with its ablation, and the stored
results are re-run.

* :func:`mixed_boundary_copies` and :class:`BoundaryRecipe`: copies of the domain's
  training problems in which a share of each class's points is pulled part of the way
  towards the nearest point of another class, labels unchanged. Why: on Fashion the
  critics lose most often to ``noise_boundary_2`` (2 % of the most ambiguous points
  moved to their nearest other cluster; ``results/transfer``, the ``top_kind`` of each
  lost problem), that is, to a *cleaner* version of the truth. Fashion's correct
  clusterings have crowded borders, and the critics' training truths do not: Numbers'
  classes are far apart, and the few-shot problems are filled up by within-class
  interpolation (:func:`~.training.interpolated_copies`), which leaves the space between
  classes empty. :func:`~.training.overlapping_copies` moves whole classes; this moves
  single points, so the borders fill while the classes' centres stay.

* :func:`fit_tail_averaged`: the critic's weights averaged over its last epochs (the
  averaging of stochastic weight averaging, Izmailov et al. 2018, at the critic's own
  constant learning rate). Why: the critics of one recipe and configuration differed by
  more than ten points of Best from one training seed to the next in some held-out cells
  (strict Fashion -> Numbers), more than any recipe step had moved a cell. Measured by
  :func:`~.recipe_comparison.compare_tail_average` and adopted by the rule in
  ``results/development/adoption_rules.md`` (``results/development/average_*``), it is
  now :attr:`~tdml_lib.critic.CriticConfig.average_tail`, on for the critics of chapters
  4 and 5; :func:`fit_tail_averaged` stays to measure it again (say, at another share of
  the epochs), with that field as its one mechanism.

* :class:`SmallPoolUnlabelledRecipe`: the standard recipe's small-pool problems filled as
  the few-shot recipe fills its own (half of them with the domain's unlabelled images).
  Why: the standard recipe's small-pool problems are all interpolated, and carry the
  reversed kNN cue that the few-shot filling removed (chapter 8, Figure 8.4). Measured on
  the confirmation seeds (``smallpool_unlabelled_*_standard_confirmation``) and not
  adopted.

A step that earned its place moved into :class:`~.training.Recipe` and stays there as an
option: the variance-keeping interpolation is ``Recipe.interpolation_span`` (measured by
``results/development/spread_fashion_few_shot`` and ``spread_numbers_few_shot``, adopted
for the few-shot regime); the filling of few-shot problems with the domain's unlabelled
images is ``Recipe.unlabelled_share`` (:func:`~.training.unlabelled_fill_problems`; measured
here as ``UnlabelledFillRecipe`` by ``unlabelled_*_few_shot_confirmation``, adopted). A step
measured and not adopted may stay as a field too, when it is one number: the gentler shrunk
copies of ``gentle_*_few_shot`` (here as ``GentleShrinkRecipe`` then) are
``Recipe.shrink_min_factor`` at :data:`GENTLE_SHRINK`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import numpy as np
from scipy.spatial.distance import cdist

from ..critic import ClusteringCritic, CriticConfig, fit_critic
from ..problems import Problem, standardize
from ..validation import check_int, check_real, check_real_range
from .training import UNLABELLED_SHARE, Recipe

BOUNDARY_SHARE = (0.05, 0.25)
"""Default share of each problem's points that :func:`mixed_boundary_copies` moves
(lowest, highest; drawn per problem)."""
BOUNDARY_REACH = (0.3, 0.7)
"""Default fraction of the way to the nearest point of another class that a moved point
goes (lowest, highest; drawn per point)."""


def mixed_boundary_copies(problems: Sequence[Problem], share: tuple[float, float] = BOUNDARY_SHARE,
                          reach: tuple[float, float] = BOUNDARY_REACH, seed: int = 0) -> list[Problem]:
    """Copies of labelled problems with crowded borders between their classes.

    In each copy a share (uniform in ``share``, per problem) of the points, drawn at
    random, moves a fraction (uniform in ``reach``, per point) of the way towards its
    nearest point of another class; its label stays. Points past half-way lie nearer
    the other class, as Fashion's shirts among its pullovers do. Standardised again.
    Uses the labels of training problems only; a problem with one class is copied as it is.

    Raises:
        ValueError: ``share`` or ``reach`` outside [0, 1] or not (lowest, highest).
    """
    share = check_real_range(share, "share")
    reach = check_real_range(reach, "reach")
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        X = p.X.astype(np.float64)
        moved = X.copy()
        if p.n_clusters > 1:
            n_moved = int(round(rng.uniform(*share) * len(X)))
            idx = rng.choice(len(X), size=n_moved, replace=False)
            # squared distances from the drawn points to every point, own class masked out
            d2 = cdist(X[idx], X, "sqeuclidean")
            d2[p.labels[idx, None] == p.labels[None, :]] = np.inf
            target = X[d2.argmin(1)]
            moved[idx] = X[idx] + rng.uniform(*reach, size=(len(idx), 1)) * (target - X[idx])
        out.append(Problem(standardize(moved), p.labels, f"{p.source} + mixed boundary", p.classes))
    return out


@dataclass(frozen=True)
class BoundaryRecipe(Recipe):
    """A :class:`~.training.Recipe` plus :func:`mixed_boundary_copies` of the domain's
    problems (after interpolation, in the few-shot regime), one copy per problem.

    Attributes:
        boundary_share, boundary_reach: ``share`` and ``reach`` of the copies.
    """

    boundary_share: tuple[float, float] = BOUNDARY_SHARE
    boundary_reach: tuple[float, float] = BOUNDARY_REACH

    def problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The recipe's problems, then the mixed-boundary copies of the domain's own."""
        out = super().problems(domain, feature_map, seed)
        # Recipe.problems puts the domain's own problems first (interpolated if asked)
        own = out[:self.n_problems]
        return out + mixed_boundary_copies(own, tuple(self.boundary_share), tuple(self.boundary_reach),
                                           seed=seed + 17)


@dataclass(frozen=True)
class SmallPoolUnlabelledRecipe(Recipe):
    """A standard :class:`~.training.Recipe` whose small-pool problems are filled as the
    few-shot recipe fills its own: ``small_pool_unlabelled_share`` of them with the domain's
    unlabelled training images (:func:`~.training.unlabelled_fill_domain_problems`), the
    rest by interpolation; everything else is the recipe's. Measured on the confirmation
    seeds by ``smallpool_unlabelled_*_standard_confirmation`` and not adopted
    (``results/development/adoption_rules.md``).

    Attributes:
        small_pool_unlabelled_share: the ``unlabelled_share`` of the small-pool problems.
    """

    small_pool_unlabelled_share: float = UNLABELLED_SHARE

    def problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The recipe's problems, its small-pool ones filled as described above.

        Raises:
            ValueError: a few-shot recipe (``examples_per_class`` set), no small-pool
                problems, or a share outside [0, 1].
        """
        share = check_real(self.small_pool_unlabelled_share, "small_pool_unlabelled_share", 0.0, 1.0)
        if self.examples_per_class is not None or not self.small_pool_problems:
            raise ValueError("SmallPoolUnlabelledRecipe fills a standard recipe's small-pool problems: leave "
                             "examples_per_class unset and set small_pool_problems.")
        plain = {f.name: getattr(self, f.name) for f in fields(Recipe)}
        return Recipe.problems(_SmallPoolFilled(**plain, fill_share=share), domain, feature_map, seed)


@dataclass(frozen=True)
class _SmallPoolFilled(Recipe):
    """Made only by :meth:`SmallPoolUnlabelledRecipe.problems`, from a standard recipe, so a
    copy with ``examples_per_class`` set is the small-pool recipe that
    :meth:`Recipe.problems <.training.Recipe.problems>` makes (with ``unlabelled_share`` 0):
    its own problems take ``fill_share``."""

    fill_share: float = 0.0

    def own_problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        if self.examples_per_class is None:
            return super().own_problems(domain, feature_map, seed)
        return Recipe.own_problems(replace(self, unlabelled_share=self.fill_share), domain, feature_map, seed)


GENTLE_SHRINK = 0.6
"""``Recipe.shrink_min_factor`` of the gentle-shrink trial (``scripts/compare_trial.py --trial
gentle-shrink``): the middle of the recipe's own range, fixed before it ran (the recipe's own: 0.2)."""

AVERAGE_LAST = 25
"""Default number of final epochs whose end-of-epoch weights :func:`fit_tail_averaged`
averages: the last quarter of the hundred epochs the stored critics train (fixed before
the measurement, not tuned)."""


def fit_tail_averaged(problems: Sequence[Problem], cfg: CriticConfig, seed: int = 0,
                      average_last: int = AVERAGE_LAST, device: Any = "cpu"
                      ) -> tuple[ClusteringCritic, ClusteringCritic]:
    """The critic of one training run with its last epoch's weights, and with the mean of
    its weights after each of its last ``average_last`` epochs.

    Two calls of :func:`~tdml_lib.critic.fit_critic` with the same problems and seed,
    ``cfg.average_tail`` set to 0 and to ``average_last / cfg.epochs``. The averaging
    reads the weights and never steers training (no random draw, no change to the
    weights it reads; a test checks that the last epoch's weights of the two runs are
    equal bit for bit), so the pair is one training run and differs in the averaging
    only. Training twice costs twice the time; it keeps one averaging mechanism
    (:func:`~tdml_lib.critic.train_critic_net`).

    Args:
        problems, seed, device: as for :func:`~tdml_lib.critic.fit_critic`.
        cfg: the configuration; its own ``average_tail`` is ignored.
        average_last: how many final epochs to average, 1 to ``cfg.epochs``.

    Returns:
        (the critic with its last epoch's weights, the tail average), the average's
        metadata saying how many epochs it averages.

    Raises:
        ValueError: ``average_last`` outside 1..``cfg.epochs``.
    """
    average_last = check_int(average_last, "average_last", 1, cfg.epochs)
    last = replace(cfg, average_tail=0.0)
    trained = fit_critic(problems, last, seed=seed, device=device, progress=False)[0]
    averaged = fit_critic(problems, replace(last, average_tail=average_last / cfg.epochs), seed=seed,
                          device=device, progress=False)[0]
    averaged.metadata["tail_average_epochs"] = average_last
    return trained, averaged


__all__ = ["AVERAGE_LAST", "BOUNDARY_REACH", "BOUNDARY_SHARE", "GENTLE_SHRINK", "BoundaryRecipe", "fit_tail_averaged",
           "mixed_boundary_copies"]
