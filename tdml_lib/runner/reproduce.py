"""``python -m tdml_lib reproduce`` (``make results``): regenerate ``results/`` from one commit.

Runs the stored experiments of :data:`~tdml_lib.runner.registry.STORED_EXPERIMENTS`
one after another at their full-scale parameters, each into ``results/<name>``:

* **one commit**: it refuses to start from a working tree with uncommitted changes
  (``--allow-dirty`` overrides), so that every result names a commit that holds the
  code that made it;
* **resumable**: an experiment whose stored result is current
  (:func:`~tdml_lib.runner.registry.freshness`: same library sources, same chapter
  code, the registry's parameters, a clean tree) is skipped unless ``--force``; a run
  killed midway leaves the previous result in place (the folder is replaced as a whole
  only when the new run has succeeded), so starting the command again continues with
  the experiments not yet done;
* **background-friendly** (``nohup make results &``): it reads nothing from the
  terminal, prints one progress line per experiment and the total, flushed, and writes
  each run's own output to ``runs/reproduce/<name>.log`` (``tail -f`` it). Each
  experiment runs in a child ``python -m tdml_lib`` process that dies with this one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import REPO_ROOT, code_state, exclusive_lock, git_state, portable, provenance, write_json
from .execute import RESULT_FILE
from .processes import child_env
from .registry import CURRENT, STORED_EXPERIMENTS, StoredExperiment, freshness, read_result, \
    stored_experiment

#: Default folders, in the clone the library sits in.
RESULTS_ROOT = REPO_ROOT / "results"
LOG_DIR = REPO_ROOT / "runs" / "reproduce"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def reproduce(names: Sequence[str] | None = None, *, force: bool = False,
              allow_dirty: bool = False, results_root: str | os.PathLike | None = None,
              log_dir: str | os.PathLike | None = None,
              registry: tuple[StoredExperiment, ...] | None = None,
              book_dir: str | os.PathLike | None = None,
              echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run the stored experiments (all, or ``names``) into ``results_root/<name>``.

    Args:
        names: experiments to run, in the registry's order (default: all).
        force: run even those whose stored result is current.
        allow_dirty: run from a working tree with uncommitted changes.
        results_root: default ``results/`` of the clone.
        log_dir: default ``runs/reproduce/`` of the clone.
        registry: default :data:`STORED_EXPERIMENTS`.
        book_dir: where chapters are looked up for the freshness check.
        echo: where progress lines go (default: ``print``, flushed).

    Returns:
        One row per experiment: ``name, action ("skipped", "ran"), status, reason,
        wall_time (s), log``.

    Raises:
        ValueError: an unknown name; uncommitted changes without ``allow_dirty``;
            another ``reproduce`` already running on ``results_root``.
    """
    registry = STORED_EXPERIMENTS if registry is None else tuple(registry)
    chosen = [stored_experiment(n, registry) for n in dict.fromkeys(names or [])] \
        if names else list(registry)
    chosen = [e for e in registry if e in chosen]
    results_root = Path(os.path.abspath(results_root if results_root is not None else RESULTS_ROOT))
    log_dir = Path(os.path.abspath(log_dir if log_dir is not None else LOG_DIR))
    say = echo or (lambda line: print(line, flush=True))

    state = git_state()
    if state["clean"] is False and not allow_dirty:
        raise ValueError("the working tree has uncommitted changes (see `git status`; "
                         "results/ and runs/ do not count); commit them first so that every "
                         "result names the commit that made it, or pass --allow-dirty.")
    for folder in (results_root, log_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create {folder}: {exc.strerror or exc}.") from None
    commit = (state["commit"] or "no git commit")[:12]
    say(f"reproduce: {len(chosen)} experiment(s) into {portable(str(results_root.resolve()))}/ "
        f"from {commit}{'' if state['clean'] is not False else ' (uncommitted changes)'}; "
        f"logs in {portable(str(log_dir.resolve()))}/")

    with exclusive_lock(results_root / ".reproduce.lock", what=f"{results_root} (a reproduce)"):
        return _reproduce(chosen, results_root, log_dir, force, allow_dirty, book_dir, say)


def _reproduce(chosen: list[StoredExperiment], results_root: Path, log_dir: Path, force: bool,
               allow_dirty: bool, book_dir: str | os.PathLike | None,
               say: Callable[[str], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i, exp in enumerate(chosen, 1):
        tag = f"[{i}/{len(chosen)}] {exp.name}"
        out = results_root / exp.name
        now = freshness(read_result(out), exp, book_dir=book_dir, require_clean=not allow_dirty)
        if now == CURRENT and not force:
            say(f"{tag}: current, skipped")
            rows.append({"name": exp.name, "action": "skipped", "status": "ok",
                         "reason": "current", "wall_time": 0.0, "log": None})
            continue
        log = log_dir / f"{exp.name}.log"
        why = "forced" if now == CURRENT else (now or "no result yet")
        say(f"{tag}: running ({why}); log {portable(str(log.resolve()))}")
        t0 = time.perf_counter()
        if exp.kind == "chapter":
            # exit 0: the chapter ran and its folder replaced the old one; 1: the chapter
            # failed (the old result is kept); 2: refused before running (see the log)
            status = "ok" if _run_logged(exp.argv(out) + ["--force"], log) == 0 else "failed"
        else:
            status = _run_command(exp, out, log)
        wall = time.perf_counter() - t0
        say(f"{tag}: {status} in {_minutes(wall)} (total {_minutes(time.perf_counter() - start)})"
            + ("" if status == "ok" else f"; see {portable(str(log.resolve()))}"))
        rows.append({"name": exp.name, "action": "ran", "status": status, "reason": why,
                     "wall_time": round(wall, 1), "log": str(log)})
    ran = [r for r in rows if r["action"] == "ran"]
    failed = [r for r in ran if r["status"] != "ok"]
    say(f"reproduce: {len(ran)} ran ({len(ran) - len(failed)} ok, {len(failed)} failed), "
        f"{len(rows) - len(ran)} skipped as current; total {_minutes(time.perf_counter() - start)}")
    return rows


def _run_logged(args: list[str], log: Path) -> int:
    """Run ``python -m tdml_lib ARGS`` with its output in ``log``; it dies with this process."""
    with open(log, "w") as f:
        f.write(f"$ python -m tdml_lib {' '.join(args)}\n")
        f.flush()
        return subprocess.run([sys.executable, "-m", "tdml_lib", *args], stdin=subprocess.DEVNULL,
                              stdout=f, stderr=subprocess.STDOUT, env=child_env()).returncode


def _run_command(exp: StoredExperiment, out: Path, log: Path) -> str:
    """Run a non-chapter experiment into a fresh folder, then move its files into ``out``
    one by one (atomically each; files it does not write, e.g. another device's
    benchmarks, stay), and record a ``result.json`` beside them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out.parent / f".{out.name}.lock", what=str(out)):
        work = out.parent / f".{out.name}.new"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        state = code_state()
        t0 = time.perf_counter()
        code = _run_logged(exp.argv(work), log)
        wall = time.perf_counter() - t0
        if code != 0:
            shutil.rmtree(work, ignore_errors=True)
            return "failed"
        out.mkdir(exist_ok=True)
        written = sorted(p.name for p in work.iterdir() if p.is_file())
        for name in written:
            os.replace(work / name, out / name)
        shutil.rmtree(work, ignore_errors=True)
        command = exp.command_line(portable(str(out.resolve())))
        write_json(out / RESULT_FILE, {
            "chapter": exp.chapter, "status": "ok", "error": None, "command": command,
            "wall_time": round(wall, 3), "notebook": None,
            **provenance(params={"argv": list(exp.command)}, state=state),
            "outputs": written, "metrics": {}})
        return "ok"
