"""The experiments layer: each experiment runs small, seeded, and sits above the blocks."""
import ast
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
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
    assert set(res.scores.method) == set(experiments.SYNTHETIC_METHODS)
    assert (res.scores[res.scores.method == "agent (true K)"].K_found == 2).all()
    summary = res.summary()
    assert {"acc_low", "acc_high", "k_exact", "k_exact_low", "k_exact_high", "k1_or_many"} <= set(summary.columns)
    assert len(summary) == len(experiments.SYNTHETIC_METHODS)
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
    assert len(a.scores) == len(experiments.SYNTHETIC_METHODS)
    pd.testing.assert_frame_equal(a.scores, b.scores)


def test_synthetic_test_problems_come_from_the_seed_set():
    """Problem i of a family is drawn with seeds.synthetic + i: development and held-out
    seed sets give different problems; a given reward replaces the critics' training."""
    from tdml_lib.experiments.seeds import EvaluationSeeds
    from tdml_lib.metrics import IndexScorer
    from tdml_lib.problems import synthetic_problem

    def once(seeds):
        return experiments.compare_on_synthetic(
            test_families=("blobs",), n_problems=2, points_per_class=(15, 20), generations=1, population_size=4,
            reward=IndexScorer("silhouette"), seeds=seeds, methods=("k-means (true K)",))

    dev, other = once(experiments.DEVELOPMENT), once(EvaluationSeeds(problems=5, candidates=5, synthetic=4242))
    assert dev.training_families == {} and dev.seeds == experiments.DEVELOPMENT
    for res, seeds in ((dev, experiments.DEVELOPMENT), (other, other.seeds)):
        shown = res.examples["blobs"]
        drawn = synthetic_problem("blobs", n_clusters=4, points_per_class=(15, 20),
                                  seed=seeds.synthetic + shown["problem"])
        assert np.array_equal(shown["X"], drawn.X)
    assert not dev.scores[["acc", "nmi"]].equals(other.scores[["acc", "nmi"]])
    # a chosen example: each problem in turn, whatever k-means did on it
    for i in (0, 1):
        chosen = experiments.compare_on_synthetic(
            test_families=("blobs",), n_problems=2, points_per_class=(15, 20), generations=1, population_size=4,
            reward=IndexScorer("silhouette"), methods=("k-means (true K)",), example_problems={"blobs": i})
        assert chosen.examples["blobs"]["problem"] == i
        assert np.array_equal(chosen.examples["blobs"]["X"], synthetic_problem(
            "blobs", n_clusters=4, points_per_class=(15, 20), seed=experiments.DEVELOPMENT.synthetic + i).X)
    with pytest.raises(ValueError, match="name no test problem"):
        experiments.compare_on_synthetic(test_families=("blobs",), n_problems=2, reward=IndexScorer(),
                                         example_problems={"blobs": 2})
    with pytest.raises(ValueError, match="methods must be some of"):
        experiments.compare_on_synthetic(test_families=("blobs",), methods=("dbscan",), reward=IndexScorer())


def test_summarise_gives_intervals_and_flags_degenerate_k():
    rows = []
    for i, (acc, k_found) in enumerate([(0.9, 3), (0.8, 3), (0.7, 1), (0.95, 9)]):
        rows.append({"domain": "d", "problem": i, "method": "m", "acc": acc, "nmi": acc - 0.1, "ari": acc - 0.2,
                     "K_true": 3, "K_found": k_found})
    s = experiments.summarise(pd.DataFrame(rows), "domain").iloc[0]
    assert s.n_problems == 4 and s.acc == pytest.approx(0.8375)
    assert s.acc_low <= s.acc <= s.acc_high and s.acc_low < s.acc_high
    assert s.k_exact == 0.5 and s.k_exact_low < 0.5 < s.k_exact_high
    assert s.k1_or_many == 0.5   # K = 1 and K = 9 > 2 x 3 are degenerate


def test_kmeans_silhouette_k_chooses_k_without_labels():
    from tdml_lib.problems import synthetic_problem

    p = synthetic_problem("blobs", n_clusters=3, points_per_class=40, n_features=6, seed=3)
    labels = experiments.kmeans_silhouette_k(p.X, k_max=8, seed=0)
    assert labels.max() + 1 == 3


class _Data:
    """Tiny stand-ins for the image datasets: 3 classes of well separated 'images'."""

    @staticmethod
    def fake(monkeypatch):
        from tdml_lib import data, features
        from tdml_lib.data import Dataset

        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(3), 40)
        centres = rng.integers(0, 255, size=(3, 64))
        images = np.clip(centres[labels] + rng.normal(0, 10, size=(120, 64)), 0, 255).astype(np.uint8).reshape(-1, 8, 8)
        fmap = features.FeatureMap(4).fit(images, domain="fake")

        def load(name, split="train", prepare=False):
            return Dataset(images, labels, [str(c) for c in range(3)], "fake")

        monkeypatch.setattr(data, "load", load)
        monkeypatch.setattr(features, "fit_feature_map", lambda *a, **k: fmap)
        return fmap


def test_compare_on_domains_rows_summary_and_seeds(monkeypatch):
    from tdml_lib.metrics import IndexScorer

    _Data.fake(monkeypatch)
    res = experiments.compare_on_domains(domains=("fake",), n_problems=2, reward=IndexScorer("silhouette"),
                                         generations=2, population_size=8, n_clusters=(2, 3),
                                         points_per_class=(10, 15))
    frame = res.to_frame()
    assert {"domain", "problem", "method", "acc", "nmi", "ari", "K_true", "K_found", "n_points"} <= set(frame.columns)
    assert len(frame) == 2 * len(experiments.METHODS)
    true_k = frame[frame.method.str.contains("true K")]
    assert (true_k.K_found == true_k.K_true).all()
    assert set(res.summary().method) == set(experiments.METHODS)
    assert res.seeds == experiments.DEVELOPMENT
    with pytest.raises(ValueError, match="unknown or no methods"):
        experiments.compare_on_domains(domains=("fake",), methods=("spectral",))


def test_cluster_whole_set_scores_every_image(monkeypatch):
    from tdml_lib.metrics import IndexScorer

    _Data.fake(monkeypatch)
    res = experiments.cluster_whole_set("fake", reward=IndexScorer("silhouette"), generations=2,
                                        population_size=8, progress=False)
    frame = res.to_frame()
    assert res.n_points == 120 and set(frame.method) == {"agent (K found)", "agent (true K)", "k-means (true K)"}
    assert (frame.acc > 0.95).all() and (frame.wall_s >= 0).all()
    assert list(res.best_per_k.columns) == ["K", "reward"]


def test_agent_scale_case_is_written_with_provenance(monkeypatch, tmp_path):
    import json

    from tdml_lib.experiments import clustering
    from tdml_lib.metrics import IndexScorer

    _Data.fake(monkeypatch)
    case = clustering.agent_scale_case("fake", generations=1, population_size=4, reward=IndexScorer(), progress=False)
    assert case["n_points"] == 120 and case["peak_memory_mb"] > 0 and case["wall_s"] > 0
    path = clustering.write_agent_scale(case, tmp_path / "scale.json", command="test")
    clustering.write_agent_scale(case, path, command="test again")   # same case: replaced, not added
    stored = json.loads(path.read_text())["agent_scale"]
    assert len(stored) == 1 and stored[0]["provenance"]["command"] == "test again"
    assert stored[0]["provenance"]["git_commit"]


def test_transfer_table_runs_small_with_every_scorer_protocol_and_regime():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe, run_transfer
    from tdml_lib.experiments.transfer import NEAR_TRUTH_KINDS

    res = run_transfer(train_domains=["numbers"], test_domains=["numbers"], standard=Recipe(n_problems=4, n_synthetic=2),
                       few_shot=Recipe(n_problems=3, n_synthetic=0, noise_copies=False, examples_per_class=8),
                       critic_config=CriticConfig(epochs=2, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8),
                       n_eval_problems=3, eval_negatives=5, device="cpu", progress=False)
    table = res.table()
    assert set(table.scorer) == {"critic", "probe", "silhouette", "calinski_harabasz", "davies_bouldin"}
    assert set(table.protocol) == {"strict", "standard"}
    assert set(table[table.scorer == "critic"].regime) == {"standard", "few-shot"}
    assert table.best.between(0, 100).all() and (table.n_problems == 3).all()
    # removing the near-truth kinds can only move the truth up
    assert (res.ranks()["rank_no_near_truth"] <= res.ranks()["rank"]).all()
    assert set(res.kind_agreement.kind).isdisjoint({"correct"}) and len(NEAR_TRUTH_KINDS) == 5
    # the standard critic (2 protocols x 1 test domain) against one other scorer, then two
    paired = res.paired("critic", "silhouette")
    assert len(paired) == 2 and set(paired.columns) >= {"critic", "other", "only critic", "only other", "p"}
    assert len(res.paired("critic", ["probe", "silhouette"])) == 4
    # the probe is trained on each regime's problems, so the few-shot critic has its probe too
    assert set(table[table.scorer == "probe"].regime) == {"standard", "few-shot"}
    assert len(res.paired("critic", "probe", regime="few-shot")) == 2
    import json
    json.dumps(res.to_metrics())


def test_mcnemar_counts_discordant_problems():
    from tdml_lib.evaluate import mcnemar

    out = mcnemar([True, True, True, False, True], [False, False, False, False, True])
    assert (out["only_a"], out["only_b"]) == (3, 0) and out["p_value"] == pytest.approx(0.25)
    assert mcnemar([True], [True])["p_value"] == 1.0


