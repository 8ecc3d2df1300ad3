"""The book as a reader meets it: the built HTML, opened in a real (headless) browser.

A session fixture builds the book (``jupyter-book build --warningiserror
--keep-going``) from the chapters exactly as the nbval tests just executed them
(``executed_chapters`` in conftest.py), staged under ``_build/tested`` with execution
off, so each chapter runs once per test run. The HTML is served on 127.0.0.1
and every page listed in ``_toc.yml`` (and ``index.html``) is opened in Debian's
Chromium driven by Selenium. Checked for each page: it loads, has its title, every
image has a non-zero natural size, chapters show at least one figure, no error or
traceback output, every internal link resolves, no TeX is left unrendered once MathJax
has run (no ``$``, ``\\(``, ``\\[`` or ``\\begin{`` in the page's text outside code),
no table is wider than the text column (clipped), the browser's console has no error,
and notebook pages carry Binder and Colab launch links pointing at their own notebook.
A full-page screenshot of every page is kept in ``_build/screenshots/`` (a build
artefact to look at: figures and tables are checked by eye there).

MathJax comes from the pinned ``django-static-mathjax`` package (MathJax 3, the version
the published site loads from its CDN), copied into the test site, because neither the
test machines nor CI may reach the CDN.

Skipped (with the reason) only when Chromium or chromedriver is absent; ``make test``
installs both on Debian/Ubuntu (scripts/setup.sh).
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
import yaml

from conftest import (ROOT, ChapterRun, notebook_chapters, source_path, subprocess_env, toc_captions,
                      toc_files)

STAGE = ROOT / "_build" / "tested"
"""The book's sources with executed chapters; its site lands in ``STAGE/_build/html``."""
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BUILD_TIMEOUT_S = 1200

DOCS = toc_files()
NOTEBOOK_DOCS = notebook_chapters()
PAGES = ["index", *DOCS]
ERROR_LINE = re.compile(r"^\s*[A-Za-z_.]*(Error|Exception): ", re.MULTILINE)


