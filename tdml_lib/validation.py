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


def _n_distinct_rows(Y: np.ndarray) -> int:
    """Number of distinct rows, comparing their bytes (``+ 0.0`` makes -0.0 equal 0.0)."""
    Y = np.ascontiguousarray(Y + 0.0)
    return len(np.unique(Y.view(np.dtype((np.void, Y.dtype.itemsize * Y.shape[1]))).ravel()))


#: Share of the distinct points that the float32 cast may merge before
#: :func:`scaled_points` refuses the data: a few near-duplicates (closer than float32's
#: resolution, about 1e-7 of the data's spread) are harmless; a bulk that collapses
#: because an outlier sets the scale is not.
MAX_MERGED_SHARE = 0.1


def scaled_points(X: object, name: str = "X", dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, float]:
    """``X`` centred and divided by its RMS pairwise distance, in float64, then cast.

    The RMS pairwise distance is ``sqrt(2 * mean ||x_i - mean(x)||^2)``. Doing this in
    float64 *before* the float32 cast keeps the structure of data far from the origin
    (coordinates around 1e7) or at extreme scales (1e-30, 1e19, 1e300); X is first made
    C-ordered float64 (:func:`check_points`), so the result does not depend on the
    array's memory order. All points identical: zeros and scale 1.

    Returns:
        (points (n, d) of ``dtype``, the centre (d,) and the scale, in X's units).

    Raises:
        ValueError: bad X (see :func:`check_points`), or a dynamic range that ``dtype``
            cannot hold: the cast merges more than :data:`MAX_MERGED_SHARE` of the
            distinct points (e.g. one outlier 1e9 times farther than the rest squeezes
            them together): rescale or remove the outliers.
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
    distinct, kept = _n_distinct_rows(Y), _n_distinct_rows(out)
    if distinct - kept > MAX_MERGED_SHARE * distinct:
        raise ValueError(f"{name}'s dynamic range is too wide for {np.dtype(dtype).name}: once the data "
                         f"are centred and scaled, {distinct - kept} of its {distinct} distinct points "
                         "become identical (an outlier far from the rest sets the scale?). Remove the "
                         "outliers or transform the features (e.g. a log).")
    return out, centre * top, rms * top


def check_labels(labels: object, n_points: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 ids renumbered 0..K-1 in order of first appearance.

    Non-contiguous ids (e.g. ``[3, 3, 7]``) are accepted and renumbered; label names
    carry no meaning for a clustering.

    Raises:
        ValueError: wrong length, not 1-D, negative, non-integer (float with a fraction,
            complex, bool, string) or non-finite values.
    """
    try:
        arr = np.asarray(labels)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a 1-D array of integer cluster ids: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one id per point, got shape {arr.shape}.")
    if arr.shape[0] != n_points:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n_points} points.")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be integer cluster ids, got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be integer cluster ids, got complex dtype {arr.dtype}; "
                         "pass the real part (labels.real) if that is what you mean.")
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
    return check_int(value, name, minimum)


