"""Chapters stay thin: experiments are library calls, never loops written in a chapter.

A ``for`` or ``while`` loop in a chapter's code cell may plot, format or print, but it may
not train, cluster or evaluate: those loops live in :mod:`tdml_lib.experiments`, where
they are tested. The check parses every code cell and looks for calls of the library's
experiment functions inside loops."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tdml_lib.runner import toc_files

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT_CALLS = {"fit_critic", "train_gae", "train_critic_net", "cluster", "fit", "fit_predict",
                    "evaluate_scorer", "compare_scorers", "evaluation_sets", "run_transfer", "compare_on_domains",
                    "compare_on_synthetic", "compare_training_protocols", "cluster_whole_set", "adversarial_training",
                    "evaluate_baseline",
                    "KMeans", "training_problems", "cbswr", "selective_pseudo_label_clustering"}


def _chapters() -> list[Path]:
    return [ROOT / f"{d}.ipynb" for d in toc_files(ROOT) if (ROOT / f"{d}.ipynb").exists()]


def _called(node: ast.AST) -> set[str]:
    names = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            f = call.func
            names.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return names


def loops_with_experiments(source: str) -> list[str]:
    """Names of experiment functions called inside loops of a code cell."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.For, ast.While, ast.ListComp, ast.DictComp, ast.GeneratorExp)):
            found += sorted(_called(node) & EXPERIMENT_CALLS)
    return found


def test_the_check_finds_a_loop_that_trains():
    assert loops_with_experiments("for p in probs:\n    c = fit_critic(p)\n") == ["fit_critic"]
    assert loops_with_experiments("res = tdml.experiments.run_transfer()\nfor r in rows:\n    print(r)") == []


@pytest.mark.parametrize("path", _chapters(), ids=lambda p: p.stem)
def test_chapters_run_no_experiment_loops(path: Path):
    nb = json.loads(path.read_text())
    bad = {i: loops_with_experiments("".join(c["source"])) for i, c in enumerate(nb["cells"])
           if c["cell_type"] == "code"}
    bad = {i: names for i, names in bad.items() if names}
    assert not bad, f"{path.name}: loops that run experiments in cells {bad}; move them into tdml_lib.experiments"
