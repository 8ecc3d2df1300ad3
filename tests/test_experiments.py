"""The experiments layer: each experiment runs small, seeded, and sits above the blocks."""
import ast
from pathlib import Path

import pandas as pd
import pytest

from tdml_lib import experiments

LIB = Path(experiments.__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """tdml_lib modules imported anywhere in a file (module level or inside functions)."""
    pkg = path.relative_to(LIB.parent).with_suffix("").parts
    if pkg[-1] == "__init__":
        pkg = pkg[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + (path.name == "__init__.py")])
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
            out |= {n for n in names if n.startswith("tdml_lib")}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tdml_lib")}
    return out


def _module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in LIB.rglob("*.py"):
        parts = path.relative_to(LIB.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[name] = _imports(path)
    modules = set(graph)
    # an import of a name inside a package (tdml_lib.x.y where y is not a module) is an import of the package
    return {m: {d if d in modules else d.rsplit(".", 1)[0] for d in deps} - {m} for m, deps in graph.items()}


def test_library_import_graph_has_no_cycle():
    """Lower modules never import upper ones: the import graph (lazy imports inside
    functions included) is acyclic, apart from a package importing its own children."""
    graph = _module_graph()
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in graph.get(m, ()):
            if d == "tdml_lib" or m.startswith(d + "."):
                continue  # the lazy top-level package, or a child importing its package
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if state.get(d) is None:
                visit(d, stack + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_critic_and_agent_do_not_import_each_other_or_experiments():
    graph = _module_graph()
    assert "tdml_lib.agent" not in graph["tdml_lib.critic"]
    for m, deps in graph.items():
        if not m.startswith("tdml_lib.experiments") and m != "tdml_lib.__main__":
            assert not any(d.startswith("tdml_lib.experiments") for d in deps), m


def test_compare_on_synthetic_runs_small_and_checks_families():
    from tdml_lib.critic import CriticConfig

    res = experiments.compare_on_synthetic(
        test_families=("moons",), n_train_problems=3, n_problems=2, points_per_class=(20, 30),
        critic_config=CriticConfig(epochs=2, gae_epochs=1, n_negatives=3), generations=2,
        population_size=6, device="cpu")
    assert set(res.scores.method) == {"k-means (true K)", "agent (true K)", "agent (K found)"}
    assert (res.scores[res.scores.method == "agent (true K)"].K_found == 2).all()
    assert set(res.examples) == {"moons"} and res.examples["moons"]["X"].shape[1] == 2
    # the example shown is the problem where k-means did worst (its failure case)
    kmeans = res.scores[res.scores.method == "k-means (true K)"].set_index("problem").acc
    assert res.examples["moons"]["problem"] == kmeans.idxmin()
    assert "moons" not in res.training_families["moons"]   # leave one family out
    with pytest.raises(ValueError, match="unknown families"):
        experiments.compare_on_synthetic(test_families=("checkerboard",))


def test_compare_on_synthetic_with_adversarial_rounds_is_seeded():
    """The adversarial option runs end to end, and a seeded run repeats exactly."""
    from tdml_lib.critic import CriticConfig

    def once():
        return experiments.compare_on_synthetic(
            test_families=("circles",), n_train_problems=3, n_problems=1, points_per_class=(15, 20),
            critic_config=CriticConfig(epochs=2, gae_epochs=1, n_negatives=3), generations=2,
            population_size=6, device="cpu", adversarial_rounds=1, adversarial_problems=2)

    a, b = once(), once()
    assert len(a.scores) == 3
    pd.testing.assert_frame_equal(a.scores, b.scores)
