"""Image features fitted on the *training* domain only.

The default feature map is a PCA (scikit-learn) of pixels scaled to [0, 1] with 32
components, fitted on a sample of the training domain's training split and applied
unchanged to every test domain, so no test domain leaks into training. Both the PCA
(rather than a shallow conv auto-encoder) and the 32
components are replication choices: the poster names no feature extractor. Used by
chapters 1-5.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from . import data
from .io import atomic_path
from .problems import Problem, sample_problems
from .validation import as_real_array, check_positive_int

DEFAULT_COMPONENTS = 32  # replication choice (see the module docstring)


class FeatureMap:
    """PCA of flattened images: ``fit`` on one domain, ``transform`` images of any domain.

    Pixels are scaled to [0, 1] before the PCA: integer images (uint8, 0-255) are divided
    by 255; float images must already be in [0, 1].

    Attributes:
        n_components: the feature dimension.
        mean_: pixel means of the fitting images, float (n_pixels,).
        components_: principal axes, float (n_components, n_pixels).
        domain: the name of the domain it was fitted on (recorded on problems).
    """

    def __init__(self, n_components: int = DEFAULT_COMPONENTS) -> None:
        self.n_components = check_positive_int(n_components, "n_components")
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self.domain = ""

    @staticmethod
    def _flat(images: object) -> np.ndarray:
        arr = as_real_array(images, "images", "(N, H, W) or (N, n_pixels)")
        if arr.ndim < 2 or arr.shape[0] == 0:
            raise ValueError(f"images must be a non-empty stack (N, H, W) or (N, n_pixels), got shape {arr.shape}.")
        flat = arr.reshape(len(arr), -1).astype(np.float32)
        if not np.all(np.isfinite(flat)):
            raise ValueError("images hold NaN or inf; give pixel values in [0, 255] (uint8) or [0, 1].")
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
            return flat / (1.0 if arr.dtype == bool else 255.0)
        if flat.min() < 0.0 or flat.max() > 1.0:
            raise ValueError("float images must hold pixels in [0, 1]; give uint8 images (0-255) or divide by 255.")
        return flat

    def fit(self, images: object, seed: int = 0, domain: str = "") -> "FeatureMap":
        """Fit the PCA (scikit-learn, randomized SVD seeded by ``seed``).

        Args:
            images: training-domain images, (N, H, W) or (N, n_pixels).
            seed: random_state of the randomized SVD.
            domain: name of the training domain, recorded with the map.

        Raises:
            ValueError: bad images, or fewer images/pixels than ``n_components``.
        """
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        flat = self._flat(images)
        if self.n_components > min(flat.shape):
            raise ValueError(f"n_components={self.n_components} needs at least that many images and pixels; "
                             f"got {flat.shape[0]} images of {flat.shape[1]} pixels.")
        # one BLAS thread: with more, the components differ in their last bits with the
        # thread count, and so would every feature, problem and critic made from them
        with threadpool_limits(1):
            pca = PCA(self.n_components, random_state=seed, svd_solver="randomized").fit(flat)
        self.mean_, self.components_, self.domain = pca.mean_, pca.components_, str(domain)
        return self

    def transform(self, images: object) -> np.ndarray:
        """float32 features (N, n_components) of images of any domain (same pixel count)."""
        if self.components_ is None or self.mean_ is None:
            raise ValueError("FeatureMap is not fitted; call fit() or fit_feature_map().")
        flat = self._flat(images)
        if flat.shape[1] != self.components_.shape[1]:
            raise ValueError(f"images have {flat.shape[1]} pixels, the map was fitted on "
                             f"{self.components_.shape[1]}.")
        return ((flat - self.mean_) @ self.components_.T).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the map to an ``.npz`` file, atomically."""
        if self.components_ is None:
            raise ValueError("FeatureMap is not fitted; nothing to save.")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mean=self.mean_, components=self.components_, domain=np.array(self.domain))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureMap":
        """Read a map written by :meth:`save`.

        Raises:
            ValueError: the file is not a saved feature map.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                fm = cls(z["components"].shape[0])
                fm.mean_, fm.components_, fm.domain = z["mean"], z["components"], str(z["domain"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a saved FeatureMap ({exc}); delete it to fit the map again.") from exc
        return fm

    def __repr__(self) -> str:
        fitted = f"fitted on {self.domain!r}" if self.components_ is not None else "not fitted"
        return f"FeatureMap(n_components={self.n_components}, {fitted})"


def fit_feature_map(domain: str = "numbers", n_components: int = DEFAULT_COMPONENTS, n_fit: int = 10000,
                    seed: int = 0) -> FeatureMap:
    """The PCA feature map of a training domain, fitted once and cached under ``data_dir()``.

    Args:
        domain: the training domain (a name for :func:`tdml_lib.data.load`); only its
            ``train`` split is read.
        n_components: feature dimension (32 by default, a replication choice).
        n_fit: how many training images (a seeded draw) fit the PCA.
        seed: seed of that draw and of the randomized SVD.
    """
    n_components = check_positive_int(n_components, "n_components")
    n_fit = check_positive_int(n_fit, "n_fit")
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
    training domain (default: the cached PCA on Numbers, :func:`fit_feature_map`).

    Args:
        domain: dataset name for :func:`tdml_lib.data.load`.
        n_problems, n_clusters, points_per_class, seed, classes: as in
            :func:`tdml_lib.problems.sample_problems`.
        split: ``train`` or ``test``.
        feature_map: the training domain's map; it is applied, never refitted.

    Returns:
        problems whose ``source`` names the domain, the split and the map's domain.
    """
    ds = data.load(domain, split)
    fm = feature_map if feature_map is not None else fit_feature_map("numbers")
    return sample_problems(fm.transform(ds.images), ds.labels, n_problems, n_clusters, points_per_class,
                           seed=seed, source=f"{domain} ({split}, features: PCA on {fm.domain or 'numbers'})",
                           classes=classes)
