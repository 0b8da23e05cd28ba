"""Two views of one item in two different styles, the item's text and its identity: the
examples of same-style (same-product) retrieval, where the positive of an image is the same
item drawn in another style.

Both transforms give ``{"image", "image2": uint8 [S, S, 3], "text": int32 [L], "label": int32
identity, "style", "style2": int32 style ids}`` with ``style != style2`` whenever the item
exists in more than one style of its split. ``map`` (evaluation, and the shape probe) picks the
pair deterministically from a hash of the item; the ``augment`` (training only, seeded per
record by grain) re-draws it at random, so training sees every style pair.

- ``card_pairs`` (cards: one record = one card in one deck): the factory reads both splits of
  the dataset once and keeps, per split and card, the images of every deck; the partner of a
  record is the same card in another deck of the same split (test decks never leak into
  training). identity = rank * 4 + suit, style = index of the deck in the sorted deck list.
- ``emoji_style_pairs`` (emoji_styles: one record holds every style's image): the views are two
  of ``styles``; identity = a 31-bit hash of the code points, style = index in ``styles``.
  The record's every style is also kept as ``"views"`` [V, S, S, 3], the gallery of the
  same-style evaluator.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import grain
import numpy as np

from xmodal.core import datasets as sources
from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.core.registry import TRANSFORMS


def text_of(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def stable_hash(text: str) -> int:
    """A 31-bit hash that is the same on every run and machine (``hash()`` is salted)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF


def require(record: Mapping[str, Any], fields: Sequence[str], who: str) -> None:
    missing = [f for f in fields if f not in record]
    if missing:
        raise KeyError(f"{who}: record has no field(s) {', '.join(missing)}; fields: "
                       f"{', '.join(sorted(record))}")


class CardPairs(grain.transforms.Map):
    """See the module docstring; ``images`` [N, S, S, 3] holds every card of every split."""

    label_field = None

    def __init__(self, image_size: int, max_text_len: int, data_name: str, data_dir: str,
                 splits: Sequence[str]):
        self.resizer = ImageTextTransform(image_size, max_text_len, text_field="caption",
                                          label_field="rank")
        self.tokenizer = self.resizer.tokenizer
        self.data_name = data_name
        images, ids, decks, split_of = [], [], [], []
        for split in splits:
            source = sources.data_source(data_name, split, data_dir or None)
            for i in range(len(source)):
                r = source[i]
                require(r, ("image", "rank", "suit", "deck"), "card_pairs")
                images.append(self.resizer.resize(np.asarray(r["image"])))
                ids.append(int(r["rank"]) * 4 + int(r["suit"]))
                decks.append(text_of(r["deck"]))
                split_of.append(split)
        if not images:
            raise ValueError(f"card_pairs: dataset {data_name!r} has no records in splits "
                             f"{list(splits)}")
        self.decks = sorted(set(decks))
        deck_index = {d: i for i, d in enumerate(self.decks)}
        self.images = np.stack(images)
        self.ids = np.asarray(ids, np.int32)
        self.styles = np.asarray([deck_index[d] for d in decks], np.int32)
        # (style, id) -> row, and (split, id) -> rows: a card in a deck is one record.
        self.row = {(int(s), int(c)): n for n, (s, c) in enumerate(zip(self.styles, self.ids))}
        self.pool: dict[tuple[str, int], np.ndarray] = {}
        for n, (sp, c) in enumerate(zip(split_of, ids)):
            self.pool.setdefault((sp, c), []).append(n)
        self.pool = {k: np.asarray(v) for k, v in self.pool.items()}
        self.split_of = split_of
        self.augment = RandomPartner(self)

    def __repr__(self) -> str:
        return (f"CardPairs(data_name={self.data_name!r}, image_size={self.resizer.image_size}, "
                f"records={len(self.images)}, decks={len(self.decks)})")

    def partners(self, style: int, ident: int) -> np.ndarray:
        """Rows of the same card in the other decks of the record's split."""
        row = self.row.get((style, ident))
        if row is None:
            raise KeyError(f"card_pairs: card {ident} of deck {self.decks[style]!r} was not in "
                           f"the splits read at construction; pass its split in `splits`")
        rows = self.pool[(self.split_of[row], ident)]
        return rows[self.styles[rows] != style]

    def pair(self, element: dict, partner: int | None) -> dict:
        if partner is None:  # the only deck of its split: the pair is the card with itself
            return dict(element, image2=element["image"], style2=element["style"])
        return dict(element, image2=self.images[partner], style2=self.styles[partner])

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        require(record, ("image", "caption", "rank", "suit", "deck"), "card_pairs")
        deck = text_of(record["deck"])
        if deck not in self.decks:
            raise KeyError(f"card_pairs: deck {deck!r} is not in dataset {self.data_name!r}")
        ident = int(record["rank"]) * 4 + int(record["suit"])
        style = self.decks.index(deck)
        element = {"image": self.resizer.resize(np.asarray(record["image"])),
                   "text": self.tokenizer.encode(record["caption"]),
                   "label": np.int32(ident), "style": np.int32(style)}
        rows = self.partners(style, ident)
        pick = None if rows.size == 0 else int(rows[stable_hash(f"{deck}/{ident}") % rows.size])
        return self.pair(element, pick)


