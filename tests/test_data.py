"""The data layer: real offline datasets, idx parsing, clear errors, safe extraction."""
import gzip
import io
import tarfile

import numpy as np
import pytest

from tdml_lib import data, features


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
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m tdml_lib data --prepare"):
        data.load("numbers", "test")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load("mnist")


def test_tdml_data_idx_files_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    (tmp_path / "fashion").mkdir()
    write_idx(tmp_path / "fashion" / "t10k-images-idx3-ubyte.gz", np.ones((6, 28, 28)), gz=True)
    write_idx(tmp_path / "fashion" / "t10k-labels-idx1-ubyte.gz", np.arange(6) % 3, gz=True)
    ds = data.load("fashion", "test", prepare=True)
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
        return data.load(name, split)
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


def test_feature_map_fit_transform_save_load(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, (50, 28, 28)).astype(np.uint8)
    fm = features.FeatureMap(5).fit(imgs, domain="toy")
    Z = fm.transform(imgs)
    assert Z.shape == (50, 5) and Z.dtype == np.float32
    again = features.FeatureMap.load(fm.save(tmp_path / "fm.npz"))
    assert np.allclose(again.transform(imgs), Z) and again.domain == "toy"
    with pytest.raises(ValueError, match="pixels"):
        fm.transform(np.zeros((3, 8, 8)))


def test_domain_problems_use_the_training_domain_map():
    _prepared("numbers", "train")
    probs = features.domain_problems("letters", 3, seed=0)
    assert len(probs) == 3 and probs[0].n_features == 32
    assert "PCA on numbers" in probs[0].source


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
    monkeypatch.setattr(data, "_download", lambda url, dest, sha256=None: dest)
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
        data.load("svhn", "test")
