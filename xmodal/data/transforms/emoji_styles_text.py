"""Image-text examples from ``emoji_styles`` records (one emoji drawn in four styles).

    {"image":        uint8 [S, S, 3]   one style: random per record in training (``augment``),
                                       ``eval_style`` otherwise,
     "style_images": uint8 [n, S, S, 3] every style in ``styles`` (a gallery for evaluators),
     "text":         int32 [max_text_len] byte tokens of the name,
     "label":        int32  the Unicode group (``label_field``),
     "subgroup":     int32 [max_text_len] byte tokens of the subgroup ("person-activity"),
     "identity":     int32  stable id of ``record[identity_field]`` (base emoji by default)}

``strip_skin_tone`` removes skin-tone phrases from the name ("man running: dark skin tone" ->
"man running"), so a caption describes the identity (the base emoji shared by its skin-tone
variants) and not one variant. Identity ids are the first 31 bits of sha1 of the field's text:
the same id in every split and run, no index to build (collisions among the ~1.5k base emoji
have probability ~1e-6).
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

import grain
import numpy as np

from xmodal.data.transforms.image_text import ImageTextTransform
from xmodal.core.registry import TRANSFORMS

STYLES = ("noto", "twemoji", "openmoji", "fluent")
_TONE = r"(?:light|medium-light|medium|medium-dark|dark) skin tone"
# ": dark skin tone", ", dark skin tone" (several tones in couples), and a trailing ":" left over.
SKIN_TONE = re.compile(rf"(?::\s*|,\s*)?{_TONE}")


def strip_skin_tone(name: str) -> str:
    """'kiss: woman, man, light skin tone, dark skin tone' -> 'kiss: woman, man'."""
    out = SKIN_TONE.sub("", name).strip()
    return out.rstrip(":,").strip()


def identity_id(value: str) -> np.int32:
    return np.int32(int(hashlib.sha1(value.encode("utf-8")).hexdigest()[:8], 16) & 0x7FFFFFFF)


def as_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


class PickStyle(grain.transforms.RandomMap):
    """Training only: ``image`` = a uniformly random one of ``style_images``."""

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        out = dict(element)
        out["image"] = element["style_images"][rng.integers(len(element["style_images"]))]
        return out


class EmojiStylesTransform(ImageTextTransform):
    """See the module docstring."""

    def __init__(self, image_size: int, max_text_len: int, styles: tuple, eval_style: str,
                 text_field: str, label_field: str, identity_field: str, strip_tone: bool):
        super().__init__(image_size, max_text_len, text_field, label_field)
        unknown = sorted(set(styles) - set(STYLES))
        if unknown or not styles:
            raise ValueError(f"emoji_styles styles {tuple(styles)}: each must be one of "
                             f"{STYLES}, at least one")
        if eval_style not in styles:
            raise ValueError(f"emoji_styles eval_style={eval_style!r} is not among styles "
                             f"{tuple(styles)}")
        self.styles = tuple(styles)
        self.eval_index = self.styles.index(eval_style)
        self.identity_field = identity_field
        self.strip_tone = strip_tone

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        needed = [f"image_{s}" for s in self.styles] + [
            self.text_field, self.label_field, self.identity_field, "subgroup"]
        missing = [f for f in needed if f not in record]
        if missing:
            raise KeyError(f"emoji_styles transform: record has no field(s) {missing}; fields: "
                           f"{', '.join(sorted(record))} (use the emoji_styles dataset, not "
                           f"its style_shift configs)")
        images = np.stack([self.resize(np.asarray(record[f"image_{s}"])) for s in self.styles])
        text = as_text(record[self.text_field])
        if self.strip_tone:
            text = strip_skin_tone(text)
        return {
            "image": images[self.eval_index],
            "style_images": images,
            "text": self.tokenizer.encode(text),
            "label": np.int32(record[self.label_field]),
            "subgroup": self.tokenizer.encode(as_text(record["subgroup"])),
            "identity": identity_id(as_text(record[self.identity_field])),
        }


@TRANSFORMS.register("emoji_styles")
def emoji_styles(image_size: int = 32, max_text_len: int = 32, styles: tuple = STYLES,
                 eval_style: str = "noto", text_field: str = "name", label_field: str = "group",
                 identity_field: str = "base", strip_skin_tone: bool = False,
                 random_style: bool = True) -> EmojiStylesTransform:
    """See the module docstring; ``random_style=False`` trains on ``eval_style`` only."""
    t = EmojiStylesTransform(image_size, max_text_len, tuple(styles), eval_style, text_field,
                             label_field, identity_field, strip_skin_tone)
    t.augment = PickStyle() if random_style and len(t.styles) > 1 else None
    return t
