"""Image features fitted on the *training* domain only (DESIGN.md "Image features").

The default feature map is a PCA (scikit-learn) of pixels scaled to [0, 1], 32
components, fitted on the training domain's training split and applied unchanged to
every test domain, so no test domain leaks into training (a replication choice: the
poster names no feature extractor). Used by chapters 1-5.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import data
from .io import atomic_path
from .problems import Problem, sample_problems


class FeatureMap:
    """PCA of flattened images: ``fit`` on one domain, ``transform`` any 28x28 images."""

    def __init__(self, n_components: int = 32) -> None:
        self.n_components = int(n_components)
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.domain = ""

    def fit(self, images: np.ndarray, seed: int = 0, domain: str = "") -> "FeatureMap":
        from sklearn.decomposition import PCA

        flat = self._flat(images)
        pca = PCA(self.n_components, random_state=seed, svd_solver="randomized").fit(flat)
        self.mean_, self.components_, self.domain = pca.mean_, pca.components_, domain
        return self

    @staticmethod
    def _flat(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        return images.reshape(len(images), -1).astype(np.float32) / 255.0

    def transform(self, images: np.ndarray) -> np.ndarray:
        """float32 features (N, n_components)."""
        if self.components_ is None:
            raise ValueError("FeatureMap is not fitted; call fit() or fit_feature_map().")
        flat = self._flat(images)
        if flat.shape[1] != self.components_.shape[1]:
            raise ValueError(f"images have {flat.shape[1]} pixels, the map was fitted on "
                             f"{self.components_.shape[1]}.")
        return ((flat - self.mean_) @ self.components_.T).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean_, components=self.components_, domain=np.array(self.domain))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureMap":
        with np.load(path) as z:
            fm = cls(z["components"].shape[0])
            fm.mean_, fm.components_, fm.domain = z["mean"], z["components"], str(z["domain"])
        return fm


def fit_feature_map(domain: str = "numbers", n_components: int = 32, n_fit: int = 10000,
                    seed: int = 0) -> FeatureMap:
    """The PCA feature map of a training domain, cached under ``data_dir()``."""
    path = data.data_dir() / f"pca_{domain}_{n_components}_{n_fit}_{seed}.npz"
    if path.exists():
        return FeatureMap.load(path)
    ds = data.load(domain, "train")
    idx = np.random.default_rng(seed).permutation(len(ds.labels))[:n_fit]
    fm = FeatureMap(n_components).fit(ds.images[idx], seed=seed, domain=domain)
    fm.save(path)
    return fm


def domain_problems(domain: str, n_problems: int, split: str = "test", feature_map: FeatureMap | None = None,
                    n_clusters: int | Sequence[int] = (2, 10), points_per_class: int | Sequence[int] = (20, 100),
                    seed: int = 0, classes: Sequence[int] | None = None) -> list[Problem]:
    """Clustering problems from a dataset's images, through a feature map fitted on the
    training domain (default: PCA on Numbers)."""
    ds = data.load(domain, split)
    fm = feature_map if feature_map is not None else fit_feature_map("numbers")
    return sample_problems(fm.transform(ds.images), ds.labels, n_problems, n_clusters, points_per_class,
                           seed=seed, source=f"{domain} ({split}, features: PCA on {fm.domain or 'numbers'})",
                           classes=classes)
