"""Problem sampling: seeded, honours K and sizes, clear errors."""
import numpy as np
import pytest

from tdml_lib import problems


@pytest.fixture
def source():
    rng = np.random.default_rng(0)
    return rng.normal(size=(1000, 5)), np.repeat(np.arange(10), 100)


def test_seeded_determinism(source):
    a = problems.sample_problems(*source, 3, seed=4)
    b = problems.sample_problems(*source, 3, seed=4)
    c = problems.sample_problems(*source, 3, seed=5)
    assert all(np.array_equal(x.X, y.X) and np.array_equal(x.labels, y.labels) for x, y in zip(a, b))
    assert not np.array_equal(a[0].X, c[0].X) or not np.array_equal(a[1].X, c[1].X)


def test_k_and_sizes_honoured(source):
    for p in problems.sample_problems(*source, 5, n_clusters=(2, 4), points_per_class=(7, 9), seed=1):
        assert 2 <= p.n_clusters <= 4
        assert np.all((np.bincount(p.labels) >= 7) & (np.bincount(p.labels) <= 9))
        assert np.allclose(p.X.mean(0), 0, atol=1e-5)
    p = problems.sample_problems(*source, 1, n_clusters=3, points_per_class=10, seed=0)[0]
    assert p.n_clusters == 3 and p.n_points == 30


@pytest.mark.parametrize("kwargs,match", [
    ({"n_clusters": (1, 3)}, "n_clusters"), ({"n_clusters": (4, 2)}, "n_clusters"),
    ({"n_clusters": 11}, "only 10 classes"), ({"points_per_class": (5, 200)}, "only 100 examples"),
    ({"points_per_class": 0}, "points_per_class")])
def test_bad_arguments(source, kwargs, match):
    with pytest.raises(ValueError, match=match):
        problems.sample_problems(*source, 2, **kwargs)


@pytest.mark.parametrize("family", problems.SYNTHETIC_FAMILIES)
def test_synthetic_families(family):
    p = problems.synthetic_problem(family, n_clusters=3, points_per_class=(10, 20), n_features=7, seed=0)
    assert p.n_features == 7 and p.n_clusters == 3 and p.source == f"synthetic:{family}"
    with pytest.raises(ValueError, match="unknown family"):
        problems.synthetic_problem("checkerboard")


@pytest.mark.parametrize("family", ["moons", "circles", "spirals"])
def test_non_convex_families_defeat_kmeans(family):
    """The families chapter 4 tests on are ones where k-means is known to fail: its
    accuracy stays well below 1 (an earlier moons generator set the moons apart, and
    k-means solved it)."""
    from sklearn.cluster import KMeans

    from tdml_lib.metrics import clustering_accuracy

    accs = []
    for seed in range(4):
        p = problems.synthetic_problem(family, n_clusters=2, points_per_class=(150, 200), seed=seed)
        accs.append(clustering_accuracy(p.labels, KMeans(2, n_init=3, random_state=0).fit_predict(p.X)))
    assert np.mean(accs) < 0.9


def test_varied_density_defeats_kmeans_yet_is_recoverable():
    """Three clusters of uneven spread: k-means cuts into the wide one, while a model that
    allows unequal spreads finds the truth (an earlier generator overlapped the blobs so
    much that no method could, and k-means barely failed there)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    from tdml_lib.metrics import clustering_accuracy

    kmeans, mixture = [], []
    for seed in range(6):
        p = problems.synthetic_problem("varied_density", n_clusters=3, points_per_class=(150, 200), seed=seed)
        kmeans.append(clustering_accuracy(p.labels, KMeans(3, n_init=3, random_state=0).fit_predict(p.X)))
        mixture.append(clustering_accuracy(p.labels, GaussianMixture(3, n_init=10, random_state=0).fit_predict(p.X)))
    assert np.mean(kmeans) < 0.92
    assert np.mean(mixture) > 0.97


def test_few_shot_pool_is_small(source):
    probs = problems.few_shot_problems(*source, 4, examples_per_class=9, seed=0)
    assert all(np.bincount(p.labels).max() <= 9 for p in probs)
    assert all("few-shot" in p.source for p in probs)


def _class_coded(source):
    _, y = source
    return np.c_[y, np.random.default_rng(1).normal(size=len(y))], y   # column 0 = the class id


def test_classes_restriction_and_recorded_source(source):
    X, y = _class_coded(source)
    probs = problems.sample_problems(X, y, 6, n_clusters=(2, 3), points_per_class=5, seed=2,
                                     source="toy", classes=[1, 4, 7])
    for p in probs:
        assert set(p.classes) <= {1, 4, 7} and len(p.classes) == p.n_clusters and p.source == "toy"
        # every cluster is one source class: column 0 is constant within a cluster
        assert all(len(np.unique(p.X[p.labels == j, 0])) == 1 for j in range(p.n_clusters))


def test_classes_are_in_label_order(source):
    X, y = _class_coded(source)
    for p in problems.sample_problems(X, y, 6, n_clusters=3, points_per_class=5, seed=2, classes=[1, 4, 7]):
        # standardised column 0 keeps the order of the class ids
        level = [p.X[p.labels == j, 0][0] for j in range(p.n_clusters)]
        assert np.argsort(level).tolist() == np.argsort(p.classes).tolist()


@pytest.mark.parametrize("args,kwargs,match", [
    ((np.zeros((10, 2)), np.zeros(9)), {}, "must match"),
    ((np.zeros((10, 2)), np.zeros(10)), {"n_problems": 0}, "n_problems"),
])
def test_bad_sources(args, kwargs, match):
    kwargs = {"n_problems": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        problems.sample_problems(*args, kwargs.pop("n_problems"), **kwargs)


def test_synthetic_bad_arguments_and_determinism():
    with pytest.raises(ValueError, match="n_clusters"):
        problems.synthetic_problem("blobs", n_clusters=1)
    with pytest.raises(ValueError, match="n_features"):
        problems.synthetic_problem("blobs", n_features=1)
    n = len(problems.SYNTHETIC_FAMILIES)
    a = problems.synthetic_problems(n, n_features=(2, 4), seed=3)
    b = problems.synthetic_problems(n, n_features=(2, 4), seed=3)
    assert [p.source for p in a] == [f"synthetic:{f}" for f in problems.SYNTHETIC_FAMILIES]
    assert all(np.array_equal(x.X, y.X) for x, y in zip(a, b))


def test_problem_validates_its_inputs():
    with pytest.raises(ValueError, match="entries"):
        problems.Problem(np.zeros((4, 2)), [0, 1, 0])
    p = problems.Problem(np.zeros((4, 2)), [3, 3, 7, 7])
    assert p.labels.tolist() == [0, 0, 1, 1] and p.n_clusters == 2


def test_problem_renumbers_classes_with_labels():
    """classes follow the labels' renumbering (ids in order of first appearance)."""
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    p = problems.Problem(X, np.array([2, 0, 2, 1]), "toy", classes=(7, 8, 9))
    assert p.labels.tolist() == [0, 1, 0, 2] and p.classes == (9, 7, 8)
    with pytest.raises(ValueError, match="classes"):
        problems.Problem(X, np.array([3, 0, 3, 1]), "toy", classes=(7, 8, 9))
