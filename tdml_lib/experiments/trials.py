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

* :class:`GentleShrinkRecipe`: a recipe whose shrunk copies are drawn less far towards
  their centroids (factor in ``[shrink_min_factor, 1]`` instead of ``[0.2, 1]``). Why: on
  the development seeds, a few-shot recipe without shrunk copies lifted the Numbers
  few-shot critic on Fashion and cost the Fashion few-shot critic on Fashion
  (``results/development/unshrunk_*``): the cleanest training truths hold one back and
  the other needs some; gentler copies keep cleaner truths without the extreme ones.

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

* :func:`unlabelled_fill_problems` and :class:`UnlabelledFillRecipe`: few-shot problems
  filled up with the training domain's *unlabelled* training images instead of
  interpolated points, each labelled by the vote of its nearest pool images. Why: in a
  problem filled by interpolation each point's nearest neighbours are fills of its own
  class, so moving the truth's most ambiguous points to their nearest class lowers its kNN
  agreement where in real problems it raises it (chapter 8, Figure 8.4); real images keep
  real neighbourhoods. The few-shot critic still reads the labels of the small pool only
  (the replication-choices page says what the regime may use). An exploratory pilot on the
  development seeds (``scripts/pilot_unlabelled_fill.py``, ``results/development/pilots/``)
  chose the mixed form measured here: every other problem filled this way, the others by
  interpolation as before.

A step that earned its place moved into :class:`~.training.Recipe` and stays there as an
option: the variance-keeping interpolation is ``Recipe.interpolation_span`` (measured by
``results/development/spread_fashion_few_shot`` and ``spread_numbers_few_shot``, adopted
for the few-shot regime).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Sequence
from unittest import mock

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier

from .. import data, features
from ..critic import ClusteringCritic, CriticConfig, fit_critic
from ..problems import Problem, _check_range, standardize
from ..validation import check_int, check_points, check_real, check_real_range
from . import training
from .training import Recipe, interpolated_copies, shrunk_copies

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


GENTLE_SHRINK = 0.6
"""Default ``shrink_min_factor`` of :class:`GentleShrinkRecipe`: the smallest factor by which
its shrunk copies draw each point towards its class centroid (the recipe's own: 0.2)."""


@dataclass(frozen=True)
class GentleShrinkRecipe(Recipe):
    """A :class:`~.training.Recipe` whose shrunk copies (:func:`~.training.shrunk_copies`,
    of half the domain's and half the synthetic problems, as the recipe's) draw each class
    towards its centroid by a factor drawn in ``[shrink_min_factor, 1]``.

    The copies are made of the same problems with the same seed as the recipe's; they come
    last in the list instead of among the other copies (the order of training problems is
    shuffled in training anyway).

    Attributes:
        shrink_min_factor: the smallest factor, in (0, 1].
    """

    shrink_min_factor: float = GENTLE_SHRINK

    def problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The recipe's problems without its shrunk copies, then the gentler ones."""
        if not self.shrunk_copies:
            return super().problems(domain, feature_map, seed)
        out = replace(self, shrunk_copies=False).problems(domain, feature_map, seed)
        # Recipe.problems puts the domain's own problems first (interpolated if asked);
        # its synthetic problems are the ones no later step renamed
        own = out[:self.n_problems]
        synthetic = [p for p in out if p.source.startswith("synthetic") and " + " not in p.source]
        return out + shrunk_copies(own[::2] + synthetic[::2], min_factor=self.shrink_min_factor, seed=seed + 3)


UNLABELLED_NEIGHBOURS = 10
"""Default number of nearest pool images whose labels vote on an unlabelled image's label
(:func:`unlabelled_fill_problems`; the pilot's, fixed before it ran)."""
UNLABELLED_DRAW = 20000
"""Default number of the domain's unlabelled training images :func:`unlabelled_fill_domain_problems`
draws once per call, as the pilot did (a third of Numbers' training split)."""
UNLABELLED_SHARE = 0.5
"""Default share of a :class:`UnlabelledFillRecipe`'s domain problems filled with unlabelled
images (every other one; the pilot's ``mixed``)."""