def check_int(value: object, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (Python or NumPy, not a bool, not a float even if whole) in
    ``minimum..maximum`` (either bound may be None).

    Raises:
        ValueError: naming ``name``, the value and the accepted range.
    """
    bounds = (f" >= {minimum}" if maximum is None else f" between {minimum} and {maximum}") \
        if minimum is not None else (f" <= {maximum}" if maximum is not None else "")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r} ({type(value).__name__}).")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer{bounds}, got {value!r}.")
    return int(value)


def check_index(value: object, name: str, size: int) -> int:
    """A position in a sequence of ``size`` items: an integer in 0..size-1 (negative
    positions, floats and bools are refused, since a float index usually means a bug)."""
    if size < 1:
        raise ValueError(f"{name} indexes an empty sequence.")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer position, got {value!r} ({type(value).__name__}).")
    if not 0 <= value < size:
        raise ValueError(f"{name}={value!r} is outside 0..{size - 1}.")
    return int(value)


def check_real(value: object, name: str, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number (int or float, not a bool, not NaN/inf) within the bounds.

    Args:
        low, high: bounds (None: unbounded on that side).
        low_open, high_open: exclude the bound itself (e.g. a rate in (0, 1]).

    Raises:
        ValueError: naming ``name``, the value and the accepted interval.
    """
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}.")
    if (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return v


def check_real_range(value: object, name: str, low: float = 0.0, high: float = 1.0,
                     high_open: bool = False) -> tuple[float, float]:
    """A range ``(lowest, highest)`` of reals within ``[low, high]`` (``high`` itself
    excluded when ``high_open``), lowest first: the ranges that training draws a share or a
    fraction from, uniformly, per problem or per point.

    Raises:
        ValueError: naming ``name``, what it must satisfy and the value.
    """
    bound = f"{low} <= lowest <= highest {'<' if high_open else '<='} {high}"
    try:
        lowest, highest = (check_real(v, name) for v in value)   # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two real numbers (lowest, highest) with {bound}, got {value!r}.") from None
    if not (low <= lowest <= highest and (highest < high if high_open else highest <= high)):
        raise ValueError(f"{name} must satisfy {bound}, got {value!r}.")
    return lowest, highest


def check_choice(value: object, name: str, choices: Sequence[object]) -> object:
    """One of ``choices`` (compared with ==), or a ValueError listing them."""
    try:
        ok = any(value == c and type(value) is type(c) for c in choices)
    except Exception:  # arrays and the like compare elementwise
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_nonempty(values: object, name: str) -> list:
    """A non-string, non-empty sequence, as a list (``families=[]``, ``sizes=()``...)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a list, got {values!r}.")
    out = list(values)
    if not out:
        raise ValueError(f"{name} is empty; give at least one.")
    return out


def argparse_type(check, *args: object, **kwargs: object):
    """An ``argparse`` ``type=`` that parses a number and runs a check of this module on
    it, so the command line refuses what the library would refuse, with the same message.

    Example: ``p.add_argument("--sizes", type=argparse_type(check_int, "--sizes", 3))``.
    """
    import argparse

    def parse(text: str) -> object:
        try:
            value: object = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        try:
            return check(value, *args, **kwargs)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


def check_n_clusters(n_clusters: int, n_points: int, name: str = "n_clusters") -> int:
    """Check 1 <= K <= n."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {n_clusters!r}.")
    if not 1 <= int(n_clusters) <= n_points:
        raise ValueError(f"{name}={n_clusters} must be between 1 and the number of points ({n_points}).")
    return int(n_clusters)


# --- saved model states --------------------------------------------------------------------

def check_state_fields(state: object, fields: dict[str, str], where: str, remedy: str) -> dict:
    """A loaded model state: a dict holding every key of ``fields`` (extra keys are
    allowed, so newer formats can add some). ``fields`` maps key -> what it holds, for
    the message.

    Raises:
        ValueError: not a dict, or keys missing, naming ``where``, the keys and ``remedy``.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{where} is a {type(state).__name__}, not a saved state (a dict). {remedy}")
    missing = [k for k in fields if k not in state]
    if missing:
        what = "; ".join(f"{k!r} ({fields[k]})" for k in missing)
        raise ValueError(f"{where} lacks field(s) {what}: it is incomplete or from another program. {remedy}")
    return state


def check_tensors(found: object, expected: dict[str, tuple[int, ...]], where: str, remedy: str,
                  positive: bool = False) -> None:
    """A dict of finite float tensors with exactly the ``expected`` keys and shapes
    (a model's ``state_dict`` as saved), or one tensor when ``expected`` has the key "".

    Args:
        found: the loaded value.
        expected: name -> shape; ``{"": shape}`` checks a single tensor.
        where: the file and field, for messages (``"critic.pt: field 'net'"``).
        remedy: what to do, appended to every message.
        positive: every value must also be > 0 (a standard deviation).

    Raises:
        ValueError: a missing or unexpected tensor, a wrong shape, a non-tensor, a NaN/inf
            (or, with ``positive``, a value <= 0).
    """
    import torch

    tensors = {"": found} if "" in expected else found
    if not isinstance(tensors, dict):
        raise ValueError(f"{where} should be a dict of tensors, got {type(found).__name__}. {remedy}")
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise ValueError(f"{where} does not match the model: missing {missing}, unexpected {extra}. {remedy}")
    for name, shape in expected.items():
        t = tensors[name]
        label = f"{where}" + (f"[{name!r}]" if name else "")
        if not torch.is_tensor(t) or not t.is_floating_point():
            raise ValueError(f"{label} should be a float tensor, got {type(t).__name__}. {remedy}")
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{label} has shape {tuple(t.shape)}, but the model's configuration needs "
                             f"{tuple(shape)}. {remedy}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{label} holds NaN or inf: scores would be NaN. {remedy}")
        if positive and not bool((t > 0).all()):
            raise ValueError(f"{label} must be > 0 everywhere (it divides the embedding), found "
                             f"{float(t.min())}. {remedy}")
