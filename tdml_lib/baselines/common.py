"""Pieces shared by the two baselines of chapters 6 and 7.

* :class:`BaselineResult` -- what every baseline returns;
* :func:`prepare_inputs` -- images (N, H, W) or features (N, d) checked at the door and
  scaled for a network;
* :class:`ConvAutoEncoder` / :class:`MLPAutoEncoder` and :func:`make_autoencoder` -- the
  one small auto-encoder both baselines build on (a shallow conv AE);
* :func:`seeded`, :func:`batches`, :func:`augment`, :func:`encode_all`,
  :func:`pretrain_autoencoder` -- training helpers;
* :func:`kmeans_labels` -- the k-means reference row of the comparison tables;

Ground-truth labels are never an argument of a training or alignment function here:
only :func:`evaluate_baseline` takes them, and it hands them to the metrics after the
clustering is finished.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..device import deterministic_algorithms
from ..problems import standardize
from ..validation import as_real_array, check_labels, check_n_clusters, check_positive_int

MIN_IMAGE_SIDE = 4


@dataclass
class BaselineResult:
    """The outcome of one baseline run.

    Attributes:
        labels: int64 array (n,), the clustering, ids 0..K-1 (canonical order).
        history: one row per training epoch (losses; see the method's docstring).
        embeddings: float32 array (n, e) of the learned embedding, where the method has
            one (CBSwR); None otherwise.
        confident_fraction: Selective Pseudo-Label Clustering: the fraction of points
            the ensemble agreed on, before training (index 0) and after each round.
        rounds: one row per pseudo-labelling round (SPC), else None.
        round_labels: the ensemble clustering after each round (SPC), for plots.
        params: the arguments the run used (for provenance records).
    """

    labels: np.ndarray
    history: pd.DataFrame
    embeddings: np.ndarray | None = None
    confident_fraction: list[float] = field(default_factory=list)
    rounds: pd.DataFrame | None = None
    round_labels: list[np.ndarray] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        """The number of non-empty clusters in :attr:`labels`."""
        return int(len(np.unique(self.labels)))

    def __repr__(self) -> str:
        emb = None if self.embeddings is None else self.embeddings.shape
        return (f"BaselineResult(n_points={len(self.labels)}, n_clusters={self.n_clusters}, "
                f"epochs={len(self.history)}, embeddings={emb})")


# --- inputs ---------------------------------------------------------------------------

def prepare_inputs(data: object, name: str = "images", min_points: int = 3) -> np.ndarray:
    """Check a data set at the door and scale it for a network.

    Images (N, H, W) become float32 (N, 1, H, W) in [0, 1]: uint8 is divided by 255,
    any other dtype is min-max scaled over the whole array. Features (N, d) are
    z-scored per feature (constant features become 0).

    Args:
        data: array of shape (N, H, W) or (N, d).
        name: the argument's name, for error messages.
        min_points: the smallest N accepted.

    Raises:
        ValueError: wrong number of dimensions, too few points, images smaller than
            4x4, non-numeric values, NaN or inf.
    """
    arr = as_real_array(data, name, "(N, H, W) or (N, d)")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be images (N, H, W) or features (N, d), got shape {arr.shape}. "
                         "For colour images, convert to grey first; for one image, add a leading axis.")
    if arr.shape[0] < min_points:
        raise ValueError(f"{name} has {arr.shape[0]} item(s); clustering needs at least {min_points}.")
    if min(arr.shape[1:]) == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    if arr.ndim == 3 and min(arr.shape[1:]) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name} are {arr.shape[1]}x{arr.shape[2]}; the conv auto-encoder needs images "
                         f"of at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (pass flattened features (N, d) instead).")
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0)[:, None] if arr.ndim == 3 else standardize(arr)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr.reshape(len(arr), -1))).any(axis=1).sum())
        raise ValueError(f"{name} holds NaN or inf in {bad} item(s); drop or impute them first.")
    if arr.ndim == 2:
        return standardize(arr)
    lo, hi = arr.min(), arr.max()
    scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return scaled.astype(np.float32)[:, None]


def check_k(n_clusters: int, n_points: int) -> int:
    """K must be an integer with 2 <= K <= n (one cluster needs no method)."""
    k = check_n_clusters(n_clusters, n_points)
    if k < 2:
        raise ValueError(f"n_clusters={k}: a baseline needs at least 2 clusters.")
    return k


# --- the small auto-encoder -----------------------------------------------------------

class ConvAutoEncoder(nn.Module):
    """A shallow conv auto-encoder for grey images of any size (H, W >= 4).

    Encoder: two stride-2 3x3 convolutions (16, 32 channels) with batch norm and leaky
    ReLU (slope 0.3, as in the SPC code), then a linear map to the latent code.
    Decoder: the mirror image with 4x4 transposed convolutions, cropped to (H, W),
    sigmoid output (pixels in [0, 1]). Small on purpose: the baselines must train in
    seconds on a CPU (replication choice; the papers' networks are deeper).
    """

    def __init__(self, image_shape: tuple[int, int], latent_dim: int = 50, channels: Sequence[int] = (16, 32)):
        super().__init__()
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        c1, c2 = int(channels[0]), int(channels[1])
        h4 = math.ceil(math.ceil(self.image_shape[0] / 2) / 2)
        w4 = math.ceil(math.ceil(self.image_shape[1] / 2) / 2)
        self._grid = (c2, h4, w4)
        self.latent_dim = int(latent_dim)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, stride=2, padding=1), nn.BatchNorm2d(c1), nn.LeakyReLU(0.3),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.LeakyReLU(0.3),
            nn.Flatten(), nn.Linear(c2 * h4 * w4, self.latent_dim))
        self.decoder_in = nn.Sequential(nn.Linear(self.latent_dim, c2 * h4 * w4), nn.LeakyReLU(0.3))
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.BatchNorm2d(c1), nn.LeakyReLU(0.3),
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) -> codes (B, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, latent_dim) -> images (B, 1, H, W) in [0, 1]."""
        h = self.decoder_in(z).view(-1, *self._grid)
        out = self.decoder_conv(h)[:, :, : self.image_shape[0], : self.image_shape[1]]
        return torch.sigmoid(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class MLPAutoEncoder(nn.Module):
    """The same idea for feature vectors (N, d): d -> 256 -> latent -> 256 -> d, linear output."""

    def __init__(self, n_features: int, latent_dim: int = 50, hidden: int = 256):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.3),
                                     nn.Linear(hidden, self.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.LeakyReLU(0.3),
                                     nn.Linear(hidden, n_features))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def make_autoencoder(x: np.ndarray | torch.Tensor, latent_dim: int,
                     channels: Sequence[int] = (16, 32)) -> ConvAutoEncoder | MLPAutoEncoder:
    """The auto-encoder that fits prepared inputs: conv for (N, 1, H, W) with ``channels``
    in its two conv layers, MLP for (N, d)."""
    if x.ndim == 4:
        return ConvAutoEncoder((x.shape[2], x.shape[3]), latent_dim, channels)
    return MLPAutoEncoder(x.shape[1], latent_dim)


# --- training helpers -----------------------------------------------------------------

@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's global generator seeded, then restore the caller's state.

    Network initialisation and noise draws inside the block depend on ``seed`` only;
    the caller's random state is untouched afterwards (``torch.random.fork_rng``).
    Determinism where it is cheap: :func:`tdml_lib.device.deterministic_algorithms`.
    """
    cuda = device is not None and device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index or 0] if cuda else []), deterministic_algorithms(device):
        torch.manual_seed(int(seed))
        yield


def batches(n: int, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``; the order comes from ``generator`` only.

    A last batch of a single item is merged into the previous one (batch norm needs two).
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else n
        yield order[s:e]


def augment(x: torch.Tensor, generator: torch.Generator, max_rotation: float = 12.0,
            max_shift: float = 0.1, scale: tuple[float, float] = (0.9, 1.1),
            noise: float = 0.1) -> torch.Tensor:
    """A random geometric view of each item (CBSwR's augmented copy).

    Images: a random affine map per image -- rotation up to ``max_rotation`` degrees,
    shift up to ``max_shift`` of the side, zoom in ``scale`` -- applied with
    ``F.affine_grid``/``F.grid_sample`` (torchvision is not available here).
    Features (B, d): Gaussian noise of standard deviation ``noise``.
    All draws come from ``generator`` (on the CPU), so views are reproducible.
    """
    b = x.shape[0]
    if x.ndim == 2:
        eps = torch.randn(x.shape, generator=generator).to(x.device)
        return x + noise * eps
    u = torch.rand(b, 4, generator=generator)
    angle = (u[:, 0] * 2 - 1) * math.radians(max_rotation)
    zoom = scale[0] + u[:, 1] * (scale[1] - scale[0])
    tx, ty = (u[:, 2] * 2 - 1) * max_shift * 2, (u[:, 3] * 2 - 1) * max_shift * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


@torch.no_grad()
def encode_all(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               batch_size: int = 1024) -> torch.Tensor:
    """Apply ``fn`` (e.g. ``model.encode``) to all of ``x`` in batches, without gradients.

    The caller puts the model in eval mode (batch norm statistics, not batch ones).
    """
    return torch.cat([fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def latent_noise(z: torch.Tensor, scale: float) -> torch.Tensor:
    """SPC's latent noise: Gaussian noise divided by its largest magnitude, times
    ``scale`` (the SPC code's ``noiseify``, which injects 1.5 by default)."""
    if scale <= 0:
        return z
    eps = torch.randn_like(z)
    return z + scale * eps / eps.abs().max().clamp_min(1e-12)


def reconstruction_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-item reconstruction error: ``"l1"`` (SPC's code) or ``"mse"`` (CBSwR's)."""
    if kind not in ("l1", "mse"):
        raise ValueError(f"reconstruction loss must be 'l1' or 'mse', got {kind!r}.")
    elem = F.l1_loss if kind == "l1" else F.mse_loss

    def per_item(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return elem(pred, target, reduction="none").flatten(1).mean(1)

    return per_item


def pretrain_autoencoder(model: nn.Module, x: torch.Tensor, epochs: int, batch_size: int,
                         generator: torch.Generator, lr: float = 1e-3, loss: str = "l1",
                         noise: float = 0.0, progress: bool = False, desc: str = "pretrain") -> list[float]:
    """Train an auto-encoder on reconstruction alone (Adam); return the mean loss per epoch.

    Args:
        model: a :class:`ConvAutoEncoder` or :class:`MLPAutoEncoder` on ``x``'s device.
        x: prepared inputs on that device.
        epochs: passes over ``x``.
        batch_size: items per step.
        generator: the CPU generator that orders the data.
        lr: Adam's learning rate.
        loss: ``"l1"`` or ``"mse"``.
        noise: scale of SPC's latent noise (0 for none).
        progress: show a tqdm bar over epochs.
        desc: the bar's label.
    """
    per_item = reconstruction_loss(loss)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        total, count = 0.0, 0
        for idx in batches(len(x), batch_size, generator):
            xb = x[idx.to(x.device)]
            rec = per_item(model.decode(latent_noise(model.encode(xb), noise)), xb).mean()
            opt.zero_grad()
            rec.backward()
            opt.step()
            total += rec.item() * len(idx)
            count += len(idx)
        losses.append(total / count)
    return losses


# --- reference and evaluation ---------------------------------------------------------

def kmeans_labels(images: object, n_clusters: int, pca_dim: int | None = None, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, 10 restarts) on the prepared pixels, optionally after PCA.

    The reference row of chapters 6 and 7: the same inputs as the baselines, no network.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = prepare_inputs(images).reshape(len(np.asarray(images)), -1)
    k = check_k(n_clusters, len(x))
    if pca_dim is not None:
        pca_dim = check_positive_int(pca_dim, "pca_dim")
        x = PCA(min(pca_dim, *x.shape), random_state=seed).fit_transform(x)
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    return check_labels(labels, len(labels))
