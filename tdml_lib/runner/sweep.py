"""Sweeps: run a chapter for every parameter set of a grid, on any executor; resumable.

A grid file is YAML::

    chapter: 03_critic            # optional when CHAPTER is given on the command line
    grid: {SEED: [0, 1], LR: [0.001, 0.0003]}      # cartesian product
    configurations: [{SEED: 7, EPOCHS: 5}]         # and/or explicit parameter sets

Each configuration runs in ``OUT/<hash of its parameters>/`` through
:func:`~tdml_lib.runner.execute.run_chapter`, whose lock (``OUT/.<hash>.lock``) lets
only one live process run a configuration: a sweep resumed while a worker of the
killed one still runs reports that configuration as ``busy`` instead of running it
a second time. Worker processes of the default pool (and of ``--scheduler local``) die
with the sweep, even on ``kill -9`` (:mod:`tdml_lib.runner.processes`).
"""
from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..io import LockBusy, write_json
from .execute import RESULT_FILE, RunRecord, _describe_error, run_chapter
from .parameters import RESULTS_PARAM, config_hash, read_parameters, validate_overrides
from .processes import dask_plugin, die_with_parent
from .toc import resolve_chapter


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
        FileNotFoundError: no such file.
        ValueError: not valid YAML (the message gives the line), not a mapping, or keys
            other than chapter/grid/configurations.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"grid file {path} is not valid YAML{where}: {problem}.") from None
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

    A local cluster's worker processes get the die-with-parent plugin. A remote
    scheduler is only disconnected from (``client.close``), never shut down.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler == "local":
        cluster = LocalCluster(processes=True, n_workers=workers or 2, threads_per_worker=1,
                               dashboard_address=None)
        client = Client(cluster)
        client.register_plugin(dask_plugin())
        executor = client.get_executor()
        return executor, [executor.shutdown, client.close, cluster.close]
    client = Client(scheduler)
    executor = client.get_executor()
    return executor, [executor.shutdown, client.close]


def _local_pool(max_workers: int | None) -> cf.ProcessPoolExecutor:
    """A process pool whose workers die with this process (even on ``kill -9``)."""
    return cf.ProcessPoolExecutor(max_workers=max_workers, initializer=die_with_parent,
                                  initargs=(os.getpid(),))


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
    re-running a sweep does no work twice. Failed runs are retried on the next call
    (the sweep owns its folders: a retry replaces a failed one). A configuration that
    another live process is running (its lock is held) is not started again: its
    record has ``status="busy"``. ``out_root/sweep.json`` lists every configuration,
    its folder and its status.

    Args:
        chapter: chapter path or short name.
        grid: ``{NAME: [values]}``; the cartesian product is run.
        out_root: folder of the sweep; default ``runs/<chapter>-sweep``.
        executor: any :class:`concurrent.futures.Executor` (kept open: yours to close).
            Default: a local :class:`~concurrent.futures.ProcessPoolExecutor` whose
            workers die with this process, or Dask when ``scheduler`` is given.
        configurations: explicit parameter sets, run after the grid's.
        scheduler: ``"local"`` starts a ``dask.distributed.LocalCluster`` (processes,
            one thread per worker); an address such as ``"tcp://host:8786"`` connects
            to a running Dask scheduler. Its executor is ``client.get_executor()``.
        max_workers: processes for the default pool (default: one per CPU, at most one
            per configuration to run), or workers of the local cluster (default 2).
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
    if out_root.exists() and not out_root.is_dir():
        raise ValueError(f"the sweep folder {out_root} is an existing file; give a folder (--out).")
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
        try:
            out_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create the sweep folder {out_root}: "
                             f"{exc.strerror or exc}; choose another --out.") from None
        closers: list[Any] = []
        if executor is None:
            if scheduler is not None:
                executor, closers = _dask_executor(scheduler, max_workers)
            else:
                executor = _local_pool(max_workers or min(len(todo), os.cpu_count() or 1))
                closers = [executor.shutdown]
        try:
            futures = {executor.submit(run_chapter, str(nb_path), jobs[key], str(out_root / key),
                                       kernel, False, None, force=True): key for key in todo}
            bar = tqdm(cf.as_completed(futures), total=len(futures), disable=not progress,
                       desc=f"sweep {nb_path.stem}")
            for fut in bar:
                key = futures[fut]
                try:
                    records[key] = fut.result()
                except LockBusy as exc:  # another live process runs it: leave it alone
                    records[key] = _not_run(nb_path, defaults, jobs[key], out_root / key,
                                            "busy", str(exc))
                except Exception as exc:  # the worker itself failed (not the chapter)
                    records[key] = _not_run(nb_path, defaults, jobs[key], out_root / key,
                                            "failed", f"worker failed: {_describe_error(exc)}")
        finally:
            for close in closers:
                close()
    ordered = [records[key] for key in jobs]
    if out_root.is_dir():
        write_json(out_root / "sweep.json", {
            "chapter": nb_path.stem,
            "runs": [{"dir": key, "params": jobs[key], "status": r.status, "skipped": r.skipped,
                      "wall_time": round(r.wall_time, 3), "error": r.error}
                     for key, r in zip(jobs, ordered)]})
    return ordered


def _not_run(nb_path: Path, defaults: Mapping[str, Any], overrides: Mapping[str, Any],
             out_dir: Path, status: str, error: str) -> RunRecord:
    """The record of a configuration that did not run to the end. Nothing is written into
    its folder: another process may own it, and a later sweep retries it."""
    return RunRecord(chapter=nb_path.stem, status=status, out_dir=out_dir,
                     notebook=out_dir / f"{nb_path.stem}.ipynb",
                     params={**defaults, **overrides}, metrics={}, wall_time=0.0, error=error)
