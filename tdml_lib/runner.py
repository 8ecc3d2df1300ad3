"""Experiments as parameterised notebooks: ``run`` one chapter, ``sweep`` a grid of them.

Every experiment in the book is a chapter executed with new parameters, so a reader can
re-run any figure or table at another scale by parameters alone (issue 8; chapter 8
shows the full-scale results produced this way).

* :func:`read_parameters` reads the literal defaults of a chapter's cell tagged
  ``parameters`` (papermill's convention);
* :func:`validate_overrides` checks new values against those defaults (names and types)
  **before** anything runs;
* :func:`run_chapter` executes the chapter with papermill and writes, atomically,
  ``OUT/<chapter>.ipynb`` (the executed notebook) and ``OUT/result.json`` (status,
  provenance, wall time, the command that reproduces it, and the chapter's own numbers);
* :func:`sweep` runs many parameter sets on any :class:`concurrent.futures.Executor`
  (a local process pool by default, a Dask distributed cluster on request) and skips
  configurations already finished, so an interrupted sweep resumes where it stopped.

The results convention (one rule for every chapter)
---------------------------------------------------
A chapter that exports numbers declares a parameter ``RESULTS_DIR`` (default ``None``,
or a folder under the git-ignored ``runs/``) and ends with::

    tdml.runner.write_metrics(RESULTS_DIR, {"table": rows}, data_sources={...},
                              device=str(device))

which writes ``RESULTS_DIR/metrics.json`` (at ``None`` it writes nothing). The runner
always sets ``RESULTS_DIR`` to the run's output folder (an absolute path); after the
run it copies the chapter's numbers into ``result.json`` under ``"metrics"`` and lifts
their ``data_sources`` and ``device`` into the provenance. A ``metrics.json`` that a
chapter writes itself is accepted too: a ``"provenance"`` entry in it (from
:func:`tdml_lib.io.provenance`) gives the device and data sources, and everything else
is taken as the metrics. ``RESULTS_DIR`` belongs to the runner: passing it as a
parameter is an error (use ``--out``). The schema of the full-scale results is in
``results/README.md``.

Command line (``python -m tdml_lib --help``)::

    python -m tdml_lib run 03 -p EPOCHS 200 -p DEVICE cuda --out results/critic
    python -m tdml_lib sweep 03 --grid grid.yaml --scheduler local

A grid file is YAML::

    chapter: 03_critic            # optional when CHAPTER is given on the command line
    grid: {SEED: [0, 1], LR: [0.001, 0.0003]}      # cartesian product
    configurations: [{SEED: 7, EPOCHS: 5}]         # and/or explicit parameter sets
"""
from __future__ import annotations

import argparse
import ast
import asyncio
import concurrent.futures as cf
import contextvars
import dataclasses
import datetime as _dt
import difflib
import hashlib
import itertools
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .io import provenance, write_json

#: Folder holding the chapters; short chapter names are resolved against it.
BOOK_DIR = Path(__file__).resolve().parent.parent / "book"
#: The parameter through which the runner tells a chapter where to write metrics.json.
RESULTS_PARAM = "RESULTS_DIR"
METRICS_FILE = "metrics.json"
RESULT_FILE = "result.json"
#: Types a parameter default may have (literals only).
_LITERAL_TYPES = (bool, int, float, str, type(None), list, tuple, dict)


