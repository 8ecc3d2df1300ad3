"""Where the chapters are: the book folder, ``_toc.yml``, and short chapter names."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Folder holding the chapters; short chapter names are resolved against it.
BOOK_DIR = Path(__file__).resolve().parents[2] / "book"


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


def chapter_arg(nb_path: Path) -> str:
    """How a command names a chapter: its stem for a chapter of the book, else its path
    (relative to the clone when inside it)."""
    from ..io import portable

    if nb_path.parent.resolve() == BOOK_DIR.resolve():
        return nb_path.stem
    return str(portable(str(nb_path.resolve())))
