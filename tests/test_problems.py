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
        problems.synthetic_problem("spirals")


def test_few_shot_pool_is_small(source):
    probs = problems.few_shot_problems(*source, 4, examples_per_class=9, seed=0)
    assert all(np.bincount(p.labels).max() <= 9 for p in probs)
    assert all("few-shot" in p.source for p in probs)
