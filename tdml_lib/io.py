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


#: Largest file :func:`load_torch` reads (1 GiB). The largest critic the library accepts
#: (``critic.MAX_HIDDEN`` and ``gae.MAX_WIDTH`` layers) is about 140 MB; a bigger file is
#: not one of its checkpoints, and reading it would only fill the memory.
MAX_LOAD_BYTES = 2 ** 30


def load_torch(path: str | os.PathLike, what: str, how_to_make: str,
               map_location: Any = "cpu", remedy: str = "Retrain or re-download it.",
               max_bytes: int = MAX_LOAD_BYTES) -> Any:
    """``torch.load(weights_only=True)`` (a file cannot run code) with clear errors.

    The one reader of torch files in the library (critics, embedders, training
    checkpoints); what a file holds is checked by its caller (e.g.
    ``ClusteringCritic.from_state``).

    Args:
        path: the file.
        what: what it should hold, for messages ("critic", "embedder", "checkpoint").
        how_to_make: how a user makes one, for the missing-file message.
        map_location: where tensors are loaded (default the CPU).
        remedy: what to do with an unreadable file, appended to the message.
        max_bytes: refuse larger files before reading them.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is larger than ``max_bytes``, truncated, corrupt or not a
            weights-only torch file.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}; {how_to_make}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path} holds {size / 2**20:,.0f} MB, more than any {what} of this library "
                         f"({max_bytes / 2**20:,.0f} MB at most): it is not one. {remedy}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # torch's first line says what failed; the rest suggests weights_only=False, which
        # would let the file run code: not advice to pass on
        reason = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]
        raise ValueError(f"cannot read {what} {path} with torch.load(weights_only=True): not a readable "
                         f"{what} file ({exc.__class__.__name__}: {reason}); it may be truncated or from "
                         f"another program. {remedy}") from exc


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
