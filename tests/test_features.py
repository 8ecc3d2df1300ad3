"""The feature map: fitted on the training domain only, applied unchanged elsewhere."""
import numpy as np
import pytest

from tdml_lib import data, features


def _images(n, seed, bright=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 200, (n, 28, 28)) + bright, 0, 255).astype(np.uint8)


def test_fit_transform_shapes_and_dtype():
    fm = features.FeatureMap(5).fit(_images(50, 0), seed=0, domain="toy")
    Z = fm.transform(_images(7, 1))
    assert Z.shape == (7, 5) and Z.dtype == np.float32
    assert np.allclose(fm.transform(_images(50, 0)).mean(0), 0, atol=1e-4)  # centred on the fitting data
    assert "toy" in repr(fm)


def test_save_load_round_trip(tmp_path):
    imgs = _images(40, 0)
    fm = features.FeatureMap(4).fit(imgs, seed=3, domain="toy")
    again = features.FeatureMap.load(fm.save(tmp_path / "fm.npz"))
    assert np.allclose(again.transform(imgs), fm.transform(imgs)) and again.domain == "toy"
    assert again.n_components == 4
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a saved FeatureMap"):
        features.FeatureMap.load(tmp_path / "junk.npz")


def test_seeded_fit_is_deterministic():
    imgs = _images(60, 2)
    a = features.FeatureMap(6).fit(imgs, seed=1).transform(imgs)
    b = features.FeatureMap(6).fit(imgs, seed=1).transform(imgs)
    assert np.array_equal(a, b)


def test_bad_inputs_are_clear_errors():
    for bad in (0, 2.5, True, "3"):  # a float, a bool or a string is not a size
        with pytest.raises(ValueError, match="n_components must be an integer"):
            features.FeatureMap(bad)
    with pytest.raises(ValueError, match="not fitted"):
        features.FeatureMap(3).transform(_images(2, 0))
    with pytest.raises(ValueError, match="n_components=10 needs"):
        features.FeatureMap(10).fit(_images(5, 0))
    fm = features.FeatureMap(3).fit(_images(20, 0))
    with pytest.raises(ValueError, match="pixels"):
        fm.transform(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fm.transform(np.full((2, 28, 28), 7.0))
    with pytest.raises(ValueError, match="hold numbers"):
        fm.transform(np.array([["a"] * 784]))


def test_domain_isolation(tmp_path, monkeypatch):
    """The map is fitted on the training domain's *train* split only; test domains are
    transformed by it and never change it."""
    monkeypatch.setenv("TDML_DATA", str(tmp_path))
    train = data.Dataset(_images(60, 0), np.arange(60) % 3, ["a", "b", "c"], "toy train")
    test = data.Dataset(_images(60, 1, bright=55), np.arange(60) % 3, ["a", "b", "c"], "other test")
    calls = []

    def fake_load(name, split="train", prepare=False):
        calls.append((name, split))
        return train if (name, split) == ("toy", "train") else test

    monkeypatch.setattr(data, "load", fake_load)
    fm = features.fit_feature_map("toy", n_components=4, n_fit=50, seed=0)
    assert calls == [("toy", "train")] and fm.domain == "toy"
    before = fm.components_.copy()
    probs = features.domain_problems("other", 2, feature_map=fm, n_clusters=2, points_per_class=(5, 10), seed=0)
    assert np.array_equal(fm.components_, before), "transforming a test domain changed the map"
    assert calls[-1] == ("other", "test") and all("PCA on toy" in p.source for p in probs)
    assert probs[0].n_features == 4
    # cached: a second call reads the file and loads no data
    again = features.fit_feature_map("toy", n_components=4, n_fit=50, seed=0)
    assert len(calls) == 2 and np.array_equal(again.components_, before)
    assert (tmp_path / "pca_toy_4_50_0.npz").exists()


def test_real_domain_problems_use_the_numbers_map():
    try:
        data.load("numbers", "train"), data.load("letters", "test")
    except FileNotFoundError as exc:
        pytest.skip(f"datasets not prepared here: {exc}")
    probs = features.domain_problems("letters", 2, seed=0, points_per_class=(10, 20))
    assert len(probs) == 2 and probs[0].n_features == features.DEFAULT_COMPONENTS
    assert "PCA on numbers" in probs[0].source
