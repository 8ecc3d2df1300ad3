"""Run one chapter with new parameters: papermill, the output folder, ``result.json``.

:func:`run_chapter` executes a chapter with papermill and writes its folder as a
whole: the executed notebook, the chapter's ``metrics.json`` and ``result.json``
(status, provenance, wall time, the command that repeats it, the chapter's numbers).

The output folder is never half-written and never silently overwritten:

* the run happens in a hidden sibling ``.<name>.new/``, which replaces the output
  folder in one step (:func:`tdml_lib.io.replace_dir`) once ``result.json`` is written;
* an output folder that already holds something is refused unless ``force=True``
  (``--force``); with it, the old folder stays in place until the new run has
  succeeded; a failed new run never replaces a successful one: it is kept aside in
  ``.<name>.failed/`` instead;
* a lock (``.<name>.lock`` beside the folder, :func:`tdml_lib.io.exclusive_lock`)
  keeps two processes from writing one folder at once; it dies with its process.

Also here: the matplotlib environment of the kernels (:data:`INLINE_BACKEND`) and the
work-around that gives every papermill run its own asyncio loop (:func:`_run_isolated`).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as _dt
import json
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from ..io import (code_state, exclusive_lock, module_source_hashes, modules_hash, portable, provenance,
                  replace_dir, write_json)
from .metrics import KERNEL_FIELDS, read_metrics
from .parameters import (RESULTS_PARAM, chapter_code_hash, config_hash, read_parameters,
                         validate_overrides)
from .toc import chapter_arg, resolve_chapter

RESULT_FILE = "result.json"
MODULE_REPORT_TAG = "tdml-module-report"
"""Tag of the cell the runner appends to a chapter to learn which library modules it loaded
(removed from the executed notebook it keeps)."""
_MODULE_REPORT_CODE = (
    "import json as _json, sys as _sys\n"
    "with open({path!r}, 'w') as _f:\n"
    "    _json.dump(sorted(m for m in _sys.modules if m.split('.')[0] == 'tdml_lib'), _f)")


@dataclasses.dataclass
class RunRecord:
    """What one run of a chapter produced (also what ``result.json`` holds, in short).

    Attributes:
        chapter: the chapter's file stem, e.g. ``"03_critic"``.
        status: ``"ok"``, ``"failed"``, or ``"busy"`` (a sweep found another live
            process running this configuration, and left it alone).
        out_dir: the run's folder (for a failed run that replaced nothing: ``--out``;
            for a failed ``force`` run: the ``.<name>.failed`` folder beside it).
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


# ------------------------------------------------------------------------ helpers

def _format_value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def reproduce_command(nb_path: Path, overrides: Mapping[str, Any], out_dir: Path) -> str:
    """The shell command that repeats a run: ``python -m tdml_lib run ... --out ...``.

    Paths are written relative to the clone (``--out results/transfer``); a folder
    outside it shows as ``<local>/<name>`` (a record names no machine path).
    """
    parts = ["python", "-m", "tdml_lib", "run", chapter_arg(Path(nb_path))]
    for name, value in overrides.items():
        if name != RESULTS_PARAM:
            parts += ["-p", name, _format_value(value)]
    parts += ["--out", str(portable(str(Path(out_dir).resolve())))]
    return shlex.join(parts)


def _runner_device(params: Mapping[str, Any]) -> str:
    from ..device import resolve_device

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


def _with_module_report(nb_path: Path, work: Path) -> tuple[Path, Path]:
    """A copy of the chapter in ``work`` with one more cell at the end, which writes the
    ``tdml_lib`` modules its kernel has loaded to a file; returns (copy, that file).

    A stored result then depends on the modules the chapter actually ran (measured, not
    guessed from its imports): chapter 6 never loads the critic, so a new critic leaves
    its result current (:func:`tdml_lib.runner.registry.freshness`).
    """
    import nbformat

    report = work / ".modules.json"
    nb = nbformat.read(str(nb_path), as_version=4)
    cell = nbformat.v4.new_code_cell(_MODULE_REPORT_CODE.format(path=str(report)))
    cell.metadata["tags"] = [MODULE_REPORT_TAG]
    nb.cells.append(cell)
    copy = work / f".{nb_path.stem}.input.ipynb"
    nbformat.write(nb, str(copy))
    return copy, report


