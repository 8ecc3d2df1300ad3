"""Which seeds the book develops on and which it keeps for the stored results.

Fixed on 2026-11-30, before any run on the held-out seeds. While building the book
(choosing features, objectives, candidate kinds, synthetic families), every measurement
used the *development* seeds; the results committed under ``results/`` are computed on
the *held-out* seeds, which nothing was tuned on. Changing a problem family or the
candidate generator after seeing held-out results, and then re-running on the same
held-out seeds, would void them: move to new held-out seeds instead and say so.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationSeeds:
    """Seeds of one evaluation: the test problems, their candidate sets, and the base of
    the synthetic test problems (problem ``i`` of a family uses ``synthetic + i``)."""

    problems: int
    candidates: int
    synthetic: int


DEVELOPMENT = EvaluationSeeds(problems=1, candidates=0, synthetic=1000)
"""Used by the chapters' small defaults and during development."""

HELD_OUT = EvaluationSeeds(problems=104_729, candidates=7_919, synthetic=900_000)
"""Used only for the stored full-scale results (``results/``)."""

SEED_SETS = {"development": DEVELOPMENT, "held_out": HELD_OUT}


def evaluation_seeds(name: str) -> EvaluationSeeds:
    """The seeds named ``"development"`` or ``"held_out"``."""
    if name not in SEED_SETS:
        raise ValueError(f"unknown seed set {name!r}; choose one of {sorted(SEED_SETS)}.")
    return SEED_SETS[name]