def toc_files(root: str | os.PathLike | None = None) -> list[str]:
    """Documents listed in the book's ``_toc.yml`` (root first), as paths without extension.

    Reads the Jupyter Book 1.x ``jb-book`` format: ``root`` then ``parts[].chapters[]``
    (and any nested ``sections``). ``root`` defaults to the clone this library sits in.
    """
    import yaml

    toc = yaml.safe_load((Path(root or BOOK_DIR.parent) / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = [toc["root"]]

    def walk(entries: list[dict[str, Any]]) -> None:
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return files


# ----------------------------------------------------------------------------- records

@dataclasses.dataclass
class RunRecord:
    """What one run of a chapter produced (also what ``result.json`` holds, in short).

    Attributes:
        chapter: the chapter's file stem, e.g. ``"03_critic"``.
        status: ``"ok"`` or ``"failed"``.
        out_dir: the run's folder.
        notebook: the executed notebook, ``out_dir/<chapter>.ipynb``.
        params: every effective parameter (defaults updated by the overrides).
        metrics: the numbers the chapter exported (``{}`` if none).
        wall_time: seconds spent executing the notebook.
        error: the error for a failed run, else ``None``.
        skipped: True when a sweep found this configuration already finished.
    """

    chapter: str
    status: str
    out_dir: Path
    notebook: Path
    params: dict[str, Any]
    metrics: dict[str, Any]
    wall_time: float
    error: str | None = None
    skipped: bool = False

    @property
    def result_path(self) -> Path:
        return self.out_dir / RESULT_FILE

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_result(cls, path: str | os.PathLike, skipped: bool = False) -> "RunRecord":
        """Rebuild a record from a ``result.json`` written by :func:`run_chapter`."""
        path = Path(path)
        data = json.loads(path.read_text())
        return cls(chapter=data["chapter"], status=data["status"], out_dir=path.parent,
                   notebook=path.parent / data["notebook"], params=data.get("params", {}),
                   metrics=data.get("metrics", {}), wall_time=float(data.get("wall_time", 0.0)),
                   error=data.get("error"), skipped=skipped)


# -------------------------------------------------------------------------- parameters

def resolve_chapter(chapter: str | os.PathLike, book_dir: str | os.PathLike | None = None) -> Path:
    """Find a chapter notebook from a path or a short name.

    ``"03"``, ``"3"``, ``"03_critic"``, ``"critic"`` and ``"03_critic.ipynb"`` all name
    ``book/03_critic.ipynb``.

    Raises:
        FileNotFoundError: nothing matches; the message lists the chapters.
        ValueError: the name matches several chapters.
    """
    path = Path(chapter)
    if path.suffix == ".ipynb" and path.is_file():
        return path.resolve()
    book = Path(book_dir) if book_dir is not None else BOOK_DIR
    chapters = sorted(p for p in book.glob("*.ipynb") if not p.name.startswith("."))
    name = path.name[:-6] if path.name.endswith(".ipynb") else path.name
    stems = {p.stem: p for p in chapters}
    if name in stems:
        return stems[name].resolve()
    key = name.lower()
    if key.isdigit():
        found = [p for p in chapters if p.stem.split("_", 1)[0].isdigit()
                 and int(p.stem.split("_", 1)[0]) == int(key)]
    else:
        found = [p for p in chapters
                 if key in (p.stem.lower(), p.stem.split("_", 1)[-1].lower())]
        found = found or [p for p in chapters if key in p.stem.lower()]
    if len(found) == 1:
        return found[0].resolve()
    if len(found) > 1:
        raise ValueError(f"chapter {str(chapter)!r} is ambiguous: it matches "
                         f"{', '.join(p.stem for p in found)}; give the full name.")
    listing = ", ".join(stems) or "(none)"
    raise FileNotFoundError(f"no chapter {str(chapter)!r} in {book}; chapters: {listing}.")


def _parameters_source(nb: Any, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell.source
    raise ValueError(f"{path} has no code cell tagged 'parameters'; papermill would inject "
                     "new values at the top where the chapter silently overrides them. "
                     "Tag the cell that holds the defaults.")


def read_parameters(notebook_path: str | os.PathLike) -> dict[str, Any]:
    """The literal defaults of the cell tagged ``parameters``, in order.

    Parsed with :mod:`ast` (never executed): each statement must be ``NAME = literal``
    (or ``NAME: type = literal``); comments are fine.

    Raises:
        ValueError: no tagged cell, or a statement that is not a literal assignment.
    """
    import nbformat

    path = Path(notebook_path)
    nb = nbformat.read(str(path), as_version=4)
    source = _parameters_source(nb, path)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"the parameters cell of {path.name} is not valid Python: {exc}") from exc
    params: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                and stmt.value is not None:
            name, value = stmt.target.id, stmt.value
        else:
            raise ValueError(f"the parameters cell of {path.name} may hold only "
                             f"'NAME = literal' lines; line {stmt.lineno} is "
                             f"{ast.unparse(stmt)!r}.")
        try:
            params[name] = ast.literal_eval(value)
        except ValueError as exc:
            raise ValueError(f"parameter {name} in {path.name} must be a literal "
                             f"(number, string, bool, None, list, tuple, dict), got "
                             f"{ast.unparse(value)!r}.") from exc
    return params


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Check one override against its default's type; parse it when given as a string."""
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError(f"parameter {name} expects a str, got {value!r} "
                         f"({_type_name(value)}).")
    raw = value
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            if default is None:
                return raw  # a None default accepts a plain word as a string
            expected = "True or False" if isinstance(default, bool) else _a(_type_name(default))
            raise ValueError(f"parameter {name} expects {expected}, got {raw!r}, which is "
                             "not a Python literal.") from None
    if default is None:
        if not isinstance(value, _LITERAL_TYPES):
            raise ValueError(f"parameter {name} expects a literal, got {raw!r}.")
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"parameter {name} expects True or False, got {raw!r}.")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"parameter {name} expects an int, got {raw!r} ({_type_name(value)}).")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"parameter {name} expects a float, got {raw!r} ({_type_name(value)}).")
    if isinstance(default, (list, tuple, dict)):
        if isinstance(value, type(default)):
            return value
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            return type(default)(value)
        raise ValueError(f"parameter {name} expects a {_type_name(default)}, got {raw!r} "
                         f"({_type_name(value)}).")
    raise ValueError(f"parameter {name} has a default of unsupported type {_type_name(default)}.")


