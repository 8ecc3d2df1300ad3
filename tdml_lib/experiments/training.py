"""Training the critic: labelled problems of a domain, the adversarial loop, the CLI.

These functions use ground-truth labels, since they build the *labelled training
problems* of the critic (Numbers problems, K 2..10, 20..100 points per class)
and pick the agent's wrong proposals on them. They sit in the experiments layer
because they join blocks C and A: the critic module never imports the agent.
Explained in chapter 3 (training) and chapter 5 (the adversarial row).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsClassifier

from .. import data, features
from ..agent import cluster, make_agent_proposals
from ..candidates import DEGENERATE_KINDS
from ..critic import INPUTS, ClusteringCritic, CriticConfig, TrainingSet, fit_critic, train_critic_net
from ..features import domain_problems
from ..io import provenance
from ..metrics import clustering_accuracy
from ..problems import Problem, _check_range, few_shot_pool, few_shot_problems, standardize, synthetic_problems
from ..validation import check_int, check_points, check_positive_int, check_real, check_real_range


def training_problems(domain: str, n_problems: int, seed: int = 0, split: str = "train",
                      feature_map: Any = None, examples_per_class: int | None = None,
                      synthetic_points: tuple[int, int] = (20, 100)) -> list[Problem]:
    """Labelled problems of a domain (K 2..10, 20..100 points per class).

    Args:
        domain: a dataset name of :func:`tdml_lib.data.load`, or ``"synthetic"``.
        synthetic_points: for ``"synthetic"``, the range of points per cluster.
        feature_map: image features (default: PCA fitted on Numbers' training split).
        examples_per_class: if given, the few-shot regime
            (:func:`tdml_lib.problems.few_shot_problems`).
    """
    if domain == "synthetic":
        return synthetic_problems(n_problems, n_features=(2, 32), points_per_class=synthetic_points, seed=seed)
    if examples_per_class is None:
        return domain_problems(domain, n_problems, split=split, feature_map=feature_map, seed=seed)
    split_features, labels = split_in_features(domain, split, feature_map)
    return few_shot_problems(split_features, labels, n_problems, examples_per_class, seed=seed, source=domain)


def split_in_features(domain: str, split: str = "train", feature_map: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Every image of a domain's split in the features of ``feature_map`` (default: PCA
    fitted on Numbers' training split), with its labels: one load and one transform, for
    the few-shot problems and the unlabelled fill to share (a row's features do not depend
    on which other rows are transformed with it)."""
    ds = data.load(domain, split)
    fmap = feature_map if feature_map is not None else features.fit_feature_map("numbers", seed=0)
    return fmap.transform(ds.images), np.asarray(ds.labels)


def noise_augmented(problems: Sequence[Problem], max_noise: float = 1.5, seed: int = 0) -> list[Problem]:
    """Copies of labelled problems with Gaussian noise added to the (standardised)
    features, at a noise level drawn uniformly in ``[0, max_noise]`` per problem, then
    standardised again. The labels stay: the truth becomes *messier* (more points nearer
    another class's centroid), so a critic trained on these does not learn one domain's
    typical class overlap as the mark of a correct clustering (chapter 3 measures it:
    Fashion's classes overlap far more than Numbers'). Uses no data of any test domain.
    """
    if not np.isfinite(max_noise) or max_noise < 0:
        raise ValueError(f"max_noise must be a finite number >= 0, got {max_noise!r}.")
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        sigma = rng.uniform(0, max_noise)
        X = standardize(p.X + sigma * rng.normal(size=p.X.shape))
        out.append(Problem(X, p.labels, f"{p.source} + noise {sigma:.2f}"))
    return out


def shrunk_copies(problems: Sequence[Problem], min_factor: float = 0.2, seed: int = 0) -> list[Problem]:
    """Copies of labelled problems whose clusters are drawn towards their own centroid by
    a factor drawn uniformly in ``[min_factor, 1]`` per problem (``x -> c + f (x - c)``),
    then standardised again. The mirror image of :func:`noise_augmented`: the truth
    becomes *cleaner* than the domain's, so that the critic has seen well separated
    correct clusterings too and does not extrapolate wildly on them (an agent found
    exactly such a hole: on four separated blobs, a critic trained without these copies
    rated a split blob above the truth). Uses the labels of training problems only.
    """
    if not 0 < min_factor <= 1:
        raise ValueError(f"min_factor must be in (0, 1], got {min_factor!r}.")
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        factor = rng.uniform(min_factor, 1.0)
        X = p.X.astype(np.float64)
        centroids = np.stack([X[p.labels == c].mean(0) for c in range(p.n_clusters)])[p.labels]
        out.append(Problem(standardize(centroids + factor * (X - centroids)), p.labels,
                           f"{p.source} + shrunk {factor:.2f}"))
    return out


UNLABELLED_NEIGHBOURS = 10
"""Default number of nearest pool images whose labels vote on an unlabelled image's label
(:func:`unlabelled_fill_problems`; the pilot's, fixed before it ran)."""
UNLABELLED_DRAW = 20000
"""Default number of the domain's unlabelled training images :func:`unlabelled_fill_domain_problems`
draws once per call, as the pilot did (a third of Numbers' training split)."""
UNLABELLED_FILL_SOURCE = "(few-shot, unlabelled fill)"
"""How the ``source`` of a problem :func:`unlabelled_fill_problems` makes ends."""
UNLABELLED_SHARE = 0.5
"""The share of the few-shot problems that chapter 5 fills with unlabelled images
(``Recipe.unlabelled_share``, whose own default is 0): every other one, the pilot's ``mixed``,
measured and adopted at this share."""


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
        out.append(Problem(standardize(X[order]), y[order], f"{source} {UNLABELLED_FILL_SOURCE}",
                           tuple(int(classes[c]) for c in columns)))
    return out


def unlabelled_fill_domain_problems(domain: str, n_problems: int, examples_per_class: int,
                                    points_per_class: tuple[int, int] = (20, 100), feature_map: Any = None,
                                    seed: int = 0, k: int = UNLABELLED_NEIGHBOURS,
                                    n_unlabelled: int = UNLABELLED_DRAW,
                                    split: tuple[np.ndarray, np.ndarray] | None = None) -> list[Problem]:
    """:func:`unlabelled_fill_problems` of a domain's training split: the labelled pool
    (:func:`tdml_lib.problems.few_shot_pool`), then ``n_unlabelled`` other images of the
    split drawn at random, passed on as features only (their labels are never read), all
    in the features of ``feature_map`` (default: PCA fitted on Numbers' training split, as
    :func:`training_problems`). One generator draws the pool, the unlabelled images and
    the problems, in that order.

    Args:
        split: the training split already in features, as :func:`split_in_features`
            returns it (so that a caller that draws the few-shot problems too loads and
            transforms it once); by default it is loaded here.

    Raises:
        ValueError: as :func:`tdml_lib.problems.few_shot_pool` and :func:`unlabelled_fill_problems`; no image
            left outside the pool, or ``n_unlabelled`` < 1.
    """
    n_unlabelled = check_int(n_unlabelled, "n_unlabelled", 1)
    split_features, labels = split if split is not None else split_in_features(domain, "train", feature_map)
    rng = np.random.default_rng(seed)
    pool = few_shot_pool(labels, examples_per_class, rng)
    rest = np.setdiff1d(np.arange(len(labels)), pool)
    if not len(rest):
        raise ValueError(f"every image of {domain}'s training split is in the labelled pool: none is left to fill with.")
    unlabelled = np.sort(rng.choice(rest, size=min(n_unlabelled, len(rest)), replace=False))
    return unlabelled_fill_problems(split_features[pool], labels[pool], split_features[unlabelled],
                                    n_problems, points_per_class, k=k, seed=rng, source=domain)


OVERLAP_PULL = (0.3, 0.7)
"""The default pull of :func:`overlapping_copies` (and of a :class:`Recipe`'s copies)."""
OVERLAP_PAIRS = 2
"""The default number of class pairs :func:`overlapping_copies` draws together."""


def overlapping_copies(problems: Sequence[Problem], pull: tuple[float, float] = OVERLAP_PULL,
                       n_pairs: int = OVERLAP_PAIRS, seed: int = 0) -> list[Problem]:
    """Copies of labelled problems whose ``n_pairs`` closest pairs of classes (by centroid,
    each class in one pair at most) are drawn towards each other, then standardised again.

    Each class of a pair moves by half of a fraction ``t`` (uniform in ``pull``, per pair)
    of the way to the other's centroid, so their centroids end ``1 - t`` as far apart, and
    their shapes are unchanged. The labels stay: two overlapping classes are still two
    classes. Numbers' classes are far apart, Fashion's closest ones (shirts, pullovers,
    coats) are not, and a critic that has seen only the former rates a merge of
    overlapping classes above the truth (chapter 8, Figure 8.2). The mirror image of
    :func:`shrunk_copies`. Uses the labels of training problems only.
    """
    low, high = check_real_range(pull, "pull", high_open=True)
    check_positive_int(n_pairs, "n_pairs")
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        X = p.X.astype(np.float64)
        centroids = np.stack([X[p.labels == c].mean(0) for c in range(p.n_clusters)])
        distance = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
        np.fill_diagonal(distance, np.inf)
        shift = np.zeros_like(centroids)
        for _ in range(min(n_pairs, p.n_clusters // 2)):
            a, b = np.unravel_index(np.argmin(distance), distance.shape)
            t = rng.uniform(low, high)
            shift[a], shift[b] = t / 2 * (centroids[b] - centroids[a]), t / 2 * (centroids[a] - centroids[b])
            distance[[a, b], :] = distance[:, [a, b]] = np.inf   # each class in one pair at most
        out.append(Problem(standardize(X + shift[p.labels]), p.labels, f"{p.source} + overlapping", p.classes))
    return out


def subsampled_copies(problems: Sequence[Problem], fraction: float = 1 / 3, seed: int = 0) -> list[Problem]:
    """Copies of labelled problems keeping a seeded ``fraction`` of each class (at least
    three points), standardised again: the same clusterings seen at a smaller size, so
    that the critic's ranking does not depend on how many points a problem has (a
    critic trained without them lost most of its Best when chapter 3's test problems
    were subsampled to a third)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        keep = np.sort(np.concatenate([
            rng.choice(idx, size=min(len(idx), max(3, round(fraction * len(idx)))), replace=False)
            for idx in (np.flatnonzero(p.labels == c) for c in range(p.n_clusters))]))
        out.append(Problem(standardize(p.X[keep]), p.labels[keep], f"{p.source} + subsampled"))
    return out


VARIANCE_PRESERVING_SPAN = (3 ** 0.5 - 1) / 2
"""The ``span`` of :func:`interpolated_copies` at which a class keeps its covariance: for
two independent points ``a``, ``b`` of a class with covariance S, ``a + t (b - a)`` has
covariance ``((1 - t)^2 + t^2) S``, whose mean over ``t`` uniform in ``[-h, 1 + h]`` is
``(2 (1 + 2h)^2 / 12 + 1 / 2) S``: two thirds of S at ``h = 0`` (plain interpolation),
S at ``h = (sqrt(3) - 1) / 2``."""


def interpolated_copies(problems: Sequence[Problem], points_per_class: tuple[int, int] = (20, 100),
                        seed: int = 0, span: float = 0.0) -> list[Problem]:
    """Copies of labelled problems whose classes are filled up to a size drawn uniformly in
    ``points_per_class`` by *within-class interpolation*: each new point lies at a uniform
    position on the segment between two randomly drawn points of the same class (the
    within-class form of mixup, Zhang et al. 2018; SMOTE, Chawla et al. 2002, draws the
    second point among near neighbours instead, which measured no better here). Every
    original point is kept; a class already as large is left as it is. Standardised again.

    Why: a few-shot critic's own problems are small (a pool of a few labelled images per
    class), while the problems it must rank have the standard sizes; a critic trained on
    small problems ranks large ones poorly. Interpolating between the pool's points gives
    problems of the standard sizes and uses no label beyond the pool's.

    ``span`` widens the new point's position on the line through its two points from
    ``[0, 1]`` to ``[-span, 1 + span]``, with the same draws otherwise (sizes, pairs,
    order), so ``span=0`` is plain interpolation. Plain interpolation gives an added point
    two thirds of its class's covariance in expectation, so filled-up classes are tighter
    than the domain's own; at :data:`VARIANCE_PRESERVING_SPAN` they keep it. Measured on
    the development seeds (``results/development``, ``spread_fashion_few_shot`` and
    ``spread_numbers_few_shot``), it lifted the Fashion few-shot critic in three cells and
    cost no standard-protocol cell, so chapter 5's few-shot recipe keeps the spread
    (adopted by the rule in ``results/development/adoption_rules.md``); the small-pool
    problems of the standard recipe keep plain interpolation.

    Raises:
        ValueError: a negative ``span``, or a bad ``points_per_class``.
    """
    if not span >= 0:
        raise ValueError(f"span must be a non-negative number, got {span!r}.")
    lo, hi = _check_range(points_per_class, "points_per_class", 2)
    rng = np.random.default_rng(seed)
    out = []
    for p in problems:
        X = p.X.astype(np.float64)
        rows, labels = [], []
        for c in range(p.n_clusters):
            own = X[p.labels == c]
            extra = max(0, int(rng.integers(lo, hi + 1)) - len(own))
            first, second = rng.integers(len(own), size=(2, extra))
            t = rng.uniform(size=(extra, 1)) * (1 + 2 * span) - span
            rows.append(np.concatenate([own, own[first] + t * (own[second] - own[first])]))
            labels.append(np.full(len(rows[-1]), c))
        order = rng.permutation(sum(len(r) for r in rows))   # no information in point order
        out.append(Problem(standardize(np.concatenate(rows)[order]), np.concatenate(labels)[order],
                           f"{p.source} + interpolated", p.classes))
    return out


@dataclass(frozen=True)
class Recipe:
    """What one critic (and the probe beside it) is trained on.

    Attributes:
        n_problems: labelled problems of the training domain.
        noise_copies: also train on copies of them with feature noise
            (:func:`tdml_lib.experiments.training.noise_augmented`).
        shrunk_copies: also train on copies of the domain's and the synthetic problems
            with their clusters drawn together (:func:`shrunk_copies`).
        subsampled_copies: also train on copies of them with a third of the points of
            each class (:func:`subsampled_copies`).
        max_noise: the largest noise level of those copies.
        n_synthetic: synthetic problems added (labelled by construction, from no dataset).
        examples_per_class: ``None`` for the standard regime; a number for few-shot: the
            domain's problems are drawn from a pool of that many labelled images per class.
        interpolate_to: if given, (lowest, highest) points per class: the domain's problems
            are replaced by :func:`interpolated_copies` of them, filled up to those sizes
            (the few-shot regime's problems are too small otherwise), before the other copies.
        small_pool_problems: also train on this many problems of the domain drawn from a
            small pool of ``small_pool_size`` labelled images per class and filled up to
            20-100 points per class by :func:`interpolated_copies` (with their noisy copies),
            as the few-shot regime's are. Their classes are tighter than the domain's own,
            so the critic also sees cleaner correct clusterings; measured on the development
            seeds, this lifted the Fashion critic on Numbers and Letters and the Numbers
            critic on Letters (chapter 5 shows the ablation). The standard regime only.
        small_pool_size: labelled images per class of that pool.
        interpolation_span: the ``span`` of every :func:`interpolated_copies` call (the
            few-shot problems and the small-pool ones); 0 is plain interpolation. Chapter 5's
            few-shot recipe sets :data:`VARIANCE_PRESERVING_SPAN` (measured and adopted on
            the development seeds); its standard recipe keeps 0.
        overlap_copies: also train on :func:`overlapping_copies` of the domain's problems
            (in the few-shot regime, of the filled-up ones): their closest classes drawn
            towards each other, labels unchanged, so that the critic has seen correct
            clusterings of overlapping classes and does not rate their merge above the
            truth. Both regimes: measured on the development seeds, they lifted the Numbers
            critic on Fashion in the standard regime and the Fashion critic on Fashion in
            the few-shot one (chapter 5 shows both ablations).
        overlap_pull: how far the overlapping copies draw each pair together, (lowest,
            highest) fraction of their centroids' distance (``pull`` of
            :func:`overlapping_copies`).
        overlap_pairs: how many of the closest pairs of classes each copy draws together.
            Chapter 5's standard regime draws more pairs, further (3, (0.4, 0.8)), than the
            defaults (2, (0.3, 0.7)): measured on the development seeds over five critic
            seeds, that lifted the Numbers critic on Fashion under the standard protocol and
            left the other cells flat; in the few-shot regime the stronger copies cost the
            Fashion critic on Fashion, so it keeps the defaults. The ablation
            ``"weaker overlapping copies"`` shows what they change.
        unlabelled_share: the few-shot regime's share of the domain's problems filled up
            with the domain's *unlabelled* training images (:func:`unlabelled_fill_domain_problems`,
            each labelled by the vote of its nearest pool images) instead of by
            :func:`interpolated_copies`; the filled ones sit at every ``1 / share``-th place
            (:meth:`own_problems`). In an interpolated problem each point's nearest
            neighbours are fills of its own class; real images keep real neighbourhoods.
            Chapter 5's few-shot recipe sets half (measured on the confirmation seeds and
            adopted, ``results/development/adoption_rules.md``); 0 fills by interpolation
            alone. Needs ``examples_per_class`` and ``interpolate_to``.
        unlabelled_neighbours: how many nearest pool images vote (``k``).
        unlabelled_draw: how many unlabelled images of the training split are drawn.
        shrink_min_factor: the smallest factor by which a shrunk copy draws its classes
            towards their centroids (``min_factor`` of :func:`shrunk_copies`); a gentler
            0.6 was measured in the few-shot regime and not adopted.
        synthetic_points: points per cluster of the synthetic problems (lowest, highest).
            Clusters larger than the domain's let the critic see correct clusterings of a
            few large clusters, as a user's 2-D point sets often are; without them it rates
            such a cluster split into pieces of a training problem's size above the truth.
    """

    n_problems: int = 300
    noise_copies: bool = True
    max_noise: float = 1.5
    n_synthetic: int = 300
    examples_per_class: int | None = None
    shrunk_copies: bool = True
    subsampled_copies: bool = True
    synthetic_points: tuple[int, int] = (20, 100)
    interpolate_to: tuple[int, int] | None = None
    small_pool_problems: int = 0
    small_pool_size: int = 20
    interpolation_span: float = 0.0
    overlap_copies: bool = False
    overlap_pull: tuple[float, float] = OVERLAP_PULL
    overlap_pairs: int = OVERLAP_PAIRS
    unlabelled_share: float = 0.0
    unlabelled_neighbours: int = UNLABELLED_NEIGHBOURS
    unlabelled_draw: int = UNLABELLED_DRAW
    shrink_min_factor: float = 0.2

    def own_problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The domain's own problems of this recipe, before any copy: drawn (from the small
        pool in the few-shot regime), filled up if ``interpolate_to`` is set, by
        :func:`interpolated_copies` and, for ``unlabelled_share`` of them, with unlabelled
        images instead. The filled ones sit at the places ``i`` where ``floor((i + 1) *
        share)`` grows (``share`` 0.5: every odd one), so that the shrunk copies (of the
        even places) and the subsampled ones (of the odd) take both kinds; the interpolated
        ones are the problems drawn for ``n_problems`` minus the filled count. At ``share``
        0 they are the problems drawn for ``n_problems``, interpolated or not, as before
        the share existed.

        Raises:
            ValueError: ``unlabelled_share`` outside [0, 1], or above 0 without
                ``examples_per_class`` and ``interpolate_to``.
        """
        share = check_real(self.unlabelled_share, "unlabelled_share", 0.0, 1.0)
        if share and (self.examples_per_class is None or self.interpolate_to is None):
            raise ValueError("unlabelled_share fills few-shot problems up: set examples_per_class and interpolate_to "
                             "too, or leave unlabelled_share at 0.")
        filled_at = [int((i + 1) * share) > int(i * share) for i in range(self.n_problems)]
        n_drawn = self.n_problems - sum(filled_at)

        def with_interpolation(drawn: list[Problem]) -> list[Problem]:
            if self.interpolate_to is None or not drawn:
                return list(drawn)
            return list(interpolated_copies(drawn, self.interpolate_to, seed=seed + 5, span=self.interpolation_span))

        if not any(filled_at):
            return with_interpolation(training_problems(domain, n_drawn, seed=seed, feature_map=feature_map,
                                                        examples_per_class=self.examples_per_class) if n_drawn else [])
        split = split_in_features(domain, "train", feature_map)   # both halves draw from it: load and transform once
        interpolated = iter(with_interpolation(
            few_shot_problems(*split, n_drawn, self.examples_per_class, seed=seed, source=domain) if n_drawn else []))
        filled = iter(unlabelled_fill_domain_problems(domain, sum(filled_at), self.examples_per_class,
                                                      self.interpolate_to, feature_map, seed=seed,
                                                      k=self.unlabelled_neighbours, n_unlabelled=self.unlabelled_draw,
                                                      split=split))
        return [next(filled) if at else next(interpolated) for at in filled_at]

    def problems(self, domain: str, feature_map: Any, seed: int) -> list[Problem]:
        """The labelled training problems of this recipe for ``domain``."""
        check_positive_int(self.n_problems, "n_problems", minimum=0)
        check_positive_int(self.n_synthetic, "n_synthetic", minimum=0)
        check_positive_int(self.small_pool_problems, "small_pool_problems", minimum=0)
        check_positive_int(self.small_pool_size, "small_pool_size", minimum=2)
        if self.n_problems + self.n_synthetic == 0:
            raise ValueError("a recipe needs problems: n_problems or n_synthetic must be positive.")
        if self.small_pool_problems and self.examples_per_class is not None:
            raise ValueError("small_pool_problems is for the standard regime: a few-shot recipe "
                             "(examples_per_class set) draws all its problems from a small pool already.")
        own = self.own_problems(domain, feature_map, seed)
        out = list(own)
        if self.noise_copies and own:
            out += noise_augmented(own, self.max_noise, seed=seed + 1)
        synthetic = training_problems("synthetic", self.n_synthetic, seed=seed + 2,
                                      synthetic_points=self.synthetic_points) if self.n_synthetic else []
        out += synthetic
        if self.shrunk_copies:
            # half of the domain's problems and half of the synthetic ones, made cleaner
            out += shrunk_copies(list(own[::2]) + list(synthetic[::2]), self.shrink_min_factor, seed=seed + 3)
        if self.subsampled_copies:
            # the other half, at a third of their size
            out += subsampled_copies(list(own[1::2]) + list(synthetic[1::2]), seed=seed + 4)
        if self.small_pool_problems:
            small_pool = replace(self, n_problems=self.small_pool_problems, examples_per_class=self.small_pool_size,
                                 interpolate_to=(20, 100), n_synthetic=0, shrunk_copies=False,
                                 subsampled_copies=False, small_pool_problems=0, overlap_copies=False,
                                 unlabelled_share=0.0)
            out += small_pool.problems(domain, feature_map, seed + 11)
        if self.overlap_copies:
            out += overlapping_copies(own, tuple(self.overlap_pull), self.overlap_pairs, seed=seed + 13)
        return out

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def agent_beats_truth(critic: ClusteringCritic, problems: Sequence[Problem], generations: int = 15,
                      population_size: int = 32, seed: int = 0) -> pd.DataFrame:
    """For each labelled problem, let the agent maximise the critic without K and check
    whether its best clustering (when it is not the truth) scores at least as high as
    the truth: a hole in the reward that an optimiser can find (K is picked by the
    critic on all points, ``k_choice="reward"``: the hole itself, not the agent's
    subsample-checked answer). One row per problem: ``beats_truth``, ``K_found``,
    ``K_true``, the agent's ACC."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, p in enumerate(problems):
        found = cluster(p.X, reward=critic, generations=generations, population_size=population_size,
                        seed=int(rng.integers(2**31)), k_choice="reward")
        acc = clustering_accuracy(p.labels, found.labels)
        truth_score = critic.score(p.X, p.labels)
        rows.append({"problem": i, "beats_truth": bool(acc < 1.0 and found.reward >= truth_score),
                     "K_found": int(found.labels.max()) + 1, "K_true": p.n_clusters, "acc": acc,
                     "agent_reward": float(found.reward), "truth_reward": float(truth_score)})
    return pd.DataFrame(rows)


def adversarial_training(critic: ClusteringCritic, problems: Sequence[Problem], ts: TrainingSet,
                         cfg: CriticConfig, rounds: int = 3, problems_per_round: int = 8,
                         epochs_per_round: int = 50, generations: int = 15, population_size: int = 32,
                         seed: int = 0, progress: bool = True,
                         validation: Sequence[Problem] | None = None, synthetic_per_round: int = 0,
                         synthetic_budget: tuple[int, int] = (10, 24)) -> tuple[ClusteringCritic, pd.DataFrame]:
    """The poster's adversarial loop, with a stopping rule.

    The agent (block A) maximises the current critic on ``problems_per_round`` training
    problems; its best proposals that are *not* the correct clustering become new
    negatives of those problems (the set D of Eq. (1)), and the critic trains on for
    ``epochs_per_round`` epochs. With ``synthetic_per_round``, each round the agent also
    attacks that many of the *synthetic* training problems (sources ``synthetic:...``)
    at a cheaper budget, ``synthetic_budget`` = (generations, population): the loop of
    chapter 4's synthetic critics, where a quick attack on many problems finds the
    over-split clusterings a mostly-Numbers draw of problems rarely meets. Before each round, and after the last, the agent attacks
    the ``validation`` problems (labelled problems held out of training,
    :func:`agent_beats_truth`); the loop stops as soon as it no longer finds a clustering
    that outscores the truth on any of them, or after ``rounds`` rounds. True labels are
    used here only because these are labelled *training* problems.

    Returns:
        (a new critic, one row per round: validation problems where the agent beat the
        truth before the round, proposals added, how many of them the critic rated at least
        as high as the truth, the last training loss; a final row with ``round = "after"``).
    """
    check_positive_int(rounds, "rounds", minimum=0)
    check_positive_int(synthetic_per_round, "synthetic_per_round", minimum=0)
    synthetic_pool = [i for i, p in enumerate(problems) if p.source.startswith("synthetic")]
    if synthetic_per_round and not synthetic_pool:
        raise ValueError("synthetic_per_round needs synthetic training problems (sources 'synthetic:...'); "
                         "these problems have none: add some (Recipe.n_synthetic) or pass 0.")
    critic = copy.deepcopy(critic)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []

    def holes() -> int | None:
        if not validation:
            return None
        return int(agent_beats_truth(critic, validation, generations, population_size, seed).beats_truth.sum())

    for r in range(rounds):
        before = holes()
        if before == 0:
            break
        chosen = [(int(i), generations, population_size) for i in
                  rng.choice(len(problems), size=min(problems_per_round, len(problems)), replace=False)]
        if synthetic_per_round:
            chosen += [(int(i), *synthetic_budget) for i in
                       rng.choice(synthetic_pool, size=min(synthetic_per_round, len(synthetic_pool)), replace=False)]
        added = overrated = 0
        for i, gens, pop in chosen:
            p = problems[i]
            props = make_agent_proposals(p.X, critic, n=4, seed=int(rng.integers(2**31)),
                                         generations=gens, population_size=pop)
            wrong = [lab for lab in props if clustering_accuracy(p.labels, lab) < 1.0]
            if not wrong:
                continue
            scores = critic.score_many(p.X, [p.labels] + wrong)
            overrated += int(np.sum(scores[1:] >= scores[0]))
            ts.add_negatives(i, critic.embedder.embed_many(p.X, wrong).to(ts.fake[i].device))
            added += len(wrong)
        hist = train_critic_net(critic, ts, cfg, seed + r + 1, epochs=epochs_per_round, progress=progress)
        rows.append({"round": r, "validation_beaten": before, "proposals_added": added,
                     "overrated_before": overrated, "final_loss": float(hist["loss"].iloc[-1])})
    rows.append({"round": "after", "validation_beaten": holes(), "proposals_added": 0, "overrated_before": 0,
                 "final_loss": np.nan})
    critic.metadata["adversarial_rounds"] = sum(1 for row in rows if row["round"] != "after")
    return critic, pd.DataFrame(rows)


# --- command line ---------------------------------------------------------------------------

def add_cli(sub: Any) -> None:
    p = sub.add_parser("train-critic", help="train a critic on labelled problems of one domain and save it",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--domain", default="numbers",
                   help="training domain (numbers, fashion, letters, digits, synthetic)")
    p.add_argument("--n-problems", type=int, default=Recipe.n_problems, help="labelled problems of the domain")
    p.add_argument("--no-noise-copies", action="store_true", help="do not add noisy copies of them")
    p.add_argument("--n-synthetic", type=int, default=Recipe.n_synthetic, help="synthetic problems added")
    p.add_argument("--synthetic-points", type=int, nargs=2, default=list(Recipe.synthetic_points), metavar=("LOW", "HIGH"),
                   help="points per cluster of the synthetic problems")
    p.add_argument("--small-pool-problems", type=int, default=Recipe.small_pool_problems,
                   help="problems drawn from small pools of the domain's images, filled to 20-100 points a class "
                        "(chapter 5's standard recipe takes half as many as --n-problems)")
    p.add_argument("--small-pool-size", type=int, default=Recipe.small_pool_size, help="images per class of a small pool")
    p.add_argument("--overlap-copies", action="store_true",
                   help="add copies of the domain's problems whose closest classes are drawn together (chapter 5)")
    p.add_argument("--overlap-pairs", type=int, default=Recipe.overlap_pairs, help="pairs of classes drawn together per copy")
    p.add_argument("--overlap-pull", type=float, nargs=2, default=list(Recipe.overlap_pull), metavar=("LOW", "HIGH"),
                   help="how far they are drawn together (fraction of their centroids' distance)")
    p.add_argument("--epochs", type=int, default=CriticConfig.epochs, help="critic epochs")
    p.add_argument("--gae-epochs", type=int, default=CriticConfig.gae_epochs, help="graph auto-encoder epochs")
    p.add_argument("--n-negatives", type=int, default=CriticConfig.n_negatives, help="near misses per problem")
    p.add_argument("--n-degenerate", type=int, default=CriticConfig.n_degenerate,
                   help="degenerate negatives per problem")
    p.add_argument("--degenerate-kinds", nargs="+", default=list(CriticConfig.degenerate_kinds),
                   choices=list(DEGENERATE_KINDS), metavar="KIND",
                   help=f"degenerate kinds, taken in turn ({', '.join(DEGENERATE_KINDS)}); the shipped "
                        "Numbers critic was trained with the first five")
    p.add_argument("--objective", default=CriticConfig.objective, help="listwise or wgan-gp")
    p.add_argument("--inputs", default=CriticConfig.inputs, choices=INPUTS,
                   help="what block C reads: the whole embedding (the default reward's critics) or the graph statistics "
                        "without the GAE codes (chapters 3 and 5, the shipped critic)")
    p.add_argument("--adversarial-rounds", type=int, default=3,
                   help="most rounds of the adversarial loop (0: none); it stops once the agent no longer "
                        "beats the truth on held-out labelled problems")
    p.add_argument("--adversarial-problems", type=int, default=16, help="training problems attacked per round")
    p.add_argument("--adversarial-synthetic", type=int, default=0,
                   help="synthetic training problems also attacked per round, at the cheaper budget below")
    p.add_argument("--adversarial-synthetic-budget", type=int, nargs=2, default=[10, 24],
                   metavar=("GENERATIONS", "POPULATION"), help="the agent's budget on those synthetic problems")
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and the training")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda...")
    p.add_argument("--out", default=None,
                   help="where to save the critic (.pt); default runs/critic_<domain>_seed<seed>.pt. "
                        "A shipped critic is replaced only when you pass its path here")
    p.set_defaults(func=_cli_train)


def cli_command(subcommand: str) -> str:
    """The command line that is running, as a trained critic's metadata records it
    (``python -m tdml_lib <subcommand>`` when it was called without arguments)."""
    return "python -m tdml_lib " + " ".join(sys.argv[1:]) if sys.argv[1:] else f"python -m tdml_lib {subcommand}"


def save_trained_critic(critic: Any, args: Any, t0: float, out: str | Path) -> Path:
    """Record a command's provenance (its arguments, seed and device) and wall time since
    ``t0`` in a trained critic's metadata, then save it to ``out`` (the shared end of
    ``train-critic`` and ``train-synthetic-critic``)."""
    critic.metadata["provenance"] = provenance(params=vars(args) | {"func": None}, seed=args.seed,
                                               device=str(critic.device))
    critic.metadata["wall_time_s"] = round(time.time() - t0, 1)
    return critic.save(Path(out))


def _cli_train(args: Any) -> int:
    for name in ("n_problems", "epochs", "gae_epochs", "n_negatives"):
        check_positive_int(getattr(args, name), "--" + name.replace("_", "-"))
    for name in ("n_synthetic", "n_degenerate", "seed", "adversarial_synthetic", "small_pool_problems"):
        check_positive_int(getattr(args, name), "--" + name.replace("_", "-"), minimum=0)
    check_positive_int(args.small_pool_size, "--small-pool-size", minimum=2)
    check_positive_int(args.overlap_pairs, "--overlap-pairs")
    check_real_range(args.overlap_pull, "--overlap-pull", high_open=True)
    out = Path(args.out) if args.out else Path("runs") / f"critic_{args.domain}_seed{args.seed}.pt"
    t0 = time.time()
    recipe = Recipe(n_problems=args.n_problems, noise_copies=not args.no_noise_copies, n_synthetic=args.n_synthetic,
                    synthetic_points=tuple(args.synthetic_points), small_pool_problems=args.small_pool_problems,
                    small_pool_size=args.small_pool_size, overlap_copies=args.overlap_copies,
                    overlap_pairs=args.overlap_pairs, overlap_pull=tuple(args.overlap_pull))
    fmap = None if args.domain == "synthetic" else features.fit_feature_map(args.domain)
    probs = recipe.problems(args.domain, fmap, seed=args.seed)
    cfg = CriticConfig(epochs=args.epochs, gae_epochs=args.gae_epochs, n_negatives=args.n_negatives,
                       n_degenerate=args.n_degenerate, degenerate_kinds=tuple(args.degenerate_kinds),
                       objective=args.objective, inputs=args.inputs)
    command = cli_command("train-critic")
    critic, hist, ts = fit_critic(probs, cfg, seed=args.seed, device=args.device,
                                  metadata={"domain": args.domain, "command": command, "recipe": recipe.as_dict()})
    check_positive_int(args.adversarial_rounds, "--adversarial-rounds", minimum=0)
    if args.adversarial_rounds:
        # held-out labelled problems of the same recipe (another seed) for the stopping rule
        validation = Recipe(n_problems=4, noise_copies=False, n_synthetic=4,
                            synthetic_points=recipe.synthetic_points).problems(
            args.domain, fmap, seed=args.seed + 100)
        critic, adv = adversarial_training(critic, probs, ts, cfg, rounds=args.adversarial_rounds,
                                           problems_per_round=args.adversarial_problems,
                                           epochs_per_round=max(1, cfg.epochs // 3), seed=args.seed,
                                           validation=validation, synthetic_per_round=args.adversarial_synthetic,
                                           synthetic_budget=tuple(args.adversarial_synthetic_budget))
        critic.metadata["adversarial"] = adv.to_dict(orient="records")
    critic.metadata["truth_first_last_epoch"] = float(hist["critic"]["truth_first"].iloc[-1])
    save_trained_critic(critic, args, t0, out)
    print(f"saved critic trained on {len(probs)} problems ({args.domain} recipe) to {out} "
          f"({critic.metadata['wall_time_s']} s)")
    return 0