# ----------------------------------------------------------------------------- build
def stage_executed_book(executed: dict[str, Path], stage: Path) -> Path:
    """A copy of the book's sources in ``stage`` with each chapter replaced by its
    executed copy and execution turned off in ``_config.yml``.

    The chapters were just executed under nbval (``executed_chapters``); building from
    their outputs renders what the tests ran instead of running every chapter twice.
    """
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for name in ("_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, stage / name)
    # the front page and chapters 8-9 read the stored results (never written by a build)
    (stage / "results").symlink_to(ROOT / "results", target_is_directory=True)
    shutil.copytree(ROOT / "book", stage / "book",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for docname, notebook in executed.items():
        shutil.copy2(notebook, stage / f"{docname}.ipynb")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    if local_mathjax() is not None:
        config.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = MATHJAX_PATH
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return stage


MATHJAX_PATH = "mathjax/tex-mml-chtml.js"
"""Where the test site loads MathJax from, relative to its ``_static`` folder."""


def local_mathjax() -> Path | None:
    """The MathJax 3 ``es5`` folder of the pinned django-static-mathjax package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "es5"
    return folder if (folder / "tex-mml-chtml.js").exists() else None


@pytest.fixture(scope="session")
def built_book(executed_chapters: dict[str, ChapterRun]) -> Path:
    """The site built from the chapters as the nbval tests executed them."""
    failed = [d for d, run in executed_chapters.items() if run.executed is None]
    if failed:
        pytest.fail(f"chapters {failed} failed under nbval (see test_notebooks); the site "
                    "is built from the executed chapters", pytrace=False)
    stage = stage_executed_book({d: run.executed for d, run in executed_chapters.items()},
                                STAGE)
    html = stage / "_build" / "html"
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(stage), "--warningiserror",
           "--keep-going"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` ran longer than {BUILD_TIMEOUT_S} s")
    if proc.returncode != 0 or not (html / "index.html").exists():
        pytest.fail(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); fix the first "
                    f"warning or error below.\n{_summarise_log(proc.stdout + proc.stderr)}",
                    pytrace=False)
    mathjax = local_mathjax()
    if mathjax is not None:
        shutil.copytree(mathjax, html / "_static" / Path(MATHJAX_PATH).parent, dirs_exist_ok=True)
    return html


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROBLEM = re.compile(r"WARNING|ERROR|CRITICAL|^\w*(Error|Exception): ")


def _summarise_log(log: str, n_lines: int = 30, tail_chars: int = 3000) -> str:
    """The build log's warning/error lines (first ``n_lines``) and its tail."""
    lines = [_ANSI.sub("", line) for line in log.splitlines()]
    problems = [line for line in lines if _PROBLEM.search(line)
                and "Kernel is running over TCP" not in line][:n_lines]
    return ("--- warnings and errors ---\n" + "\n".join(problems)
            + "\n--- output (tail) ---\n" + "\n".join(lines)[-tail_chars:])


# ----------------------------------------------------------------------------- serve
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="session")
def site(built_book: Path) -> Iterator[str]:
    """Base URL of ``_build/html`` served on 127.0.0.1 at a free port."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@functools.lru_cache(maxsize=None)
def _fetch(url: str) -> tuple[int, str]:
    """HTTP status and body of a URL on the local server (cached per URL)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


# --------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium driven by Selenium; skipped when either is missing."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"browser test needs {CHROMIUM} and {CHROMEDRIVER} (Debian packages "
                    "chromium and chromium-driver; `make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    deadline = time.time() + 30
    while driver.execute_script("return document.readyState") != "complete":
        if time.time() > deadline:
            raise AssertionError(f"{url} did not finish loading within 30 s")
        time.sleep(0.1)


def _wait_for_images(driver: Any, timeout_s: float = 20) -> list[dict[str, Any]]:
    """Load every image eagerly and return ``{src, complete, width}`` for each."""
    script = """
        const imgs = Array.from(document.images);
        imgs.forEach(i => { i.loading = 'eager'; });
        return imgs.map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                               width: i.naturalWidth, alt: i.alt}));"""
    deadline = time.time() + timeout_s
    images = driver.execute_script(script)
    while not all(i["complete"] for i in images) and time.time() < deadline:
        time.sleep(0.2)
        images = driver.execute_script(script)
    return images


H1_TEXT = """
    const h = document.querySelector('article h1, main h1, h1');
    if (!h) return null;
    const c = h.cloneNode(true);
    c.querySelectorAll('.headerlink').forEach(e => e.remove());
    return c.textContent.trim();"""

FIGURES = """
    const out = document.querySelectorAll(
        '.cell_output img, .cell_output svg, article figure img, article figure svg');
    return Array.from(out).filter(e => e.getBoundingClientRect().width > 0).length;"""

ERROR_OUTPUTS = """
    const sel = '.output.error, .output.traceback, .cell_output .traceback, '
              + '.cell_output .output.stderr';
    return Array.from(document.querySelectorAll(sel)).map(e => e.innerText.slice(0, 300));"""

OUTPUT_TEXT = """
    return Array.from(document.querySelectorAll('.cell_output'))
        .map(e => e.innerText).join('\\n');"""

LINKS = """
    return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);"""

MATHJAX_DONE = """
    const done = arguments[arguments.length - 1];
    const hasMath = document.querySelector('.math, div.math, span.math') !== null;
    if (!window.MathJax || !window.MathJax.startup || !window.MathJax.startup.promise) {
        done(hasMath ? 'MathJax did not load on a page with math' : 'no math'); return; }
    window.MathJax.startup.promise.then(() => done('ok'), e => done('MathJax failed: ' + e));"""

RAW_TEX = """
    const article = document.querySelector('article.bd-article') || document.querySelector('main');
    if (!article) return [];
    const copy = article.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, .cell_input, mjx-container, '
                          + 'mjx-assistive-mml, .headerlink').forEach(e => e.remove());
    const text = copy.textContent;
    const found = [];
    for (const token of ['$', '\\\\(', '\\\\)', '\\\\[', '\\\\]', '\\\\begin{']) {
        const at = text.indexOf(token);
        if (at >= 0) found.push(token + ' in "...' + text.slice(Math.max(0, at - 50), at + 50)
                                .replace(/\\s+/g, ' ') + '..."');
    }
    return found;"""

CLIPPED_TABLES = """
    const article = document.querySelector('article.bd-article') || document.querySelector('main');
    if (!article) return [];
    const outer = article.getBoundingClientRect();
    const style = getComputedStyle(article);
    const left = outer.left + parseFloat(style.paddingLeft);
    const right = outer.right - parseFloat(style.paddingRight);
    return Array.from(article.querySelectorAll('table')).filter(t => {
        const r = t.getBoundingClientRect();
        return r.width > 0 && (r.right > right + 1 || r.left < left - 1);
    }).map(t => {
        const r = t.getBoundingClientRect();
        const head = (t.querySelector('tr') || t).innerText.replace(/\\s+/g, ' ').slice(0, 80);
        return `table ${Math.round(r.width)} px wide in a ${Math.round(right - left)} px column: ${head}`;
    });"""

# Cells that print pandas' default of six decimals ("0.954000"): a styled table ignores
# DataFrame.round(), so a chapter must say .format(precision=...); a plain one must round.
SIX_DECIMAL_CELLS = """
    return Array.from(document.querySelectorAll('table td'))
        .map(td => td.innerText.trim()).filter(t => /^-?\\d+\\.\\d{6}$/.test(t)).slice(0, 5);"""


def _console_errors(driver: Any) -> list[str]:
    """Errors the page wrote to the browser's console since the last call."""
    try:
        entries = driver.get_log("browser")
    except Exception:  # a driver without the log endpoint: nothing to check
        return []
    return [e["message"][:300] for e in entries if e.get("level") == "SEVERE"]


def _url(site: str, doc: str) -> str:
    return f"{site}{doc}.html"


# ----------------------------------------------------------------------------- tests
def test_index_redirects_to_front_page(site: str, browser: Any) -> None:
    status, _ = _fetch(_url(site, "index"))
    assert status == 200, f"index.html answered HTTP {status}"
    _open(browser, _url(site, "index"))
    deadline = time.time() + 10
    while not browser.current_url.endswith(f"{DOCS[0]}.html") and time.time() < deadline:
        time.sleep(0.2)
    assert browser.current_url.endswith(f"{DOCS[0]}.html"), (
        f"index.html should lead to the front page {DOCS[0]}.html, "
        f"ended at {browser.current_url}")


@pytest.mark.parametrize("doc", DOCS)
def test_page(doc: str, site: str, browser: Any) -> None:
    """One page: loads, titled, images render, figures, no errors, links resolve."""
    url = _url(site, doc)
    status, _ = _fetch(url)
    assert status == 200, f"{doc}.html answered HTTP {status}: is it missing from the build?"
    _console_errors(browser)  # forget the previous page's messages
    _open(browser, url)
    problems: list[str] = []

    # Title: the page's first heading, also in the browser's title bar.
    h1 = browser.execute_script(H1_TEXT)
    if not h1:
        problems.append("no <h1> title")
    elif h1 not in browser.title:
        problems.append(f"document title {browser.title!r} does not contain h1 {h1!r}")

    # Every image has a real size (a broken src gives naturalWidth 0).
    for img in _wait_for_images(browser):
        if not img["complete"] or img["width"] == 0:
            problems.append(f"image did not render: {img['src']} (alt={img['alt']!r})")

    # A chapter shows at least one figure.
    if source_path(doc).suffix == ".ipynb":
        n_figures = browser.execute_script(FIGURES)
        if n_figures == 0:
            hint = " (the page is still a placeholder)" if h1 and "in preparation" in h1 else ""
            problems.append(f"chapter shows no figure{hint}")

    # No error output.
    for text in browser.execute_script(ERROR_OUTPUTS):
        problems.append(f"error output cell: {text!r}")
    body = browser.execute_script("return document.body.innerText")
    if "Traceback (most recent call last)" in body:
        problems.append("page text contains 'Traceback (most recent call last)'")
    match = ERROR_LINE.search(browser.execute_script(OUTPUT_TEXT) or "")
    if match:
        problems.append(f"an output cell prints an error: {match.group(0).strip()!r}")

    # Equations: MathJax has run and no TeX delimiter is left in the text (MyST does not
    # warn about math it did not recognise; it shows up here as raw $ or \\( ).
    browser.set_script_timeout(60)
    state = browser.execute_async_script(MATHJAX_DONE)
    if state not in ("ok", "no math"):
        problems.append(state)
    for raw in browser.execute_script(RAW_TEX):
        problems.append(f"unrendered TeX: {raw}")

    # Tables fit the text column (a wider one is clipped or scrolls out of view).
    for table in browser.execute_script(CLIPPED_TABLES):
        problems.append(f"clipped {table}")

    # Numbers print as many decimals as they mean, not the styler's six.
    six = browser.execute_script(SIX_DECIMAL_CELLS)
    if six:
        problems.append(f"table cells print six decimals (pandas' default: format them; a styled table "
                        f"ignores round() and needs .format(precision=...)): {six}")

    # The console has no error (e.g. a script declared twice, a resource that failed).
    for message in _console_errors(browser):
        problems.append(f"console error: {message}")

    # Every internal link (same site, .html) resolves; anchors exist on the target.
    for href in sorted(set(browser.execute_script(LINKS))):
        if not href.startswith(site):
            continue
        target, fragment = urldefrag(href)
        path = urlsplit(target).path
        if not path.endswith(".html"):
            continue
        status, text = _fetch(target)
        if status != 200:
            problems.append(f"broken link {href} (HTTP {status})")
        elif fragment and f'id="{unquote(fragment)}"' not in text:
            problems.append(f"link {href}: no element with id {unquote(fragment)!r}")

    assert not problems, f"{doc}.html:\n  - " + "\n  - ".join(problems)


def _launch_config() -> dict[str, str]:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repo = cfg["repository"]
    owner_repo = urlsplit(repo["url"]).path.strip("/")
    return {"owner_repo": owner_repo, "branch": repo.get("branch", "main"),
            "path_to_book": (repo.get("path_to_book") or "").strip("/"),
            "binder": cfg["launch_buttons"]["binderhub_url"].rstrip("/"),
            "colab": cfg["launch_buttons"]["colab_url"].rstrip("/")}


@pytest.mark.parametrize("doc", NOTEBOOK_DOCS)
def test_launch_buttons(doc: str, site: str, browser: Any) -> None:
    """Binder and Colab links exist and open this chapter's notebook in the repository."""
    cfg = _launch_config()
    nb_path = "/".join(p for p in (cfg["path_to_book"], f"{doc}.ipynb") if p)
    assert (ROOT / nb_path).exists(), f"launch links would point at missing {nb_path}"
    _open(browser, _url(site, doc))
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]'))"
        ".map(a => a.getAttribute('href'));")
    colab = [h for h in hrefs if h.startswith(cfg["colab"])]
    binder = [h for h in hrefs if h.startswith(cfg["binder"])]
    expected_colab = f"{cfg['colab']}/github/{cfg['owner_repo']}/blob/{cfg['branch']}/{nb_path}"
    assert colab == [expected_colab], f"Colab links {colab}, expected [{expected_colab}]"
    assert len(binder) == 1, f"expected one Binder link, found {binder}"
    prefix = f"{cfg['binder']}/v2/gh/{cfg['owner_repo']}/{cfg['branch']}?urlpath="
    assert binder[0].startswith(prefix), f"Binder link {binder[0]} should start {prefix}"
    assert unquote(binder[0]).endswith(f"/{nb_path}"), (
        f"Binder link {binder[0]} should open {nb_path}")


