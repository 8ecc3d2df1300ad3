"""The probe: a linear pairwise ranker on hand-made statistics."""
import numpy as np
import pytest

from tdml_lib import evaluate
from tdml_lib.probe import ProbeScorer, statistics
from tdml_lib.problems import synthetic_problems


@pytest.fixture(scope="module")
def fitted():
    train = synthetic_problems(12, families=("blobs", "anisotropic"), n_clusters=(2, 4), points_per_class=(20, 40),
                               seed=0)
    return ProbeScorer().fit(train, n_negatives=8, n_degenerate=3, seed=0)


def test_probe_ranks_truth_first_more_often_than_chance(fitted):
    test = synthetic_problems(8, families=("blobs",), n_clusters=(2, 4), points_per_class=(20, 40), seed=99)
    res = evaluate.evaluate_scorer(fitted, evaluate.evaluation_sets(test, n_negatives=7, seed=0), progress=False)
    assert res.best > 100 / 8 * 2      # chance is 1 in 8


def test_probe_is_deterministic_and_label_name_free(fitted):
    p = synthetic_problems(1, seed=5)[0]
    again = ProbeScorer().fit(synthetic_problems(12, families=("blobs", "anisotropic"), n_clusters=(2, 4),
                                                 points_per_class=(20, 40), seed=0), 8, 3, seed=0)
    assert np.allclose(fitted.coef_, again.coef_)
    assert fitted.score(p.X, p.labels) == pytest.approx(fitted.score(p.X, p.labels * 5 + 2))


def test_statistics_shape_and_errors(fitted):
    p = synthetic_problems(1, seed=3)[0]
    f = statistics(p.X, [p.labels, np.zeros(p.n_points, int)])
    assert f.shape[0] == 2 and np.all(np.isfinite(f))
    with pytest.raises(ValueError, match="not fitted"):
        ProbeScorer().score(p.X, p.labels)
    with pytest.raises(ValueError, match="at least one"):
        ProbeScorer().fit([])
