"""Block B, part 2: a graph auto-encoder turns a clustering graph into an embedding.

A two-layer GCN encoder (PyG ``GCNConv``) with PyG's ``GAE`` inner-product decoder is
trained to reconstruct the same-cluster kNN edges of clustering graphs
(:mod:`tdml_lib.graphs`), like PyG's ``examples/autoencoder.py`` and Kipf & Welling's
GAE. The *graph embedding* of a clustering is then a fixed-size vector, whatever the
number of points, clusters or input dimensions:

1. per cluster, the mean of its node codes and of its raw node features;
2. over clusters, the mean, max, min and standard deviation of those cluster vectors;
3. whole-clustering statistics (:func:`tdml_lib.graphs.clustering_statistics`): log of
   the number of clusters, size shares, quantiles of the silhouette-like score and of
   the kNN agreement, centroid side against kNN majority, top cuts, boundary density.
   All are scale-free; none depends on n directly (log n was a feature once, and a
   critic trained on small problems then misjudged large ones).

Including the pooled *raw* node features beside the learned codes is a replication
choice: it keeps the silhouette-like statistics in the embedding verbatim, so the critic
never has to re-learn them. Every part is symmetric in cluster ids and point order.
Explained in chapter 2.
"""
from __future__ import annotations


from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import graphs
from .device import deterministic_algorithms, resolve_device
from .io import load_torch, save_torch
from .validation import check_labelings, check_points, check_positive_int

GLOBAL_FEATURES = graphs.STATISTICS
_POOLS = ("mean", "max", "min", "std")
FORMAT_VERSION = 2   # 2: scale-free node features, min pooling, clustering statistics


