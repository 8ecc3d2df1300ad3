"""A chapter's parameters: read the cell tagged ``parameters``, check new values.

* :func:`read_parameters` reads the literal defaults of a chapter's cell tagged
  ``parameters`` (papermill's convention), without executing anything;
* :func:`validate_overrides` checks new values against those defaults (names and
  types) **before** anything runs;
* :func:`parameter_values` reads a running chapter's values of them (what it records);
* :func:`config_hash` names a parameter set (a sweep's folder);
* :func:`chapter_code_hash` fingerprints a chapter's code, so that a stored result can
  tell whether the chapter that made it has changed since.
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

#: The parameter through which the runner tells a chapter where to write metrics.json.
RESULTS_PARAM = "RESULTS_DIR"
#: Types a parameter default may have (literals only).
_LITERAL_TYPES = (bool, int, float, str, type(None), list, tuple, dict)


def _parameters_source(nb: Any, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell.source
    raise ValueError(f"{path} has no code cell tagged 'parameters'; papermill would inject "
                     "new values at the top where the chapter silently overrides them. "
                     "Tag the cell that holds the defaults.")


def read_parameters(notebook_path: str | os.PathLike) -> dict[str, Any]:
    """The literal defaults of the cell tagged ``parameters``, in order.

    Parsed with :mod:`ast` (never executed): each statement must be ``NAME = literal``
    (or ``NAME: type = literal``); comments are fine.

    Raises:
        ValueError: no tagged cell, or a statement that is not a literal assignment.
    """
    import nbformat

    path = Path(notebook_path)
    nb = nbformat.read(str(path), as_version=4)
    source = _parameters_source(nb, path)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"the parameters cell of {path.name} is not valid Python: {exc}") from exc
    params: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            name, value = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                and stmt.value is not None:
            name, value = stmt.target.id, stmt.value
        else:
            raise ValueError(f"the parameters cell of {path.name} may hold only "
                             f"'NAME = literal' lines; line {stmt.lineno} is "
                             f"{ast.unparse(stmt)!r}.")
        try:
            params[name] = ast.literal_eval(value)
        except ValueError as exc:
            raise ValueError(f"parameter {name} in {path.name} must be a literal "
                             f"(number, string, bool, None, list, tuple, dict), got "
                             f"{ast.unparse(value)!r}.") from exc
    return params


def parameter_values(namespace: Mapping[str, Any], chapter: str | os.PathLike) -> dict[str, Any] | None:
    """The value a running chapter holds for each name of its ``parameters`` cell (the
    default, or what the runner injected), read from ``namespace`` (the chapter's
    ``globals()``), in the cell's order and without :data:`RESULTS_PARAM`.

    What a chapter passes to ``write_metrics(params=...)``, so that no chapter copies
    its list of parameters by hand (a copy forgets the next parameter added).

    Returns:
        ``None`` outside a clone of the book (the library installed as a package, as in
        Colab): there is no parameters cell to read, and the runner, which records every
        parameter of a run in ``result.json``, needs a clone anyway.

    Raises:
        FileNotFoundError: no such chapter in the book (:func:`~tdml_lib.runner.toc.resolve_chapter`).
        ValueError: a parameter the namespace does not hold (the chapter deleted it).
    """
    from . import toc

    if not toc.BOOK_DIR.is_dir():
        return None
    path = toc.resolve_chapter(chapter)
    names = [name for name in read_parameters(path) if name != RESULTS_PARAM]
    missing = [name for name in names if name not in namespace]
    if missing:
        raise ValueError(f"{path.name}: the namespace holds no value for the parameters {missing}; "
                         "pass the chapter's globals() after its parameters cell has run.")
    return {name: namespace[name] for name in names}


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Check one override against its default's type; parse it when given as a string."""
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError(f"parameter {name} expects a str, got {value!r} "
                         f"({_type_name(value)}).")
    raw = value
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            if default is None:
                return raw  # a None default accepts a plain word as a string
            expected = "True or False" if isinstance(default, bool) else _a(_type_name(default))
            raise ValueError(f"parameter {name} expects {expected}, got {raw!r}, which is "
                             "not a Python literal.") from None
    if default is None:
        if not isinstance(value, _LITERAL_TYPES):
            raise ValueError(f"parameter {name} expects a literal, got {raw!r}.")
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"parameter {name} expects True or False, got {raw!r}.")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"parameter {name} expects an int, got {raw!r} ({_type_name(value)}).")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"parameter {name} expects a float, got {raw!r} ({_type_name(value)}).")
    if isinstance(default, (list, tuple, dict)):
        if isinstance(value, type(default)):
            return value
        if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
            return type(default)(value)
        raise ValueError(f"parameter {name} expects a {_type_name(default)}, got {raw!r} "
                         f"({_type_name(value)}).")
    raise ValueError(f"parameter {name} has a default of unsupported type {_type_name(default)}.")


def validate_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any] | None
                       ) -> dict[str, Any]:
    """Check new parameter values against a chapter's defaults; return them parsed.

    Rules: the name must exist (an unknown name lists the valid ones and suggests the
    closest, difflib's ``get_close_matches``); a value given as a string (the command
    line) is parsed with :func:`ast.literal_eval`, except for ``str`` parameters, which
    keep it as is; the parsed value must have the default's type, with an int accepted
    for a float and only ``True``/``False`` for a bool. A ``None`` default accepts any
    literal, or a plain word as a string.

    Args:
        params: the defaults, from :func:`read_parameters`.
        overrides: new values by name (strings or Python values).

    Returns:
        The overrides with parsed, type-checked values.

    Raises:
        ValueError: an unknown name or a value of the wrong type.
    """
    checked: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        if name not in params:
            valid = ", ".join(params) or "(none)"
            close = difflib.get_close_matches(name, list(params), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ValueError(f"unknown parameter {name!r}.{hint} Valid parameters: {valid}.")
        checked[name] = _coerce(name, params[name], value)
    return checked


def config_hash(params: Mapping[str, Any], length: int = 12) -> str:
    """A stable short hash of a parameter set (sorted JSON), used as a folder name."""
    text = json.dumps({k: v for k, v in params.items() if k != RESULTS_PARAM},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def chapter_code_hash(notebook_path: str | os.PathLike) -> str:
    """sha256 over the sources of a notebook's code cells, in order.

    Markdown, outputs and metadata do not count: editing the prose or executing the
    chapter leaves the hash unchanged; editing any code cell (parameters included)
    changes it. Read as plain JSON, so it needs no Jupyter package.
    """
    nb = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    digest = hashlib.sha256()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            digest.update(("".join(source) if isinstance(source, list) else source).encode())
            digest.update(b"\0")
    return digest.hexdigest()
