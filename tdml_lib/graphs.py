"""Block B, part 1: a clustering becomes a graph.

Nodes are the points; edges are the k nearest neighbours of each point (computed once
per point set, since only labels change between candidate clusterings); each edge is
marked same-cluster or not and carries its distance. Node features are geometric and
dimension-free (DESIGN.md "Graph (block B)"):

====================  =================================================================
``d_own``             distance to own centroid
``d_other``           distance to the nearest other centroid
``a``                 root mean squared distance to the own cluster (silhouette's a(i))
``b``                 the same to the nearest other cluster (silhouette's b(i))
``s``                 silhouette-like (b - a) / max(a, b); 0 when there is one cluster
``density``           mean distance to the k nearest neighbours (label-free)
``size``              own cluster's share of the points
``agree``             share of the k nearest neighbours in the own cluster
``agree_near``        the same for the k/2 nearest
====================  =================================================================

Replication choices (the poster gives none of these):

* Distances are divided by the point set's RMS pairwise distance
  ``sqrt(2 * mean ||x_i - mean(x)||^2)`` instead of the median distance of DESIGN.md:
  exact, O(n d), and invariant to point order, translation and scale.
* a(i) and b(i) use *squared* distances, because the mean squared distance to a
  cluster is ``||x_i - c||^2 + var(cluster)``: O(n K d) per clustering instead of the
  O(n^2) of the true silhouette, so that thousands of clusterings are cheap.

Everything is batched: many clusterings of one point set share one :class:`PointSet`,
and their features come from a handful of tensor operations, with no Python loop over
points. Explained in chapter 2.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .device import resolve_device
from .validation import scaled_points

NODE_FEATURES = ("d_own", "d_other", "a", "b", "s", "density", "size", "agree", "agree_near")
DEFAULT_K = 10
_CDIST_CHUNK = 4096


@dataclass
class PointSet:
    """The label-independent part of the graph of a point set, computed once.

    Attributes:
        X: (n, d) points, centred and divided by ``scale``.
        knn: (n, k) indices of each point's k nearest neighbours (self excluded).
        knn_dist: (n, k) their distances (in units of ``scale``).
        density: (n,) mean distance to the k nearest neighbours.
        scale: the RMS pairwise distance of the raw points.
    """

    X: torch.Tensor
    knn: torch.Tensor
    knn_dist: torch.Tensor
    density: torch.Tensor
    scale: float

    @property
    def n_points(self) -> int:
        return int(self.X.shape[0])

    @property
    def k(self) -> int:
        return int(self.knn.shape[1])

    @property
    def device(self) -> torch.device:
        return self.X.device


def knn_graph(X: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours by ``torch.cdist`` + ``topk``, in row chunks so that
    memory stays O(chunk * n) (PyG's ``knn_graph`` needs torch-cluster, not installed
    on CPU-only set-ups). Returns (indices, distances), both (n, k), self excluded."""
    n = X.shape[0]
    idx, dist = [], []
    for start in range(0, n, _CDIST_CHUNK):
        rows = X[start:start + _CDIST_CHUNK]
        d = torch.cdist(rows, X)
        d[torch.arange(rows.shape[0], device=X.device), torch.arange(start, start + rows.shape[0],
                                                                        device=X.device)] = float("inf")
        dd, ii = d.topk(k, dim=1, largest=False)
        idx.append(ii)
        dist.append(dd)
    return torch.cat(idx), torch.cat(dist)


def prepare_point_set(X: object, k: int = DEFAULT_K, device: str | torch.device | None = "auto") -> PointSet:
    """Compute the label-independent part of the graph of ``X`` (n, d).

    Args:
        X: the point set; any number of features.
        k: neighbours per point (capped at n - 1).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Raises:
        ValueError: bad X (see :func:`tdml_lib.validation.check_points`).
    """
    Xs, _, scale = scaled_points(X)   # centred and scaled in float64, then float32
    dev = resolve_device(device)
    Xt = torch.as_tensor(Xs, device=dev)
    k = int(min(k, Xt.shape[0] - 1))
    knn, knn_dist = knn_graph(Xt, k)
    return PointSet(Xt, knn, knn_dist, knn_dist.mean(1), scale)