def test_navigation_follows_the_reading_order(site: str, browser: Any) -> None:
    """The sidebar shows the toc's parts, and its pages in the toc's order, which is the
    order of the chapter numbers."""
    _open(browser, _url(site, DOCS[0]))
    captions = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar-primary .caption-text'))"
        ".map(e => e.textContent.trim());")
    assert captions == toc_captions(), f"navigation parts {captions} != _toc.yml captions"
    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('.bd-sidebar-primary nav a.reference.internal'))"
        ".map(a => a.href);")
    shown = [urlsplit(h).path.rsplit("/", 1)[-1].removesuffix(".html") for h in hrefs]
    expected = [Path(d).name for d in DOCS[1:]]
    assert [d for d in shown if d in expected] == expected, (
        f"sidebar order {shown} differs from _toc.yml {expected}")


HEADLINE = """
    const tables = Array.from(document.querySelectorAll('article table'));
    return tables.map(t => Array.from(t.querySelectorAll('th')).map(th => th.innerText.trim()));"""


def test_front_page_opens_with_the_headline(site: str, browser: Any) -> None:
    """The front page shows the poster's table beside ours, computed from results/."""
    _open(browser, _url(site, DOCS[0]))
    headers = browser.execute_script(HEADLINE)
    assert any({"Best: poster", "Best: ours", "Top 3: poster", "Top 3: ours"} <= set(h)
               for h in headers), f"no headline table on the front page; table headers: {headers}"
    text = browser.execute_script("return document.querySelector('article').innerText")
    assert re.search(r"\d+ \[\d+, \d+\]", text), "ours should show intervals such as '49 [39, 59]'"
    assert "block C" in text and "block A" in text, "the computed findings are missing"


def _full_page_screenshot(driver: Any, path: Path, max_height: int = 16000) -> None:
    height = driver.execute_script(
        "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)")
    driver.set_window_size(1280, min(int(height) + 120, max_height))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)


@pytest.mark.parametrize("doc", DOCS)
def test_screenshots(doc: str, site: str, browser: Any) -> None:
    """A full-page screenshot of every page, to look at (figures, tables, equations)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _open(browser, _url(site, doc))
    _wait_for_images(browser)
    browser.set_script_timeout(60)
    browser.execute_async_script(MATHJAX_DONE)
    path = SCREENSHOTS / f"{doc.replace('/', '_')}.png"
    _full_page_screenshot(browser, path)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
