"""OpenClipart records for GQR: the drawing and its title to train the image retriever, the
item's other text (keywords and description) for the complementary text retriever, and the
archive folders it is filed in for the relevance labels.

The primary (image) retriever learns title ↔ drawing. The complementary retriever indexes each
item's keywords and description, never its title, so the two retrievers see different
evidence of the same item, as a page image and its OCR text do in the paper's visual-document
setting. The queries and their relevance come from the folders the archive's curators filed
the drawing in (``folders``), which neither retriever reads (``evaluator.py``).

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


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def corpus_text(record: Mapping[str, Any]) -> str:
    """What the complementary retriever indexes: keywords, then the description if any."""
    keywords, description = as_text(record["keywords"]), as_text(record["description"]).strip()
    return f"{keywords}. {description}" if description else keywords


def to_bytes(text: str, length: int) -> np.ndarray:
    """UTF-8 bytes of ``text`` cut to ``length`` (at a character boundary), zero padded."""
    data = text.encode("utf-8")[:length].decode("utf-8", "ignore").encode("utf-8")
    out = np.zeros(length, np.uint8)
    out[:len(data)] = np.frombuffer(data, np.uint8)
    return out


def from_bytes(row: np.ndarray) -> str:
    """The string ``to_bytes`` stored (padding dropped)."""
    return bytes(np.asarray(row, np.uint8)).rstrip(b"\0").decode("utf-8", "ignore")


class GqrItems(grain.transforms.Map):
    """Record → {"image", "text": title tokens, "corpus": keyword/description tokens,
    "title_bytes", "corpus_bytes"}."""

    def __init__(self, image_size: int, max_text_len: int, max_corpus_len: int,
                 title_bytes: int, corpus_bytes: int, folders_bytes: int):
        for name, value in (("max_corpus_len", max_corpus_len), ("title_bytes", title_bytes),
                            ("corpus_bytes", corpus_bytes), ("folders_bytes", folders_bytes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"gqr_items {name} must be a positive int, got {value!r}")
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
                f"folders_bytes={self.folders_bytes})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [f for f in FIELDS if f not in record]
        if missing:
            raise KeyError(f"gqr_items: record has no field(s) {', '.join(missing)}; fields: "
                           f"{', '.join(sorted(record))} (use data.name=openclipart, "
                           "version 1.1.0 or later)")
        title, corpus = as_text(record["title"]), corpus_text(record)
        return {
            "image": self.image_text.resize(np.asarray(record["image"])),
            "text": self.tokenizer.encode(title),
            "corpus": self.corpus_tokenizer.encode(corpus),
            "title_bytes": to_bytes(title, self.title_bytes),
            "corpus_bytes": to_bytes(corpus, self.corpus_bytes),
            "folders_bytes": to_bytes(as_text(record["folders"]), self.folders_bytes),
        }


@TRANSFORMS.register("gqr_items")
def gqr_items(image_size: int = 32, max_text_len: int = 32, max_corpus_len: int = 64,
              title_bytes: int = 96, corpus_bytes: int = 512,
              folders_bytes: int = 256) -> GqrItems:
    """OpenClipart items for GQR (see the module docstring)."""
    return GqrItems(image_size, max_text_len, max_corpus_len, title_bytes, corpus_bytes,
                    folders_bytes)