def test_recipe_copies_keep_labels_and_change_what_they_should():
    from tdml_lib.experiments.training import noise_augmented, shrunk_copies, subsampled_copies
    from tdml_lib.problems import synthetic_problems

    probs = synthetic_problems(3, families=("blobs",), n_clusters=3, points_per_class=(30, 40), seed=0)
    for copy, p in zip(noise_augmented(probs, seed=1), probs):
        assert np.array_equal(copy.labels, p.labels) and copy.X.shape == p.X.shape
    spread = lambda q: np.mean([q.X[q.labels == c].std(0).mean() for c in range(q.n_clusters)])
    for copy, p in zip(shrunk_copies(probs, min_factor=0.3, seed=1), probs):
        assert np.array_equal(copy.labels, p.labels) and spread(copy) < spread(p)   # cleaner clusters
    for copy, p in zip(subsampled_copies(probs, seed=1), probs):
        assert copy.n_clusters == p.n_clusters
        # label ids are renumbered in order of first appearance: compare the sizes as sets
        assert sorted(np.bincount(copy.labels)) == sorted(np.maximum(3, np.round(np.bincount(p.labels) / 3)))
    with pytest.raises(ValueError, match="fraction"):
        subsampled_copies(probs, fraction=0)
    with pytest.raises(ValueError, match="min_factor"):
        shrunk_copies(probs, min_factor=2)


def test_interpolated_copies_fill_each_class_within_its_own_points_and_keep_the_originals():
    from tdml_lib.experiments.training import interpolated_copies
    from tdml_lib.problems import Problem, synthetic_problems

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [5, 8, 3])
    X = rng.normal(size=(16, 4)) + 10 * labels[:, None]
    p = Problem(X.astype(np.float32), labels, "hand-made", (0, 1, 2))
    copy, = interpolated_copies([p], points_per_class=(30, 40), seed=2)
    assert copy.n_clusters == 3 and copy.source == "hand-made + interpolated"
    assert all(30 <= n <= 40 for n in np.bincount(copy.labels))
    # the copy is standardised again: undo it per feature (new points lie inside their class's
    # box, so the whole set's extremes are originals), then find the originals and the new points
    back = (copy.X - copy.X.min(0)) / np.ptp(copy.X, 0) * np.ptp(X, 0) + X.min(0)
    for k in range(3):   # Problem numbers classes by first appearance: match them by position
        grown = back[copy.labels == k]
        own = X[labels == labels[np.abs(X - grown[0]).max(1).argmin()]]
        nearest = np.abs(grown[:, None] - own[None]).max(-1).min(0)
        assert (nearest < 1e-3).all()                                   # every original point is kept
        assert (grown >= own.min(0) - 1e-3).all() and (grown <= own.max(0) + 1e-3).all()   # on its class's side
    # deterministic per seed; another seed draws other points
    probs = synthetic_problems(3, families=("blobs",), n_clusters=3, points_per_class=(6, 12), seed=0)
    first, again = (interpolated_copies(probs, (30, 40), seed=2) for _ in range(2))
    assert all(np.array_equal(a.X, b.X) and np.array_equal(a.labels, b.labels) for a, b in zip(first, again))
    other = interpolated_copies(probs, (30, 40), seed=3)
    assert not all(a.X.shape == b.X.shape and np.allclose(a.X, b.X) for a, b in zip(first, other))
    # a class already large enough keeps its size
    same = interpolated_copies(probs, points_per_class=(2, 3), seed=2)
    assert all(sorted(np.bincount(a.labels)) == sorted(np.bincount(q.labels)) for a, q in zip(same, probs))
    for bad in ((1, 5), (10, 5), (2.5, 10), "20"):
        with pytest.raises(ValueError, match="points_per_class"):
            interpolated_copies(probs, points_per_class=bad)


def test_a_recipe_with_interpolate_to_fills_the_few_shot_problems_and_its_ablation_drops_it():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.transfer import ablations

    few_shot = Recipe(n_problems=3, n_synthetic=0, noise_copies=False, shrunk_copies=False,
                      subsampled_copies=False, examples_per_class=8, interpolate_to=(30, 35))
    probs = few_shot.problems("numbers", None, seed=0)
    assert len(probs) == 3 and all(p.source.endswith("+ interpolated") for p in probs)
    assert all(30 <= n <= 35 for p in probs for n in np.bincount(p.labels))
    plain, _ = ablations(["few-shot, no interpolation"], Recipe(), CriticConfig(), few_shot=few_shot)[
        "few-shot, no interpolation"]
    assert plain.interpolate_to is None and plain == Recipe(**{**few_shot.__dict__, "interpolate_to": None})
    assert all(np.bincount(p.labels).max() <= 8 for p in plain.problems("numbers", None, seed=0))
    with pytest.raises(ValueError, match="few_shot="):
        ablations(["few-shot, no interpolation"], Recipe(), CriticConfig())
    mixed = Recipe(**{**few_shot.__dict__, "unlabelled_share": 0.5})
    unfilled, interpolated_only = (ablations([name], Recipe(), CriticConfig(), few_shot=mixed)[name][0]
                                   for name in ("few-shot, no interpolation", "few-shot, interpolated fills only"))
    assert unfilled == plain and interpolated_only == few_shot   # nothing filled; filled by interpolation alone


def test_overlapping_copies_draw_the_closest_classes_together_and_keep_the_labels():
    from tdml_lib.experiments.training import overlapping_copies
    from tdml_lib.problems import Problem

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 40.0], [60.0, 60.0]])
    labels = np.repeat(np.arange(4), 30)
    p = Problem(centres[labels] + rng.normal(size=(120, 2)), labels, "four blobs")

    def centroids(q):
        return np.stack([q.X[q.labels == k].mean(0) for k in range(4)])

    def relative(q, values):
        # standardising rescales each column; the pair (2, 3) is not pulled, so divide by its gap
        c = centroids(q)
        return values / np.abs(c[3] - c[2])

    (copy,) = overlapping_copies([p], pull=(0.5, 0.5), n_pairs=1, seed=0)
    assert np.array_equal(copy.labels, p.labels) and copy.source.endswith("+ overlapping")
    gap = [relative(q, centroids(q)[1] - centroids(q)[0])[0] for q in (p, copy)]
    assert gap[1] == pytest.approx(0.5 * gap[0])                 # the closest pair: half as far apart
    shape = [relative(q, q.X[q.labels == 0].std(0)) for q in (p, copy)]
    np.testing.assert_allclose(shape[1], shape[0], rtol=1e-5)    # each class keeps its shape (float32)
    # two pairs: each class is in one pair at most, so classes 2 and 3 are drawn together next
    (two,) = overlapping_copies([p], pull=(0.5, 0.5), n_pairs=2, seed=0)
    c, c0 = centroids(two), centroids(p)
    assert np.linalg.norm(c[3] - c[2]) / np.linalg.norm(c[3] - c[0]) < \
        np.linalg.norm(c0[3] - c0[2]) / np.linalg.norm(c0[3] - c0[0])
    with pytest.raises(ValueError, match="pull"):
        overlapping_copies([p], pull=(0.2, 1.0))


def test_a_few_shot_recipe_takes_overlapping_copies_of_its_filled_problems_and_its_ablation_drops_them():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.transfer import ablations

    few_shot = Recipe(n_problems=2, n_synthetic=0, noise_copies=False, shrunk_copies=False,
                      subsampled_copies=False, examples_per_class=8, interpolate_to=(30, 35))
    plain = few_shot.problems("numbers", None, seed=0)
    with_copies = replace(few_shot, overlap_copies=True).problems("numbers", None, seed=0)
    assert len(with_copies) == 2 * len(plain) == 4
    assert all(np.array_equal(a.X, b.X) for a, b in zip(plain, with_copies))   # the own problems come first
    for own, copy in zip(plain, with_copies[2:]):
        # a copy of each filled-up problem, labels kept (what the copy moves: the test above)
        assert copy.source == f"{own.source} + overlapping" and np.array_equal(copy.labels, own.labels)
    no_overlap, _ = ablations(["few-shot, no overlapping copies"], Recipe(), CriticConfig(),
                              few_shot=replace(few_shot, overlap_copies=True))["few-shot, no overlapping copies"]
    assert no_overlap == few_shot
    with pytest.raises(ValueError, match="few_shot="):
        ablations(["few-shot, no overlapping copies"], Recipe(), CriticConfig())


def test_a_recipe_passes_its_overlap_strength_on_and_the_weaker_ablation_restores_the_defaults():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.training import OVERLAP_PAIRS, OVERLAP_PULL, overlapping_copies
    from tdml_lib.experiments.transfer import ablations

    base = Recipe(n_problems=2, n_synthetic=0, noise_copies=False, shrunk_copies=False, subsampled_copies=False,
                  overlap_copies=True)
    strong = replace(base, overlap_pull=(0.4, 0.8), overlap_pairs=3)
    own = Recipe(**{**base.__dict__, "overlap_copies": False}).problems("numbers", None, seed=0)
    for recipe, pull, pairs in ((base, OVERLAP_PULL, OVERLAP_PAIRS), (strong, (0.4, 0.8), 3)):
        copies = recipe.problems("numbers", None, seed=0)[len(own):]
        expected = overlapping_copies(own, pull, pairs, seed=13)   # the recipe's copies use seed + 13
        assert all(np.array_equal(a.X, b.X) for a, b in zip(copies, expected))
    assert not np.array_equal(base.problems("numbers", None, seed=0)[-1].X,
                              strong.problems("numbers", None, seed=0)[-1].X)
    weaker, _ = ablations(["weaker overlapping copies"], strong, CriticConfig())["weaker overlapping copies"]
    assert weaker == base
    for same in (base, replace(strong, overlap_copies=False)):   # the ablation would be the critic again
        with pytest.raises(ValueError, match="weaker overlapping copies"):
            ablations(["weaker overlapping copies"], same, CriticConfig())


