"""Shared test set-up: paths, the environment for subprocesses, nbval, executed chapters.

Imported by pytest for every test under ``tests/``. ``tests/test_notebooks.py`` also
loads this file as a plugin (``-p tests.conftest``) in the pytest subprocess that runs a
chapter under nbval, so the nbval settings below apply there too.

Every chapter is executed ONCE per test run, under nbval (``executed_chapters``): the
fixture runs the chapters in parallel pytest subprocesses and this file, loaded there as
a plugin, saves each notebook with the outputs nbval saw (``TDML_EXECUTED_DIR``). The
browser test (``test_book.py``) builds the site from those executed notebooks instead of
executing every chapter a second time.

nbval hardening (STYLE.md, pitfall 4):
  * chapters run with ``--nbval-lax`` (only cells marked ``# NBVAL_CHECK_OUTPUT`` are
    compared with their stored outputs);
  * stderr streams (tqdm progress bars, warnings) are never compared, even in those
    cells;
  * no figure window is ever opened: this process plots with ``Agg`` and the chapters'
    kernels with matplotlib's inline backend (``subprocess_env``), so that figures are
    drawn exactly as in the built book.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (where ``_config.yml`` and ``_toc.yml`` live)."""

# Headless plotting in this process; kernels started by tests get INLINE_BACKEND.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")

from tdml_lib.runner import INLINE_BACKEND  # noqa: E402  (the kernels' headless backend)
from tdml_lib.plotting import OVERLAP_WARNING  # noqa: E402  (the start of its overlapping-text warning)


def subprocess_env() -> dict[str, str]:
    """Environment for subprocesses that must use this interpreter's virtualenv.

    The directory of ``sys.executable`` goes first on ``PATH`` so that
    ``jupyter-book``, ``jupyter`` and ``python`` resolve to the same environment as the
    test run, with or without an activated virtualenv.
    """
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    # Kernels must draw with the inline backend (ipykernel's own default), or figures
    # vanish from executed notebooks: with MPLBACKEND=Agg, `plt.show()` draws nothing
    # and a Figure shows as text. The inline backend is headless too.
    env["MPLBACKEND"] = INLINE_BACKEND
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy in kernels
    return env


def toc_files(root: Path = ROOT) -> list[str]:
    """Documents listed in ``_toc.yml`` (root first), as paths without extension."""
    from tdml_lib.runner import toc_files as library_toc_files

    return library_toc_files(root)


def notebook_chapters(root: Path = ROOT) -> list[str]:
    """The ``_toc.yml`` entries that are notebooks (the chapters nbval executes)."""
    return [doc for doc in toc_files(root) if source_path(doc, root).suffix == ".ipynb"]


def toc_captions(root: Path = ROOT) -> list[str]:
    """The part captions of ``_toc.yml``, in order (what the left navigation shows)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    return [part["caption"] for part in toc.get("parts", []) if "caption" in part]


def source_path(docname: str, root: Path = ROOT) -> Path:
    """The source file of a toc entry (``book/03_critic`` -> ``book/03_critic.ipynb``).

    Raises:
        FileNotFoundError: if neither a ``.ipynb`` nor a ``.md`` file exists.
    """
    for suffix in (".ipynb", ".md"):
        path = root / f"{docname}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(
        f"_toc.yml lists {docname!r} but neither {docname}.ipynb nor {docname}.md exists; "
        "add the chapter or remove it from _toc.yml")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return ROOT


# --------------------------------------------------------------------------- nbval
def _is_stderr(output: Any) -> bool:
    return output.get("output_type") == "stream" and output.get("name") == "stderr"


def stream_text(output: Any) -> str:
    """A stream output's text as one string (nbformat stores it as a string or a list of lines)."""
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def _without_stderr(outputs: list[Any]) -> list[Any]:
    return [o for o in outputs if not _is_stderr(o)]


def _outputs_to_save(outputs: list[Any]) -> list[Any]:
    """A cell's outputs without stderr, except the lines that report overlapping figure
    text: those are kept, so that test_notebooks can fail on them."""
    import nbformat

    kept = []
    for o in outputs:
        if not _is_stderr(o):
            kept.append(o)
            continue
        lines = [line for line in stream_text(o).splitlines() if OVERLAP_WARNING in line]
        if lines:
            kept.append(nbformat.from_dict({"output_type": "stream", "name": "stderr",
                                            "text": "\n".join(lines) + "\n"}))
    return kept


