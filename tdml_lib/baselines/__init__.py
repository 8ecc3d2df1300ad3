"""The two baselines from the paper's seeds, rebuilt (chapters 6 and 7).

* :func:`selective_pseudo_label_clustering` -- Selective Pseudo-Label Clustering
  (Mahon & Lukasiewicz, KI 2021), :mod:`tdml_lib.baselines.spc`;
* :func:`cbswr` -- CBSwR, unsupervised deep metric learning meets deep clustering
  (Nguyen et al., BMVC 2020), :mod:`tdml_lib.baselines.cbswr`;
* :func:`kmeans_labels` is the reference row of the comparison tables; running a
  baseline and scoring it is an experiment (:func:`tdml_lib.experiments.evaluate_baseline`).

Note: ``tdml_lib.baselines.cbswr`` is the *function*; the module's other names are
imported with ``from tdml_lib.baselines.cbswr import rim_loss`` (or
``importlib.import_module("tdml_lib.baselines.cbswr")``).
"""
from __future__ import annotations

from .cbswr import cbswr, embedding_nmi, recall_at_k
from .common import BaselineResult, kmeans_labels, prepare_inputs
from .spc import align_labelings, ensemble_vote, selective_pseudo_label_clustering

__all__ = ["BaselineResult", "align_labelings", "cbswr", "embedding_nmi", "ensemble_vote",
           "kmeans_labels", "prepare_inputs", "recall_at_k",
           "selective_pseudo_label_clustering"]