def test_ablations_name_what_is_unknown_and_what_needs_the_few_shot_recipe():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.transfer import ABLATIONS, ablations

    with pytest.raises(ValueError, match="unknown ablations \\['no such'\\]"):
        ablations(["no such", "few-shot, no interpolation"], Recipe(), CriticConfig())
    with pytest.raises(ValueError, match="few-shot, no interpolation.*few_shot="):
        ablations(["no noisy copies", "few-shot, no interpolation"], Recipe(), CriticConfig())
    everything = ablations([n for n in ABLATIONS if n != "weaker overlapping copies"],
                           Recipe(overlap_copies=True), CriticConfig(), few_shot=Recipe(examples_per_class=8))
    assert list(everything) == [n for n in ABLATIONS if n != "weaker overlapping copies"]


def test_small_pool_problems_add_tighter_filled_problems_and_their_ablation_removes_them():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.transfer import ablations

    base = Recipe(n_problems=2, n_synthetic=0, noise_copies=True, shrunk_copies=False, subsampled_copies=False)
    plain = base.problems("numbers", None, seed=0)
    mixed = replace(base, small_pool_problems=3, small_pool_size=6).problems("numbers", None, seed=0)
    # the recipe's own problems come first, unchanged; then 3 small-pool problems and their noisy copies
    assert len(plain) == 4 and len(mixed) == 4 + 3 + 3
    assert all(np.array_equal(a.X, b.X) for a, b in zip(plain, mixed))
    small = mixed[4:7]
    assert all(p.source.endswith("+ interpolated") and all(20 <= n <= 100 for n in np.bincount(p.labels))
               for p in small)
    no_pool, _ = ablations(["no small-pool problems"], replace(base, small_pool_problems=3), CriticConfig())[
        "no small-pool problems"]
    assert no_pool == base
    for name in ("domain only", "synthetic only"):   # the other ablations drop them too
        recipe = ablations([name], replace(base, small_pool_problems=3, overlap_copies=True), CriticConfig())[name][0]
        assert recipe.small_pool_problems == 0 and not recipe.overlap_copies
    no_overlap, _ = ablations(["no overlapping copies"], replace(base, overlap_copies=True), CriticConfig())[
        "no overlapping copies"]
    assert no_overlap == base
    with pytest.raises(ValueError, match="standard regime"):   # before any problem is drawn
        Recipe(n_problems=2, examples_per_class=8, small_pool_problems=2).problems("no such domain", None, seed=0)
    with pytest.raises(ValueError, match="small_pool_problems"):
        Recipe(small_pool_problems=-1).problems("numbers", None, seed=0)


def test_recipe_needs_problems_and_counts_its_sources():
    from tdml_lib.experiments import Recipe

    with pytest.raises(ValueError, match="needs problems"):
        Recipe(n_problems=0, n_synthetic=0).problems("synthetic", None, seed=0)
    probs = Recipe(n_problems=0, n_synthetic=4).problems("numbers", None, seed=0)
    assert len(probs) == 4 + 2 + 2 and all(p.source.startswith("synthetic") for p in probs)
    # the synthetic clusters' size is the recipe's (its shrunk copies keep every point)
    big = Recipe(n_problems=0, n_synthetic=4, subsampled_copies=False, synthetic_points=(150, 160)).problems(
        "numbers", None, seed=0)
    sizes = np.concatenate([np.bincount(p.labels) for p in big])
    assert sizes.min() >= 150 and sizes.max() <= 160
    assert Recipe().synthetic_points == (20, 100)


def test_transfer_ranks_the_ensemble_of_the_seed_critics_of_every_training_domain_and_regime():
    from tdml_lib.experiments import Recipe, run_transfer
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments.transfer import ENSEMBLE

    res = run_transfer(train_domains=["numbers"], test_domains=["numbers"], regimes=["standard", "few-shot"],
                       protocols=["strict"], standard=Recipe(n_problems=3, n_synthetic=0),
                       few_shot=Recipe(n_problems=3, n_synthetic=0, noise_copies=False, examples_per_class=8),
                       critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8),
                       critic_seeds=(0, 1), n_eval_problems=3, eval_negatives=4, probe=False, index_scorers=(),
                       device="cpu", progress=False)
    frame = res.to_frame()
    critics = frame[frame.scorer == "critic"]
    # every regime is trained from every seed, so each row has a spread
    for regime in ("standard", "few-shot"):
        assert sorted(critics[critics.regime == regime].critic_seed) == [0, 1]
    ensemble = frame[frame.scorer == ENSEMBLE]
    assert sorted(ensemble.regime) == ["few-shot", "standard"] and ensemble.critic_seed.isna().all()
    # the ensemble is compared with the other scorers like any scorer
    assert len(res.paired(ENSEMBLE, "critic")) == 1
    assert len(res.paired(ENSEMBLE, "critic", regime="few-shot")) == 1


def test_the_probe_and_the_ablations_can_be_trained_from_every_critic_seed():
    """The probe is a draw as much as the critic: one per seed, so the transfer table sets
    seed mean beside seed mean; an ablation follows ``ablation_seeds`` (the first seed by
    default); a scorer trained elsewhere (the shipped critic) is ranked on the same cells."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe, run_transfer
    from tdml_lib.metrics import IndexScorer

    small = dict(train_domains=["numbers"], test_domains=["numbers"], regimes=["standard"], protocols=["strict"],
                 standard=Recipe(n_problems=3, n_synthetic=0),
                 critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8),
                 critic_seeds=(0, 1), n_eval_problems=3, eval_negatives=4, index_scorers=(), device="cpu",
                 progress=False)
    wider = {"wider": (Recipe(n_problems=3, n_synthetic=0), None)}
    res = run_transfer(ablations=wider, ablation_seeds=(0, 1), **small)
    frame = res.to_frame()
    assert sorted(frame[frame.scorer == "probe"].critic_seed) == [0, 1]
    assert sorted(frame[frame.regime == "ablation: wider"].critic_seed) == [0, 1]
    table = res.table()
    probe = table[table.scorer == "probe"].iloc[0]
    assert probe.n_seeds == 2 and probe.best == pytest.approx(frame[frame.scorer == "probe"].best.mean())
    default = run_transfer(ablations=wider, probe=False, pretrained={"given": IndexScorer("silhouette")},
                           **small).to_frame()
    given = default[default.scorer == "given"]     # a scorer trained elsewhere: the first domain's cells
    assert list(given.regime) == ["standard"] and given.critic_seed.isna().all()
    assert list(default[default.regime == "ablation: wider"].critic_seed) == [0]
    with pytest.raises(ValueError, match="ablation_seeds is empty"):
        run_transfer(ablations=wider, ablation_seeds=(), **small)


def test_transfer_jobs_in_worker_processes_give_the_same_result():
    """``workers`` only changes where the jobs run: a critic (with its adversarial rounds),
    its probe, the ensemble over seeds, a scorer trained elsewhere and an index give the
    same cells, in the same order, and the same training records in worker processes."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe, run_transfer
    from tdml_lib.metrics import IndexScorer

    small = dict(train_domains=["numbers"], test_domains=["numbers"], regimes=["standard"], protocols=["strict"],
                 standard=Recipe(n_problems=3, n_synthetic=0),
                 critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8),
                 critic_seeds=(0, 1), adversarial_rounds=1, adversarial_problems=1, adversarial_generations=2,
                 adversarial_population=8, adversarial_validation=1, pretrained={"given": IndexScorer("silhouette")},
                 n_eval_problems=3, eval_negatives=4, index_scorers=("davies_bouldin",), device="cpu", progress=False)
    here, pooled = run_transfer(workers=1, **small), run_transfer(workers=2, **small)
    frame = pooled.to_frame()
    assert frame.equals(here.to_frame())
    assert {"critic ensemble", "given", "davies_bouldin"} <= set(frame.scorer)
    assert "standard + adversarial" in set(frame.regime)
    assert json.dumps(pooled.training, sort_keys=True) == json.dumps(here.training, sort_keys=True)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a positive integer"):
            run_transfer(workers=bad, **small)


def test_rank_trained_ranks_the_transfer_runs_candidate_sets():
    """A critic trained elsewhere (the shipped one, a candidate to replace it) is ranked on
    the very problems and candidates of a transfer run with the same seeds."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe, run_transfer
    from tdml_lib.experiments.transfer import rank_trained
    from tdml_lib.metrics import IndexScorer

    sizes = dict(test_domains=["numbers", "fashion"], n_eval_problems=3, eval_negatives=4, progress=False)
    run = run_transfer(train_domains=["numbers"], regimes=["standard"], standard=Recipe(n_problems=2, n_synthetic=0),
                       critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8),
                       probe=False, index_scorers=("silhouette",), device="cpu", **sizes).ranks()
    ranked = rank_trained({"mine": IndexScorer("silhouette")}, train="numbers", **sizes)
    mine = ranked.ranks()
    assert set(mine.scorer) == {"mine"} and mine.regime.isna().all() and len(mine) == 2 * 2 * 3
    keys = ["protocol", "test", "problem"]
    same = run[run.scorer == "silhouette"].merge(mine, on=keys, suffixes=("", "_mine"))
    assert len(same) == len(mine) and (same["rank"] == same["rank_mine"]).all()
    assert len(ranked.paired("mine", "mine", regime=None)) == 4
    with pytest.raises(ValueError, match="at least one scorer"):
        rank_trained({}, **sizes)


def test_training_protocols_share_test_problems_and_summarise_over_seeds():
    """Leave-one-out critics never see the test family; the all-families critic does (other
    draws). Every protocol and seed clusters the same test problems, and the summary's
    mean over seeds lies between its lowest and highest seed."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.problems import SYNTHETIC_FAMILIES

    kwargs = dict(test_families=("moons", "circles"), n_train_problems=3, n_problems=1, points_per_class=(15, 20),
                  critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=2), generations=1,
                  population_size=4, device="cpu", methods=("agent (K found)", "k-means (true K)"))
    runs = experiments.compare_training_protocols(critic_seeds=(0, 1), **kwargs)
    assert list(runs) == [("leave_one_out", 0), ("leave_one_out", 1), ("all_families", 0), ("all_families", 1)]
    assert all(f not in runs["leave_one_out", 0].training_families[f] for f in ("moons", "circles"))
    assert all(runs["all_families", 1].training_families[f] == SYNTHETIC_FAMILIES for f in ("moons", "circles"))
    shown = {key: c.examples["moons"] for key, c in runs.items()}
    assert all(np.array_equal(ex["X"], shown["leave_one_out", 0]["X"]) for ex in shown.values())
    # a protocol run is the same as the single comparison with that seed
    alone = experiments.compare_on_synthetic(seed=1, training="all_families", **kwargs)
    pd.testing.assert_frame_equal(alone.scores, runs["all_families", 1].scores)

    rows = experiments.protocol_runs(runs)
    assert list(rows.columns[:2]) == ["training", "critic_seed"] and len(rows) == 4 * 2 * 2
    summary = experiments.protocol_summary(rows)
    assert len(summary) == 2 * 2 * 2 and (summary.n_seeds == 2).all() and (summary.n_problems == 1).all()
    assert ((summary.k_exact_min <= summary.k_exact) & (summary.k_exact <= summary.k_exact_max)).all()
    assert ((summary.acc_min <= summary.acc) & (summary.acc <= summary.acc_max)).all()