class GCNEncoder(nn.Module):
    """Two GCN layers (PyG ``GCNConv``), ReLU between: node features -> node codes.

    :meth:`forward` is PyG's message passing on an explicit ``edge_index``.
    :meth:`forward_knn` computes the same function for graphs whose edges are the kNN
    lists of a :class:`~tdml_lib.graphs.PointSet`: since every point has exactly k
    incoming edges, the sum over neighbours is a dense gather ``h[:, knn]`` instead of a
    scatter over B*n*k edges, which is several times faster for batches of clusterings
    (chapter 9). A test checks that both agree.
    """

    def __init__(self, in_channels: int, hidden: int = 32, out_channels: int = 16) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        self.conv1 = GCNConv(in_channels, hidden)
        self.conv2 = GCNConv(hidden, out_channels)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x, edge_index, edge_weight).relu()
        return self.conv2(h, edge_index, edge_weight)

    def forward_knn(self, x: torch.Tensor, knn: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x (B, n, F), knn (n, k), weight (B, n, k) of edge knn[i, j] -> i; returns (B, n, out)."""
        # GCN normalisation (Kipf & Welling; PyG gcn_norm): self-loops of weight 1,
        # degree = 1 + incoming weights, norm_ij = w_ij / sqrt(deg_i deg_j).
        # Node-major layout (n, B, .): the j-th neighbours of all nodes are gathered with
        # one index_select of whole rows (contiguous B*c blocks) and accumulated,
        # k times; about 3x faster on CPU than the (B, n, k, c) gather h[:, knn] and
        # without its memory (tdml_lib.bench, chapter 9).
        deg_inv_sqrt = (1.0 + weight.sum(2)).rsqrt().T.contiguous()        # (n, B)
        norm = (weight.permute(1, 2, 0) * deg_inv_sqrt[:, None, :]
                * deg_inv_sqrt[knn]).contiguous()                          # (n, k, B)
        self_norm = (deg_inv_sqrt ** 2)[..., None]                         # (n, B, 1)

        def propagate(h: torch.Tensor) -> torch.Tensor:                   # (n, B, c)
            out = self_norm * h
            for j in range(knn.shape[1]):
                out = out.addcmul(norm[:, j, :, None], h.index_select(0, knn[:, j]))
            return out

        def lin(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
            # as one 2-D matmul: a 3-D input with odd strides (B = 1) may take another
            # kernel, whose rounding then depends on the weights' requires_grad
            return layer.lin(h.reshape(-1, h.shape[-1])).reshape(*h.shape[:-1], -1)

        # The propagation is linear, so it runs on the narrower side of each layer's
        # linear map: before lin for layer 1 (F inputs), after lin for layer 2.
        h = (lin(self.conv1, propagate(x.transpose(0, 1).contiguous())) + self.conv1.bias).relu()
        return (propagate(lin(self.conv2, h)) + self.conv2.bias).transpose(0, 1)


def pool_over_clusters(values: torch.Tensor, onehot: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B, n, h) node values -> (B, 4h): per-cluster means, then their mean, max, min and
    standard deviation over clusters (every cluster counts once, whatever its size)."""
    present = counts > 0                                                  # (B, K)
    cluster_means = onehot.transpose(1, 2) @ values / counts.clamp(min=1)[..., None]   # (B, K, h)
    w = present.to(values.dtype)[..., None]
    n_present = w.sum(1)                                                  # (B, 1)
    mean = (cluster_means * w).sum(1) / n_present
    mx = cluster_means.masked_fill(~present[..., None], float("-inf")).amax(1)
    mn = cluster_means.masked_fill(~present[..., None], float("inf")).amin(1)
    var = (((cluster_means - mean[:, None]) ** 2) * w).sum(1) / n_present
    return torch.cat([mean, mx, mn, var.clamp(min=0).sqrt()], dim=1)


class ClusteringEmbedder(nn.Module):
    """Block B: (X, labels) -> graph -> GCN codes -> one embedding vector per clustering.

    Args:
        k: neighbours per point in the kNN graph.
        hidden: width of the first GCN layer.
        code_dim: size of the node codes.
    """

    def __init__(self, k: int = graphs.DEFAULT_K, hidden: int = 32, code_dim: int = 16) -> None:
        super().__init__()
        self.k, self.hidden, self.code_dim = int(k), int(hidden), int(code_dim)
        from torch_geometric.nn import GAE

        self.gae = GAE(GCNEncoder(len(graphs.NODE_FEATURES), hidden, code_dim))

    @property
    def embedding_dim(self) -> int:
        return len(_POOLS) * (self.code_dim + len(graphs.NODE_FEATURES)) + len(GLOBAL_FEATURES)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def code_columns(self) -> int:
        """How many leading coordinates of an embedding pool the learned GAE codes; the
        rest are the pooled node features and the clustering statistics."""
        return len(_POOLS) * self.code_dim

    def config(self) -> dict[str, int]:
        return {"k": self.k, "hidden": self.hidden, "code_dim": self.code_dim}

    # -- core, on prepared tensors ----------------------------------------------------
    def encode(self, ps: graphs.PointSet, labels: torch.Tensor) -> tuple[torch.Tensor, graphs.ClusteringFeatures]:
        """Node codes (B, n, code_dim) of B clusterings (B, n), with their features."""
        feats = graphs.clustering_features(ps, labels)
        weight = feats.same.to(ps.X.dtype) * graphs.edge_weights(ps)[None]
        return self.gae.encoder.forward_knn(feats.x, ps.knn, weight), feats

    def embed_prepared(self, ps: graphs.PointSet, labels: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, embedding_dim) of B clusterings (B, n) of a prepared point set."""
        return self.embed_with_separation(ps, labels)[0]

    def embed_with_separation(self, ps: graphs.PointSet,
                              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, embedding_dim) and closest-pair separations (B,) float32
        (:func:`tdml_lib.graphs.closest_pair_separation`) from one pass: the critic's
        gate reads the second. Under reduced-precision autocast the separation is
        recomputed in float32 (:func:`tdml_lib.graphs.separation_of_points`)."""
        codes, feats = self.encode(ps, labels)
        emb = torch.cat([pool_over_clusters(codes, feats.onehot, feats.counts),
                         pool_over_clusters(feats.x, feats.onehot, feats.counts),
                         graphs.clustering_statistics(ps, labels, feats)], dim=1)
        reduced = torch.is_autocast_enabled(ps.device.type) and ps.X.dtype == torch.float32 and \
            torch.get_autocast_dtype(ps.device.type) != torch.float32
        separation = graphs.separation_of_points(ps.X, labels) if reduced else feats.separation.float()
        return emb, separation

    # -- public ----------------------------------------------------------------------
    def prepare(self, X: object) -> graphs.PointSet:
        """The label-independent graph of X on this embedder's device (reuse it across calls)."""
        return graphs.prepare_point_set(X, self.k, self.device)

    @torch.inference_mode()
    def embed_many(self, X: object, labelings: Sequence[object] | np.ndarray,
                   point_set: graphs.PointSet | None = None, batch_size: int | None = None) -> torch.Tensor:
        """Embeddings (B, embedding_dim) of many clusterings of one point set, batched.

        Args:
            X: point set (n, d).
            labelings: B label vectors of length n (any integer ids).
            point_set: the result of :meth:`prepare` for X, to skip recomputing the kNN.
            batch_size: at most this many clusterings per forward pass. Passes are
                also split so that each holds at most ``graphs.MAX_ELEMENTS_PER_PASS``
                (clusterings x points x (clusters + ``graphs.PASS_NODE_WIDTH``)) elements:
                memory stays bounded for any n and any number of clusters, down to one
                clustering per pass (:func:`tdml_lib.graphs.pass_slices`).
        """
        Xc = check_points(X)
        labs = check_labelings(labelings, Xc.shape[0])
        ps = point_set if point_set is not None else self.prepare(Xc)
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        order = graphs.order_by_clusters(labs)
        labs = labs[order]
        out = torch.cat([self.embed_prepared(ps, graphs.as_label_tensor(labs[s], ps.device))
                         for s in graphs.pass_slices(labs, ps.n_points, batch_size)])
        return out[torch.as_tensor(np.argsort(order), device=out.device)]

    def embed(self, X: object, labels: object) -> torch.Tensor:
        """Embedding (embedding_dim,) of one clustering."""
        return self.embed_many(X, [labels])[0]

    # -- persistence -----------------------------------------------------------------
    def state(self) -> dict:
        return {"format": FORMAT_VERSION, "config": self.config(),
                "weights": {k: v.detach().cpu() for k, v in self.state_dict().items()}}

    @classmethod
    def from_state(cls, state: dict, device: str | torch.device | None = "auto",
                   source: str = "embedder state") -> "ClusteringEmbedder":
        """An embedder from :meth:`state`'s dict, checked first (:func:`_check_embedder_state`).

        Args:
            source: the file or field it came from, for error messages.

        Raises:
            ValueError: another format, a missing field, a size beyond the limits, a
                tensor of the wrong shape or holding NaN/inf; the message names the field.
        """
        config = _check_embedder_state(state, source)
        emb = cls(**config)
        emb.load_state_dict(state["weights"])
        return emb.to(resolve_device(device)).eval()

    def save(self, path: str | Path) -> Path:
        """Save atomically with ``torch.save``."""
        return save_torch(path, self.state())

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = "auto") -> "ClusteringEmbedder":
        """Load a saved embedder (``weights_only=True``: no code runs on load)."""
        return cls.from_state(load_torch(path, "embedder", "train one with tdml_lib.gae.train_gae"), device,
                              source=str(path))


