"""tdml_lib: the library behind the executable book on *Transferable Deep Metric
Learning for Clustering* (Alami Chehboune, Kaddah, Read; IDA 2023).

Blocks, as in the paper's Figure 4:
  * B: :mod:`tdml_lib.graphs` and :mod:`tdml_lib.gae` turn a clustering into a graph and
    an embedding vector;
  * C: :mod:`tdml_lib.critic` is the learned reward R(X, labels);
  * A: :mod:`tdml_lib.agent` finds the clustering that maximises R
    (:func:`tdml_lib.cluster`), also as a scikit-learn estimator
    (:class:`tdml_lib.TDMLClustering`, :mod:`tdml_lib.estimator`).

Submodules are imported lazily, so ``import tdml_lib`` stays fast.
"""
from __future__ import annotations

from ._lazy import make_lazy

__version__ = "0.1.0"

_LAZY = {
    # name -> (module, attribute)
    "Problem": ("problems", "Problem"),
    "sample_problems": ("problems", "sample_problems"),
    "synthetic_problem": ("problems", "synthetic_problem"),
    "synthetic_problems": ("problems", "synthetic_problems"),
    "clustering_accuracy": ("metrics", "clustering_accuracy"),
    "nmi": ("metrics", "nmi"),
    "ari": ("metrics", "ari"),
    "best_and_topk": ("metrics", "best_and_topk"),
    "score_clusterings": ("metrics", "score_clusterings"),
    "resolve_device": ("device", "resolve_device"),
    "ClusteringCritic": ("critic", "ClusteringCritic"),
    "load_critic": ("critic", "load_critic"),
    "load_reward": ("critic", "load_reward"),
    "CriticEnsemble": ("critic", "CriticEnsemble"),
    "cluster": ("agent", "cluster"),
    "TDMLClustering": ("estimator", "TDMLClustering"),
}

_SUBMODULES = {"agent", "baselines", "candidates", "critic", "data", "device", "estimator", "evaluate", "experiments",
               "features", "gae", "graphs", "io", "metrics", "plotting", "probe", "problems", "runner",
               "validation", "bench", "checkpoint", "reference", "findings"}


make_lazy(__name__, _LAZY, _SUBMODULES)
