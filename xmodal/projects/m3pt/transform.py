"""Multi-label tagging examples from ``emoji_styles`` (the m3pt spec): emoji as items (image +
English name), their English CLDR keywords as tags.

The tag vocabulary is built from the *training* split only: a keyword is a tag when at least
``min_count`` distinct base emoji of the training split carry it (skin-tone variants of one
emoji count once, they share their keywords). Tags are ordered by (-count, tag), so the
vocabulary is deterministic. Keywords of evaluation items that are not in the vocabulary are
dropped from their targets and counted per item in ``unseen_tags``.
"""
from __future__ import annotations

import collections
import functools

import grain
import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.data.sets.emoji_styles import STYLES
from xmodal.core.registry import TRANSFORMS
from xmodal.data.transforms.emoji_keywords import keywords_by_base, record_keywords, text


@functools.lru_cache(maxsize=8)
def tag_vocabulary(dataset: str = "emoji_styles", split: str = "train", min_count: int = 3,
                   data_dir: str = "") -> tuple[str, ...]:
    """Keywords carried by >= ``min_count`` base emoji of ``split``, by (-count, tag)."""
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"tag min_count must be an int >= 1, got {min_count!r}")
    builder = sources.prepare(dataset, data_dir or None)
    if split not in builder.info.splits:
        raise ValueError(f"dataset {dataset!r} has no split {split!r}; splits: "
                         f"{', '.join(builder.info.splits)}")
    by_base = keywords_by_base(dataset, data_dir)
    skip = {k: tfds.decode.SkipDecoding() for k in builder.info.features
            if k.startswith("image")}
    source = builder.as_data_source(split, decoders=skip)
    tags_of_base: dict[str, set[str]] = collections.defaultdict(set)
    for i in range(len(source)):
        r = source[i]
        tags_of_base[text(r["base"])].update(record_keywords(r, by_base))
    counts = collections.Counter(t for tags in tags_of_base.values() for t in tags)
    vocab = tuple(t for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                  if n >= min_count)
    if not vocab:
        raise ValueError(f"no keyword of {dataset!r}/{split} is carried by >= {min_count} "
                         f"emoji; lower min_count")
    return vocab


class EmojiTags(grain.transforms.Map):
    """Record -> image (one style), text (English name), tags (bool [T]), unseen_tags (int32)."""

    def __init__(self, image_size: int, max_text_len: int, style: str, vocab: tuple[str, ...],
                 by_base: dict):
        if style not in STYLES:
            raise ValueError(f"unknown emoji style {style!r}; styles: {', '.join(STYLES)}")
        self.images = ImageTextTransform(image_size, max_text_len)
        self.tokenizer = self.images.tokenizer
        self.style, self.vocab, self.by_base = style, vocab, by_base
        self.index = {t: i for i, t in enumerate(vocab)}

    def map(self, record) -> dict[str, np.ndarray]:
        words = record_keywords(record, self.by_base)
        tags = np.zeros(len(self.vocab), dtype=bool)
        known = [self.index[w] for w in words if w in self.index]
        tags[known] = True
        return {
            "image": self.images.resize(np.asarray(record[f"image_{self.style}"])),
            "text": self.tokenizer.encode(text(record["name"])),
            "tags": tags,
            "unseen_tags": np.int32(len(words) - len(known)),
        }


@TRANSFORMS.register("emoji_tags")
def emoji_tags(dataset: str = "emoji_styles", data_dir: str = "", vocab_split: str = "train",
               min_count: int = 3, image_size: int = 32, max_text_len: int = 32,
               style: str = "twemoji") -> EmojiTags:
    """Items = emoji (``style`` drawing + English name), tags = CLDR keywords (multi-hot).

    ``dataset`` must be an ``emoji_styles`` config with per-style images; keep it equal to
    ``data.name`` (the m3pt spec links the two) and keep ``dataset``/``vocab_split``/
    ``min_count`` equal to the m3pt objective's, which builds the same vocabulary to embed the
    tag strings.
    """
    vocab = tag_vocabulary(dataset, vocab_split, min_count, data_dir)
    return EmojiTags(image_size, max_text_len, style, vocab, keywords_by_base(dataset, data_dir))
