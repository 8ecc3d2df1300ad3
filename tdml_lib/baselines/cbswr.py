"""CBSwR: deep metric learning meets deep clustering (Nguyen et al., BMVC 2020), chapter 7.

The seed (``seeds/002_*.txt``) gives only the abstract; the method below follows the
paper's description and its public code (github.com/aioz-ai/BMVC20_CBSwR, ``train.py``):

* an encoder G maps each image and a randomly transformed copy of it to a
  representation r; an embedding module F (linear + L2 normalisation) gives f = F(r);
* a clustering module gives soft assignments p of f to K clusters, trained with the
  RIM clustering loss (the paper's Eq. 1):
  ``L_rim = H(Y|X) - mu * H(mean_i p_i)``, low conditional entropy (confident
  assignments) and high entropy of the mean assignment (no empty clusters);
* the pseudo-label of an image is its most likely cluster; a *centroid representation*
  is the mean r of the batch items with that pseudo-label; its embedding
  ``c_j = F(centroid_j)`` is held fixed for the metric loss;
* the decoder D reconstructs every image from its cluster's centroid representation
  (the paper's Eq. 2): ``L_rec = mean_i ||x_i - D(centroid_{q_i})||^2``;
* the center-based metric loss (the paper's Eq. 3, temperature t = 0.1) pulls f_i to its
  positive and pushes it away from the other clusters' centroids:
  ``L_m = -mean_i [log P(pos | f_i) + alpha * sum_{j != q_i} log(1 - P(c_j | f_i))]``;
* total: ``L = 0.9 L_m + 0.001 L_rec + 0.3 L_rim`` (the code's defaults ``--ml``,
  ``--recon``, ``--rim``).

Replication choices (chapter 7 states each):

* The clustering module is a cosine classifier: K learnable centroid vectors w_k,
  ``p_ik = softmax_k(f_i . w_k / |w_k| / tau_c)``, initialised by k-means on the
  warmed-up embeddings. The paper's module is a linear layer on f (BN, dropout,
  linear); its weight rows play the role of the w_k. The clustering loss is RIM, as in
  the paper, not DEC's Student-t with a sharpened target (a common alternative).
* The embedding module F has batch norm before its linear layer. Without it, the
  warmed-up codes share a large common component, all embeddings start in a narrow cone,
  and the metric loss merges clusters, down to a single one (measured in chapter 7;
  ``embedding_batchnorm=False`` is the paper's module).
* The metric loss uses the paper's batch centroids by default (``centroids="batch"``);
  ``centroids="learned"`` uses the K centroids of the clustering module instead, so that
  every batch has K - 1 negatives.
* The positive of f_i is the embedding of its own transformed copy, as in the paper's
  code (``positive="view"``); ``positive="centroid"`` uses the own cluster's centroid
  instead. The probability of the positive is normalised over the positive and the
  other clusters' centroids (the code's denominator leaves the positive out, so its
  "probability" can exceed one).
* The paper's backbone is an ImageNet-pretrained GoogLeNet on 224-px photographs; here
  the small conv auto-encoder of :mod:`~tdml_lib.baselines.common`, warmed up on
  reconstruction for ``pretrain_epochs`` (there are no pretrained weights for 28-px
  grey images), and Adam instead of SGD.
* The clustering of the data set is the argmax of p on the untransformed images;
  ``embedding_nmi`` (k-means on the embedding, the paper's NMI) is reported beside it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..device import resolve_device
from ..validation import canonical_labels, check_labels, check_points, check_positive_int
from .common import (BaselineResult, augment, batches, check_k, encode_all,
                     make_autoencoder, prepare_inputs, pretrain_autoencoder, seeded)

POSITIVES = ("view", "centroid")
CENTROIDS = ("learned", "batch")


# --- losses -----------------------------------------------------------------------------

def rim_loss(probs: torch.Tensor, mu: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RIM clustering loss ``H(Y|X) - mu * H(Y)`` of soft assignments (B, K).

    Returns the loss, the conditional entropy (mean per-item entropy) and the marginal
    entropy (entropy of the mean assignment).
    """
    eps = 1e-12
    conditional = -(probs * (probs + eps).log()).sum(1).mean()
    mean = probs.mean(0)
    marginal = -(mean * (mean + eps).log()).sum()
    return conditional - mu * marginal, conditional, marginal


