"""Multimodal entity linking examples from ``emoji_styles`` (the m3el spec).

One record is one entity, an emoji. Its *mention* is what a reader sees in context: the CLDR
keywords ("face, grin") and the emoji drawn in one style. Its *entity* is the knowledge-base
side: the English name ("grinning face") and the emoji drawn in another style. The keywords are
ambiguous (many emoji share "face"; a skin-tone variant shares its base's keywords, so only the
image tells the five apart), and the two drawings differ in style, so both modalities matter.
"""
from __future__ import annotations

import zlib

import grain
import numpy as np

from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.data.sets.emoji_styles import STYLES
from xmodal.core.registry import TRANSFORMS
from xmodal.data.transforms.emoji_keywords import keywords_by_base, record_keywords, text

KEYWORD_SEPARATOR = ", "


def entity_id(codepoints: str) -> np.int32:
    """A stable non-negative id per emoji (crc32 of its code points)."""
    return np.int32(zlib.crc32(codepoints.encode("ascii")) & 0x7FFFFFFF)


class EmojiEntities(grain.transforms.Map):
    """Record -> mention_image, mention_text, entity_image, entity_text, entity_id, images.

    ``map`` draws the mention in ``mention_style`` and the entity in ``entity_style`` (the fixed
    evaluation pair); ``images`` [len(styles), S, S, 3] holds every style so that ``augment``
    (training only) can redraw both sides in a random pair of distinct styles.
    """

    def __init__(self, image_size: int, max_text_len: int, mention_style: str,
                 entity_style: str, styles: tuple[str, ...], by_base: dict):
        styles = tuple(styles)
        for s in (mention_style, entity_style, *styles):
            if s not in STYLES:
                raise ValueError(f"unknown emoji style {s!r}; styles: {', '.join(STYLES)}")
        if mention_style == entity_style:
            raise ValueError(f"mention_style and entity_style must differ (both {mention_style!r}):"
                             " the mention and the entity are drawn by different artists")
        if len(set(styles)) < 2:
            raise ValueError(f"styles needs at least two distinct styles to draw a mention and "
                             f"an entity differently; got {styles}")
        self.images = ImageTextTransform(image_size, max_text_len)  # resize + tokenizer
        self.tokenizer = self.images.tokenizer
        self.mention_style, self.entity_style, self.styles = mention_style, entity_style, styles
        self.by_base = by_base
        self.augment = RandomStylePair(len(styles))

    def mention_text(self, record) -> str:
        return KEYWORD_SEPARATOR.join(record_keywords(record, self.by_base))

    def map(self, record) -> dict[str, np.ndarray]:
        draw = lambda s: self.images.resize(np.asarray(record[f"image_{s}"]))
        return {
            "mention_image": draw(self.mention_style),
            "mention_text": self.tokenizer.encode(self.mention_text(record)),
            "entity_image": draw(self.entity_style),
            "entity_text": self.tokenizer.encode(text(record["name"])),
            "entity_id": entity_id(text(record["codepoints"])),
            "images": np.stack([draw(s) for s in self.styles]),
        }


class RandomStylePair(grain.transforms.RandomMap):
    """Redraws mention and entity in two distinct styles picked uniformly from ``images``."""

    def __init__(self, num_styles: int):
        self.num_styles = num_styles

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        a, b = rng.choice(self.num_styles, size=2, replace=False)
        return dict(element, mention_image=element["images"][a], entity_image=element["images"][b])


@TRANSFORMS.register("emoji_entities")
def emoji_entities(dataset: str = "emoji_styles", data_dir: str = "", image_size: int = 32,
                   max_text_len: int = 64, mention_style: str = "twemoji",
                   entity_style: str = "openmoji", styles: tuple = STYLES) -> EmojiEntities:
    """Mention = CLDR keywords + one style, entity = English name + another style.

    ``dataset`` must be an ``emoji_styles`` config with per-style images (default or tiny);
    keep it equal to ``data.name`` (the m3el spec links the two). Training redraws both sides
    in a random pair of distinct ``styles``; evaluation uses ``mention_style``/``entity_style``.
    """
    return EmojiEntities(image_size, max_text_len, mention_style, entity_style, tuple(styles),
                         keywords_by_base(dataset, data_dir))
