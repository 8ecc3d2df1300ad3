"""Two fixes to the built site, as a local Sphinx extension named in ``_config.yml``.

1. **One copy of each inline script.** Sphinx 7.4 adds every inline script that an
   extension registers after the builder starts (``app.add_js_file(None, body=...)``:
   sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's settings) a second
   time when it prepares writing, because the registry's copy comes back with the file
   name ``''`` instead of ``None`` and no longer compares equal. A ``const`` declared
   twice is a console error on every page ("THEBE_JS_URL has already been declared").
   The duplicate is dropped from each page's script list.
2. **No progress bars in the rendered site.** Chapters show ``tqdm.auto`` progress bars,
   which a kernel draws as ipywidgets. A saved widget shows in the HTML either as a
   stale text bar or not at all, and its JavaScript comes from a CDN; the site drops
   widget outputs (a reader running the notebook still sees the bars).
"""
from __future__ import annotations

from typing import Any

from docutils import nodes

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _script_key(script: Any) -> tuple:
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return filename, tuple(sorted((k, str(v)) for k, v in attributes.items()))


def drop_duplicate_scripts(app: Any, pagename: str, templatename: str, context: dict,
                           doctree: Any) -> None:
    """Keep the first of scripts that have the same file name (None == '') and attributes."""
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def drop_widget_outputs(app: Any, doctree: nodes.document, docname: str) -> None:
    """Remove ipywidgets views (progress bars) and the output containers they leave empty."""
    for raw in list(doctree.findall(nodes.raw)):
        if WIDGET_VIEW not in raw.astext()[:200] or raw.parent is None:
            continue
        parent = raw.parent
        parent.remove(raw)
        # the output containers left empty go too (never the cell, which keeps its input)
        while isinstance(parent, nodes.container) and not parent.children and parent.parent is not None:
            grand = parent.parent
            grand.remove(parent)
            parent = grand


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("doctree-resolved", drop_widget_outputs)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