def test_training_protocols_run_kmeans_once_per_seed(monkeypatch):
    """k-means does not depend on the critic: every protocol of one seed shows the same
    k-means labels, computed once per (seed, problem), not once per protocol."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import clustering, synthetic

    calls: list[tuple[str, ...]] = []
    real = clustering.run_methods

    def counting(X, k, methods, *args, **kwargs):
        calls.append(tuple(methods))
        return real(X, k, methods, *args, **kwargs)

    monkeypatch.setattr(synthetic, "run_methods", counting)
    kwargs = dict(test_families=("moons",), n_train_problems=3, n_problems=2, points_per_class=(15, 20),
                  critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=2), generations=1,
                  population_size=4, device="cpu", methods=("k-means (true K)", "agent (K found)"))
    runs = experiments.compare_training_protocols(critic_seeds=(0, 1), **kwargs)
    with_kmeans = [m for m in calls if "k-means (true K)" in m]
    assert len(calls) == 2 * 2 * 2 and len(with_kmeans) == 2 * 2   # seeds x problems
    for s in (0, 1):
        a, b = (runs[t, s].scores for t in ("leave_one_out", "all_families"))
        kmeans = a.method == "k-means (true K)"
        pd.testing.assert_frame_equal(a[kmeans], b[kmeans])
        assert list(a.method) == list(b.method) == ["k-means (true K)", "agent (K found)"] * 2


def test_synthetic_adversarial_budget_defaults_to_the_test_budget(monkeypatch):
    """The agent that attacks a synthetic critic's training problems searches with its own
    budget when one is given, else with the test budget."""
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import synthetic

    budgets = []
    real = synthetic.adversarial_training

    def recording(*args, **kwargs):
        budgets.append((kwargs["generations"], kwargs["population_size"], kwargs["problems_per_round"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "adversarial_training", recording)
    kwargs = dict(test_families=("moons",), n_train_problems=3, n_problems=1, points_per_class=(15, 20),
                  critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=2), generations=2,
                  population_size=6, device="cpu", methods=("agent (K found)",), adversarial_rounds=1,
                  adversarial_problems=2)
    experiments.compare_on_synthetic(**kwargs)
    experiments.compare_on_synthetic(adversarial_generations=1, adversarial_population=4, **kwargs)
    # 0 generations (the attack uses the seeded population only) is a budget, not "not given"
    experiments.compare_on_synthetic(adversarial_generations=0, adversarial_population=4, **kwargs)
    assert budgets == [(2, 6, 2), (1, 4, 2), (0, 4, 2)]


def test_training_protocols_with_a_critic_ensemble():
    """With ``ensemble=True`` each protocol's critics of every seed are averaged into one
    reward per family, and the agent finds K with it on the same test problems; its rows
    say how many critics went in, and the summary keeps it apart from the single critics."""
    from tdml_lib.critic import CriticConfig, CriticEnsemble

    kwargs = dict(test_families=("moons",), n_train_problems=3, n_problems=2, points_per_class=(15, 20),
                  critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=2), generations=1,
                  population_size=4, device="cpu", methods=("agent (K found)", "k-means (true K)"))
    runs = experiments.compare_training_protocols(critic_seeds=(0, 1), trainings=("all_families",), ensemble=True,
                                                  **kwargs)
    assert list(runs) == [("all_families", 0), ("all_families", 1), ("all_families", "ensemble")]
    ensemble = runs["all_families", "ensemble"]
    reward = ensemble.critics["moons"]
    assert isinstance(reward, CriticEnsemble) and ensemble.n_critics == 2
    assert [id(c) for c in reward.critics] == [id(runs["all_families", s].critics["moons"]) for s in (0, 1)]
    assert set(ensemble.scores.method) == {experiments.AGENT_ENSEMBLE_K_FOUND} and len(ensemble.scores) == 2
    shown = runs["all_families", 0].examples["moons"]
    # the same test problem shown, whatever the ensemble's agent scored on it
    assert ensemble.examples["moons"]["problem"] == shown["problem"]
    assert np.array_equal(ensemble.examples["moons"]["X"], shown["X"])
    rows = experiments.protocol_runs(runs)
    assert set(rows[rows.method == experiments.AGENT_ENSEMBLE_K_FOUND].n_critics) == {2}
    assert set(rows[rows.method != experiments.AGENT_ENSEMBLE_K_FOUND].n_critics) == {1}
    summary = experiments.protocol_summary(rows).set_index("method")
    assert summary.loc[experiments.AGENT_ENSEMBLE_K_FOUND, ["n_seeds", "n_critics"]].tolist() == [1, 2]
    assert summary.loc["agent (K found)", ["n_seeds", "n_critics"]].tolist() == [2, 1]
    with pytest.raises(ValueError, match="two or more distinct critic seeds"):
        experiments.compare_training_protocols(critic_seeds=(0, 0), ensemble=True, **kwargs)


def test_protocol_summary_mean_stays_inside_the_seed_range():
    """Three seeds with the same ACC: the summary's mean is that value, never a rounding
    error above the highest seed (chapter 4 draws whiskers from mean to max)."""
    acc = 0.003   # pandas' mean of three copies is 0.0030000000000000005
    runs = pd.DataFrame([{"training": "all_families", "critic_seed": s, "family": "moons", "problem": 0,
                          "method": "agent (K found)", "K_true": 2, "K_found": 2, "acc": acc} for s in range(3)])
    summary = experiments.protocol_summary(runs).iloc[0]
    assert summary.acc == summary.acc_max == summary.acc_min == acc
    assert summary.k_exact == 1.0 and summary.n_critics == 1


def test_training_protocols_reject_bad_arguments():
    with pytest.raises(ValueError, match="training must be one of"):
        experiments.compare_on_synthetic(training="every_family")
    with pytest.raises(ValueError, match="critic_seeds is empty"):
        experiments.compare_training_protocols(critic_seeds=())
    with pytest.raises(ValueError, match="pass critic_seeds"):
        experiments.compare_training_protocols(seed=3)


def test_adversarial_loop_attacks_synthetic_problems_at_their_own_budget(monkeypatch):
    """``synthetic_per_round`` adds attacks on synthetic training problems only, at the
    cheaper budget, beside the usual draw from all problems; the added proposals become
    negatives of the problems attacked. Without synthetic problems it says what to do."""
    from dataclasses import replace

    from tdml_lib.critic import CriticConfig, fit_critic
    from tdml_lib.experiments import training
    from tdml_lib.problems import Problem, synthetic_problems

    synth = synthetic_problems(4, n_clusters=(2, 3), points_per_class=(12, 20), n_features=(2, 3), seed=0)
    domain = [Problem(p.X, p.labels, "numbers") for p in
              synthetic_problems(2, n_clusters=(2, 3), points_per_class=(12, 20), n_features=(2, 3), seed=1)]
    probs = domain + synth
    cfg = CriticConfig(n_negatives=3, epochs=2, problems_per_step=3, gae_epochs=1, gae_clusterings=2, hidden=8, k=4)
    critic, _, ts = fit_critic(probs, cfg, seed=0, device="cpu", progress=False)
    calls = []

    def proposals(X, reward, n=4, seed=0, generations=15, population_size=32):
        index = next(i for i, p in enumerate(probs) if p.X is X)
        calls.append((index, generations, population_size))
        return [np.arange(len(X)) % 2]

    monkeypatch.setattr(training, "make_agent_proposals", proposals)
    before = [len(f) for f in ts.fake]
    training.adversarial_training(critic, probs, ts, replace(cfg), rounds=1, problems_per_round=1,
                                  epochs_per_round=1, generations=7, population_size=9, progress=False,
                                  synthetic_per_round=3, synthetic_budget=(2, 5))
    assert calls[0][1:] == (7, 9)
    cheap = calls[1:]
    assert len(cheap) == 3 and all(call[1:] == (2, 5) for call in cheap)
    assert {i for i, *_ in cheap} <= set(range(len(domain), len(probs)))   # synthetic only
    grown = [i for i, (b, f) in enumerate(zip(before, ts.fake)) if len(f) > b]
    assert set(grown) == {i for i, *_ in calls}
    with pytest.raises(ValueError, match="needs synthetic training problems"):
        training.adversarial_training(critic, domain, ts, cfg, rounds=1, synthetic_per_round=2, progress=False)


def test_the_gae_codes_ablation_flips_what_the_critic_reads_and_nothing_else():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.transfer import ablations

    standard = Recipe(n_problems=4, n_synthetic=2)
    for inputs, other in (("statistics", "embedding"), ("embedding", "statistics")):
        config = CriticConfig(epochs=2, inputs=inputs)
        recipe, flipped = ablations(["GAE codes"], standard, config)["GAE codes"]
        assert recipe == standard and flipped.inputs == other
        assert {**flipped.as_dict(), "inputs": inputs} == config.as_dict()


def test_compare_recipes_pairs_the_critics_of_each_seed_and_refuses_the_held_out_seeds(monkeypatch):
    from tdml_lib import evaluate
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import HELD_OUT, Recipe
    from tdml_lib.experiments.recipe_comparison import COLUMNS, compare_recipes

    builds = []   # both recipes rank one build of the candidate sets
    real_sets = evaluate.evaluation_sets
    monkeypatch.setattr(evaluate, "evaluation_sets", lambda *a, **k: builds.append(1) or real_sets(*a, **k))

    base = Recipe(n_problems=3, n_synthetic=0, shrunk_copies=False, subsampled_copies=False)
    tiny = dict(test_domains=["numbers"], protocols=["strict"], critic_seeds=(0, 1), n_eval_problems=3,
                eval_negatives=4, device="cpu", progress=False,
                critic_config=CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8))
    out = compare_recipes(base, replace(base, noise_copies=False), **tiny)
    assert list(out.columns) == COLUMNS and len(out) == 1
    assert len(builds) == 1
    row = out.iloc[0]
    assert row.n_paired == 2 * 3 and len(row.best_base_per_seed) == len(row.best_variant_per_seed) == 2
    assert row.best_base == pytest.approx(np.mean(row.best_base_per_seed), abs=0.1)
    # the discordant problems explain the gap in Best exactly
    assert row.best_variant - row.best_base == pytest.approx(100 * (row.only_variant - row.only_base) / 6)
    assert 0 <= row.p <= 1
    with pytest.raises(ValueError, match="development seeds only"):
        compare_recipes(base, replace(base, noise_copies=False), seeds=HELD_OUT, **tiny)
    with pytest.raises(ValueError, match="same recipe"):
        compare_recipes(base, base, **tiny)


def test_seed_sets_share_no_seed():
    """The development, confirmation and held-out sets draw different problems and candidates,
    and their synthetic families (problem i: ``synthetic + i``) stay apart for 1,000 problems."""
    from tdml_lib.experiments.recipe_comparison import COMPARISON_SEEDS, CONFIRMATION
    from tdml_lib.experiments.seeds import SEED_SETS

    sets = {**SEED_SETS, **COMPARISON_SEEDS}
    assert sets["confirmation"] is CONFIRMATION and "held_out" not in COMPARISON_SEEDS
    for field in ("problems", "candidates", "synthetic"):
        assert len({getattr(s, field) for s in sets.values()}) == len(sets), field
    bases = sorted(s.synthetic for s in sets.values())
    assert min(b - a for a, b in zip(bases, bases[1:])) >= 1000


def test_compare_configs_trains_both_configs_on_the_same_problems_per_seed(monkeypatch):
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import HELD_OUT, Recipe
    from tdml_lib.experiments import transfer
    from tdml_lib.experiments.recipe_comparison import COLUMNS, compare_configs

    fitted = []   # (hidden, seed, the problems' first points) of every critic trained
    real_fit = transfer.fit_critic
    monkeypatch.setattr(transfer, "fit_critic", lambda probs, cfg, seed, **k: fitted.append(
        (cfg.hidden, seed, probs[0].X[0, 0])) or real_fit(probs, cfg, seed=seed, **k))
    built = []    # candidate sets are built once for all seeds
    real_sets = transfer.evaluate.evaluation_sets
    monkeypatch.setattr(transfer.evaluate, "evaluation_sets", lambda *a, **k: built.append(1) or real_sets(*a, **k))

    recipe = Recipe(n_problems=3, n_synthetic=0, shrunk_copies=False, subsampled_copies=False)
    base = CriticConfig(epochs=1, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8)
    tiny = dict(test_domains=["numbers"], protocols=["strict"], critic_seeds=(0, 1), n_eval_problems=3,
                eval_negatives=4, device="cpu", progress=False)
    out = compare_configs(recipe, base, replace(base, hidden=16), **tiny)
    assert list(out.columns) == COLUMNS and len(out) == 1
    assert [(h, s) for h, s, _ in fitted] == [(8, 0), (8, 1), (16, 0), (16, 1)]   # bases, then variants
    assert len(built) == 1
    assert fitted[0][2] == fitted[2][2] and fitted[1][2] == fitted[3][2]   # same problems per seed
    assert fitted[0][2] != fitted[1][2]                                    # another draw per seed
    row = out.iloc[0]
    assert row.n_paired == 2 * 3 and len(row.best_variant_per_seed) == 2
    assert row.best_variant - row.best_base == pytest.approx(100 * (row.only_variant - row.only_base) / 6)
    with pytest.raises(ValueError, match="development seeds only"):
        compare_configs(recipe, base, replace(base, hidden=16), seeds=HELD_OUT, **tiny)
    with pytest.raises(ValueError, match="same configuration"):
        compare_configs(recipe, base, replace(base), **tiny)


def test_recipes_from_parameters_are_the_recipes_the_stored_transfer_run_trained():
    """A trial starts from what chapter 5 trained: the recipes rebuilt from the stored run's
    parameters are those its critics recorded, and its configuration is theirs."""
    import json
    from pathlib import Path

    from tdml_lib.experiments import Recipe, recipes_from_parameters

    stored = json.loads((Path(__file__).resolve().parents[1] / "results/transfer/result.json").read_text())
    standard, few_shot, config = recipes_from_parameters(stored["params"])
    training = stored["metrics"]["training"]
    defaults = json.loads(json.dumps(Recipe().as_dict()))

    def recorded(key):   # a Recipe field added after the run was stored: the default, which that run used
        return {**defaults, **training[key]["recipe"]}

    assert json.loads(json.dumps(standard.as_dict())) == recorded("numbers/standard/seed0")
    assert json.loads(json.dumps(few_shot.as_dict())) == recorded("fashion/few-shot/seed0")
    assert config.average_tail == stored["params"]["CRITIC_AVERAGE_TAIL"] and config.epochs == stored["params"]["EPOCHS"]
    with pytest.raises(ValueError, match="N_TRAIN_PROBLEMS"):
        recipes_from_parameters({k: v for k, v in stored["params"].items() if k != "N_TRAIN_PROBLEMS"})


def test_compare_tail_average_pairs_each_critic_with_its_own_average():
    from tdml_lib.critic import CriticConfig
    from tdml_lib.experiments import HELD_OUT, Recipe
    from tdml_lib.experiments.recipe_comparison import COLUMNS, compare_configs, compare_tail_average

    recipe = Recipe(n_problems=3, n_synthetic=0, shrunk_copies=False, subsampled_copies=False)
    config = CriticConfig(epochs=3, gae_epochs=1, n_negatives=3, n_degenerate=2, hidden=8)
    tiny = dict(test_domains=["numbers"], protocols=["strict"], critic_seeds=(0, 1), n_eval_problems=4,
                eval_negatives=4, device="cpu", progress=False)
    out = compare_tail_average(recipe, config, average_last=2, **tiny)
    assert list(out.columns) == COLUMNS and len(out) == 1
    row = out.iloc[0]
    assert row.n_paired == 2 * 4 and len(row.best_variant_per_seed) == 2
    assert row.best_variant - row.best_base == pytest.approx(100 * (row.only_variant - row.only_base) / 8)
    # the base critic of each seed is the one a configuration trial trains with that seed
    configs = compare_configs(recipe, config, replace(config, hidden=16), **tiny).iloc[0]
    assert row.best_base_per_seed == configs.best_base_per_seed
    with pytest.raises(ValueError, match="development seeds only"):
        compare_tail_average(recipe, config, seeds=HELD_OUT, **tiny)
    with pytest.raises(ValueError, match="average_last"):
        compare_tail_average(recipe, config, average_last=4, **tiny)


def test_read_shipped_comparisons_sets_the_two_critics_side_by_side(tmp_path):
    import json

    from tdml_lib.experiments.recipe_comparison import read_shipped_comparisons

    transfer = [{"scorer": critic, "protocol": "strict", "test": test, "best": best, "top3": 90.0}
                for critic, test, best in (("shipped", "numbers", 74.0), ("candidate", "numbers", 84.0),
                                           ("shipped", "fashion", 23.0), ("candidate", "fashion", 30.0))]
    def agent(where, critic, k_exact):   # rows as compare_on_domains / protocol_summary give them
        names = {"domain": ("numbers", "reward"), "family": ("moons", "training")}[where]
        return {where: names[0], names[1]: critic, "method": "agent (K found)", "n_problems": 30,
                "k_exact": k_exact, "acc": 0.6}

    record = {"command": "python scripts/compare_shipped.py x --rule 'fixed before'", "rule": "fixed before",
              "transfer": transfer,
              "paired": [{"train": "numbers", "protocol": "strict", "test": "numbers", "p": 0.06}],
              "holes": [{"critic": c, "problems": "blobs", "kind": "one_cluster", "truth_wins": 1.0}
                        for c in ("shipped", "candidate")],
              "agent_domains": [agent("domain", "shipped", 0.2), agent("domain", "candidate", 0.3)],
              "agent_synthetic": [agent("family", "shipped", 1.0), agent("family", "candidate", 0.9)]}
    (tmp_path / "x.json").write_text(json.dumps(record))
    [run] = read_shipped_comparisons(tmp_path)
    assert run["name"] == "x" and run["rule"] == "fixed before"
    assert run["command"] == "python scripts/compare_shipped.py x"    # the rule is printed once
    assert run["transfer"].loc[("strict", "fashion"), "candidate"] == 30.0
    assert run["agent"].loc[("numbers", 30), ("true K found (%)", "candidate")] == pytest.approx(30.0)
    assert run["agent"].loc[("moons", 30), ("true K found (%)", "shipped")] == pytest.approx(100.0)
    assert run["agent"].loc[("moons", 30), ("mean ACC", "shipped")] == pytest.approx(0.6)
    assert run["holes"].loc["one_cluster", ("candidate", "blobs")] == 100.0
    assert read_shipped_comparisons(tmp_path / "missing") == []
    (tmp_path / "y.json").write_text(json.dumps({"command": "other"}))
    with pytest.raises(ValueError, match="y.json is not a scripts/compare_shipped.py record"):
        read_shipped_comparisons(tmp_path)


def test_read_trials_names_what_each_variant_changes(tmp_path):
    import json

    from tdml_lib.experiments.recipe_comparison import COLUMNS, TRIAL_COLUMNS, read_trials

    row = {"train": "numbers", "regime": "standard", "protocol": "strict", "test": "fashion", "best_base": 30.0,
           "best_variant": 37.0, "only_base": 5, "only_variant": 12, "p": 0.04, "n_paired": 500,
           "best_base_per_seed": "[30.0]", "best_variant_per_seed": "[37.0]"}
    recipe, config = {"n_problems": 200, "noise_copies": True}, {"hidden": 64, "epochs": 100}
    records = {"recipe_step": {"base": recipe, "variant": {**recipe, "boundary_share": [0.05, 0.25]},
                               "config": config, "command": "python scripts/compare_trial.py recipe_step"},
               "wider": {"base": recipe, "variant": recipe, "config": config,
                         "variant_config": {**config, "hidden": 128}, "command": "python scripts/compare_trial.py wider",
                         "provenance": {"host": {"cpu": "AMD EPYC"}}, "seeds": "confirmation"}}
    for name, record in records.items():
        pd.DataFrame([row, {**row, "test": "letters"}], columns=COLUMNS).to_csv(tmp_path / f"{name}.csv", index=False)
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    trials = read_trials(tmp_path)
    assert list(trials.columns) == TRIAL_COLUMNS and len(trials) == 4
    changes = trials.groupby("trial").change.first()
    assert changes["recipe_step"] == "boundary_share=[0.05, 0.25]" and changes["wider"] == "hidden=128"
    assert trials[trials.trial == "wider"].command.iloc[0].endswith("wider")
    assert set(trials[trials.trial == "wider"].cpu) == {"AMD EPYC"} and set(trials[trials.trial == "recipe_step"].cpu) == {""}
    # a record without the field was made before the confirmation set existed: development seeds
    assert trials.groupby("trial").seeds.unique().map(list).to_dict() == {"recipe_step": ["development"],
                                                                          "wider": ["confirmation"]}
    assert read_trials(tmp_path / "missing").empty and list(read_trials(tmp_path / "missing").columns) == TRIAL_COLUMNS
    (tmp_path / "wider.json").unlink()
    with pytest.raises(ValueError, match="wider"):
        read_trials(tmp_path)
    (tmp_path / "wider.csv").write_text("a,b\n1,2\n")
    (tmp_path / "wider.json").write_text(json.dumps(records["wider"]))
    with pytest.raises(ValueError, match="not a compare_recipes"):
        read_trials(tmp_path)


def test_mixed_boundary_copies_crowd_the_borders_and_keep_the_labels():
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.trials import BoundaryRecipe, mixed_boundary_copies
    from tdml_lib.problems import synthetic_problems

    probs = synthetic_problems(4, n_clusters=(3, 5), points_per_class=(30, 40), n_features=(2, 6), seed=3)

    def wrong_side(p):   # share of points whose nearest neighbour is of another class
        d = ((p.X[:, None] - p.X[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return np.mean(p.labels[d.argmin(1)] != p.labels)

    copies = mixed_boundary_copies(probs, share=(0.3, 0.3), reach=(0.8, 0.8), seed=0)
    for p, q in zip(probs, copies):
        assert np.array_equal(p.labels, q.labels) and q.X.shape == p.X.shape
        assert np.sum(np.any(q.X != p.X, axis=1)) > 0 and wrong_side(q) > wrong_side(p)
    again = mixed_boundary_copies(probs, share=(0.3, 0.3), reach=(0.8, 0.8), seed=0)
    assert all(np.array_equal(a.X, b.X) for a, b in zip(copies, again))
    with pytest.raises(ValueError, match="share"):
        mixed_boundary_copies(probs, share=(0.5, 0.2))
    base = Recipe(n_problems=3, n_synthetic=2, noise_copies=False, shrunk_copies=False, subsampled_copies=False)
    plain = base.problems("numbers", None, seed=0)
    trial = BoundaryRecipe(n_problems=3, n_synthetic=2, noise_copies=False, shrunk_copies=False,
                           subsampled_copies=False).problems("numbers", None, seed=0)
    assert len(trial) == len(plain) + 3 and all("mixed boundary" in p.source for p in trial[-3:])
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(plain[:3], trial[-3:]))


def test_small_pool_unlabelled_recipe_fills_the_standard_small_pool_problems_and_nothing_else():
    from dataclasses import replace

    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.trials import SmallPoolUnlabelledRecipe

    shape = dict(n_problems=4, n_synthetic=0, small_pool_problems=4, small_pool_size=6, overlap_copies=False,
                 unlabelled_draw=3000)
    plain = Recipe(**shape).problems("numbers", None, seed=0)
    trial = SmallPoolUnlabelledRecipe(**shape, small_pool_unlabelled_share=0.5)
    mixed = trial.problems("numbers", None, seed=0)
    assert len(mixed) == len(plain)
    assert not any("unlabelled fill" in p.source for p in plain)
    # the standard problems and their copies come first and stay as they were
    unchanged = [i for i, p in enumerate(plain) if "few-shot" not in p.source]
    assert unchanged and all(np.array_equal(plain[i].X, mixed[i].X) and plain[i].source == mixed[i].source
                             for i in unchanged)
    small = [p for p in mixed if "few-shot" in p.source and "noise" not in p.source]
    assert ["unlabelled fill" in p.source for p in small] == [False, True, False, True]
    nothing_filled = replace(trial, small_pool_unlabelled_share=0.0).problems("numbers", None, seed=0)
    assert all(np.array_equal(a.X, b.X) and a.source == b.source for a, b in zip(plain, nothing_filled))
    with pytest.raises(ValueError, match="small_pool_problems"):
        replace(trial, small_pool_problems=0).problems("numbers", None, seed=0)
    with pytest.raises(ValueError, match="examples_per_class"):
        replace(trial, small_pool_problems=0, examples_per_class=6).problems("numbers", None, seed=0)
    with pytest.raises(ValueError, match="small_pool_unlabelled_share"):
        replace(trial, small_pool_unlabelled_share=2.0).problems("numbers", None, seed=0)


def test_shrink_min_factor_draws_the_shrunk_copies_less_far():
    from tdml_lib.experiments import Recipe

    shape = dict(n_problems=4, n_synthetic=4, noise_copies=True, subsampled_copies=True)
    plain = Recipe(**shape).problems("numbers", None, seed=0)
    gentle = Recipe(**shape, shrink_min_factor=0.9).problems("numbers", None, seed=0)
    assert len(gentle) == len(plain)
    for g, p in zip(gentle, plain):
        if " + shrunk " not in p.source:        # every other problem is the recipe's own
            assert g.source == p.source and np.array_equal(g.X, p.X)
        else:                                   # the same problems shrunk, each by a factor of at least 0.9
            assert g.source.rsplit(" + shrunk ", 1)[0] == p.source.rsplit(" + shrunk ", 1)[0]
            assert np.array_equal(g.labels, p.labels) and float(g.source.rsplit(" ", 1)[1]) >= 0.9
    assert sum(" + shrunk " in p.source for p in gentle) == 4
    with pytest.raises(ValueError, match="min_factor"):
        Recipe(**shape, shrink_min_factor=0.0).problems("numbers", None, seed=0)

def _blob_pool(seed=0, per_class=6, n_unlabelled=300, n_classes=4, dim=3):
    """A labelled pool and unlabelled points around the same well-separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 8, size=(n_classes, dim))
    pool_labels = np.repeat(np.arange(n_classes), per_class) + 10      # class ids need not start at 0
    pool = centres[pool_labels - 10] + rng.normal(0, 1, size=(len(pool_labels), dim))
    unlabelled = centres[rng.integers(0, n_classes, n_unlabelled)] + rng.normal(0, 1, size=(n_unlabelled, dim))
    return pool, pool_labels, unlabelled


