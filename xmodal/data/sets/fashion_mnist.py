"""Fashion-MNIST: 28x28 grayscale photos of clothing paired with their class name.

Source: the original IDX files (Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms") from the Debian package
``dataset-fashion-mnist``. The official 60,000 / 10,000 train/test split is kept: every image is
a distinct product photo, so the split is already held out by item.

Images are stored as 28x28x3 PNG with the gray value copied into all three channels, so the
records plug into the RGB image pipeline unchanged; PNG's filters make the copies nearly free.
"""
from __future__ import annotations

import dataclasses
import gzip
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

# Class names in label order, as published with the dataset.
CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
IMAGE_SIZE = 28
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
APT = ("dataset-fashion-mnist",)
INSTALL = "apt-get update && apt-get install -y dataset-fashion-mnist"
# IDX magic: two zero bytes, a type code (0x08 = uint8) and the number of dimensions.
IDX_UINT8 = 0x08

CARD = {
    "title": "Fashion-MNIST (xmodal_fashion_mnist)",
    "sources": "Debian package dataset-fashion-mnist (original gzipped IDX files; version is "
               "the installed package's, see `dpkg -s dataset-fashion-mnist`).",
    "licence": "MIT (Zalando Research).",
    "splits": "The official split: train = 60,000 images, test = 10,000; each image is a "
              "different product, so no item is in both. tiny = the first 4 images of each class "
              "in train (40) and the first 2 of each class in test (20).",
    "languages": "English class names.",
    "skipped": "Nothing. A file whose IDX header, size or label range is wrong stops the build "
               "with its path.",
    "fields": {
        "image": "uint8 [28, 28, 3] PNG; the grayscale image exactly as in the IDX file "
                 "(0 = black background, garment bright) copied into R, G and B.",
        "name": "class name, e.g. 'Ankle boot'.",
        "label": f"class index 0-9 in the order {', '.join(CLASS_NAMES)}.",
        "index": "position of the image in its original IDX file.",
    },
}


def read_idx(path: str, ndim: int) -> np.ndarray:
    """uint8 array from a gzipped IDX file (LeCun's MNIST format), checking the header."""
    with gzip.open(path) as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != IDX_UINT8 or data[3] != ndim:
        raise ValueError(f"{path} is not a {ndim}-d uint8 IDX file (header {data[:4]!r}); "
                         f"reinstall with: apt-get install --reinstall {APT[0]}")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {body.size} bytes after its header, expected shape "
                         f"{shape}; reinstall with: apt-get install --reinstall {APT[0]}")
    return body.reshape(shape)


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of the official ``split``."""
    if split not in FILES:
        raise ValueError(f"Fashion-MNIST has splits {sorted(FILES)}, not {split!r}")
    image_file, label_file = (sources.resolve_file(f"{DEBIAN_DIR}/{name}")
                              for name in FILES[split])
    images = read_idx(image_file, 3)
    labels = read_idx(label_file, 1)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
        raise ValueError(f"{image_file} has shape {images.shape} but {label_file} has "
                         f"{len(labels)} labels; expected [N, 28, 28] and N labels")
    if labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{label_file} has label {labels.max()}, beyond the 10 classes")
    return images, labels


def first_per_class(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class, in file order (all if None)."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class]
                           for c in range(len(CLASS_NAMES))])
    return np.sort(keep)


def gray_to_png(image: np.ndarray) -> bytes:
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclasses.dataclass
class FashionMnistConfig(tfds.core.BuilderConfig):
    train_per_class: int | None = None  # None: every image
    test_per_class: int | None = None


class FashionMnist(Builder):
    """TFDS builder ``xmodal_fashion_mnist``."""

    name = "xmodal_fashion_mnist"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original IDX files from Debian, official split."}
    BUILDER_CONFIGS = [
        FashionMnistConfig(name="default", description="All 70,000 images."),
        FashionMnistConfig(name="tiny", description="4 train + 2 test images per class.",
                           train_per_class=4, test_per_class=2),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Fashion-MNIST images (gray copied to RGB) with their class names.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                                             encoding_format="png"),
                "name": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                "index": tfds.features.Scalar(dtype=np.int64),
            }),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            license="MIT",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the files come from the Debian package
        per_class = {"train": self.builder_config.train_per_class,
                     "test": self.builder_config.test_per_class}
        return {split: self._generate_examples(split, per_class[split]) for split in FILES}

    def _generate_examples(self, split: str, per_class: int | None):
        images, labels = read_split(split)
        for i in first_per_class(labels, per_class):
            label = int(labels[i])
            yield int(i), {"image": gray_to_png(images[i]), "name": CLASS_NAMES[label],
                           "label": label, "index": int(i)}


_FILES = tuple(f"{DEBIAN_DIR}/{name}" for pair in FILES.values() for name in pair)
_HINT = "Fashion-MNIST IDX files come from a Debian package"
for _name, _config in (("fashion_mnist", "default"), ("fashion_mnist/tiny", "tiny")):
    sources.register(_name, sources.DatasetEntry(
        FashionMnist, _config, packages=(), modules=(), install_hint=_HINT, apt=APT,
        files=_FILES))
