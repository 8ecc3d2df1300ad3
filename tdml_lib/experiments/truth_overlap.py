"""How messy are the correct clusterings a critic trains on, against those it is tested on?

A critic learns what a correct clustering looks like from its training problems' truths.
One plain measure of how much a truth's classes overlap is the share of its points that
lie nearer another class's centroid than their own (per point, the ``wrong_side`` node
feature of :mod:`tdml_lib.graphs`; chapter 3 compares the domains by it). This module
measures it for every part of a training recipe (the domain's problems, their noisy,
shrunk, subsampled and overlapping copies, the small-pool and the synthetic problems) and
for the test problems of each domain under each feature protocol, so that chapter 8 can
show where a critic's training truths are cleaner than the truths it must rank first.

A second measure asks what the hardest near miss does to the kNN graph: move the truth's
most ambiguous points to their nearest class (the candidate kind ``noise_boundary_2`` of
:mod:`tdml_lib.candidates`) and compare the share of each point's nearest neighbours in
its own cluster (the ``agree`` node feature) before and after. In a real image problem an
ambiguous image tends to sit among the other class's images, so the move *raises* the
agreement; where a class was filled up from a few images, each point's neighbours are
its own class's fills, and the move lowers it. A critic trained mostly on the second kind
learns the cue the wrong way round (chapter 8).

Uses the labels of training problems and of test problems as truths only, as the
evaluation does; it trains nothing.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from .. import features, graphs
from ..candidates import label_noise
from ..problems import Problem
from .seeds import DEVELOPMENT, EvaluationSeeds
from .training import UNLABELLED_FILL_SOURCE, Recipe
from .transfer import evaluation_problems

COPY_PARTS = {"noise": "noisy copies", "shrunk": "shrunk copies", "subsampled": "subsampled copies",
              "overlapping": "overlapping copies", "interpolated": "filled-up problems"}
"""The part of a recipe a problem comes from, by the last step its ``source`` names."""

UNLABELLED_PART = "filled with unlabelled images"
"""The part of a few-shot recipe whose problems are filled up with the domain's unlabelled
images (``Recipe.unlabelled_share``), not by interpolation."""

AS_DRAWN = "problems as drawn (before filling)"
"""The part of a filling recipe (``Recipe.interpolate_to``) that is not trained on: its
domain problems as drawn, before :func:`~tdml_lib.experiments.training.interpolated_copies`
fills their classes up, so that a reader can tell how much of the filled-up problems'
cleanness the filling adds and how much the drawn problems (few images per class) bring."""


BOUNDARY_MOVE = 0.02
"""The share of points :func:`boundary_move_agreement_gain` moves: the candidate kind
``noise_boundary_2``, the near miss that beats the truth most often (chapter 8)."""


def _node_feature(problem: Problem, labelings: list[np.ndarray], name: str,
                  point_set: graphs.PointSet | None = None) -> torch.Tensor:
    """(B, n) values of the critic's node feature ``name`` for B labelings of ``problem``
    (its kNN graph built here unless ``point_set`` brings it)."""
    if point_set is None:
        point_set = graphs.prepare_point_set(problem.X, device="cpu")
    labels = torch.as_tensor(np.stack(labelings), dtype=torch.long)
    return graphs.clustering_features(point_set, labels).x[..., graphs.NODE_FEATURES.index(name)]


def wrong_side_share(problem: Problem, point_set: graphs.PointSet | None = None) -> float:
    """The share of ``problem``'s points nearer another class's centroid than their own:
    the mean over its points of the critic's own ``wrong_side`` node feature
    (:func:`tdml_lib.graphs.clustering_features`) for its correct clustering, so that the
    figure measures exactly what the critic sees."""
    return float(_node_feature(problem, [problem.labels], "wrong_side", point_set)[0].mean())


def boundary_move_agreement_gain(problem: Problem, seed: int = 0, point_set: graphs.PointSet | None = None) -> float:
    """How much moving the truth's most ambiguous points to their nearest class (the near
    miss ``noise_boundary_2``: :data:`BOUNDARY_MOVE` of the points, drawn among the twice
    as many with the smallest margin, :func:`tdml_lib.candidates.label_noise`) changes the
    mean share of each point's k nearest neighbours in its own cluster (the critic's
    ``agree`` node feature): the near miss's minus the truth's. Positive where the moved
    points sat among the other class's points."""
    moved = label_noise(problem.X, problem.labels, BOUNDARY_MOVE, mode="boundary", seed=seed)
    if moved is None:   # one class: nothing to move
        return float("nan")
    agree = _node_feature(problem, [problem.labels, moved], "agree", point_set).mean(1)
    return float(agree[1] - agree[0])