def _drop_module_report(executed: Path, nb_path: Path) -> None:
    """Remove the report cell from the executed notebook, and name the chapter (not the
    hidden copy) as papermill's input."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    nb.cells = [c for c in nb.cells if MODULE_REPORT_TAG not in c.metadata.get("tags", [])]
    pm = nb.metadata.get("papermill")
    if isinstance(pm, dict) and "input_path" in pm:
        pm["input_path"] = str(portable(str(nb_path)))
    nbformat.write(nb, str(executed))


def _loaded_modules(report: Path) -> list[str] | None:
    """The module names the report cell wrote, or None when it did not run."""
    try:
        names = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


# ------------------------------------------------------------------ output folders

def check_output_folder(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Check that a run may write ``out_dir``; return it as an absolute path.

    Raises:
        ValueError: ``out_dir`` is an existing file; or it is a folder that already
            holds something and ``force`` is False (the message says what to do).
    """
    target = Path(os.path.abspath(out_dir))
    if target.exists() and not target.is_dir():
        raise ValueError(f"the output {target} is an existing file, not a folder; "
                         "give a folder path (--out).")
    if target.is_dir() and not force:
        held = sorted(p.name for p in target.iterdir())
        if held:
            shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise ValueError(f"the output folder {target} is not empty (it holds {shown}); "
                             "pass --force (force=True) to replace it as a whole once the "
                             "new run succeeds, or choose another --out.")
    return target


def _writable(action: str, path: Path, exc: OSError) -> ValueError:
    reason = exc.strerror or str(exc)
    return ValueError(f"cannot {action} {path}: {reason}; choose a folder you can write "
                      "to (--out).")