class RandomPartner(grain.transforms.RandomMap):
    """Training: the partner deck is drawn at random per record (seeded by grain)."""

    def __init__(self, pairs: CardPairs):
        self.pairs = pairs

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        rows = self.pairs.partners(int(element["style"]), int(element["label"]))
        pick = None if rows.size == 0 else int(rows[rng.integers(rows.size)])
        return self.pairs.pair(element, pick)


@TRANSFORMS.register("card_pairs")
def card_pairs(image_size: int = 64, max_text_len: int = 32, data_name: str = "cards",
               data_dir: str = "", splits: tuple = ("train", "test")) -> CardPairs:
    """Same card in two decks (cards dataset ``data_name``, read once from ``splits``)."""
    return CardPairs(image_size, max_text_len, data_name, data_dir, tuple(splits))


EMOJI_STYLES = ("noto", "twemoji", "openmoji", "fluent")


class EmojiStylePairs(grain.transforms.Map):
    """See the module docstring."""

    label_field = None

    def __init__(self, image_size: int, max_text_len: int, text_field: str,
                 styles: Sequence[str]):
        if len(styles) < 2 or len(set(styles)) != len(styles):
            raise ValueError(f"emoji_style_pairs needs at least two distinct styles, got "
                             f"{list(styles)}")
        self.resizer = ImageTextTransform(image_size, max_text_len, text_field=text_field,
                                          label_field="group")
        self.tokenizer = self.resizer.tokenizer
        self.text_field = text_field
        self.styles = tuple(styles)
        self.augment = RandomStylePair(len(self.styles))

    def __repr__(self) -> str:
        return (f"EmojiStylePairs(styles={self.styles}, text_field={self.text_field!r}, "
                f"image_size={self.resizer.image_size})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        fields = [f"image_{s}" for s in self.styles]
        require(record, fields + [self.text_field, "codepoints"], "emoji_style_pairs")
        views = np.stack([self.resizer.resize(np.asarray(record[f])) for f in fields])
        h = stable_hash(text_of(record["codepoints"]))
        v = len(self.styles)
        a = h % v
        b = (a + 1 + (h // v) % (v - 1)) % v
        return {"image": views[a], "image2": views[b], "views": views,
                "text": self.tokenizer.encode(record[self.text_field]),
                "label": np.int32(h), "style": np.int32(a), "style2": np.int32(b)}


class RandomStylePair(grain.transforms.RandomMap):
    """Training: two distinct styles drawn at random per record."""

    def __init__(self, num_styles: int):
        self.num_styles = num_styles

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        a, b = rng.choice(self.num_styles, size=2, replace=False)
        views = element["views"]
        return dict(element, image=views[a], image2=views[b], style=np.int32(a),
                    style2=np.int32(b))


@TRANSFORMS.register("emoji_style_pairs")
def emoji_style_pairs(image_size: int = 64, max_text_len: int = 48, text_field: str = "name",
                      styles: tuple = EMOJI_STYLES) -> EmojiStylePairs:
    """The same emoji in two of ``styles``, its name, and every style as ``views``."""
    return EmojiStylePairs(image_size, max_text_len, text_field, tuple(styles))
