"""Crash-safe file writing and provenance records.

Every result, checkpoint and prepared array is written to a temporary file in the
same folder and then renamed over the target (``os.replace`` is atomic on POSIX), so an
interrupted run never leaves a half-written file that a later run would read as valid.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically. NumPy values are converted."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")
    return Path(path)


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` atomically (temp file + rename)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_torch(path: str | os.PathLike, what: str, how_to_make: str) -> Any:
    """``torch.load(weights_only=True)`` (a file cannot run code) with clear errors.

    Args:
        path: the file.
        what: what it should hold, for messages ("critic", "embedder").
        how_to_make: how a user makes one, for the missing-file message.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupt or not a weights-only torch file.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no {what} at {path}; {how_to_make}.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable {what} checkpoint ({exc.__class__.__name__}: {exc}); "
                         "it may be truncated or from another program. Retrain or re-download it.") from exc


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit (with ``-dirty`` if tracked code has changes), or ``"unknown"``.

    Changes under ``results/`` do not count: a full-scale run rewrites its own committed
    results while it runs, and that must not mark the code that made them as modified.
    """
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ":(top)", ":(top,exclude)results"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except Exception:
        return "unknown"


def provenance(params: dict[str, Any] | None = None, seed: int | None = None,
               device: str | None = None, data_sources: dict[str, str] | None = None) -> dict[str, Any]:
    """A provenance record: parameters, seed, device, library versions, data, commit, time."""
    import sklearn
    import torch

    try:
        import torch_geometric
        pyg = torch_geometric.__version__
    except Exception:  # pragma: no cover - optional at import time
        pyg = None
    dev = device
    if dev is None:
        from .device import resolve_device
        dev = str(resolve_device("auto"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "params": params or {},
        "seed": seed,
        "device": dev,
        "gpu": gpu,
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "cpu_count": os.cpu_count()},
        "versions": {"torch": str(torch.__version__), "torch_geometric": pyg,
                     "numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "data_sources": data_sources or {},
        "git_commit": git_commit(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
