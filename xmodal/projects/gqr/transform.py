"""OpenClipart records for GQR: the drawing and a text to train the image retriever, the text
the complementary retriever indexes, and the archive folders it is filed in for the relevance
labels.

Two settings (``train_text``, ``guide``):
- ``train_text="title", guide="keywords"``: the primary (image) retriever learns title ↔
  drawing; the complementary retriever indexes the item's keywords and description.
- ``train_text="tags", guide="title"`` (the paper's shape: a strong vision primary, a lighter
  text guide over what a page's OCR would give): the primary learns drawing ↔ its title or one
  of its keywords, a fresh draw per example (``PickText``); the complementary retriever
  indexes the held-out item's title only. Uploaders tag a drawing with subject words ("fruit",
  "flag"), so a primary trained on tags learns to find a subject in the drawings; a title
  ("Red apple") seldom names it.
Either way the two retrievers read different evidence of the same item, as a page image and
its OCR text do in the paper's visual-document setting, and the queries and their relevance
come from the folders the archive's curators filed the drawing in (``folders``), which neither
retriever reads (``evaluator.py``). The eval split's ``text`` is always the title.

Raw strings travel as fixed-length UTF-8 byte arrays (``title_bytes``, ``corpus_bytes``,
``folders_bytes``, zero padded) because the eval split reaches evaluators as stacked numpy
arrays: BM25 and the relevance read the words, the text tower reads ``corpus`` tokens.
"""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np

from xmodal.core.registry import TRANSFORMS
from xmodal.data.transforms.image_text import ImageTextTransform

FIELDS = ("image", "title", "keywords", "description", "folders")
TRAIN_TEXTS = ("title", "tags")
GUIDES = ("keywords", "title")


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def corpus_text(record: Mapping[str, Any]) -> str:
    """What the complementary retriever indexes: keywords, then the description if any."""
    keywords, description = as_text(record["keywords"]), as_text(record["description"]).strip()
    return f"{keywords}. {description}" if description else keywords


def tags(record: Mapping[str, Any]) -> list[str]:
    """The item's keywords, each once, in the uploader's order (empty ones dropped)."""
    out = []
    for word in as_text(record["keywords"]).split(","):
        word = word.strip()
        if word and word not in out:
            out.append(word)
    return out


def to_bytes(text: str, length: int) -> np.ndarray:
    """UTF-8 bytes of ``text`` cut to ``length`` (at a character boundary), zero padded."""
    data = text.encode("utf-8")[:length].decode("utf-8", "ignore").encode("utf-8")
    out = np.zeros(length, np.uint8)
    out[:len(data)] = np.frombuffer(data, np.uint8)
    return out


def from_bytes(row: np.ndarray) -> str:
    """The string ``to_bytes`` stored (padding dropped)."""
    return bytes(np.asarray(row, np.uint8)).rstrip(b"\0").decode("utf-8", "ignore")


class PickText(grain.transforms.RandomMap):
    """Training only: ``text`` = one of the ``n_texts`` rows of ``texts`` (the title and the
    item's tags), uniformly at random per example."""

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        out = dict(element)
        out["text"] = element["texts"][rng.integers(int(element["n_texts"]))]
        return out


class GqrItems(grain.transforms.Map):
    """Record → {"image", "text": title tokens, "corpus": the guide's text as tokens,
    "title_bytes", "corpus_bytes", "folders_bytes"}, and with ``train_text="tags"`` also
    "texts" [1 + max_tags, L] (title, then tags; zero rows past ``n_texts``) and "n_texts"."""

    def __init__(self, image_size: int, max_text_len: int, max_corpus_len: int,
                 title_bytes: int, corpus_bytes: int, folders_bytes: int,
                 train_text: str = "title", guide: str = "keywords", max_tags: int = 16):
        for name, value in (("max_corpus_len", max_corpus_len), ("title_bytes", title_bytes),
                            ("corpus_bytes", corpus_bytes), ("folders_bytes", folders_bytes),
                            ("max_tags", max_tags)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"gqr_items {name} must be a positive int, got {value!r}")
        for name, value, valid in (("train_text", train_text, TRAIN_TEXTS),
                                   ("guide", guide, GUIDES)):
            if value not in valid:
                raise ValueError(f"gqr_items {name}={value!r}; valid: {', '.join(valid)}")
        self.train_text, self.guide, self.max_tags = train_text, guide, max_tags
        self.augment = PickText() if train_text == "tags" else None
        # The image resize and byte tokenizer of CLIP-style training, reading the title.
        self.image_text = ImageTextTransform(image_size, max_text_len, text_field="title")
        self.tokenizer = self.image_text.tokenizer
        self.corpus_tokenizer = ImageTextTransform(image_size, max_corpus_len).tokenizer
        self.title_bytes, self.corpus_bytes = title_bytes, corpus_bytes
        self.folders_bytes = folders_bytes

    def __repr__(self) -> str:
        return (f"GqrItems(image_size={self.image_text.image_size}, "
                f"max_text_len={self.tokenizer.max_len}, "
                f"max_corpus_len={self.corpus_tokenizer.max_len}, "
                f"title_bytes={self.title_bytes}, corpus_bytes={self.corpus_bytes}, "
                f"folders_bytes={self.folders_bytes}, train_text={self.train_text!r}, "
                f"guide={self.guide!r}, max_tags={self.max_tags})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise KeyError(f"gqr_items: record has no field(s) {', '.join(missing)}; fields: "
                           f"{', '.join(sorted(record))} (use data.name=openclipart, "
                           "version 1.1.0 or later)")
        title = as_text(record["title"])
        corpus = title if self.guide == "title" else corpus_text(record)
        out = {
            "image": self.image_text.resize(np.asarray(record["image"])),
            "text": self.tokenizer.encode(title),
            "corpus": self.corpus_tokenizer.encode(corpus),
            "title_bytes": to_bytes(title, self.title_bytes),
            "corpus_bytes": to_bytes(corpus, self.corpus_bytes),
            "folders_bytes": to_bytes(as_text(record["folders"]), self.folders_bytes),
        }
        if self.train_text == "tags":
            choices = [title] + tags(record)[:self.max_tags]
            texts = np.zeros((1 + self.max_tags, self.tokenizer.max_len), np.int32)
            for i, text in enumerate(choices):
                texts[i] = self.tokenizer.encode(text)
            out["texts"], out["n_texts"] = texts, np.int32(len(choices))
        return out


@TRANSFORMS.register("gqr_items")
def gqr_items(image_size: int = 32, max_text_len: int = 32, max_corpus_len: int = 64,
              title_bytes: int = 96, corpus_bytes: int = 512,
              folders_bytes: int = 256, train_text: str = "title", guide: str = "keywords",
              max_tags: int = 16) -> GqrItems:
    """OpenClipart items for GQR (see the module docstring)."""
    return GqrItems(image_size, max_text_len, max_corpus_len, title_bytes, corpus_bytes,
                    folders_bytes, train_text, guide, max_tags)
