import gzip
import os

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import fashion_mnist as fm

NAME = "fashion_mnist/tiny"
pytestmark = skip_unless_installed(NAME)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all(NAME, str(tmp_path_factory.mktemp("data")))


def raw_idx(name):
    """Independent IDX read: skip the fixed-size header of the MNIST format."""
    data = gzip.open(os.path.join(sources.resolve_file(fm.DEBIAN_DIR), name)).read()
    header = 16 if "images" in name else 8
    return np.frombuffer(data, np.uint8, offset=header)


def test_tiny_has_every_class_in_both_splits(records):
    assert len(records["train"]) == 40 and len(records["test"]) == 20
    for split, per_class in (("train", 4), ("test", 2)):
        labels = [r["label"] for r in records[split]]
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10


def test_names_match_labels(records):
    expected = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                "Sneaker", "Bag", "Ankle boot"]
    for r in records["train"] + records["test"]:
        assert r["name"].decode() == expected[r["label"]]


def test_images_equal_the_idx_pixels_in_all_three_channels(records):
    for split, prefix in (("train", "train"), ("test", "t10k")):
        pixels = raw_idx(f"{prefix}-images-idx3-ubyte.gz").reshape(-1, 28, 28)
        labels = raw_idx(f"{prefix}-labels-idx1-ubyte.gz")
        for r in records[split]:
            image = r["image"]
            assert image.dtype == np.uint8 and image.shape == (28, 28, 3)
            for c in range(3):
                np.testing.assert_array_equal(image[:, :, c], pixels[r["index"]])
            assert r["label"] == labels[r["index"]]
            assert image.max() > 100 and image[0, 0, 0] == 0  # bright garment, black border


def test_full_files_have_official_sizes():
    train_images, train_labels = fm.read_split("train")
    test_images, _ = fm.read_split("test")
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.bincount(train_labels).tolist() == [6000] * 10


def test_bad_idx_file_names_the_path(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\0\0\x08\x01" + (5).to_bytes(4, "big") + b"\1\2")  # says 5 bytes, has 2
    with pytest.raises(ValueError, match="bad.gz holds 2 bytes"):
        fm.read_idx(str(bad), 1)
    with pytest.raises(ValueError, match="bad.gz is not a 3-d uint8 IDX"):
        fm.read_idx(str(bad), 3)


def test_unknown_split_lists_splits():
    with pytest.raises(ValueError, match=r"\['test', 'train'\], not 'validation'"):
        fm.read_split("validation")


def test_missing_debian_package_gives_apt_command(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBROOT", str(tmp_path))  # an empty root: the package is not there
    with pytest.raises(sources.DataSourceMissing,
                       match="apt-get install -y dataset-fashion-mnist"):
        sources.check_installed(NAME)
