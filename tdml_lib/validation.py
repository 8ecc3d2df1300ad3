"""Input checks shared by every public entry point.

Each check raises a ``ValueError`` that names the argument, what was wrong and what
was expected, so a user never meets a deep torch traceback (scikit-learn's habit of
validating at the door).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_POINTS = 3


def as_real_array(X: object, name: str, shape: str) -> np.ndarray:
    """``X`` as a real numeric array, or a ValueError naming ``name`` and the expected ``shape``."""
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be an array of shape {shape}: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real-valued, got complex dtype {arr.dtype}.")
    return arr


def check_points(X: object, name: str = "X", min_points: int = MIN_POINTS) -> np.ndarray:
    """Return ``X`` as a finite float64 array of shape (n, d), C-ordered.

    float64 so that no precision is lost before the data are centred and scaled
    (:func:`scaled_points`): coordinates around 1e7 keep their structure.

    Args:
        X: a point set, array-like of shape (n_points, n_features).
        name: the argument's name, used in error messages.
        min_points: the smallest number of points accepted.

    Raises:
        ValueError: X is not 2-D, is empty, has too few points, or holds NaN/inf
            or non-numeric values.
    """
    arr = as_real_array(X, name, "(n_points, n_features)")
    if arr.ndim != 2:
        hint = " Use X.reshape(-1, 1) for a single feature." if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_points, n_features), got shape {arr.shape}.{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); give at least {min_points} points.")
    if arr.shape[0] < min_points:
        raise ValueError(
            f"{name} has {arr.shape[0]} point(s); clustering needs at least {min_points}."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} holds NaN or inf in {bad} row(s); drop or impute them first.")
    return arr


def scaled_points(X: object, name: str = "X", dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, float]:
    """``X`` centred and divided by its RMS pairwise distance, in float64, then cast.

    The RMS pairwise distance is ``sqrt(2 * mean ||x_i - mean(x)||^2)``. Doing this in
    float64 *before* the float32 cast keeps the structure of data far from the origin
    (coordinates around 1e7) or at extreme scales (1e-30, 1e19); the result does not
    depend on the array's memory order. All points identical: zeros and scale 1.

    Returns:
        (points (n, d) of ``dtype``, the centre (d,) and the scale, in X's units).

    Raises:
        ValueError: bad X (see :func:`check_points`), or a dynamic range that ``dtype``
            cannot hold (distinct points that become identical after the cast, e.g. one
            outlier 1e9 times farther than the rest): rescale or remove the outliers.
    """
    Xd = check_points(X, name)
    top = float(np.abs(Xd).max())
    if top == 0.0:
        return np.zeros(Xd.shape, dtype=dtype), np.zeros(Xd.shape[1]), 1.0
    Y = Xd / top                                   # in [-1, 1]: no overflow in the squares below
    centre = Y.mean(axis=0)
    Y -= centre
    rms = float(np.sqrt(2.0 * np.mean(np.einsum("ij,ij->i", Y, Y))))
    if rms == 0.0:
        return np.zeros(Xd.shape, dtype=dtype), centre * top, 1.0
    Y /= rms
    out = Y.astype(dtype)
    if len(out) <= 200_000 and len(np.unique(out, axis=0)) < len(np.unique(Y, axis=0)):
        raise ValueError(f"{name}'s dynamic range is too wide for {np.dtype(dtype).name}: distinct points become "
                         "identical once the data are centred and scaled (an outlier far from the rest?). "
                         "Remove the outliers or transform the features (e.g. a log).")
    return out, centre * top, rms * top


def check_labels(labels: object, n_points: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 ids renumbered 0..K-1 in order of first appearance.

    Non-contiguous ids (e.g. ``[3, 3, 7]``) are accepted and renumbered; label names
    carry no meaning for a clustering.

    Raises:
        ValueError: wrong length, not 1-D, negative, non-integer or non-finite values.
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one id per point, got shape {arr.shape}.")
    if arr.shape[0] != n_points:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n_points} points.")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be integer cluster ids, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be whole numbers (integer cluster ids).")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative cluster ids, found {int(arr.min())}.")
    return canonical_labels(arr)


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber ids 0..K-1 in order of first appearance (label names carry no meaning)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def check_labelings(labelings: Sequence[object] | np.ndarray, n_points: int) -> np.ndarray:
    """Stack many clusterings of one point set into an int64 array (B, n), canonicalised."""
    if isinstance(labelings, np.ndarray) and labelings.ndim == 1:
        raise ValueError("labelings must be a list of label vectors (or a 2-D array B x n).")
    if len(labelings) == 0:
        raise ValueError("labelings is empty; give at least one clustering.")
    return np.stack([check_labels(lab, n_points, name=f"labelings[{i}]")
                     for i, lab in enumerate(labelings)])


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """An integer >= ``minimum`` (epochs, batch sizes, dimensions); bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_n_clusters(n_clusters: int, n_points: int, name: str = "n_clusters") -> int:
    """Check 1 <= K <= n."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {n_clusters!r}.")
    if not 1 <= int(n_clusters) <= n_points:
        raise ValueError(f"{name}={n_clusters} must be between 1 and the number of points ({n_points}).")
    return int(n_clusters)