def center_metric_loss(f: torch.Tensor, positives: torch.Tensor | None, centroids: torch.Tensor,
                       assigned: torch.Tensor, temperature: float = 0.1,
                       alpha: float = 1.0) -> torch.Tensor:
    """The center-based metric loss (the paper's Eq. 3).

    Args:
        f: (B, e) unit embeddings.
        positives: (B, e) unit embeddings of each item's positive (its transformed
            copy), or None to use the item's own centroid as the positive.
        centroids: (U, e) unit centroid embeddings (held fixed).
        assigned: (B,) index into ``centroids`` of each item's cluster.
        temperature: t (0.1 in the paper).
        alpha: weight of the negative term (1.0 in the paper's code).

    Returns:
        ``-mean_i [log P(pos|f_i) + alpha * sum_{j != q_i} log(1 - P(c_j|f_i))]`` where
        ``P(c_j|f_i) = softmax_j(f_i . c_j / t)`` and ``P(pos|f_i)`` is the softmax
        weight of the positive against the other clusters' centroids.
    """
    sim = f @ centroids.T / temperature  # (B, U)
    own = F.one_hot(assigned, centroids.shape[0]).bool()
    if positives is None:
        log_pos = sim.log_softmax(1)[own]
    else:
        s_pos = (f * positives).sum(1, keepdim=True) / temperature
        log_pos = (s_pos - torch.logsumexp(torch.cat([s_pos, sim.masked_fill(own, -torch.inf)], 1), 1,
                                           keepdim=True)).squeeze(1)
    p = sim.softmax(1).clamp(max=1 - 1e-6)
    negative = torch.log1p(-p).masked_fill(own, 0.0).sum(1)
    return -(log_pos + alpha * negative).mean()


# --- the network ----------------------------------------------------------------------

class CBSwRNet(nn.Module):
    """Encoder G and decoder D (the shared small auto-encoder), embedding module F,
    and K learnable centroids of the cosine clustering module."""

    def __init__(self, x: np.ndarray, n_clusters: int, representation_dim: int, embedding_dim: int,
                 cluster_temperature: float, embedding_batchnorm: bool = True):
        super().__init__()
        self.ae = make_autoencoder(x, representation_dim)
        # batch norm first: centred inputs spread the unit embeddings over the sphere (the
        # raw codes share a large common component, so their embeddings would start in a
        # narrow cone, where the metric loss collapses them; the paper's clustering head
        # has batch norm too)
        norm = [nn.BatchNorm1d(representation_dim)] if embedding_batchnorm else []
        self.embed = nn.Sequential(*norm, nn.Linear(representation_dim, embedding_dim))
        self.centroids = nn.Parameter(torch.randn(n_clusters, embedding_dim))
        self.cluster_temperature = cluster_temperature

    def embedding(self, r: torch.Tensor) -> torch.Tensor:
        """F: representation -> unit embedding."""
        return F.normalize(self.embed(r), dim=1)

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        """Cluster logits: cosine similarity to the centroids over the temperature."""
        return f @ F.normalize(self.centroids, dim=1).T / self.cluster_temperature

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = self.ae.encode(x)
        f = self.embedding(r)
        return r, f, self.logits(f)


def _step_losses(net: CBSwRNet, xb: torch.Tensor, view: torch.Tensor, temperature: float, alpha: float,
                 mu: float, positive: str, centroids: str) -> dict[str, torch.Tensor]:
    b = len(xb)
    inp = torch.cat([xb, view])
    r, f, logits = net(inp)
    rim, cond, marg = rim_loss(logits.softmax(1), mu)
    q = logits[:b].detach().argmax(1).repeat(2)  # pseudo-labels from the untransformed images
    present, assigned = torch.unique(q, return_inverse=True)
    counts = torch.zeros(len(present), device=r.device).index_add_(0, assigned, torch.ones_like(q, dtype=r.dtype))
    cent_r = torch.zeros(len(present), r.shape[1], device=r.device, dtype=r.dtype).index_add_(0, assigned, r)
    cent_r = cent_r / counts[:, None]
    partner = torch.cat([f[b:], f[:b]]) if positive == "view" else None
    if centroids == "batch":  # the paper's code: F of the batch's centroid representations,
        # with F in eval mode (batch norm must not take statistics from a handful of centroids)
        with torch.no_grad():
            net.embed.eval()
            cent_f = net.embedding(cent_r)
            net.embed.train()
        metric = center_metric_loss(f, partner, cent_f, assigned, temperature, alpha)
    else:  # all K learned centroids, held fixed in this loss
        metric = center_metric_loss(f, partner, F.normalize(net.centroids, dim=1).detach(), q,
                                    temperature, alpha)
    recon = F.mse_loss(net.ae.decode(cent_r[assigned]), inp)
    return {"metric": metric, "reconstruction": recon, "rim": rim, "conditional_entropy": cond,
            "marginal_entropy": marg}


