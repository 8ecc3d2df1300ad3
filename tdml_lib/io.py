"""Crash-safe file writing, folder replacement, locks, and provenance records.

Every result, checkpoint and prepared array is written to a temporary file in the
same folder and then renamed over the target (``os.replace`` is atomic on POSIX), so an
interrupted run never leaves a half-written file that a later run would read as valid.
A run's whole output folder is replaced the same way (:func:`replace_dir`), and
:func:`exclusive_lock` keeps two processes from writing one folder at once.

:func:`provenance` records what a result depends on: parameters (without machine
paths), every pinned package version, OS and CPU, the sha256 of the models, the data
sources, the git commit with a clean flag, and a hash of the library's sources.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

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


# ------------------------------------------------------------------------- folders

def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the folder ``new`` at ``target`` as a whole, replacing what is there.

    A reader sees either the old folder or the new one, never a mix: on Linux the two
    are swapped in one step (``renameat2(RENAME_EXCHANGE)``, through ctypes), elsewhere
    the old folder is renamed aside first and the new one renamed into place (a reader
    may then briefly find no folder, but never a half-written one). The old folder is
    deleted only after the new one is in place. Both must be on one file system.

    Raises:
        ValueError: ``target`` exists and is not a folder.
    """
    new, target = Path(new), Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is an existing file, not a folder; choose a folder path.")
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # `new` now holds the old folder
        return
    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except OSError:
        os.rename(aside, target)  # put the old folder back
        raise
    shutil.rmtree(aside)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's ``renameat2(RENAME_EXCHANGE)``; False where
    that is not available (another OS, an old C library or file system)."""
    if sys.platform != "linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0


class LockBusy(ValueError):
    """Another live process holds the lock (a ``ValueError``: the caller chose a path in use)."""


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str = "this folder") -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``path`` (created if needed), or fail at once.

    The lock dies with its process, even on ``kill -9``, so a crashed holder never
    blocks anyone. The lock file is removed on release; a process that opened it just
    before the removal notices (the path no longer names its file) and retries, so two
    processes never both hold it. POSIX only.

    Args:
        path: the lock file.
        what: what the lock protects, for the error message.

    Raises:
        LockBusy: another process holds it; the message names that process when known.
    """
    import fcntl

    path = Path(path)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            by = f" (process {holder})" if holder else ""
            raise LockBusy(f"another process{by} is writing {what} right now (lock {path}); "
                           "wait for it to finish or choose another output.") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file we locked: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


# ------------------------------------------------------------------------ provenance

#: The clone this library sits in (``_toc.yml``, ``requirements.txt``, ``.git``), when it does.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Paths whose changes do not make the code "dirty": the results a run rewrites, runs/,
#: and nohup.out (what `nohup make results &` writes at the top of the clone).
NOT_CODE = ("results", "runs", "nohup.out")