def test_unlabelled_fill_problems_label_fills_by_their_nearest_pool_points():
    from tdml_lib.experiments.training import unlabelled_fill_problems

    pool, pool_labels, unlabelled = _blob_pool()
    kwargs = dict(points_per_class=(15, 25), n_clusters=(2, 4), k=3, source="blobs")
    probs = unlabelled_fill_problems(pool, pool_labels, unlabelled, 12, seed=0, **kwargs)
    again = unlabelled_fill_problems(pool, pool_labels, unlabelled, 12, seed=0, **kwargs)
    other = unlabelled_fill_problems(pool, pool_labels, unlabelled, 12, seed=1, **kwargs)
    assert all(np.array_equal(p.X, q.X) and np.array_equal(p.labels, q.labels) for p, q in zip(probs, again))
    assert not all(p.X.shape == q.X.shape and np.array_equal(p.X, q.X) for p, q in zip(probs, other))
    for p in probs:
        assert 2 <= p.n_clusters <= 4 and set(p.classes) <= {10, 11, 12, 13}
        assert p.source == "blobs (few-shot, unlabelled fill)"
        sizes = np.bincount(p.labels)
        assert sizes.max() <= 25 and sizes.min() >= 15   # plenty of unlabelled points near every centre
    # on a line, with the pool at two ends and the unlabelled points between them, the nearest
    # pool point decides: every fill below the middle joins the low class, every one above the
    # high one (standardising keeps the order of points on a line)
    line_pool = np.array([[0.0], [0.5], [1.0], [9.0], [9.5], [10.0]])
    line = np.linspace(1.5, 8.5, 200)[:, None]
    for p in unlabelled_fill_problems(line_pool, [0, 0, 0, 1, 1, 1], line, 5, (40, 60), (2, 2), k=1, seed=2):
        low = p.labels[p.X[:, 0].argmin()]
        assert p.X[p.labels == low, 0].max() < p.X[p.labels != low, 0].min()
        assert np.sum(p.labels == low) >= 40 and np.sum(p.labels != low) >= 40


