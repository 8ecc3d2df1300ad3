"""Subcommands ``run``, ``sweep`` and ``reproduce`` of ``python -m tdml_lib``.

Errors are raised as exceptions with a one-line message; ``tdml_lib.__main__`` prints
``error: <message>`` and exits with status 2 (``--debug`` shows the traceback), and
adds every default to ``--help``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from ..io import portable
from .execute import run_chapter
from .reproduce import LOG_DIR, RESULTS_ROOT, reproduce
from .registry import STORED_EXPERIMENTS
from .sweep import load_grid, sweep
from .toc import resolve_chapter


def _shown(path: Path) -> str:
    return str(portable(str(Path(path).resolve())))


def _collect_params(pairs: Sequence[Sequence[str]] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs or []:
        if name in params:
            raise ValueError(f"parameter {name} is given twice (-p {name} ...).")
        params[name] = value
    return params


def _cmd_run(args: argparse.Namespace) -> int:
    rec = run_chapter(args.chapter, _collect_params(args.param), out_dir=args.out,
                      kernel=args.kernel, progress=not args.quiet, force=args.force)
    print(f"{rec.status}: {rec.chapter} in {rec.wall_time:.1f} s")
    print(f"  executed notebook: {rec.notebook}")
    print(f"  result:            {rec.result_path}")
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
    failed = [r for r in records if r.status == "failed"]
    busy = [r for r in records if r.status == "busy"]
    root = records[0].out_dir.parent if records else Path(".")
    print(f"sweep of {len(records)} configuration(s): "
          f"{len(records) - n_skip - len(failed) - len(busy)} ran, {n_skip} already done, "
          f"{len(failed)} failed, {len(busy)} running in another process")
    print(f"  results: {root}/<hash>/result.json (index: {root / 'sweep.json'})")
    for r in failed + busy:
        print(f"  {r.status} {r.out_dir.name}: {r.error}", file=sys.stderr)
    return 1 if failed or busy else 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if args.list:
        for exp in STORED_EXPERIMENTS:
            print(f"{exp.name:15s} {exp.command_line('results/' + exp.name)}")
        return 0
    rows = reproduce(args.names, force=args.force, allow_dirty=args.allow_dirty,
                     results_root=args.results, log_dir=args.logs)
    return 1 if any(r["status"] != "ok" for r in rows) else 0


def add_cli(subparsers: Any) -> None:
    """Register ``run``, ``sweep`` and ``reproduce`` on ``python -m tdml_lib``."""
    p = subparsers.add_parser(
        "run",
        help="execute a chapter with new parameters; write the notebook and result.json",
        description="Execute a chapter with papermill; parameters are checked against its "
                    "'parameters' cell before anything runs. The output folder is written "
                    "as a whole at the end; an existing non-empty one is replaced only "
                    "with --force.")
    p.add_argument("chapter", help="chapter path or short name: 03, 03_critic, critic")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter (repeat for several); VALUE is a Python literal "
                        "(default: the chapter's own values)")
    p.add_argument("--out", default=None,
                   help="output folder (default: runs/<chapter>/<UTC time>-<hash>)")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty output folder as a whole, once the new run "
                        "succeeds (default: refuse)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (default: show it)")
    p.set_defaults(func=_cmd_run)

    s = subparsers.add_parser(
        "sweep",
        help="run a chapter over a grid of parameters (resumable; process pool or Dask)",
        description="Run a grid of parameter sets; finished configurations are skipped, and "
                    "one another process is running is left to it.")
    s.add_argument("chapter", nargs="?", default=None,
                   help="chapter path or short name (default: 'chapter' in the grid file)")
    s.add_argument("--grid", required=True, help="YAML file {chapter, grid, configurations}")
    s.add_argument("--out", default=None, help="sweep folder (default: runs/<chapter>-sweep)")
    s.add_argument("--scheduler", default=None,
                   help="'local' (a Dask LocalCluster) or a Dask scheduler ADDRESS "
                        "(default: a local process pool)")
    s.add_argument("--workers", type=int, default=None,
                   help="processes of the local pool, or workers of the local Dask cluster "
                        "(default: one per CPU for the pool, 2 for Dask)")
    s.add_argument("--kernel", default="python3", help="Jupyter kernel")
    s.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar (default: show it)")
    s.set_defaults(func=_cmd_sweep)

    r = subparsers.add_parser(
        "reproduce",
        help="re-run the stored experiments at full scale into results/ (resumable)",
        description="Run the stored experiments (tdml_lib.runner.registry) one after another "
                    "into results/<name>, skipping those whose result is current (same "
                    "library sources, chapter code and parameters, from a clean tree). Safe "
                    "in the background: nohup python -m tdml_lib reproduce &")
    r.add_argument("names", nargs="*", metavar="NAME",
                   help="experiments to run (default: all; --list shows them)")
    r.add_argument("--force", action="store_true",
                   help="run even the experiments whose result is current (default: skip them)")
    r.add_argument("--allow-dirty", action="store_true",
                   help="run from a working tree with uncommitted changes (default: refuse)")
    r.add_argument("--results", default=str(RESULTS_ROOT), help="results folder")
    r.add_argument("--logs", default=str(LOG_DIR), help="folder of the per-experiment logs")
    r.add_argument("--list", action="store_true",
                   help="list the stored experiments and their commands, run nothing")
    r.set_defaults(func=_cmd_reproduce)