def git_state(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """The git commit and whether the working tree matches it.

    ``clean`` is False when a tracked file is modified or an untracked file exists
    (both can change what a run does), except under ``results/`` and ``runs/`` (a
    full-scale run rewrites its own committed results while it runs), ``nohup.out``
    and files git ignores. Outside a git clone (an installed package) both are ``None``.

    Returns:
        ``{"commit": sha or None, "clean": bool or None}``.
    """
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=normal", "--", ":(top)",
             *(f":(top,exclude){d}" for d in NOT_CODE)],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except Exception:
        return {"commit": None, "clean": None}
    return {"commit": sha, "clean": not status}


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The current git commit, with ``-dirty`` when the tree is not clean (see
    :func:`git_state`: untracked files count; ``results/``, ``runs/`` and ignored files
    do not), or ``"unknown"`` outside a clone."""
    state = git_state(cwd)
    if state["commit"] is None:
        return "unknown"
    return state["commit"] + ("" if state["clean"] else "-dirty")


def source_hash(package: str | os.PathLike | None = None) -> str:
    """sha256 over the library's Python sources: every ``.py`` file of ``tdml_lib``,
    sorted by path, each as its relative path and bytes.

    A result records it; when the library's hash differs later, the code that made the
    result has changed (chapter 8 flags it as stale). Deliberately conservative: any
    edit of any module counts, even one that cannot change a number.
    """
    root = Path(package) if package is not None else Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def module_source_hashes(package: str | os.PathLike | None = None) -> dict[str, str]:
    """sha256 of each module of the library: ``{"tdml_lib.critic": sha, ...}``.

    A package's ``__init__.py`` is named after the package (``"tdml_lib.experiments"``).
    The runner takes this at the start of a chapter run and keeps the entries of the
    modules the chapter's kernel loaded (:func:`modules_hash`).
    """
    root = Path(package) if package is not None else Path(__file__).resolve().parent
    out = {}
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        parts = (root.name,) + path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def modules_hash(modules: Iterable[str], hashes: Mapping[str, str] | None = None) -> str | None:
    """sha256 over some of the library's modules (names and sources), or None when one of
    them no longer exists.

    A chapter run records it for the modules its kernel loaded: the result then goes out
    of date when one of *those* changes, not when any module of the library does (which
    :func:`source_hash` tracks, conservatively).

    Args:
        modules: dotted module names such as ``"tdml_lib.metrics"``.
        hashes: :func:`module_source_hashes` taken earlier (default: now).
    """
    hashes = module_source_hashes() if hashes is None else hashes
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        if name not in hashes:
            return None
        digest.update(f"{name}\0{hashes[name]}\0".encode())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _requirement_names() -> list[str]:
    """Package names pinned in ``requirements.txt`` (in a clone), else the installed
    package's declared dependencies."""
    import re
    from importlib import metadata

    req = REPO_ROOT / "requirements.txt"
    if req.is_file():
        lines = req.read_text().splitlines()
    else:
        try:
            lines = metadata.requires("tdml_lib") or []
        except metadata.PackageNotFoundError:
            lines = []
    names = []
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def pinned_versions() -> dict[str, str | None]:
    """Installed version of every package pinned in ``requirements.txt`` (``None`` for
    one not installed), read with :mod:`importlib.metadata` (nothing is imported)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in _requirement_names():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


#: Environment variables that set BLAS / OpenMP thread counts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_settings() -> dict[str, Any]:
    """Torch's intra-op thread count and the BLAS thread variables of this process.

    Recorded because a CPU run repeats bit for bit only with the same thread count:
    floating-point sums are split differently across threads (``book/reproduce.md``).
    """
    import torch

    return {"torch_threads": torch.get_num_threads(),
            **{name: os.environ.get(name) for name in THREAD_VARIABLES}}


def host_info() -> dict[str, Any]:
    """Python, OS, CPU model, core count and thread settings of this machine."""
    return {"python": platform.python_version(), "os": platform.platform(),
            "machine": platform.machine(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
            "threads": thread_settings()}


def portable(value: Any, root: str | os.PathLike | None = None) -> Any:
    """``value`` with machine paths removed, for records that travel.

    An absolute path inside the clone becomes relative to it (``results/transfer``);
    any other absolute path becomes ``<local>/<its name>``. Lists, tuples and dicts are
    walked; other values are returned as they are.
    """
    root = Path(root) if root is not None else REPO_ROOT
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root) for v in value]
    if isinstance(value, Path) and not value.is_absolute():
        return value.as_posix()
    if isinstance(value, Path) or (isinstance(value, str) and os.path.isabs(value)
                                   and "\n" not in value):
        path = Path(os.path.abspath(value))
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            return f"<local>/{path.name}"
    return value


def _state_dict_sha256(state: Any) -> str:
    import torch

    digest = hashlib.sha256()
    for key in sorted(state):
        if not torch.is_tensor(state[key]):  # a module's extra state
            digest.update(f"{key}|{state[key]!r}".encode())
            continue
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_hashes(models: Any = None) -> dict[str, dict[str, Any]]:
    """sha256 of the shipped model files and of every model given.

    Always included: each file under ``tdml_lib/pretrained/`` (the shipped critics).

    Args:
        models: ``{label: path or torch module}`` or a list of paths. A path is hashed as
            a file; a module (anything with ``state_dict()``) over its tensors' names,
            dtypes, shapes and bytes (a model trained in memory).

    Returns:
        ``{label: {"sha256": hex, "file": portable path or None}}``.

    Raises:
        ValueError: an entry is neither an existing file nor a module.
    """
    out: dict[str, dict[str, Any]] = {}
    shipped = Path(__file__).resolve().parent / "pretrained"
    for path in sorted(shipped.glob("*")) if shipped.is_dir() else []:
        if path.is_file():
            out[f"tdml_lib/pretrained/{path.name}"] = {
                "sha256": file_sha256(path), "file": f"tdml_lib/pretrained/{path.name}"}
    if models is None:
        return out
    items = models.items() if isinstance(models, dict) else \
        ((portable(str(m)), m) for m in models) if isinstance(models, (list, tuple)) else None
    if items is None:
        raise ValueError(f"models must be a dict {{label: path or module}} or a list of paths, "
                         f"got {type(models).__name__}.")
    for label, model in items:
        if isinstance(model, (str, os.PathLike)):
            if not Path(model).is_file():
                raise ValueError(f"models[{label!r}]: no file at {model}; pass the path of a "
                                 "saved model (or the module itself).")
            out[str(label)] = {"sha256": file_sha256(model), "file": portable(str(Path(model)))}
        elif callable(getattr(model, "state_dict", None)):
            out[str(label)] = {"sha256": _state_dict_sha256(model.state_dict()), "file": None}
        else:
            raise ValueError(f"models[{label!r}] must be a file path or a torch module "
                             f"(with state_dict()), got {type(model).__name__}.")
    return out


def code_state() -> dict[str, Any]:
    """What the code is at this moment: commit, clean flag, source hash, UTC time.

    A runner captures it when a run starts and passes it to :func:`provenance` at the
    end, so a commit made during a long run is not credited with it.
    """
    state = git_state()
    return {"git_commit": "unknown" if state["commit"] is None
            else state["commit"] + ("" if state["clean"] else "-dirty"),
            "clean": state["clean"], "source_hash": source_hash(),
            "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def provenance(params: dict[str, Any] | None = None, seed: int | None = None,
               device: str | None = None, data_sources: dict[str, str] | None = None,
               models: Any = None, *, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """A provenance record: what ran, on what, with which code, data and models.

    Args:
        params: the run's parameters; machine paths are made portable (:func:`portable`).
        seed: the seed.
        device: the device used; default: what ``resolve_device("auto")`` gives.
        data_sources: ``{dataset: source}`` as ``data.load(...).source`` reports it
            (e.g. whether Letters came from EMNIST or the rendered fonts).
        models: models loaded or trained, hashed by :func:`model_hashes` (the shipped
            files are always included).
        state: a :func:`code_state` captured earlier (default: now).

    Returns:
        ``params, seed, device, gpu, host (python, os, machine, cpu, cpu_count,
        threads),
        versions (every pinned package), data_sources, models, git_commit (sha, with
        -dirty when not clean), clean, source_hash, time_utc``.
    """
    dev = device
    if dev is None:
        from .device import resolve_device
        dev = str(resolve_device("auto"))
    gpu = None
    if str(dev).startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(dev)) if torch.cuda.is_available() else None
    if data_sources is not None and (not isinstance(data_sources, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data_sources.items())):
        raise ValueError("data_sources must be a dict {dataset: source text}, e.g. from "
                         "tdml_lib.runner.dataset_sources(['numbers', 'letters']).")
    state = state or code_state()
    return {
        "params": portable(dict(params or {})),
        "seed": seed,
        "device": dev,
        "gpu": gpu,
        "host": host_info(),
        "versions": pinned_versions(),
        "data_sources": dict(data_sources or {}),
        "models": model_hashes(models),
        "git_commit": state["git_commit"],
        "clean": state["clean"],
        "source_hash": state["source_hash"],
        "time_utc": state["time_utc"],
    }