def validate_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any] | None
                       ) -> dict[str, Any]:
    """Check new parameter values against a chapter's defaults; return them parsed.

    Rules: the name must exist (an unknown name lists the valid ones and suggests the
    closest, difflib's ``get_close_matches``); a value given as a string (the command
    line) is parsed with :func:`ast.literal_eval`, except for ``str`` parameters, which
    keep it as is; the parsed value must have the default's type, with an int accepted
    for a float and only ``True``/``False`` for a bool. A ``None`` default accepts any
    literal, or a plain word as a string.

    Args:
        params: the defaults, from :func:`read_parameters`.
        overrides: new values by name (strings or Python values).

    Returns:
        The overrides with parsed, type-checked values.

    Raises:
        ValueError: an unknown name or a value of the wrong type.
    """
    checked: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in params:
            valid = ", ".join(params) or "(none)"
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ValueError(f"unknown parameter {name!r}.{hint} Valid parameters: {valid}.")
        checked[name] = _coerce(name, params[name], value)
    return checked


def config_hash(params: Mapping[str, Any], length: int = 12) -> str:
    """A stable short hash of a parameter set (sorted JSON), used as a folder name."""
    text = json.dumps({k: v for k, v in params.items() if k != RESULTS_PARAM},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _format_value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def _chapter_arg(nb_path: Path) -> str:
    if nb_path.parent.resolve() == BOOK_DIR.resolve():
        return nb_path.stem
    return _display_path(nb_path)


def reproduce_command(nb_path: Path, overrides: Mapping[str, Any], out_dir: Path) -> str:
    """The shell command that repeats a run: ``python -m tdml_lib run ... --out ...``."""
    parts = ["python", "-m", "tdml_lib", "run", _chapter_arg(nb_path)]
    for name, value in overrides.items():
        if name != RESULTS_PARAM:
            parts += ["-p", name, _format_value(value)]
    parts += ["--out", _display_path(out_dir)]
    return shlex.join(parts)


# ------------------------------------------------------------------------------ metrics

def write_metrics(results_dir: str | os.PathLike | None, metrics: Mapping[str, Any], *,
                  data_sources: Mapping[str, str] | None = None,
                  device: str | None = None) -> Path | None:
    """Export a chapter's numbers for the runner (the book's one results convention).

    Args:
        results_dir: the chapter's ``RESULTS_DIR`` parameter; ``None`` (the default when
            the book is built) writes nothing.
        metrics: JSON-able numbers, e.g. ``{"table": rows}`` (schema: results/README.md).
        data_sources: where each dataset came from (e.g. ``data.load(...).source``).
        device: the device the chapter actually used, e.g. ``str(device)``.

    Returns:
        The path written, or None.
    """
    if results_dir is None:
        return None
    payload = {"metrics": dict(metrics), "data_sources": dict(data_sources or {}),
               "device": device}
    return write_json(Path(results_dir) / METRICS_FILE, payload)


def _read_metrics(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """``(metrics, data_sources, device)`` from ``out_dir/metrics.json``.

    Accepted shapes: :func:`write_metrics`'s ``{"metrics", "data_sources", "device"}``;
    a dict with a ``"provenance"`` entry (a :func:`tdml_lib.io.provenance` record, whose
    device and data sources are lifted out); any other dict, taken whole as metrics.
    """
    path = out_dir / METRICS_FILE
    if not path.is_file():
        return {}, {}, None
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        return {"value": data}, {}, None
    if "metrics" in data and set(data) <= {"metrics", "data_sources", "device"}:
        return dict(data["metrics"] or {}), dict(data.get("data_sources") or {}), data.get("device")
    if isinstance(data.get("provenance"), dict):
        prov = data["provenance"]
        metrics = {k: v for k, v in data.items() if k != "provenance"}
        return metrics, dict(prov.get("data_sources") or {}), prov.get("device")
    return data, {}, None


def _runner_device(params: Mapping[str, Any]) -> str:
    from .device import resolve_device

    wanted = params.get("DEVICE", "auto")
    try:
        return str(resolve_device(wanted if isinstance(wanted, str) else "auto"))
    except (ValueError, RuntimeError):
        return str(wanted)


def _describe_error(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename is not None:  # papermill.PapermillExecutionError
        cell = getattr(exc, "exec_count", None)
        return f"{ename}: {getattr(exc, 'evalue', '')} (cell [{cell}])"
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------------- run

def _run_isolated(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a fresh :mod:`contextvars` context, then close the event loop it made.

    papermill (through jupyter_core's ``run_sync``) keeps its asyncio loop in a context
    variable. Thread pools such as Dask's copy the submitting thread's context into
    every task, so two notebooks running at once in two threads would share one loop
    ("This event loop is already running"). A fresh context gives each run its own loop.
    """
    def target() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            try:
                from jupyter_core.utils import _loop  # private: the loop run_sync made
            except ImportError:  # pragma: no cover - other jupyter_core versions
                _loop = None
            loop = _loop.get() if _loop is not None else None
            if loop is not None and not loop.is_running() and not loop.is_closed():
                loop.close()
                asyncio.set_event_loop(None)

    return contextvars.Context().run(target)


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""The matplotlib backend of Jupyter kernels: headless, and figures become PNG outputs."""


def _kernel_draws_inline() -> None:
    """Make the kernels this process starts draw with the inline backend.

    A kernel inherits ``MPLBACKEND`` from its parent. Headless set-ups often export
    ``MPLBACKEND=Agg``; in a kernel that makes ``plt.show()`` draw nothing, and the
    executed notebook (the record of a full-scale run) would hold no figures. Setting
    the variable does not change the backend of this process's own matplotlib, which
    reads it once on import.
    """
    if os.environ.get("MPLBACKEND", INLINE_BACKEND) != INLINE_BACKEND:
        os.environ["MPLBACKEND"] = INLINE_BACKEND


def run_chapter(chapter: str | os.PathLike, params: Mapping[str, Any] | None = None,
                out_dir: str | os.PathLike | None = None, kernel: str = "python3",
                progress: bool = True, book_dir: str | os.PathLike | None = None
                ) -> RunRecord:
    """Execute a chapter with new parameters and record the result with provenance.

    Parameters are validated before anything runs (no folder is created for a bad
    call). The notebook runs with papermill in its own folder (``book/`` for chapters,
    so relative paths behave as in the book). The executed notebook is written under a
    temporary name and renamed when execution ends; ``result.json`` is written last and
    atomically, so a run killed midway leaves no ``result.json`` and a sweep redoes it.

    Args:
        chapter: a notebook path or a short chapter name (see :func:`resolve_chapter`).
        params: parameter overrides (strings are parsed, see :func:`validate_overrides`).
        out_dir: output folder; default ``runs/<chapter>/<UTC time>-<hash>``.
        kernel: the Jupyter kernel name.
        progress: show papermill's per-cell progress bar.
        book_dir: where short chapter names are looked up (default: the book).

    Returns:
        A :class:`RunRecord`; a chapter that raises gives ``status="failed"`` (not an
        exception) with the error in ``record.error`` and in ``result.json``.

    Raises:
        ValueError: unknown parameter or bad value; ``RESULTS_DIR`` passed by hand.
        FileNotFoundError: no such chapter.
    """
    import papermill

    nb_path = resolve_chapter(chapter, book_dir)
    defaults = read_parameters(nb_path)
    overrides = validate_overrides(defaults, params)
    if RESULTS_PARAM in overrides:
        raise ValueError(f"{RESULTS_PARAM} is set by the runner to the run's output folder; "
                         "choose that folder with out_dir (--out) instead.")
    effective = {**defaults, **overrides}
    if out_dir is None:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / nb_path.stem / f"{stamp}-{config_hash(effective, 8)}"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    inject = dict(overrides)
    if RESULTS_PARAM in defaults:
        inject[RESULTS_PARAM] = effective[RESULTS_PARAM] = str(out_dir)
    for stale in (out_dir / METRICS_FILE,):
        stale.unlink(missing_ok=True)

    final_nb = out_dir / f"{nb_path.stem}.ipynb"
    partial_nb = out_dir / f".{nb_path.stem}.partial.ipynb"
    _kernel_draws_inline()
    status, error = "ok", None
    start = time.perf_counter()
    try:
        # the kernel starts in the notebook's folder through nbclient's resources, not
        # papermill's cwd=, which chdirs the whole process: two runs in two threads (a
        # Dask thread pool) then start kernels in each other's folder, or in neither
        _run_isolated(papermill.execute_notebook, str(nb_path), str(partial_nb),
                      parameters=inject, kernel_name=kernel,
                      resources={"metadata": {"path": str(nb_path.parent)}},
                      progress_bar=progress, log_output=False)
    except Exception as exc:  # the chapter failed: record it, never raise half-way
        status, error = "failed", _describe_error(exc)
    wall = time.perf_counter() - start
    if partial_nb.exists():
        os.replace(partial_nb, final_nb)

    metrics, sources, device = ({}, {}, None)
    if status == "ok":
        try:
            metrics, sources, device = _read_metrics(out_dir)
        except (OSError, ValueError) as exc:
            status, error = "failed", f"unreadable {METRICS_FILE}: {exc}"
    record = provenance(params=effective, seed=effective.get("SEED"),
                        device=device or _runner_device(effective), data_sources=sources)
    result = {"chapter": nb_path.stem, "status": status, "error": error,
              "command": reproduce_command(nb_path, overrides, out_dir),
              "wall_time": round(wall, 3), "notebook": final_nb.name,
              **record, "metrics": metrics}
    write_json(out_dir / RESULT_FILE, result)
    return RunRecord(chapter=nb_path.stem, status=status, out_dir=out_dir, notebook=final_nb,
                     params=effective, metrics=metrics, wall_time=wall, error=error)


# -------------------------------------------------------------------------------- sweep

def expand_grid(grid: Mapping[str, Sequence[Any]] | None = None,
                configurations: Iterable[Mapping[str, Any]] | None = None
                ) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` followed by the explicit ``configurations``.

    Raises:
        ValueError: a grid entry that is not a non-empty list, or nothing to run.
    """
    configs: list[dict[str, Any]] = []
    grid = dict(grid or {})
    for name, values in grid.items():
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"grid entry {name!r} must be a non-empty list of values, "
                             f"got {values!r}.")
    if grid:
        names = list(grid)
        configs += [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]
    for i, conf in enumerate(configurations or []):
        if not isinstance(conf, Mapping):
            raise ValueError(f"configurations[{i}] must be a mapping NAME: value, got {conf!r}.")
        configs.append(dict(conf))
    if not configs:
        raise ValueError("the sweep is empty: give a grid and/or configurations.")
    return configs


def load_grid(path: str | os.PathLike) -> tuple[str | None, dict[str, list], list[dict]]:
    """Read a YAML grid file ``{chapter, grid, configurations}``.

    Returns:
        ``(chapter or None, grid, configurations)``.

    Raises:
        ValueError: not a mapping, or keys other than chapter/grid/configurations.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} does not exist.")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"grid file {path} must be a mapping with keys chapter, grid, "
                         "configurations.")
    unknown = set(data) - {"chapter", "grid", "configurations"}
    if unknown:
        raise ValueError(f"grid file {path} has unknown key(s) {sorted(unknown)}; "
                         "allowed: chapter, grid, configurations.")
    grid = data.get("grid") or {}
    configurations = data.get("configurations") or []
    if not isinstance(grid, dict) or not isinstance(configurations, list):
        raise ValueError(f"in {path}, grid must be a mapping NAME: [values] and "
                         "configurations a list of mappings.")
    chapter = data.get("chapter")
    return (None if chapter is None else str(chapter)), grid, configurations


def _dask_executor(scheduler: str, workers: int | None) -> tuple[cf.Executor, list[Any]]:
    """A Dask executor and the closers to call when the sweep ends (in order).

    A remote scheduler is only disconnected from (``client.close``), never shut down.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(processes=True, n_workers=workers or 2, threads_per_worker=1,
                               dashboard_address=None)
        client = Client(cluster)
        executor = client.get_executor()
        return executor, [executor.shutdown, client.close, cluster.close]
    client = Client(scheduler)
    executor = client.get_executor()
    return executor, [executor.shutdown, client.close]


def sweep(chapter: str | os.PathLike, grid: Mapping[str, Sequence[Any]] | None = None,
          out_root: str | os.PathLike | None = None, executor: cf.Executor | None = None, *,
          configurations: Iterable[Mapping[str, Any]] | None = None,
          scheduler: str | None = None, max_workers: int | None = None,
          kernel: str = "python3", progress: bool = True,
          book_dir: str | os.PathLike | None = None) -> list[RunRecord]:
    """Run a chapter for every parameter set of a grid; resume an interrupted sweep.

    Every configuration is validated before the first run. Each one runs in
    ``out_root/<hash of its effective parameters>/``; a folder whose ``result.json``
    says ``"ok"`` is skipped (its record comes back with ``skipped=True``), so
    re-running a sweep does no work twice. Failed runs are retried on the next call.
    ``out_root/sweep.json`` lists every configuration, its folder and its status.

    Args:
        chapter: chapter path or short name.
        grid: ``{NAME: [values]}``; the cartesian product is run.
        out_root: folder of the sweep; default ``runs/<chapter>-sweep``.
        executor: any :class:`concurrent.futures.Executor` (kept open: yours to close).
            Default: a local :class:`~concurrent.futures.ProcessPoolExecutor`, or Dask
            when ``scheduler`` is given.
        configurations: explicit parameter sets, run after the grid's.
        scheduler: ``"local"`` starts a ``dask.distributed.LocalCluster`` (processes,
            one thread per worker); an address such as ``"tcp://host:8786"`` connects
            to a running Dask scheduler. Its executor is ``client.get_executor()``.
        max_workers: processes for the default pool, or workers of the local cluster.
        kernel: Jupyter kernel name.
        progress: a progress bar over finished runs.
        book_dir: where short chapter names are looked up.

    Returns:
        One :class:`RunRecord` per distinct configuration, in grid order.
    """
    from tqdm.auto import tqdm

    if executor is not None and scheduler is not None:
        raise ValueError("give either executor or scheduler, not both.")
    nb_path = resolve_chapter(chapter, book_dir)
    defaults = read_parameters(nb_path)
    configs = expand_grid(grid, configurations)
    checked = []
    for i, conf in enumerate(configs):
        try:
            over = validate_overrides(defaults, conf)
        except ValueError as exc:
            raise ValueError(f"sweep configuration {i} {conf}: {exc}") from None
        if RESULTS_PARAM in over:
            raise ValueError(f"sweep configuration {i}: {RESULTS_PARAM} is set by the runner.")
        checked.append(over)
    out_root = Path(out_root) if out_root is not None else Path("runs") / f"{nb_path.stem}-sweep"
    out_root = out_root.resolve()

    jobs: dict[str, dict[str, Any]] = {}  # folder name -> overrides, in order, deduplicated
    for over in checked:
        jobs.setdefault(config_hash({**defaults, **over}), over)
    records: dict[str, RunRecord] = {}
    todo = []
    for key, over in jobs.items():
        result = out_root / key / RESULT_FILE
        if result.is_file():
            try:
                rec = RunRecord.from_result(result, skipped=True)
            except (ValueError, KeyError):
                rec = None
            if rec is not None and rec.ok:
                records[key] = rec
                continue
        todo.append(key)

    if todo:
        closers: list[Any] = []
        if executor is None:
            if scheduler is not None:
                executor, closers = _dask_executor(scheduler, max_workers)
            else:
                executor = cf.ProcessPoolExecutor(max_workers=max_workers)
                closers = [executor.shutdown]
        try:
            futures = {executor.submit(run_chapter, str(nb_path), jobs[key], str(out_root / key),
                                       kernel, False): key for key in todo}
            bar = tqdm(cf.as_completed(futures), total=len(futures), disable=not progress,
                       desc=f"sweep {nb_path.stem}")
            for fut in bar:
                key = futures[fut]
                try:
                    records[key] = fut.result()
                except Exception as exc:  # the worker itself failed (not the chapter)
                    records[key] = _worker_failure(nb_path, defaults, jobs[key],
                                                   out_root / key, exc)
        finally:
            for close in closers:
                close()
    ordered = [records[key] for key in jobs]
    write_json(out_root / "sweep.json", {
        "chapter": nb_path.stem,
        "runs": [{"dir": r.out_dir.name, "params": jobs[r.out_dir.name], "status": r.status,
                  "skipped": r.skipped, "wall_time": round(r.wall_time, 3)} for r in ordered]})
    return ordered


def _worker_failure(nb_path: Path, defaults: Mapping[str, Any], overrides: Mapping[str, Any],
                    out_dir: Path, exc: BaseException) -> RunRecord:
    effective = {**defaults, **overrides}
    error = f"worker failed: {_describe_error(exc)}"
    write_json(out_dir / RESULT_FILE, {
        "chapter": nb_path.stem, "status": "failed", "error": error,
        "command": reproduce_command(nb_path, overrides, out_dir), "wall_time": 0.0,
        "notebook": f"{nb_path.stem}.ipynb",
        **provenance(params=effective, seed=effective.get("SEED"), device="unknown"),
        "metrics": {}})
    return RunRecord(chapter=nb_path.stem, status="failed", out_dir=out_dir,
                     notebook=out_dir / f"{nb_path.stem}.ipynb", params=effective, metrics={},
                     wall_time=0.0, error=error)


# ---------------------------------------------------------------------------------- CLI

def _collect_params(pairs: Sequence[Sequence[str]] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs or []:
        if name in params:
            raise ValueError(f"parameter {name} is given twice (-p {name} ...).")
        params[name] = value
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    rec = run_chapter(args.chapter, _collect_params(args.param), out_dir=args.out,
                      kernel=args.kernel, progress=not args.quiet)
    print(f"{rec.status}: {rec.chapter} in {rec.wall_time:.1f} s")
    print(f"  executed notebook: {_display_path(rec.notebook)}")
    print(f"  result:            {_display_path(rec.result_path)}")
    if not rec.ok:
        print(f"  error: {rec.error}", file=sys.stderr)
        return 1
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    file_chapter, grid, configurations = load_grid(args.grid)
    chapter = args.chapter or file_chapter
    if chapter is None:
        raise ValueError("no chapter: give CHAPTER on the command line or 'chapter:' in "
                         "the grid file.")
    if args.chapter and file_chapter and \
            resolve_chapter(args.chapter) != resolve_chapter(file_chapter):
        raise ValueError(f"CHAPTER {args.chapter!r} differs from the grid file's chapter "
                         f"{file_chapter!r}.")
    records = sweep(chapter, grid, out_root=args.out, configurations=configurations,
                    scheduler=args.scheduler, max_workers=args.workers, kernel=args.kernel,
                    progress=not args.quiet)
    n_skip = sum(r.skipped for r in records)
    failed = [r for r in records if not r.ok]
    root = records[0].out_dir.parent if records else Path(".")
    print(f"sweep of {len(records)} configuration(s): {len(records) - n_skip - len(failed)} "
          f"ran, {n_skip} already done, {len(failed)} failed")
    print(f"  results: {_display_path(root)}/<hash>/result.json "
          f"(index: {_display_path(root / 'sweep.json')})")
    for r in failed:
        print(f"  failed {r.out_dir.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def add_cli(subparsers: Any) -> None:
    """Register ``run`` and ``sweep`` on ``python -m tdml_lib``."""
    p = subparsers.add_parser(
        "run", help="execute a chapter with new parameters; write the notebook and result.json",
        description="Execute a chapter with papermill; parameters are checked against its "
                    "'parameters' cell before anything runs.")
    p.add_argument("chapter", help="chapter path or short name: 03, 03_critic, critic")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter (repeat for several); VALUE is a Python literal")
    p.add_argument("--out", default=None, help="output folder (default runs/<chapter>/<time>)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    s = subparsers.add_parser(
        "sweep", help="run a chapter over a grid of parameters (resumable; process pool or Dask)",
        description="Run a grid of parameter sets; finished configurations are skipped.")
    s.add_argument("chapter", nargs="?", default=None,
                   help="chapter path or short name (default: 'chapter' in the grid file)")
    s.add_argument("--grid", required=True, help="YAML file {chapter, grid, configurations}")
    s.add_argument("--out", default=None, help="sweep folder (default runs/<chapter>-sweep)")
    s.add_argument("--scheduler", default=None,
                   help="'local' (a Dask LocalCluster) or a Dask scheduler ADDRESS")
    s.add_argument("--workers", type=int, default=None,
                   help="processes of the local pool, or workers of the local Dask cluster")
    s.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_sweep)
