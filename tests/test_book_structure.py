"""The book as a reader follows it, checked from the sources (no build, a second).

* the sidebar (``_toc.yml``) lists the numbered chapters in the order of their numbers,
  so file names, sidebar and the *Next* buttons agree;
* each chapter's "What's next?" names the page that follows it in the sidebar;
* every chapter starts with the same Colab install cell, which clones the book at a
  fixed tag (so ``results/`` comes with it) and installs it;
* no page sends the reader to something they do not have: files that are not in the
  repository, or words only the book's authors understood;
* the notation and glossary pages exist and the chapters that use their terms link them.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, notebook_chapters, source_path, toc_files

DOCS = toc_files()
CHAPTERS = notebook_chapters()
NUMBERED = [d for d in DOCS if re.match(r"\d\d_", Path(d).name)]


def _markdown(doc: str) -> str:
    path = source_path(doc)
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _number(doc: str) -> int:
    return int(Path(doc).name[:2])


def test_sidebar_lists_chapters_in_the_order_of_their_numbers() -> None:
    numbers = [_number(d) for d in NUMBERED]
    assert numbers == sorted(numbers), f"_toc.yml lists the chapters as {numbers}: put them in order"
    assert DOCS[0] == "book/intro" and NUMBERED == DOCS[1:1 + len(NUMBERED)], (
        "the numbered chapters should follow the front page, before the reference pages")


@pytest.mark.parametrize("doc", CHAPTERS)
def test_whats_next_names_the_next_page(doc: str) -> None:
    text = _markdown(doc)
    assert "### What's next?" in text, f"{doc} has no What's next? section"
    section = text.split("### What's next?", 1)[1].split("\n## ", 1)[0]
    following = DOCS[DOCS.index(doc) + 1]
    name = Path(following).name
    if re.match(r"\d\d_", name):
        pattern = rf"(?i)chapter {_number(following)}\b|\{{doc\}}`{re.escape(name)}`"
    else:
        pattern = rf"\{{doc\}}`{re.escape(name)}`|\({re.escape(name)}\.md\)"
    assert re.search(pattern, section), (
        f"{doc}: its What's next? should lead to {following}, the next page in the sidebar; "
        f"it says: {section.strip()[:300]!r}")


def _install_cell(doc: str) -> str:
    nb = nbformat.read(source_path(doc), as_version=4)
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    return first.split("\n\n", 1)[0]  # the try/except block, before the chapter's own imports


CANONICAL_CELL = _install_cell("book/01_data_and_problems")


def test_the_install_cell_clones_a_fixed_tag_and_installs_it() -> None:
    """Clone at a tag (a branch would drift from the book's text), pip-install the clone,
    work in its book/ folder (chapters read ../results); no IPython magics, so that the
    site's syntax highlighter can read the cell."""
    assert re.search(r'BOOK_URL, BOOK_TAG = "https://github\.com/[^"]+", "v[\d.]+"', CANONICAL_CELL), CANONICAL_CELL
    assert '"--branch", BOOK_TAG' in CANONICAL_CELL
    assert '"pip", "install"' in CANONICAL_CELL and 'os.chdir("tdml-book/book")' in CANONICAL_CELL
    assert not re.search(r"^\s*[!%]", CANONICAL_CELL, re.MULTILINE), "no IPython magics in the install cell"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_every_chapter_has_the_same_install_cell(doc: str) -> None:
    assert _install_cell(doc) == CANONICAL_CELL, (
        f"{doc}: the first code cell should start with the book's install cell (as in chapter 1, "
        "documented in CONTRIBUTING.md):\n" + CANONICAL_CELL)


#: What a reader cannot follow: files outside the repository, the authors' shorthand.
UNFOLLOWABLE = [r"DESIGN\.md", r"STYLE\.md", r"paper's seeds", r"the issue's", r"no GPU was lent",
                r"\bthe seed gives\b"]


@pytest.mark.parametrize("doc", DOCS)
def test_no_page_refers_to_what_readers_do_not_have(doc: str) -> None:
    text = _markdown(doc)
    found = [m.group(0) for p in UNFOLLOWABLE for m in re.finditer(p, text, re.IGNORECASE)]
    assert not found, f"{doc} mentions {found}: a reader has no such file or context"


def test_notation_and_glossary_are_linked_where_their_terms_are_used() -> None:
    assert "book/notation" in DOCS and "book/glossary" in DOCS
    glossary = _markdown("book/glossary")
    for term in ("ACC", "NMI", "ARI", "Hungarian matching", "Node features", "noise_"):
        assert term in glossary, f"the glossary should define {term!r}"
    for doc in ("book/intro", "book/01_data_and_problems", "book/02_graph_embedding",
                "book/06_selective_pseudo_labels", "book/07_cbswr"):
        text = _markdown(doc)
        assert "{doc}`glossary`" in text and ("{doc}`notation`" in text or doc.endswith("09_performance")), \
            f"{doc} should link the glossary and the notation table"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapters_are_committed_clean_with_cell_ids(doc: str) -> None:
    """Committed with outputs cleared, and every cell with its own id (nbformat 4.5): a cell
    without one makes the build warn (MissingIDFieldWarning) and will become an error."""
    import json

    raw = json.loads(source_path(doc).read_text(encoding="utf-8"))
    ids = [cell.get("id") for cell in raw["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), f"{doc}: cells without an id or with the same id"
    code = [cell for cell in raw["cells"] if cell["cell_type"] == "code"]
    assert not any(cell.get("outputs") or cell.get("execution_count") for cell in code), f"{doc}: clear the outputs"
