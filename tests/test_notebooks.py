"""Every chapter listed in ``_toc.yml`` runs top to bottom under ``pytest --nbval-lax``.

Each chapter runs in its own pytest subprocess (nbval collects ``.ipynb`` files only
when given them on the command line, and ``book/`` is outside ``tests/``), with the
kernel of this interpreter's environment (``--nbval-current-env``) and this folder's
``conftest.py`` loaded as a plugin so that stderr is never compared. Chapters check
their own numbers in ``assert`` cells; nbval fails on the first cell that raises.
The runs happen once per session in the ``executed_chapters`` fixture (conftest.py),
two chapters at a time; the browser test reuses their outputs.

Run one chapter by hand with::

    cd book && MPLBACKEND=Agg ../.venv/bin/python -m pytest --nbval-lax -q 03_critic.ipynb
"""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from conftest import ChapterRun, notebook_chapters, source_path, stream_text

from tdml_lib.plotting import OVERLAP_WARNING

CHAPTERS = notebook_chapters()


FRAME = ("## Overview", "## Prerequisites", "## Imports", "## Summary", "### What's next?",
         "## Exercises", "## References")


def test_toc_lists_chapters() -> None:
    assert CHAPTERS, "_toc.yml lists no notebook chapters"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_is_committed_clean(docname: str) -> None:
    """Outputs cleared, kernel `python3`, one `parameters` cell (STYLE.md, pitfalls 3, 10)."""
    nb = nbformat.read(source_path(docname), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, (f"{docname}: code cells {dirty} keep outputs or execution counts; "
                       "clear them before committing (CONTRIBUTING.md)")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{docname}: kernelspec {kernel!r}, expected 'python3'"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{docname}: {len(tagged)} cells tagged `parameters`, expected 1"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_frame(docname: str) -> None:
    """`# N. Title`, Overview, Prerequisites, Imports, Summary, What's next, Exercises,
    References (the chapter frame of STYLE.md)."""
    nb = nbformat.read(source_path(docname), as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown and re.match(r"# \d+\. \S", markdown[0]), (
        f"{docname}: the first cell must be markdown starting `# N. Title`")
    lines = {line.strip() for src in markdown for line in src.splitlines()}
    missing = [h for h in FRAME if h not in lines]
    assert not missing, f"{docname}: missing headings {missing}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_runs_under_nbval(docname: str, executed_chapters: dict[str, ChapterRun]) -> None:
    """The chapter runs top to bottom under ``pytest --nbval-lax`` at its defaults."""
    run = executed_chapters[docname]
    if run.returncode != 0:
        pytest.fail(f"{docname} failed under nbval (exit {run.returncode}). Re-run: "
                    f"{' '.join(run.command[2:])}\n--- output (tail) ---\n{run.log[-6000:]}",
                    pytrace=False)
    assert run.executed is not None, f"{docname} passed but its executed copy was not saved"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_figures_have_no_overlapping_text(docname: str, executed_chapters: dict[str, ChapterRun]) -> None:
    """No figure of the chapter is shown with texts on top of each other: every figure made
    by ``tdml_lib.plotting`` warns when it is (``OverlappingTextWarning``), and the saved
    notebooks keep those lines of stderr (conftest's ``_outputs_to_save``)."""
    run = executed_chapters[docname]
    if run.executed is None:
        pytest.skip(f"{docname} did not run (see test_chapter_runs_under_nbval)")
    nb = json.loads(run.executed.read_text(encoding="utf-8"))
    streams = [stream_text(out) for cell in nb["cells"] if cell["cell_type"] == "code"
               for out in cell.get("outputs", []) if out.get("output_type") == "stream"]
    overlaps = [line for text in streams for line in text.splitlines() if OVERLAP_WARNING in line]
    assert not overlaps, f"{docname}: " + "\n".join(overlaps)