def _holds_good_run(folder: Path) -> bool:
    """Whether ``folder`` holds a successful run (a failed run never replaces one)."""
    try:
        return json.loads((folder / RESULT_FILE).read_text()).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def default_out_dir(stem: str, effective: Mapping[str, Any]) -> Path:
    """``runs/<chapter>/<UTC time>-<hash of the parameters>`` (relative to the cwd)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / stem / f"{stamp}-{config_hash(effective, 8)}"


# ----------------------------------------------------------------------------- run

def run_chapter(chapter: str | os.PathLike, params: Mapping[str, Any] | None = None,
                out_dir: str | os.PathLike | None = None, kernel: str = "python3",
                progress: bool = True, book_dir: str | os.PathLike | None = None, *,
                force: bool = False) -> RunRecord:
    """Execute a chapter with new parameters and record the result with provenance.

    Parameters and the output folder are checked before anything runs (a bad call
    creates nothing). The notebook runs with papermill in its own folder (``book/``
    for chapters, so relative paths behave as in the book), writing into a hidden
    sibling of the output folder that replaces it as a whole at the end (see the
    module docstring): a run killed midway leaves the output folder as it was.

    ``result.json`` holds the chapter, status, error, command, wall time, notebook,
    the provenance of :func:`tdml_lib.io.provenance` (code state captured when the run
    started; device, data sources and models as the chapter reported them through
    :func:`~tdml_lib.runner.write_metrics`), ``chapter_hash`` (the chapter's code,
    :func:`~tdml_lib.runner.parameters.chapter_code_hash`), the chapter's metrics and,
    for a run that finished, ``code_modules`` (the ``tdml_lib`` modules its kernel loaded,
    reported by a cell the runner appends and then removes) with ``code_hash``
    (:func:`tdml_lib.io.modules_hash` of their sources as the run started).

    Args:
        chapter: a notebook path or a short chapter name (see :func:`resolve_chapter`).
        params: parameter overrides (strings are parsed, see :func:`validate_overrides`).
        out_dir: output folder; default ``runs/<chapter>/<UTC time>-<hash>``.
        kernel: the Jupyter kernel name.
        progress: show papermill's per-cell progress bar.
        book_dir: where short chapter names are looked up (default: the book).
        force: replace an output folder that already holds something (as a whole, and
            only once the new run has succeeded).

    Returns:
        A :class:`RunRecord`; a chapter that raises gives ``status="failed"`` (not an
        exception) with the error in ``record.error`` and in ``result.json``.

    Raises:
        ValueError: unknown parameter or bad value; ``RESULTS_DIR`` passed by hand; the
            output is a file, a non-empty folder without ``force``, not writable, or
            being written by another process (:class:`tdml_lib.io.LockBusy`).
        FileNotFoundError: no such chapter.
    """
    nb_path = resolve_chapter(chapter, book_dir)
    defaults = read_parameters(nb_path)
    overrides = validate_overrides(defaults, params)
    if RESULTS_PARAM in overrides:
        raise ValueError(f"{RESULTS_PARAM} is set by the runner to the run's output folder; "
                         "choose that folder with out_dir (--out) instead.")
    effective = {**defaults, **overrides}
    target = check_output_folder(out_dir if out_dir is not None
                                 else default_out_dir(nb_path.stem, effective), force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _writable("create", target.parent, exc) from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(target.parent / f".{target.name}.lock",
                                               what=str(target)))
        except OSError as exc:
            raise _writable("write in", target.parent, exc) from None
        check_output_folder(target, force)  # again, now that no one else can write it
        work = target.parent / f".{target.name}.new"
        shutil.rmtree(work, ignore_errors=True)  # left by a killed run (we hold the lock)
        try:
            work.mkdir()
        except OSError as exc:
            raise _writable("write in", target.parent, exc) from None
        return _execute(nb_path, defaults, overrides, effective, target, work, kernel, progress)


def _execute(nb_path: Path, defaults: Mapping[str, Any], overrides: Mapping[str, Any],
             effective: dict[str, Any], target: Path, work: Path, kernel: str,
             progress: bool) -> RunRecord:
    """Run the notebook into ``work``, write ``result.json``, move ``work`` into place."""
    import papermill

    inject = dict(overrides)
    if RESULTS_PARAM in defaults:
        inject[RESULTS_PARAM] = str(work)        # the chapter writes into the new folder
        effective[RESULTS_PARAM] = str(target)   # ... which becomes the output folder
    state = code_state()
    module_hashes = module_source_hashes()   # the sources as the run starts
    chapter_hash = chapter_code_hash(nb_path)
    final_nb = work / f"{nb_path.stem}.ipynb"
    partial_nb = work / f".{nb_path.stem}.partial.ipynb"
    source_nb, report = _with_module_report(nb_path, work)
    _kernel_draws_inline()
    status, error = "ok", None
    start = time.perf_counter()
    try:
        # the kernel starts in the notebook's folder through nbclient's resources, not
        # papermill's cwd=, which chdirs the whole process: two runs in two threads (a
        # Dask thread pool) then start kernels in each other's folder, or in neither
        _run_isolated(papermill.execute_notebook, str(source_nb), str(partial_nb),
                      parameters=inject, kernel_name=kernel,
                      resources={"metadata": {"path": str(nb_path.parent)}},
                      progress_bar=progress, log_output=False)
    except Exception as exc:  # the chapter failed: record it, never raise half-way
        status, error = "failed", _describe_error(exc)
    wall = time.perf_counter() - start
    if partial_nb.exists():
        _drop_module_report(partial_nb, nb_path)
        os.replace(partial_nb, final_nb)
    loaded = _loaded_modules(report) if status == "ok" else None
    for scratch in (source_nb, report):
        scratch.unlink(missing_ok=True)

    metrics: dict[str, Any] = {}
    reported: dict[str, Any] = {}
    if status == "ok":
        try:
            metrics, reported = read_metrics(work)
        except (OSError, ValueError) as exc:
            status, error = "failed", f"unreadable metrics.json: {exc}"
    sources = {str(k): str(v) for k, v in (reported.get("data_sources") or {}).items()}
    record = provenance(params=effective, seed=effective.get("SEED"),
                        device=reported.get("device") or _runner_device(effective),
                        data_sources=sources, state=state)
    for field in KERNEL_FIELDS:  # what only the chapter knows (models it hashed, its GPU)
        if field == "models" and isinstance(reported.get("models"), dict):
            record["models"] = {**record["models"], **reported["models"]}
        elif field == "gpu" and reported.get("gpu"):
            record["gpu"] = reported["gpu"]
    result = {"chapter": nb_path.stem, "status": status, "error": error,
              "command": reproduce_command(nb_path, overrides, target),
              "wall_time": round(wall, 3), "notebook": final_nb.name,
              **record, "chapter_hash": chapter_hash, "metrics": metrics}
    if loaded is not None:  # what freshness compares: the modules this chapter ran
        result["code_modules"] = loaded
        result["code_hash"] = modules_hash(loaded, module_hashes)
    write_json(work / RESULT_FILE, result)

    if status == "ok" or not _holds_good_run(target):
        replace_dir(work, target)
        where = target
    else:  # keep the previous run; put the failed one aside, where the user can read it
        where = target.parent / f".{target.name}.failed"
        shutil.rmtree(where, ignore_errors=True)
        os.rename(work, where)
        error = f"{error} (the previous successful run in {target} is kept; this failed run is in {where})"
    return RunRecord(chapter=nb_path.stem, status=status, out_dir=where,
                     notebook=where / final_nb.name, params=effective, metrics=metrics,
                     wall_time=wall, error=error)