def test_unlabelled_fill_problems_refuse_bad_input():
    from tdml_lib.experiments.training import unlabelled_fill_problems
    from tdml_lib.problems import few_shot_pool

    pool, pool_labels, unlabelled = _blob_pool()
    with pytest.raises(ValueError, match="k"):
        unlabelled_fill_problems(pool, pool_labels, unlabelled, 2, k=len(pool) + 1)
    with pytest.raises(ValueError, match="n_clusters"):
        unlabelled_fill_problems(pool, pool_labels, unlabelled, 2, n_clusters=(2, 5))
    with pytest.raises(ValueError, match="same number of points per class"):
        unlabelled_fill_problems(pool[1:], pool_labels[1:], unlabelled, 2, n_clusters=(2, 4))
    with pytest.raises(ValueError, match="same feature map"):
        unlabelled_fill_problems(pool, pool_labels, unlabelled[:, :2], 2, n_clusters=(2, 4))
    with pytest.raises(ValueError, match="pool_labels"):
        unlabelled_fill_problems(pool, pool_labels[:-1], unlabelled, 2, n_clusters=(2, 4))
    bad = unlabelled.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="unlabelled"):
        unlabelled_fill_problems(pool, pool_labels, bad, 2, n_clusters=(2, 4))
    labels = np.repeat([0, 1, 2], [5, 9, 7])
    drawn = few_shot_pool(labels, 4, seed=3)
    assert np.array_equal(np.bincount(labels[drawn]), [4, 4, 4]) and len(set(drawn)) == 12
    assert np.array_equal(drawn, few_shot_pool(labels, 4, seed=3))
    with pytest.raises(ValueError, match="has 5 images"):
        few_shot_pool(labels, 6)