def few_shot_pool(labels: np.ndarray, examples_per_class: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Indices of the labelled pool: a seeded draw of ``examples_per_class`` images of each
    class, class by class, the same draw as :func:`tdml_lib.problems.few_shot_problems`.

    Raises:
        ValueError: ``examples_per_class`` not an int >= 2, or more than a class has.
    """
    labels = np.asarray(labels)
    examples_per_class = check_int(examples_per_class, "examples_per_class", 2)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < examples_per_class:
        raise ValueError(f"examples_per_class={examples_per_class} but class {classes[counts.argmin()]} has "
                         f"{counts.min()} images; ask for at most that many.")
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), size=examples_per_class, replace=False)
                           for c in classes])


def unlabelled_fill_problems(pool_features: np.ndarray, pool_labels: np.ndarray, unlabelled: np.ndarray,
                             n_problems: int, points_per_class: tuple[int, int] = (20, 100),
                             n_clusters: tuple[int, int] = (2, 10), k: int = UNLABELLED_NEIGHBOURS,
                             seed: int | np.random.Generator = 0, source: str = "") -> list[Problem]:
    """Few-shot problems filled up with unlabelled points labelled by their nearest pool points.

    Every unlabelled point gets the label of the vote of its ``k`` nearest pool points
    (scikit-learn's ``KNeighborsClassifier.predict_proba``: each class's share of the ``k``).
    Each problem draws K classes (uniform in ``n_clusters``), keeps ``max(2, m // 3)`` to
    ``m`` pool points of each (``m`` pool points per class, as
    :func:`tdml_lib.problems.few_shot_problems` keeps), and fills each class up to a size
    drawn in ``points_per_class`` with unlabelled points whose vote, among the problem's
    classes, falls on it; only points whose vote over *all* classes falls on one of the
    problem's are used (a point that looks like none of them is left out). A class runs
    short of its size when too few unlabelled points vote for it. Standardised, points in
    random order. The unlabelled points come without labels: their labels cannot be read.

    Args:
        pool_features, pool_labels: the labelled pool (same number of points per class).
        unlabelled: feature rows of the unlabelled points (no labels).
        seed: an int, or a generator to draw from (the domain-level wrapper passes the one
            that drew the pool).

    Raises:
        ValueError: shapes that do not match, NaN, a pool with unequal class counts, an
            empty unlabelled set, ``k`` larger than the pool, or K outside 2..classes.
    """
    pool_features = check_points(pool_features, "pool_features")
    unlabelled = check_points(unlabelled, "unlabelled")
    pool_labels = np.asarray(pool_labels)
    if pool_labels.shape != (len(pool_features),):
        raise ValueError(f"pool_labels must have one label per pool row ({len(pool_features)}), "
                         f"got shape {pool_labels.shape}.")
    if unlabelled.shape[1] != pool_features.shape[1]:
        raise ValueError(f"unlabelled has {unlabelled.shape[1]} features, the pool {pool_features.shape[1]}: "
                         "transform both with the same feature map.")
    classes, counts = np.unique(pool_labels, return_counts=True)
    if counts.min() != counts.max():
        raise ValueError("the pool must hold the same number of points per class (few_shot_pool draws one).")
    k = check_int(k, "k", 1, len(pool_labels))
    lowest_k, highest_k = _check_range(n_clusters, "n_clusters", 2)
    if highest_k > len(classes):
        raise ValueError(f"n_clusters asks for up to {highest_k} classes; the pool has {len(classes)}.")
    points_per_class = _check_range(points_per_class, "points_per_class", 1)
    n_problems = check_int(n_problems, "n_problems", 0)
    rng = np.random.default_rng(seed)
    vote = KNeighborsClassifier(n_neighbors=k).fit(pool_features, pool_labels).predict_proba(unlabelled)
    top = vote.argmax(1)                       # column index into classes
    per_class = int(counts[0])
    lowest = max(2, per_class // 3)
    out = []
    for _ in range(n_problems):
        columns = np.sort(rng.choice(len(classes), size=int(rng.integers(lowest_k, highest_k + 1)), replace=False))
        eligible = np.flatnonzero(np.isin(top, columns))
        fill_label = vote[eligible][:, columns].argmax(1)
        rows, ys = [], []
        for i, column in enumerate(columns):
            own = rng.choice(np.flatnonzero(pool_labels == classes[column]),
                             size=int(rng.integers(lowest, per_class + 1)), replace=False)
            target = int(rng.integers(points_per_class[0], points_per_class[1] + 1))
            voted = eligible[fill_label == i]
            fill = rng.choice(voted, size=min(len(voted), max(0, target - len(own))), replace=False)
            rows += [pool_features[own], unlabelled[fill]]
            ys.append(np.full(len(own) + len(fill), i))
        X, y = np.concatenate(rows).astype(np.float64), np.concatenate(ys)
        order = rng.permutation(len(y))
        out.append(Problem(standardize(X[order]), y[order], f"{source} (few-shot, unlabelled fill)",
                           tuple(int(classes[c]) for c in columns)))
    return out


def unlabelled_fill_domain_problems(domain: str, n_problems: int, examples_per_class: int,
                                    points_per_class: tuple[int, int] = (20, 100), feature_map: Any = None,
                                    seed: int = 0, k: int = UNLABELLED_NEIGHBOURS,
                                    n_unlabelled: int = UNLABELLED_DRAW) -> list[Problem]:
    """:func:`unlabelled_fill_problems` of a domain's training split: the labelled pool
    (:func:`few_shot_pool`), then ``n_unlabelled`` other images of the split drawn at
    random, passed on as features only (their labels are never read), all in the features
    of ``feature_map`` (default: PCA fitted on Numbers' training split, as
    :func:`~.training.training_problems`). One generator draws the pool, the unlabelled
    images and the problems, in that order.

    Raises:
        ValueError: as :func:`few_shot_pool` and :func:`unlabelled_fill_problems`; no image
            left outside the pool, or ``n_unlabelled`` < 1.
    """
    n_unlabelled = check_int(n_unlabelled, "n_unlabelled", 1)
    ds = data.load(domain, "train")
    fmap = feature_map if feature_map is not None else features.fit_feature_map("numbers", seed=0)
    labels = np.asarray(ds.labels)
    rng = np.random.default_rng(seed)
    pool = few_shot_pool(labels, examples_per_class, rng)
    rest = np.setdiff1d(np.arange(len(labels)), pool)
    if not len(rest):
        raise ValueError(f"every image of {domain}'s training split is in the labelled pool: none is left to fill with.")
    unlabelled = np.sort(rng.choice(rest, size=min(n_unlabelled, len(rest)), replace=False))
    return unlabelled_fill_problems(fmap.transform(ds.images[pool]), labels[pool], fmap.transform(ds.images[unlabelled]),
                                    n_problems, points_per_class, k=k, seed=rng, source=domain)


@dataclass(frozen=True)
class UnlabelledFillRecipe(Recipe):
    """A few-shot :class:`~.training.Recipe` in which a share of the domain's problems is
    filled with unlabelled images (:func:`unlabelled_fill_domain_problems`) instead of by
    :func:`~.training.interpolated_copies`; every later step of the recipe (noisy, shrunk,
    subsampled and overlapping copies, synthetic problems) is the recipe's own, with its
    seeds, on the mixed list.

    The filled problems sit at the positions ``i`` where ``floor((i + 1) * share)`` grows
    (``share`` 0.5: every odd one), so that the shrunk copies (of ``own[::2]``) and the
    subsampled ones (of ``own[1::2]``) take both kinds; the interpolated problems are those
    the recipe draws for ``n_problems`` minus the filled count. At ``share`` 0 the recipe's
    problems are the base recipe's, bit for bit (a test checks it).

    ``Recipe.problems`` has no hook for the domain's own problems: this trial hands them to
    it by replacing :func:`~.training.training_problems` for the call alone (restored on
    return or error). Adopting the step puts a hook in :class:`~.training.Recipe`, which
    changes a module the stored transfer run loads; it lands with that run's re-run.

    Attributes:
        unlabelled_share: share of the domain's problems filled with unlabelled images, in [0, 1].
        unlabelled_neighbours: ``k`` of the vote.
        unlabelled_draw: unlabelled images drawn from the training split.
    """

    unlabelled_share: float = UNLABELLED_SHARE
    unlabelled_neighbours: int = UNLABELLED_NEIGHBOURS
    unlabelled_draw: int = UNLABELLED_DRAW

    def own_problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The domain's problems: interpolated ones and unlabelled-filled ones, interleaved."""
        share = check_real(self.unlabelled_share, "unlabelled_share", 0.0, 1.0)
        filled_at = [int((i + 1) * share) > int(i * share) for i in range(self.n_problems)]
        n_filled = sum(filled_at)
        drawn = training.training_problems(domain, self.n_problems - n_filled, seed=seed, feature_map=feature_map,
                                           examples_per_class=self.examples_per_class) if n_filled < self.n_problems else []
        interpolated = iter(interpolated_copies(drawn, self.interpolate_to, seed=seed + 5, span=self.interpolation_span))
        filled = iter(unlabelled_fill_domain_problems(domain, n_filled, self.examples_per_class, self.interpolate_to,
                                                      feature_map, seed=seed, k=self.unlabelled_neighbours,
                                                      n_unlabelled=self.unlabelled_draw) if n_filled else [])
        return [next(filled) if at else next(interpolated) for at in filled_at]

    def problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The base recipe's problems with :meth:`own_problems` as the domain's own.

        Raises:
            ValueError: not a few-shot recipe that fills its problems (``examples_per_class``
                and ``interpolate_to`` both set), or as :meth:`Recipe.problems`.
        """
        if self.examples_per_class is None or self.interpolate_to is None:
            raise ValueError("UnlabelledFillRecipe is a few-shot recipe that fills its problems up: set "
                             "examples_per_class and interpolate_to.")
        own = self.own_problems(domain, feature_map, seed) if self.n_problems else []
        base = Recipe(**{f.name: getattr(self, f.name) for f in fields(Recipe)})
        drawn = training.training_problems

        def own_first(name: str, n_problems: int, **kwargs: Any) -> list[Problem]:
            if kwargs.get("examples_per_class") is None:     # the synthetic problems
                return drawn(name, n_problems, **kwargs)
            return own

        with mock.patch.object(training, "training_problems", own_first):
            return replace(base, interpolate_to=None).problems(domain, feature_map, seed)


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


__all__ = ["AVERAGE_LAST", "BOUNDARY_REACH", "BOUNDARY_SHARE", "BoundaryRecipe", "UNLABELLED_DRAW",
           "UNLABELLED_NEIGHBOURS", "UNLABELLED_SHARE", "UnlabelledFillRecipe", "few_shot_pool", "fit_tail_averaged",
           "mixed_boundary_copies", "unlabelled_fill_domain_problems", "unlabelled_fill_problems"]