def as_label_tensor(labelings: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, n) int64 tensor on ``device`` from canonical label vectors."""
    return torch.as_tensor(np.asarray(labelings) if not torch.is_tensor(labelings) else labelings,
                           dtype=torch.long, device=device)


@dataclass
class ClusteringFeatures:
    """Label-dependent quantities of a batch of B clusterings of one point set."""

    x: torch.Tensor          # (B, n, F) node features, NODE_FEATURES order
    onehot: torch.Tensor     # (B, n, K) cluster membership
    counts: torch.Tensor     # (B, K) cluster sizes (0 for unused ids)
    same: torch.Tensor       # (B, n, k) bool, neighbour in the same cluster


def clustering_features(ps: PointSet, labels: torch.Tensor) -> ClusteringFeatures:
    """Node features of B clusterings ``labels`` (B, n) of the point set ``ps``."""
    B, n = labels.shape
    K = int(labels.max()) + 1
    onehot = F.one_hot(labels, K).to(ps.X.dtype)                       # (B, n, K)
    counts = onehot.sum(1)                                             # (B, K)
    present = counts > 0
    centroids = onehot.transpose(1, 2) @ ps.X / counts.clamp(min=1)[..., None]   # (B, K, d)
    x_sq = (ps.X ** 2).sum(1)                                          # (n,)
    c_sq = (centroids ** 2).sum(-1)                                    # (B, K)
    sq_dist = (x_sq[None, :, None] - 2 * ps.X @ centroids.transpose(1, 2)
               + c_sq[:, None, :]).clamp(min=0)                         # (B, n, K)
    # mean squared distance of a cluster's points to its centroid (its variance)
    variance = (onehot * sq_dist).sum(1) / counts.clamp(min=1)         # (B, K)
    mean_sq = sq_dist + variance[:, None, :]                           # (B, n, K)
    own = labels[..., None]
    d_own = sq_dist.gather(2, own).squeeze(2).sqrt()
    a = mean_sq.gather(2, own).squeeze(2).sqrt()
    other = onehot.bool() | ~present[:, None, :]                       # own or unused -> excluded
    has_other = (present.sum(1) > 1)[:, None].expand(B, n)
    inf = torch.tensor(float("inf"), device=ps.device, dtype=ps.X.dtype)
    d_other = torch.where(has_other, sq_dist.masked_fill(other, inf).amin(2).sqrt(), d_own)
    b = torch.where(has_other, mean_sq.masked_fill(other, inf).amin(2).sqrt(), a)
    s = torch.where(has_other, (b - a) / torch.maximum(a, b).clamp(min=1e-12), torch.zeros_like(a))
    size = counts.gather(1, labels) / n
    same = labels[:, ps.knn] == labels[..., None]                      # (B, n, k)
    near = max(1, ps.k // 2)
    agree = same.to(ps.X.dtype).mean(2)
    agree_near = same[..., :near].to(ps.X.dtype).mean(2)
    density = ps.density[None].expand(B, n)
    x = torch.stack([d_own, d_other, a, b, s, density, size, agree, agree_near], dim=2)
    return ClusteringFeatures(x, onehot, counts, same)


def edge_batch(ps: PointSet, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of B clustering graphs of one point set as one disjoint union.

    Messages flow from each neighbour to the point (PyG's source -> target). An edge's
    weight is ``exp(-distance)`` when it joins two points of the same cluster and 0
    otherwise, so the GCN propagates only inside clusters while the kNN structure, and
    with it ``edge_index``, stays the same for every clustering of the point set.

    Returns:
        edge_index (2, B*n*k) and edge_weight (B*n*k,).
    """
    B, n, k = same.shape
    src = ps.knn.reshape(-1)
    dst = torch.arange(n, device=ps.device).repeat_interleave(k)
    offsets = (torch.arange(B, device=ps.device) * n)[:, None]
    edge_index = torch.stack([(src[None] + offsets).reshape(-1), (dst[None] + offsets).reshape(-1)])
    weight = (same.to(ps.X.dtype) * torch.exp(-ps.knn_dist)[None]).reshape(-1)
    return edge_index, weight


def to_pyg_data(X: object, labels: object, k: int = DEFAULT_K):
    """One clustering as a ``torch_geometric.data.Data`` graph (for drawing and teaching):
    ``x`` node features, ``edge_index`` kNN edges, ``edge_attr`` = (same-cluster, distance)."""
    from torch_geometric.data import Data

    from .validation import check_labels

    ps = prepare_point_set(X, k, device="cpu")
    lab = torch.as_tensor(check_labels(labels, ps.n_points))[None]
    feats = clustering_features(ps, lab)
    edge_index, _ = edge_batch(ps, feats.same)
    edge_attr = torch.stack([feats.same.reshape(-1).float(), ps.knn_dist.reshape(-1)], dim=1)
    return Data(x=feats.x[0], edge_index=edge_index, edge_attr=edge_attr, y=lab[0])