def test_unlabelled_share_fills_every_other_few_shot_problem_and_nothing_else():
    from dataclasses import replace

    from tdml_lib.experiments import Recipe

    base = Recipe(n_problems=4, n_synthetic=2, examples_per_class=6, interpolate_to=(20, 30),
                  overlap_copies=True)

    def identical(a, b):
        return len(a) == len(b) and all(p.source == q.source and np.array_equal(p.X, q.X)
                                        and np.array_equal(p.labels, q.labels) for p, q in zip(a, b))

    plain = base.problems("numbers", None, seed=0)
    mixed_recipe = replace(base, unlabelled_share=0.5, unlabelled_draw=3000)
    mixed = mixed_recipe.problems("numbers", None, seed=0)
    assert len(mixed) == len(plain)
    own = mixed[:4]
    assert ["unlabelled fill" in p.source for p in own] == [False, True, False, True]
    assert identical(own, mixed_recipe.own_problems("numbers", None, seed=0))
    assert all(20 <= n <= 30 for p in own[1::2] for n in np.bincount(p.labels))
    # the synthetic problems are the base recipe's (their copies share a generator with the
    # domain's copies, so they differ when the domain's problems do)
    assert identical([p for p in mixed if p.source.startswith("synthetic") and " + " not in p.source],
                     [p for p in plain if p.source.startswith("synthetic") and " + " not in p.source])
    assert identical(mixed, mixed_recipe.problems("numbers", None, seed=0))
    everything = replace(mixed_recipe, unlabelled_share=1.0).own_problems("numbers", None, seed=0)
    assert all("unlabelled fill" in p.source for p in everything)
    with pytest.raises(ValueError, match="examples_per_class and interpolate_to"):
        replace(base, interpolate_to=None, unlabelled_share=0.5).problems("numbers", None, seed=0)
    with pytest.raises(ValueError, match="unlabelled_share"):
        replace(base, n_synthetic=0, unlabelled_share=1.5).problems("numbers", None, seed=0)

def test_interpolation_span_keeps_the_class_spread():
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments.training import VARIANCE_PRESERVING_SPAN, interpolated_copies
    from tdml_lib.problems import Problem

    rng = np.random.default_rng(0)
    # one feature, so that standardising again (an affine map) leaves this ratio alone
    X = np.concatenate([rng.normal(0, 1, 20), rng.normal(10, 1, 20)])[:, None]
    probs = [Problem(X, np.repeat([0, 1], 20))]

    def spread(X, labels):   # within-class variance over the squared distance of the two centroids
        return np.mean([X[labels == c].var() for c in (0, 1)]) / np.ptp([X[labels == c].mean() for c in (0, 1)]) ** 2

    plain = interpolated_copies(probs, (400, 400), seed=1)[0]
    wide = interpolated_copies(probs, (400, 400), seed=1, span=VARIANCE_PRESERVING_SPAN)[0]
    # plain interpolation shrinks the added points' spread to two thirds; the variance-keeping span keeps it
    raw = spread(X, probs[0].labels)
    assert spread(plain.X, plain.labels) < 0.8 * raw
    assert abs(spread(wide.X, wide.labels) - raw) < 0.15 * raw
    assert np.array_equal(plain.labels, wide.labels)   # same draws but the positions
    with pytest.raises(ValueError, match="span"):
        interpolated_copies(probs, (30, 30), span=-0.1)
    kwargs = dict(n_problems=2, n_synthetic=0, noise_copies=False, shrunk_copies=False, subsampled_copies=False,
                  examples_per_class=5, interpolate_to=(30, 30))
    wide_problems = Recipe(**kwargs, interpolation_span=VARIANCE_PRESERVING_SPAN).problems("numbers", None, 0)
    plain_problems = Recipe(**kwargs).problems("numbers", None, 0)
    assert all(np.array_equal(a.labels, b.labels) for a, b in zip(wide_problems, plain_problems))
    assert not all(np.array_equal(a.X, b.X) for a, b in zip(wide_problems, plain_problems))


def test_tail_average_trains_the_same_critic_and_averages_its_last_epochs():
    import torch

    from tdml_lib.critic import CriticConfig, fit_critic
    from tdml_lib.experiments.trials import fit_tail_averaged
    from tdml_lib.problems import synthetic_problems

    cfg = CriticConfig(n_negatives=4, n_degenerate=2, epochs=6, problems_per_step=3, gae_epochs=1,
                       gae_clusterings=2, hidden=8, k=5)
    probs = synthetic_problems(5, n_clusters=(2, 3), points_per_class=(12, 20), n_features=(2, 4), seed=1)
    plain = fit_critic(probs, cfg, seed=2, device="cpu", progress=False)[0]
    trained, averaged = fit_tail_averaged(probs, cfg, seed=2, average_last=3)
    # the first of the pair is the critic fit_critic trains without averaging, bit for bit
    for name, weight in plain.net.state_dict().items():
        assert torch.equal(weight, trained.net.state_dict()[name]), name
    assert not torch.equal(averaged.net.net[0].weight, trained.net.net[0].weight)
    assert averaged.metadata["tail_average_epochs"] == 3 and trained.metadata["config"]["epochs"] == 6
    p = probs[0]
    scores = averaged.score_many(p.X, [p.labels, np.zeros_like(p.labels)])
    assert np.all(np.isfinite(scores))
    # averaging one epoch is the trained critic itself
    one = fit_tail_averaged(probs, cfg, seed=2, average_last=1)
    assert all(torch.equal(a, b) for a, b in zip(one[0].net.state_dict().values(), one[1].net.state_dict().values()))
    for bad in (0, 7):
        with pytest.raises(ValueError, match="average_last"):
            fit_tail_averaged(probs, cfg, seed=2, average_last=bad)


def test_average_tail_reads_the_weights_and_never_steers_training(tmp_path):
    """The tail average is a by-product of the run: with it on, the weights after the last
    epoch (saved in the checkpoint) are those of the run without it, bit for bit, and a
    run resumed from its checkpoint restores the running average too."""
    from dataclasses import replace

    import torch

    from tdml_lib.checkpoint import Checkpointer
    from tdml_lib.critic import CriticConfig, fit_critic, train_critic_net
    from tdml_lib.problems import synthetic_problems

    cfg = CriticConfig(n_negatives=4, n_degenerate=2, epochs=6, problems_per_step=3, gae_epochs=1,
                       gae_clusterings=2, hidden=8, k=5)
    averaging = replace(cfg, average_tail=0.5)
    probs = synthetic_problems(5, n_clusters=(2, 3), points_per_class=(12, 20), n_features=(2, 4), seed=1)
    plain = fit_critic(probs, cfg, seed=2, device="cpu", progress=False)[0]
    path = tmp_path / "averaged.ckpt"
    averaged = fit_critic(probs, averaging, seed=2, device="cpu", progress=False, checkpoint=path)[0]
    last_epoch = Checkpointer(path, config={**averaging.as_dict(), "seed": 2}).load()["net"]
    assert all(torch.equal(w, last_epoch[k]) for k, w in plain.net.state_dict().items())
    assert not torch.equal(averaged.net.net[0].weight, plain.net.net[0].weight)
    # resuming with nothing left to train gives the saved state, average included
    path = tmp_path / "critic.ckpt"
    critic, _, ts = fit_critic(probs, replace(cfg, epochs=0), seed=2, device="cpu", progress=False)
    train_critic_net(critic, ts, averaging, seed=2, progress=False, checkpoint=path, checkpoint_every=2)
    first = {k: v.clone() for k, v in critic.net.state_dict().items()}
    train_critic_net(critic, ts, averaging, seed=2, progress=False, checkpoint=path, checkpoint_every=2)
    assert all(torch.equal(first[k], v) and torch.equal(v, averaged.net.state_dict()[k])
               for k, v in critic.net.state_dict().items())
    with pytest.raises(ValueError, match="average_tail"):
        CriticConfig(average_tail=1.5)