@torch.no_grad()
def _calibrate_batch_norm(bn: nn.BatchNorm1d, ae: nn.Module, x: torch.Tensor) -> None:
    """Set the embedding's batch-norm statistics to those of all warmed-up codes."""
    ae.eval()
    r = encode_all(ae.encode, x)
    bn.running_mean.copy_(r.mean(0))
    bn.running_var.copy_(r.var(0, unbiased=True))


@torch.no_grad()
def _embed_and_label(net: CBSwRNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    out = encode_all(lambda xb: torch.cat(net(xb)[1:], 1), x)
    e = net.embed[-1].out_features
    return out[:, :e].cpu().numpy(), out[:, e:].argmax(1).cpu().numpy()


def cbswr(images: object, n_clusters: int, epochs: int = 10, embedding_dim: int = 32,
          representation_dim: int = 64, pretrain_epochs: int = 3, batch_size: int = 64, lr: float = 1e-3,
          temperature: float = 0.1, cluster_temperature: float = 0.1,
          weights: tuple[float, float, float] = (0.9, 0.001, 0.3), alpha: float = 1.0, mu: float = 1.0,
          positive: str = "view", centroids: str = "batch", embedding_batchnorm: bool = True,
          device: str = "auto", seed: int = 0, progress: bool = False) -> BaselineResult:
    """Cluster and embed images with CBSwR (chapter 7).

    Args:
        images: (N, H, W) images (uint8 or float) or (N, d) features.
        n_clusters: K, the number of clusters of the clustering module.
        epochs: training epochs after the warm-up.
        embedding_dim: size of the unit embedding f (the paper: 128).
        representation_dim: size of the encoder's representation r.
        pretrain_epochs: reconstruction-only warm-up of G and D (stands in for the
            paper's ImageNet-pretrained backbone).
        batch_size: images per step; each comes with its transformed copy (the paper: 64).
        lr: Adam's learning rate.
        temperature: t of the metric loss (the paper: 0.1).
        cluster_temperature: temperature of the cosine clustering module.
        weights: (metric, reconstruction, RIM) weights (the paper: 0.9, 0.001, 0.3).
        alpha: weight of the negative term of the metric loss (the paper's code: 1.0).
        mu: weight of the marginal entropy in RIM (the paper's code: 1.0).
        positive: ``"view"`` (the transformed copy, the paper) or ``"centroid"``.
        centroids: the centroid embeddings of the metric loss: ``"batch"`` (F of the
            batch's centroid representations, the paper's code) or ``"learned"`` (the K
            centroids of the clustering module, held fixed in that loss).
        embedding_batchnorm: batch norm before the embedding's linear layer (the book's
            addition; ``False`` is the paper's module, which loses clusters here, chapter 7).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        seed: seeds the network, the transformations and the data order.
        progress: show a tqdm bar over epochs.

    Returns:
        :class:`BaselineResult` with ``labels`` (argmax of the clustering module),
        ``embeddings`` (N, embedding_dim), and ``history`` with one row per epoch:
        ``phase, epoch, loss, metric, reconstruction, rim, conditional_entropy,
        marginal_entropy, clusters_used, label_change``.

    Raises:
        ValueError: bad images, K outside 2..N, or bad settings.
    """
    x_np = prepare_inputs(images)
    n = len(x_np)
    k = check_k(n_clusters, n)
    epochs = check_positive_int(epochs, "epochs")
    pretrain_epochs = check_positive_int(pretrain_epochs, "pretrain_epochs", minimum=0)
    embedding_dim = check_positive_int(embedding_dim, "embedding_dim")
    representation_dim = check_positive_int(representation_dim, "representation_dim")
    batch_size = check_positive_int(batch_size, "batch_size", minimum=2)
    if centroids not in CENTROIDS:
        raise ValueError(f"centroids must be one of {CENTROIDS}, got {centroids!r}.")
    if positive not in POSITIVES:
        raise ValueError(f"positive must be one of {POSITIVES}, got {positive!r}.")
    if not (temperature > 0 and cluster_temperature > 0):
        raise ValueError("temperature and cluster_temperature must be positive.")
    if len(weights) != 3 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be three non-negative numbers (metric, reconstruction, rim), got {weights!r}.")
    w_m, w_rec, w_rim = (float(w) for w in weights)
    dev = resolve_device(device)
    params: dict[str, Any] = dict(n_clusters=k, epochs=epochs, embedding_dim=embedding_dim,
                                  representation_dim=representation_dim, pretrain_epochs=pretrain_epochs,
                                  batch_size=batch_size, lr=lr, temperature=temperature,
                                  cluster_temperature=cluster_temperature, weights=[w_m, w_rec, w_rim],
                                  alpha=alpha, mu=mu, positive=positive, centroids=centroids,
                                  embedding_batchnorm=embedding_batchnorm, device=str(dev), seed=seed)
    gen = torch.Generator().manual_seed(int(seed))
    history: list[dict[str, Any]] = []

    with seeded(seed, dev):
        x = torch.from_numpy(x_np).to(dev)
        net = CBSwRNet(x_np, k, representation_dim, embedding_dim, cluster_temperature,
                       embedding_batchnorm).to(dev)
        for e, v in enumerate(pretrain_autoencoder(net.ae, x, pretrain_epochs, batch_size, gen, lr=lr,
                                                   loss="mse", progress=progress, desc="CBSwR warm-up")):
            history.append({"phase": "pretrain", "epoch": e + 1, "loss": v, "reconstruction": v})
        # centroids start at k-means of the warmed-up embeddings (label-free)
        from sklearn.cluster import KMeans

        if embedding_batchnorm:
            _calibrate_batch_norm(net.embed[0], net.ae, x)
        emb, _ = _embed_and_label(net, x)
        km = KMeans(k, n_init=4, random_state=seed).fit(emb)
        with torch.no_grad():
            net.centroids.copy_(F.normalize(torch.as_tensor(km.cluster_centers_, dtype=torch.float32), dim=1))
        labels = km.labels_
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for epoch in tqdm(range(1, epochs + 1), desc="CBSwR", disable=not progress):
            net.train()
            sums: dict[str, float] = {}
            for idx in batches(n, batch_size, gen):
                xb = x[idx.to(dev)]
                parts = _step_losses(net, xb, augment(xb, gen), temperature, alpha, mu, positive, centroids)
                loss = w_m * parts["metric"] + w_rec * parts["reconstruction"] + w_rim * parts["rim"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                for key, val in {"loss": loss, **parts}.items():
                    sums[key] = sums.get(key, 0.0) + val.item() * len(idx)
            emb, new = _embed_and_label(net, x)
            history.append({"phase": "train", "epoch": epoch, **{kk: v / n for kk, v in sums.items()},
                            "clusters_used": int(len(np.unique(new))),
                            "label_change": float((new != labels).mean())})
            labels = new
    cols = ["phase", "epoch", "loss", "metric", "reconstruction", "rim", "conditional_entropy",
            "marginal_entropy", "clusters_used", "label_change"]
    return BaselineResult(labels=canonical_labels(labels), history=pd.DataFrame(history, columns=cols),
                          embeddings=emb.astype(np.float32), params=params)


# --- evaluation of an embedding (uses labels to SCORE only) ---------------------------

def recall_at_k(embeddings: object, labels: object, k: int = 1, batch_size: int = 1024) -> float:
    """Recall@k of an embedding: the fraction of items whose k nearest neighbours
    (Euclidean, the item itself left out) include one of the same class.

    The retrieval score of deep metric learning papers (CBSwR reports R@1, 2, 4, 8).
    Labels are used to score only.

    Raises:
        ValueError: bad shapes, NaN, or k not in 1..n-1.
    """
    E = check_points(embeddings, "embeddings", min_points=2).astype(np.float64)
    n = len(E)
    lab = check_labels(labels, n)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer in 1..{n - 1}, got {k!r}.")
    sq = (E ** 2).sum(1)
    hits = 0
    for s in range(0, n, batch_size):
        d = sq[s:s + batch_size, None] + sq[None] - 2 * E[s:s + batch_size] @ E.T
        rows = np.arange(d.shape[0])
        d[rows, s + rows] = np.inf
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        hits += int((lab[nearest] == lab[s:s + batch_size, None]).any(1).sum())
    return hits / n


def embedding_nmi(embeddings: object, labels: object, seed: int = 0) -> float:
    """NMI of k-means (K = number of classes, scikit-learn, 10 restarts) on an
    embedding: the clustering score of deep metric learning papers. Labels score only."""
    from sklearn.cluster import KMeans

    from ..metrics import nmi

    E = check_points(embeddings, "embeddings")
    lab = check_labels(labels, len(E))
    k = int(lab.max()) + 1
    if k < 2:
        raise ValueError("labels have a single class; NMI of a clustering needs at least two.")
    pred = KMeans(k, n_init=10, random_state=seed).fit_predict(E)
    return nmi(lab, pred)