def pytest_configure(config: pytest.Config) -> None:
    """Make nbval ignore stderr streams when it compares a cell's outputs."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to harden
        return
    original = IPyNbCell.compare_outputs
    if getattr(original, "_tdml_skips_stderr", False):
        return

    def compare_outputs(self: Any, test: list[Any], ref: list[Any],
                        skip_compare: Any = None) -> bool:
        return original(self, _without_stderr(test), _without_stderr(ref), skip_compare)

    compare_outputs._tdml_skips_stderr = True  # type: ignore[attr-defined]
    IPyNbCell.compare_outputs = compare_outputs


EXECUTED_DIR_ENV = "TDML_EXECUTED_DIR"
"""Where the nbval subprocess writes each chapter with its outputs (unset: nowhere)."""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In an nbval run that passed, save each notebook with the outputs nbval collected.

    nbval keeps a cell's outputs in ``item.test_outputs`` and ``item.cell`` is the cell
    object of ``item.parent.nb``, so filling the cells and writing ``parent.nb`` gives
    the executed notebook. stderr is dropped, as the book's ``stderr_output: remove``,
    but for the lines that report overlapping figure text (:func:`_outputs_to_save`).
    """
    out_dir = os.environ.get(EXECUTED_DIR_ENV)
    if not out_dir or session.testsfailed or exitstatus != 0:
        return
    import nbformat

    from tdml_lib.io import atomic_path

    notebooks: dict[Path, Any] = {}
    for item in session.items:
        if getattr(item, "test_outputs", None) is not None and hasattr(item, "cell"):
            item.cell.outputs = _outputs_to_save(item.test_outputs)
            notebooks[Path(item.parent.path)] = item.parent.nb
    for nb in notebooks.values():
        # execution counts 1, 2, 3... over the code cells, as a top-to-bottom run gives
        # (counted here rather than from nbval's own cell numbering)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        for count, cell in enumerate(code, start=1):
            cell.execution_count = count
            for output in cell.outputs:
                if output.get("output_type") == "execute_result":
                    output["execution_count"] = count
    for path, nb in notebooks.items():
        with atomic_path(Path(out_dir) / path.name) as tmp:
            nbformat.write(nb, str(tmp))


# ------------------------------------------------------------------ executed chapters
EXECUTED = ROOT / "_build" / "executed"
"""The chapters as the last test run executed them (what the test site is built from)."""
TIMINGS = ROOT / "_build" / "chapter_timings.json"
"""Seconds per chapter in the last test run; also orders the next run, slowest first."""
CHAPTER_TIMEOUT_S = 900


@dataclass
class ChapterRun:
    """One chapter executed under ``pytest --nbval-lax`` in a subprocess."""

    docname: str
    command: list[str]
    returncode: int
    log: str
    seconds: float
    executed: Path | None


def nbval_command(notebook: Path) -> list[str]:
    """The pytest command that runs one chapter under nbval (as the tests run it)."""
    return [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
            "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "--no-header",
            "--rootdir", str(ROOT), str(notebook.relative_to(ROOT))]


def _run_chapter(docname: str, threads: int) -> ChapterRun:
    notebook = source_path(docname)
    cmd = nbval_command(notebook)
    env = subprocess_env()
    env[EXECUTED_DIR_ENV] = str(EXECUTED)
    # Chapters run side by side: split the cores between them, not oversubscribe.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=CHAPTER_TIMEOUT_S)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code = -1
        partial = b"".join(o if isinstance(o, bytes) else o.encode() for o in (exc.stdout, exc.stderr) if o)
        log = (f"did not finish under nbval within {CHAPTER_TIMEOUT_S} s; make its default "
               f"parameters smaller\n{partial.decode(errors='replace')}")
    executed = EXECUTED / notebook.name
    return ChapterRun(docname, cmd, code, log, time.perf_counter() - start,
                      executed if code == 0 and executed.exists() else None)


def chapter_workers() -> int:
    """Chapters run at once: ``$TDML_TEST_WORKERS``, else one per core up to 2.

    Two at a time overlap one chapter's single-threaded work (kernel start, imports,
    plotting, DEAP, k-means) with the other's; more would only split the same cores.
    """
    return max(1, int(os.environ.get("TDML_TEST_WORKERS", min(2, os.cpu_count() or 1))))


def _selected_chapters(items: list[pytest.Item], chapters: list[str]) -> list[str]:
    """The chapters the selected tests need: all for the site, else those parametrised
    (so ``pytest tests/test_notebooks.py -k 03`` runs chapter 3 only)."""
    users = [item for item in items if "executed_chapters" in getattr(item, "fixturenames", ())]
    if any("built_book" in item.fixturenames for item in users):
        return chapters
    named = {getattr(item, "callspec", None) and item.callspec.params.get("docname")
             for item in users}
    return [d for d in chapters if d in named] or chapters


@pytest.fixture(scope="session")
def executed_chapters(request: pytest.FixtureRequest) -> dict[str, ChapterRun]:
    """The notebook chapters of ``_toc.yml`` that the selected tests need, each run once
    under nbval, two at a time, slowest first.

    Returns the run of each chapter by docname; passing chapters are saved with their
    outputs under ``_build/executed/``. Per-chapter seconds go to ``TIMINGS``.
    """
    from tdml_lib.io import write_json

    chapters = _selected_chapters(request.session.items, notebook_chapters())
    shutil.rmtree(EXECUTED, ignore_errors=True)
    EXECUTED.mkdir(parents=True)
    try:
        previous = json.loads(TIMINGS.read_text())["seconds"]
    except (OSError, ValueError, KeyError):  # no earlier run (or an unreadable file)
        previous = {}
    order = sorted(chapters, key=lambda d: -previous.get(d, 0.0))  # stable: toc order
    workers = chapter_workers()
    threads = max(1, (os.cpu_count() or 1) // workers)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = {run.docname: run for run in pool.map(lambda d: _run_chapter(d, threads), order)}
    write_json(TIMINGS, {
        "seconds": {**previous, **{d: round(runs[d].seconds, 1) for d in chapters}},
        "wall_s": round(time.perf_counter() - start, 1), "workers": workers,
        "threads_per_chapter": threads, "cpu_count": os.cpu_count(),
        "passed": [d for d in chapters if runs[d].returncode == 0]})
    return runs