def test_compare_trial_flags_belong_to_their_own_trial():
    import argparse
    import importlib.util

    from tdml_lib.experiments.training import VARIANCE_PRESERVING_SPAN
    spec = importlib.util.spec_from_file_location("compare_trial", LIB.parent / "scripts" / "compare_trial.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def args(trial, **given):
        flags = {name: None for names in script.TRIAL_FLAGS.values() for name in names}
        return argparse.Namespace(trial=trial, **{**flags, **given})

    assert set(script.TRIAL_RECIPES) == set(script.TRIAL_FLAGS)   # every trial has its recipe and its flags
    assert script.trial_changes(args("boundary")) == {}
    assert script.trial_changes(args("boundary", boundary_share=[0.1, 0.2])) == {"boundary_share": (0.1, 0.2)}
    assert script.trial_changes(args("spread")) == {"interpolation_span": VARIANCE_PRESERVING_SPAN}
    assert script.trial_changes(args("spread", span=0.5)) == {"interpolation_span": 0.5}
    assert script.trial_changes(args("gentle-shrink", shrink_min_factor=0.4)) == {"shrink_min_factor": 0.4}
    assert script.trial_changes(args("unlabelled")) == {"unlabelled_share": 0.5}
    assert script.trial_changes(args("unlabelled", unlabelled_share=1.0)) == {"unlabelled_share": 1.0}
    assert script.trial_changes(args("small-pool-unlabelled")) == {}          # the class's own default
    assert script.trial_changes(args("small-pool-unlabelled", small_pool_share=1.0)) == {"small_pool_unlabelled_share": 1.0}
    with pytest.raises(SystemExit, match="--unlabelled-share belongs to --trial unlabelled"):
        script.trial_changes(args("small-pool-unlabelled", unlabelled_share=0.5))
    with pytest.raises(SystemExit, match="--span belongs to --trial spread"):
        script.trial_changes(args("boundary", span=0.5))
    with pytest.raises(SystemExit, match="--boundary-reach belongs to --trial boundary"):
        script.trial_changes(args("gentle-shrink", boundary_reach=[0.1, 0.3]))


def test_compare_trial_recipe_changes_keep_each_fields_type():
    import importlib.util

    from tdml_lib.experiments import Recipe
    spec = importlib.util.spec_from_file_location("compare_trial", LIB.parent / "scripts" / "compare_trial.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recipe = Recipe(overlap_copies=True)
    changes = script.recipe_changes(["overlap_pairs=3", "overlap_pull=[0.4, 1]", "max_noise=2"], recipe)
    assert changes == {"overlap_pairs": 3, "overlap_pull": (0.4, 1.0), "max_noise": 2.0}
    assert type(changes["overlap_pull"]) is tuple and type(changes["max_noise"]) is float
    for bad, says in (("overlap_pairs=3.5", "type"), ("overlap_pull=[0.4]", "type"), ("no_such=1", "FIELD"),
                      ("overlap_pairs", "FIELD"), ("overlap_pairs=three", "JSON")):
        with pytest.raises(SystemExit, match=says):
            script.recipe_changes([bad], recipe)


def test_wrong_side_share_counts_points_nearer_another_centroid():
    from tdml_lib.experiments.truth_overlap import wrong_side_share
    from tdml_lib.problems import Problem

    X = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], dtype=np.float32)
    assert wrong_side_share(Problem(X, np.array([0, 0, 0, 1, 1, 1]), "two blobs")) == 0.0
    # one point of class 0 sits inside class 1: nearer class 1's centroid than its own
    X2 = np.vstack([X, [[10, 10.5]]]).astype(np.float32)
    share = wrong_side_share(Problem(X2, np.array([0, 0, 0, 1, 1, 1, 0]), "one stray"))
    assert share == pytest.approx(1 / 7)
    # invariant to the order of the points and to a common scale
    perm = np.random.default_rng(0).permutation(7)
    assert wrong_side_share(Problem(3 * X2[perm], np.array([0, 0, 0, 1, 1, 1, 0])[perm], "moved")) == share


def test_recipe_part_names_the_last_step_of_a_source():
    from tdml_lib.experiments.truth_overlap import recipe_part

    assert recipe_part("numbers (train, features: PCA on numbers)") == "domain problems"
    assert recipe_part("numbers + interpolated") == "filled-up problems"
    assert recipe_part("numbers + interpolated + noise 0.31") == "noisy copies"
    assert recipe_part("synthetic:moons") == "synthetic problems"
    assert recipe_part("synthetic:moons + shrunk 0.40") == "shrunk copies"
    assert recipe_part("fashion + overlapping") == "overlapping copies"
    assert recipe_part("numbers (few-shot, unlabelled fill)") == "filled with unlabelled images"
    assert recipe_part("numbers (few-shot, unlabelled fill) + noise 0.20") == "noisy copies"


def test_boundary_move_raises_agreement_where_a_stray_sits_among_the_other_class():
    """A class-0 image inside class 1's blob: moving it to class 1 raises its neighbours'
    agreement. A tight clump of class 0 nearer class 1's centre (a filled-up class): moving
    one of its points lowers it. Point order, scale and one class are handled."""
    from tdml_lib.experiments.truth_overlap import boundary_move_agreement_gain
    from tdml_lib.problems import Problem

    rng = np.random.default_rng(0)
    blob0, blob1 = rng.normal(0, 0.5, (20, 2)), rng.normal(0, 0.5, (20, 2)) + [6, 0]
    strays = np.array([[6.0, 0.1], [6.0, -0.1]])
    real = Problem(np.concatenate([blob0, blob1, strays]), np.array([0] * 20 + [1] * 20 + [0, 0]), "stray")
    gain = boundary_move_agreement_gain(real, seed=3)
    assert gain > 0
    perm = rng.permutation(real.n_points)
    shuffled = Problem(5 * real.X[perm] + 2, real.labels[perm], "stray, moved")
    assert boundary_move_agreement_gain(shuffled, seed=3) == pytest.approx(gain, abs=0.02)
    clump = rng.normal(0, 0.05, (12, 2)) + [4, 0]
    filled = Problem(np.concatenate([blob0, clump, blob1]), np.array([0] * 32 + [1] * 20), "clump")
    assert boundary_move_agreement_gain(filled, seed=3) < 0
    one = Problem(blob0, np.zeros(20, dtype=int), "one class")
    assert np.isnan(boundary_move_agreement_gain(one))


def test_truth_overlap_measures_each_part_of_a_recipe_and_the_tests(monkeypatch):
    from tdml_lib import features
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments import truth_overlap as module
    from tdml_lib.problems import synthetic_problems

    fitted = []
    monkeypatch.setattr(features, "fit_feature_map", lambda domain, **k: fitted.append(domain) or domain)
    monkeypatch.setattr(module, "evaluation_problems", lambda test, n, seeds, fmap: synthetic_problems(n, seed=7))
    recipe = Recipe(n_problems=0, n_synthetic=6, noise_copies=False)
    table = module.truth_overlap({"synthetic": recipe}, test_domains=("letters",), n_problems=4)
    assert set(table["set"]) == {"training: synthetic", "test: letters (strict)", "test: letters (standard)"}
    parts = table[table["set"] == "training: synthetic"].part.value_counts().to_dict()
    assert parts == {"synthetic problems": 4, "shrunk copies": 2, "subsampled copies": 2}   # n_problems, not 6
    assert fitted == ["numbers", "letters"] and table.wrong_side.between(0, 1).all()
    assert table.agreement_gain.between(-1, 1).all()


def test_truth_overlap_shows_a_filling_recipes_problems_as_drawn_before_filling(monkeypatch):
    """A few-shot recipe's problems are measured twice: as drawn (the very draw, same seed)
    and filled up; a recipe that fills nothing has no such part."""
    from tdml_lib import features
    from tdml_lib.experiments import Recipe
    from tdml_lib.experiments import training
    from tdml_lib.experiments import truth_overlap as module
    from tdml_lib.problems import synthetic_problems

    draws = []

    def fake_training_problems(domain, n, seed=0, **kwargs):
        draws.append((domain, n, seed, kwargs.get("examples_per_class")))
        return synthetic_problems(n, points_per_class=(4, 8), seed=seed)

    monkeypatch.setattr(features, "fit_feature_map", lambda domain, **k: domain)
    monkeypatch.setattr(module, "evaluation_problems", lambda test, n, seeds, fmap: synthetic_problems(n, seed=7))
    monkeypatch.setattr(training, "training_problems", fake_training_problems)
    few_shot = Recipe(n_problems=5, n_synthetic=0, noise_copies=False, shrunk_copies=False, subsampled_copies=False,
                      examples_per_class=8, interpolate_to=(10, 12))
    table = module.truth_overlap({"few-shot": few_shot, "plain": Recipe(n_problems=0, n_synthetic=3)},
                                 test_domains=("letters",), protocols=("strict",), n_problems=3, seed=4)
    parts = table.groupby("set").part.value_counts().to_dict()
    assert parts[("training: few-shot", module.AS_DRAWN)] == parts[("training: few-shot", "filled-up problems")] == 3
    assert not (table[table["set"] == "training: plain"].part == module.AS_DRAWN).any()
    assert draws[0] == draws[1] == ("numbers", 3, 4, 8)   # the recipe's own draw, then the same one again