#: Largest GCN width (``hidden``, ``code_dim``) and neighbour count ``k`` a saved
#: embedder may declare: checked before the model is built, so a corrupt ``hidden=1e9``
#: is refused instead of allocating gigabytes. 4096-wide layers are ~64 MB of weights;
#: the memory budget of a pass (``graphs.PASS_NODE_WIDTH``) was measured at k = 10.
MAX_WIDTH = 4096
MAX_K = 64
_RETRAIN_EMBEDDER = ("Retrain it: python -m tdml_lib train-critic --out runs/critic.pt (a critic holds its "
                     "embedder), or tdml_lib.gae.train_gae for an embedder alone.")
#: Fields of an embedder state (key -> what it holds). Extra keys are ignored; add a row
#: when a new field becomes required.
EMBEDDER_FIELDS = {"format": f"the format version, {FORMAT_VERSION}",
                   "config": "the model's sizes, a dict {k, hidden, code_dim}",
                   "weights": "the GCN's weights, a dict of tensors"}
#: Entries of ``config`` with their (min, max): checked before anything is allocated.
EMBEDDER_CONFIG = {"k": (1, MAX_K), "hidden": (1, MAX_WIDTH), "code_dim": (1, MAX_WIDTH)}


def _check_embedder_state(state: object, source: str = "embedder state") -> dict:
    """Check a saved embedder state before building the model; returns its config.

    Fields (:data:`EMBEDDER_FIELDS`), sizes within :data:`EMBEDDER_CONFIG`, then every
    weight's shape against a model of that config, and finite values.

    Raises:
        ValueError: naming ``source``, the field and how to retrain.
    """
    from .validation import check_int, check_state_fields, check_tensors

    fix = _RETRAIN_EMBEDDER
    if isinstance(state, dict) and state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{source} has format {state.get('format')!r}, this library reads format "
                         f"{FORMAT_VERSION}. {fix}")
    check_state_fields(state, EMBEDDER_FIELDS, source, fix)
    config = state["config"]
    if not isinstance(config, dict):
        raise ValueError(f"{source}: field 'config' should be a dict, got {type(config).__name__}. {fix}")
    missing = [k for k in EMBEDDER_CONFIG if k not in config]
    if missing:
        raise ValueError(f"{source}: field 'config' lacks {missing}. {fix}")
    for key, (lo, hi) in EMBEDDER_CONFIG.items():
        try:
            check_int(config[key], f"config[{key!r}]", lo, hi)
        except ValueError as exc:
            raise ValueError(f"{source}: {str(exc).rstrip('.')} (limits: tdml_lib.gae.EMBEDDER_CONFIG). {fix}") from None
    try:
        model = ClusteringEmbedder(**config)
    except TypeError as exc:
        raise ValueError(f"{source}: field 'config' holds settings this version does not know ({exc}). "
                         f"{fix}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_tensors(state["weights"], expected, f"{source}: field 'weights'", fix)
    return dict(config)


# --- training ---------------------------------------------------------------------------

def _negative_pairs(n: int, B: int, count: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Random node pairs inside each of the B graphs (mostly non-edges: kNN graphs are sparse)."""
    g = torch.randint(0, B, (count,), generator=gen, device="cpu") * n
    i = torch.randint(0, n, (count,), generator=gen, device="cpu")
    j = torch.randint(0, n, (count,), generator=gen, device="cpu")
    return torch.stack([i + g, j + g]).to(device)


def _sample_loss(embedder: ClusteringEmbedder, ps: graphs.PointSet, labels: torch.Tensor,
                 gen: torch.Generator, holdout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes (B*n, code_dim), positive edges to reconstruct and random negative pairs.

    With ``holdout > 0`` that share of the same-cluster edges is hidden from the encoder
    (weight 0, which is the same as removing the edge) and returned as the positives.
    """
    feats = graphs.clustering_features(ps, labels)
    weight = feats.same.to(ps.X.dtype) * graphs.edge_weights(ps)[None]        # (B, n, k)
    edge_index, _ = graphs.edge_batch(ps, feats.same)
    positive = feats.same.reshape(-1)
    if holdout > 0:
        hide = (torch.rand(positive.shape[0], generator=gen) < holdout).to(ps.device) & positive
        weight = weight.masked_fill(hide.reshape(weight.shape), 0.0)
        positive = hide
    z = embedder.gae.encoder.forward_knn(feats.x, ps.knn, weight).reshape(-1, embedder.code_dim)
    pos = edge_index[:, positive]
    neg = _negative_pairs(ps.n_points, labels.shape[0], pos.shape[1], gen, ps.device)
    return z, pos, neg


def train_gae(embedder: ClusteringEmbedder, samples: Iterable[tuple[np.ndarray, np.ndarray]],
              epochs: int = 20, lr: float = 0.01, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Train the GAE to reconstruct same-cluster kNN edges of clustering graphs.

    Args:
        embedder: the model to train (in place).
        samples: pairs (X, labelings) — a point set and some of its clusterings (correct
            ones and near misses, so that the codes describe both).
        epochs: passes over the samples.
        lr: Adam learning rate.
        seed: seeds the negative edge sampling and the parameter initialisation order.
        progress: show a tqdm progress bar.

    Returns:
        History with columns ``epoch`` and ``loss`` (PyG ``GAE.recon_loss``).
    """
    from tqdm.auto import tqdm

    samples = list(samples)
    if not samples:
        raise ValueError("train_gae needs at least one (X, labelings) sample.")
    prepared = [(embedder.prepare(X), graphs.as_label_tensor(check_labelings(labs, len(X)), embedder.device))
                for X, labs in samples]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(embedder.parameters(), lr=lr)
    rows = []
    embedder.train()
    with deterministic_algorithms(embedder.device):
        for epoch in tqdm(range(epochs), desc="GAE", disable=not progress):
            order = torch.randperm(len(prepared), generator=gen).tolist()
            total = 0.0
            for i in order:
                ps, labels = prepared[i]
                z, pos, neg = _sample_loss(embedder, ps, labels, gen)
                loss = embedder.gae.recon_loss(z, pos, neg)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
            rows.append({"epoch": epoch, "loss": total / len(prepared)})
    embedder.eval()
    return pd.DataFrame(rows)


@torch.no_grad()
def reconstruction_scores(embedder: ClusteringEmbedder, samples: Iterable[tuple[np.ndarray, np.ndarray]],
                          holdout: float = 0.15, seed: int = 0) -> dict[str, float]:
    """Held-out edge reconstruction: hide a share of the same-cluster edges from the
    encoder, then score them against as many random non-edges (PyG ``GAE.test``: AUC, AP).
    Chance is 0.5 AUC."""
    gen = torch.Generator().manual_seed(seed)
    zs, pos_all, neg_all, offset = [], [], [], 0
    embedder.eval()
    for X, labs in samples:
        ps = embedder.prepare(X)
        labels = graphs.as_label_tensor(check_labelings(labs, len(X)), embedder.device)
        z, pos, neg = _sample_loss(embedder, ps, labels, gen, holdout=holdout)
        zs.append(z)
        pos_all.append(pos + offset)
        neg_all.append(neg + offset)
        offset += z.shape[0]
    auc, ap = embedder.gae.test(torch.cat(zs), torch.cat(pos_all, 1), torch.cat(neg_all, 1))
    return {"auc": float(auc), "ap": float(ap)}


def embedding_feature_names(embedder: ClusteringEmbedder) -> list[str]:
    """Names of the embedding's coordinates, for plots and tables."""
    names = []
    for prefix, dims in (("code", [f"z{i}" for i in range(embedder.code_dim)]),
                         ("feat", list(graphs.NODE_FEATURES))):
        for stat in _POOLS:
            names += [f"{prefix}:{d}:{stat}" for d in dims]
    return names + list(GLOBAL_FEATURES)


