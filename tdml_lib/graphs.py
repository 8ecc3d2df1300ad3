"""Block B, part 1: a clustering becomes a graph.

Nodes are the points; edges are the k nearest neighbours of each point (computed once
per point set, since only labels change between candidate clusterings); each edge is
marked same-cluster or not and carries its distance. Node features are geometric,
dimension-free, **scale-free** (ratios of distances, shares, ranks) and close to
invariant when the point set is subsampled, so that a critic learned on one dataset
meets the same ranges on another (chapter 2; the glossary lists them):

====================  =================================================================
``s``                 silhouette-like (b - a) / max(a, b): a = RMS distance to the own
                      cluster, b = to the nearest other cluster; 0 for a point alone in
                      its cluster or when there is one cluster (as scikit-learn does)
``ratio``             distance to own centroid / to the nearest other centroid (cut at 3)
``wrong_side``        1 when the point is nearer another cluster's centroid
``a_ratio``           a / b (cut at 3)
``size``              own cluster's share of the points
``agree``             share of the k nearest neighbours in the own cluster
``agree_near``        the same for the k/2 nearest
``rel_density``       log of the point's mean kNN distance over its cluster's mean
====================  =================================================================

Replication choices (the poster gives none of these):

* Distances are divided by the point set's RMS pairwise distance
  ``sqrt(2 * mean ||x_i - mean(x)||^2)`` (exact, O(n d), invariant to point order,
  translation and scale), and edge weights use distances relative to the point set's
  mean kNN distance, so they do not drift when n changes.
* No absolute distance or density is a feature. An earlier version had them (distance to
  the centroids, a(i), b(i), kNN distance); on Fashion they sat 3-6 standard deviations
  away from their Numbers range and a Numbers-trained critic did not transfer (chapter 3).
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

NODE_FEATURES = ("s", "ratio", "wrong_side", "a_ratio", "size", "agree", "agree_near", "rel_density")
_RATIO_CAP = 3.0
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


def edge_weights(ps: PointSet) -> torch.Tensor:
    """(n, k) weights ``exp(-d / mean d)`` of the kNN edges: distances relative to the
    point set's mean kNN distance, so that subsampling (larger kNN distances) leaves
    them about the same."""
    return torch.exp(-ps.knn_dist / ps.knn_dist.mean().clamp(min=1e-12))


def clustering_features(ps: PointSet, labels: torch.Tensor) -> ClusteringFeatures:
    """Node features of B clusterings ``labels`` (B, n) of the point set ``ps``."""
    B, n = labels.shape
    K = int(labels.max()) + 1
    dtype = ps.X.dtype
    onehot = F.one_hot(labels, K).to(dtype)                            # (B, n, K)
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
    inf = torch.tensor(float("inf"), device=ps.device, dtype=dtype)
    d_other = sq_dist.masked_fill(other, inf).amin(2).sqrt()
    b = mean_sq.masked_fill(other, inf).amin(2).sqrt()
    size_count = counts.gather(1, labels)                              # (B, n)
    # a point alone in its cluster, or a single cluster: no silhouette (scikit-learn's 0),
    # ratios of 1 (neither side), so that splitting off singletons earns nothing
    defined = has_other & (size_count > 1)
    one = torch.ones_like(a)
    s = torch.where(defined, (b - a) / torch.maximum(a, b).clamp(min=1e-12), torch.zeros_like(a))
    ratio = torch.where(defined, (d_own / d_other.clamp(min=1e-12)).clamp(max=_RATIO_CAP), one)
    a_ratio = torch.where(defined, (a / b.clamp(min=1e-12)).clamp(max=_RATIO_CAP), one)
    wrong_side = (defined & (d_own > d_other)).to(dtype)
    size = size_count / n
    same = labels[:, ps.knn] == labels[..., None]                      # (B, n, k)
    near = max(1, ps.k // 2)
    agree = same.to(dtype).mean(2)
    agree_near = same[..., :near].to(dtype).mean(2)
    dens = ps.density.clamp(min=1e-12)[None].expand(B, n)
    cluster_dens = (onehot.transpose(1, 2) @ dens[..., None]).squeeze(-1) / counts.clamp(min=1)   # (B, K)
    rel_density = torch.log(dens / cluster_dens.gather(1, labels).clamp(min=1e-12)).clamp(-3.0, 3.0)
    x = torch.stack([s, ratio, wrong_side, a_ratio, size, agree, agree_near, rel_density], dim=2)
    return ClusteringFeatures(x, onehot, counts, same)


#: Per-clustering statistics of :func:`clustering_statistics`, in order.
STATISTICS = ("log_k", "intra_edges", "size_entropy", "min_size", "max_size",
              "s_q05", "s_q25", "s_q50", "agree_q10", "agree_q25", "agree_q50",
              "wrong_agreeing", "right_disagreeing", "wrong_disagreeing",
              "top_cut_max", "top_cut_mean", "boundary_density")


def _top_cut(ps: PointSet, labels: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per cluster, the share of its kNN edges that go to the one other cluster it touches
    most (B, K): high for a cluster cut out of a larger one (a *split*). Counted by sorting
    the cross-cluster edges, so memory is O(B n k) whatever K is."""
    B, n = labels.shape
    K = counts.shape[1]
    nb = labels[:, ps.knn]                                              # (B, n, k)
    own = labels[..., None].expand_as(nb)
    cross = nb != own
    batch = torch.arange(B, device=labels.device)[:, None, None].expand_as(nb)
    key = ((batch * K + own) * K + nb)[cross]
    out = torch.zeros(B * K, dtype=counts.dtype, device=labels.device)
    if key.numel():
        pairs, pair_counts = torch.unique(key, return_counts=True)
        out.scatter_reduce_(0, pairs // K, pair_counts.to(counts.dtype), reduce="amax")
    return out.reshape(B, K) / (counts * ps.k).clamp(min=1)


def clustering_statistics(ps: PointSet, labels: torch.Tensor, feats: ClusteringFeatures) -> torch.Tensor:
    """Whole-clustering statistics (B, len(STATISTICS)), all scale-free and batched with no
    O(n^2) pass (chapter 2; the glossary defines each):

    * ``log_k`` and the size shares: log of the number of clusters, the share of kNN edges
      inside clusters, the normalised entropy of the cluster sizes, the smallest and
      largest cluster's share;
    * quantiles of the silhouette-like ``s`` and of the kNN agreement over points;
    * how the centroid side and the kNN majority agree: points nearer another centroid
      whose neighbours mostly share their cluster (a true clustering keeps many), points
      on their centroid's side whose neighbours mostly do not (what moving boundary
      points to the nearest centroid creates), and both;
    * the largest and mean *top cut* (:func:`_top_cut`);
    * the density at cross-cluster edges relative to the mean density (true classes are
      often cut along low-density valleys, k-means cuts through dense regions).
    """
    counts = feats.counts
    present = counts > 0
    n = counts.sum(1, keepdim=True)
    k = present.sum(1, keepdim=True).to(counts.dtype)
    p = counts / n
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(1, keepdim=True)
    entropy = torch.where(k > 1, entropy / torch.log(k.clamp(min=2)), torch.ones_like(entropy))
    min_share = p.masked_fill(~present, float("inf")).amin(1, keepdim=True)
    intra = feats.same.to(counts.dtype).mean((1, 2))[:, None]
    col = {name: feats.x[..., i] for i, name in enumerate(NODE_FEATURES)}
    qs = torch.tensor([0.05, 0.25, 0.5], dtype=counts.dtype, device=counts.device)
    qa = torch.tensor([0.1, 0.25, 0.5], dtype=counts.dtype, device=counts.device)
    s_q = torch.quantile(col["s"], qs, dim=1).T
    a_q = torch.quantile(col["agree"], qa, dim=1).T
    wrong = col["wrong_side"]
    disagree = (col["agree"] < 0.5).to(counts.dtype)
    joint = torch.stack([(wrong * (1 - disagree)).mean(1), ((1 - wrong) * disagree).mean(1),
                         (wrong * disagree).mean(1)], 1)
    cut = _top_cut(ps, labels, counts)
    cut_max = cut.amax(1, keepdim=True)
    cut_mean = (cut * present).sum(1, keepdim=True) / k
    inv = 1.0 / ps.density.clamp(min=1e-12)
    inv = inv / inv.mean()
    edge_density = 0.5 * (inv[:, None] + inv[ps.knn])                   # (n, k)
    crossing = (~feats.same).to(counts.dtype)
    n_cross = crossing.sum((1, 2))
    boundary = torch.where(n_cross > 0, (crossing * edge_density[None]).sum((1, 2)) / n_cross.clamp(min=1),
                           torch.ones_like(n_cross))[:, None]
    return torch.cat([torch.log(k), intra, entropy, min_share, p.amax(1, keepdim=True), s_q, a_q, joint,
                      cut_max, cut_mean, boundary], dim=1)


def edge_batch(ps: PointSet, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of B clustering graphs of one point set as one disjoint union.

    Messages flow from each neighbour to the point (PyG's source -> target). An edge's
    weight is ``exp(-distance / mean kNN distance)`` when it joins two points of the same cluster and 0
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
    weight = (same.to(ps.X.dtype) * edge_weights(ps)[None]).reshape(-1)
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