def _measures(problem: Problem, seed: int) -> dict[str, float]:
    point_set = graphs.prepare_point_set(problem.X, device="cpu")   # one kNN graph for both
    return {"wrong_side": wrong_side_share(problem, point_set),
            "agreement_gain": boundary_move_agreement_gain(problem, seed, point_set)}


def recipe_part(source: str) -> str:
    """The part of a training recipe a problem with this ``source`` belongs to:
    one of :data:`COPY_PARTS` (by the last step the source names, so a noisy copy of a
    filled-up problem is a noisy copy, and a shrunk synthetic problem a shrunk copy),
    :data:`UNLABELLED_PART`, ``"synthetic problems"`` or ``"domain problems"``."""
    last = source.rsplit(" + ", 1)[1].split()[0] if " + " in source else ""
    if last in COPY_PARTS:
        return COPY_PARTS[last]
    if source.endswith(UNLABELLED_FILL_SOURCE):
        return UNLABELLED_PART
    return "synthetic problems" if source.startswith("synthetic") else "domain problems"


def truth_overlap(recipes: Mapping[str, Recipe], train: str = "numbers",
                  test_domains: Sequence[str] = ("numbers", "letters", "fashion"),
                  protocols: Sequence[str] = ("strict", "standard"), n_problems: int = 40,
                  seeds: EvaluationSeeds = DEVELOPMENT, seed: int = 0) -> pd.DataFrame:
    """The wrong-side share and the boundary move's agreement gain
    (:func:`boundary_move_agreement_gain`) of every training truth of ``recipes`` (trained
    on ``train``) and of every test problem.

    Args:
        recipes: name -> recipe (e.g. chapter 5's ``{"standard": ..., "few-shot": ...}``).
            Each is built with ``n_problems`` of the domain's (and the small pool's, and
            synthetic) problems, whatever its own counts: a part's share does not depend
            on how many problems it holds, and the full counts take minutes to build.
        train: the training domain; its feature map is the strict protocol's.
        test_domains, protocols: the test problems measured, through the training
            domain's feature map (``"strict"``) or their own (``"standard"``).
        n_problems: problems per recipe part and per test domain.
        seeds: the test problems' seeds (the development ones by default).
        seed: the recipes' seed.

    Returns:
        one row per problem: ``set`` (``"training: <name>"`` or ``"test: <domain>
        (<protocol>)"``), ``part`` (:func:`recipe_part`; :data:`AS_DRAWN` for a filling
        recipe's problems before filling, not a part it trains on; ``"test problems"`` for
        tests), ``wrong_side`` (:func:`wrong_side_share`), ``agreement_gain``
        (:func:`boundary_move_agreement_gain`, the move drawn with the problem's position
        as its seed).
    """
    maps = {train: features.fit_feature_map(train)}
    rows = []
    for name, recipe in recipes.items():
        sized = replace(recipe, **{count: n_problems for count in ("n_problems", "n_synthetic", "small_pool_problems")
                                   if getattr(recipe, count)})   # a part the recipe leaves out stays out
        rows += [{"set": f"training: {name}", "part": recipe_part(p.source), **_measures(p, i)}
                 for i, p in enumerate(sized.problems(train, maps[train], seed))]
        if sized.interpolate_to is not None and sized.n_problems:
            # the domain's problems as the recipe draws them (same seed), before any filling;
            # a recipe that fills some with unlabelled images draws fewer, from the same pool
            drawn = replace(sized, interpolate_to=None, unlabelled_share=0.0).own_problems(train, maps[train], seed)
            rows += [{"set": f"training: {name}", "part": AS_DRAWN, **_measures(p, i)} for i, p in enumerate(drawn)]
    for protocol in protocols:
        for test in test_domains:
            fdom = train if protocol == "strict" else test
            if fdom not in maps:
                maps[fdom] = features.fit_feature_map(fdom)
            rows += [{"set": f"test: {test} ({protocol})", "part": "test problems", **_measures(p, i)}
                     for i, p in enumerate(evaluation_problems(test, n_problems, seeds, maps[fdom]))]
    return pd.DataFrame(rows, columns=["set", "part", "wrong_side", "agreement_gain"])
