"""Numbers in the book's prose come from runs, never from the keyboard.

Every markdown cell of every chapter and every ``.md`` page in the table of contents is
scanned for numeric literals outside maths, code and citations. A short allowlist
covers what is not a result: years, chapter, section, figure, table and equation
numbers, the metric name "Top 3", and sizes that name a thing (``28×28``, ``2-D``).
A measured number belongs in a code cell that computes or reads it (``results/``), or
in a parameter shown as code."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tdml_lib.runner import toc_files

ROOT = Path(__file__).resolve().parents[1]

STRIP = [
    r"```.*?```", r"~~~.*?~~~", r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"`[^`\n]*`",      # code and maths
    r"\{[a-z]+\}`[^`]*`", r"\]\([^)]*\)", r"<[^>]+>", r"https?://\S+",              # roles, links, html
    r"^:[a-z_-]+:.*$", r"^\s*---\s*$",                                              # directive options
]
ALLOWED = [
    r"\b(?:19|20)\d\d\b",                                                             # years
    r"\b(?:[Cc]hapters?|[Ss]ections?|[Ff]igures?|[Tt]ables?|[Pp]arts?|Eq\.?|[Ee]quations?|[Bb]locks?)"
    r"\s*\(?\d+(?:\.\d+)*\)?(?:(?:,\s*|\s*(?:and|to|or|-|–)\s*)\d+(?:\.\d+)*)*",     # references to parts
    r"^#+\s*\d+(?:\.\d+)*\.?",                                                        # numbered headings
    r"\bTop[- ]?3\b", r"\bRecall@1\b", r"\b\d+[-–]D\b", r"\b\d+\s*[×x]\s*\d+\b",     # names, not results
    r"^\s*\d+\.\s",                                                                   # list numbering
    r"\bIDA 2023\b", r"\bLNCS 13876\b", r"arXiv:?\s*\d+\.\d+", r"\bpp\. \d+[-–]\d+", # the citation itself
    r"\bA[-–]Z\b", r"\bMNIST-dir==[\d.]+", r"\*\*Step \d+", r"\b(?:exit )?status \d\b", r"\b95\s*%\s*(?:Wilson\s+)?intervals?",
]
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s*%?(?![\w])")


def _pages() -> list[Path]:
    out = []
    for doc in toc_files(ROOT):
        for ext in (".ipynb", ".md"):
            path = ROOT / f"{doc}{ext}"
            if path.exists():
                out.append(path)
    return out


def _markdown(path: Path) -> list[str]:
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text())
        return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    text = path.read_text()
    text = re.sub(r"^---\n.*?\n---\n", "", text, flags=re.S)                           # front matter
    text = re.sub(r"```\{code-cell\}.*?```", "", text, flags=re.S)                     # executable cells
    return [text]


def typed_numbers(text: str) -> list[str]:
    """Numeric literals of ``text`` outside maths, code, citations and the allowlist."""
    for pattern in STRIP:
        text = re.sub(pattern, " ", text, flags=re.S | re.M)
    for pattern in ALLOWED:
        text = re.sub(pattern, " ", text, flags=re.M)
    return [m.group(0).strip() for m in NUMBER.finditer(text)]


def test_the_check_itself_finds_and_ignores_what_it_should():
    assert typed_numbers("Best is 78.3 % on Numbers.") == ["78.3 %"]
    assert typed_numbers("In chapter 5 and Table 8.2 (see Eq. (1)), $K = 3$ and `EPOCHS = 40`.") == []
    assert typed_numbers("Top 3, 28×28 images, 2-D points, {cite}`alami2023tdml`, 2023.") == []


@pytest.mark.parametrize("path", _pages(), ids=lambda p: p.name)
def test_prose_holds_no_typed_numbers(path: Path):
    found = [(i, n) for i, cell in enumerate(_markdown(path)) for n in typed_numbers(cell)]
    assert not found, (f"{path.relative_to(ROOT)} types numbers in its prose (cell, number): {found[:12]}. "
                       "Compute them in a code cell, read them from results/, or show a parameter as code.")
