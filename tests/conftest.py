"""Shared test set-up: paths, the environment for subprocesses, and nbval hardening.

Imported by pytest for every test under ``tests/``. ``tests/test_notebooks.py`` also
loads this file as a plugin (``-p tests.conftest``) in the pytest subprocess that runs a
chapter under nbval, so the nbval settings below apply there too.

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

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (where ``_config.yml`` and ``_toc.yml`` live)."""

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""The matplotlib backend of Jupyter kernels (headless; figures become PNG outputs)."""

# Headless plotting in this process; kernels started by tests get INLINE_BACKEND.
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


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
    """Documents listed in ``_toc.yml`` (root first), as paths without extension.

    Reads the Jupyter Book 1.x ``jb-book`` format: ``root`` then ``parts[].chapters[]``
    (and any nested ``sections``).
    """
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
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
def _without_stderr(outputs: list[Any]) -> list[Any]:
    return [o for o in outputs
            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]


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
