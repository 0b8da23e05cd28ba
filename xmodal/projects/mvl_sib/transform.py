"""MVL-SIB items: an image, its topic, and its sentence tokenized in every language, so one eval
split carries all languages and training can pick one. Two sources:

- ``mvl_sib_items`` (Tux Paint stamps): topics are the stamps' top-level folders
  (``CATEGORIES``, 16, e.g. animals, food, vehicles); languages the 78 of
  ``tuxpaint-stamps-default`` 2022.06.04 (``LANGUAGES``); the sentence is the stamp's caption.
- ``mvl_sib_emoji`` (``emoji_styles``): topics are the Unicode emoji groups (9); languages the
  138 CLDR 48 locales with emoji names (``EMOJI_LOCALES``); the "sentence" is the emoji's CLDR
  name (English: the ``emoji-test.txt`` name, which every emoji has).

``captions`` is [len(languages), max_text_len] byte tokens with ``has_caption`` marking the
languages the item has a sentence in (English always); a language outside the list is ignored.

Training text (``text``) is chosen by the ``captions`` argument:
- ``en``: the English sentence, as an English-only image-text model is trained;
- ``multi``: one of the stamp's languages drawn uniformly at each visit (``augment``, a grain
  RandomMap seeded by the pipeline seed and the record's position, so the draw is the same
  across worker counts and after a resume). A language's share of training is then its
  coverage: 950 stamps in ``ca``, 25 in ``oc``: the resource gradient the benchmark probes.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import grain
import numpy as np

from xmodal.core.registry import TRANSFORMS
from xmodal.data.sets.emoji import EMOJI_GROUPS
from xmodal.data.sets.emoji_styles import STYLES
from xmodal.data.transforms.image_text import ImageTextTransform

CATEGORIES = ("animals", "clothes", "food", "hobbies", "household", "medical", "military",
              "naturalforces", "people", "plants", "seasonal", "space", "sports", "symbols",
              "town", "vehicles")
LANGUAGES = (
    "en", "ca", "ca@valencia", "cs", "fr", "gl", "is", "ja", "pt", "sk", "an", "da", "de", "el",
    "en_GB", "es", "ff", "ga", "gd", "gu", "hr", "ka", "nl", "pl", "pt_BR", "ru", "sl", "son",
    "sv", "uk", "am", "eo", "fi", "hu", "hy", "id", "it", "ko", "lv", "vec", "sq", "eu", "nb",
    "nn", "en_AU", "sr", "af", "ast", "be", "bg", "hi", "ml", "sr@latin", "tr", "iu", "ro",
    "ach", "vi", "ar", "zh_TW", "zh_CN", "th", "ms", "km", "zu", "he", "kab", "fa", "mk", "sw",
    "cy", "lt", "ku", "shs", "ta", "nso", "ak", "oc")
# CLDR 48 locales with an emoji name in ``emoji_styles``, English first. Regional locales
# (en-GB, de-CH, es-419, ...) are left out: CLDR stores only where they differ from their parent
# (6 names in en-GB), so their "coverage" would measure the CLDR file, not the language. Script
# variants (sr-Latn, zh-Hant, ...) are full locales and stay.
EMOJI_LOCALES = (
    "en", "af", "ak", "am", "ar", "as", "ast", "az", "ba", "be", "bg", "bgn", "blo", "bn", "br",
    "bs", "ca", "ccp", "ceb", "chr", "cs", "cv", "cy", "da", "de", "dsb", "el", "es", "et",
    "eu", "fa", "ff-Adlm", "fi", "fil", "fo", "fr", "ga", "gd", "gl", "gu", "ha", "he", "hi",
    "hi-Latn", "hr", "hsb", "hu", "hy", "ia", "id", "ig", "is", "it", "ja", "jv", "ka", "kk",
    "kk-Arab", "kl", "km", "kn", "ko", "kok", "ku", "ky", "lb", "lij", "lo", "lt", "lv", "mi",
    "mk", "ml", "mn", "mni", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "nso", "oc", "om",
    "or", "pa", "pa-Arab", "pcm", "pl", "ps", "pt", "qu", "quc", "rhg", "rm", "ro", "ru", "rw",
    "sat", "sc", "sd", "shn", "si", "sk", "sl", "so", "sq", "sr", "sr-Latn", "su", "sv", "sw",
    "syr", "ta", "te", "tg", "th", "ti", "tk", "tn", "to", "tr", "ug", "uk", "ur", "uz", "vec",
    "vi", "wo", "xh", "yo", "yue", "yue-Hans", "zh", "zh-Hant", "zu"
)
CAPTION_MODES = ("en", "multi")


class PickCaption(grain.transforms.RandomMap):
    """Training only: ``text`` ← one of the record's languages, uniformly (``multi``) or the
    English one (``en``); the per-language arrays are dropped (a step needs only the pair)."""

    def __init__(self, multilingual: bool):
        self.multilingual = multilingual

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        out = {k: v for k, v in element.items() if k not in ("captions", "has_caption")}
        if self.multilingual:
            choices = np.flatnonzero(element["has_caption"])
            out["text"] = element["captions"][int(rng.choice(choices))]
        return out


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TopicalItems(grain.transforms.Map):
    """Record → {"image", "text", "topic", "captions", "has_caption"} (module docstring). A
    source names its ``languages`` and ``topics`` and reads a record's image, topic name and
    sentences; the evaluator reads ``languages`` from here."""

    name: str
    languages: tuple[str, ...]
    topics: tuple[str, ...]
    fields: tuple[str, ...]
    hint: str

    def __init__(self, image_size: int, max_text_len: int, captions: str):
        if captions not in CAPTION_MODES:
            raise ValueError(f"{self.name} captions={captions!r}; valid: "
                             f"{', '.join(CAPTION_MODES)}")
        self.image_text = ImageTextTransform(image_size, max_text_len)
        self.tokenizer = self.image_text.tokenizer
        self.captions = captions
        self.augment = PickCaption(captions == "multi")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image_size={self.image_text.image_size}, "
                f"max_text_len={self.tokenizer.max_len}, captions={self.captions!r})")

    def read(self, record: Mapping[str, Any]) -> tuple[np.ndarray, str, dict[str, str]]:
        """(image, topic name, {language: sentence})."""
        raise NotImplementedError

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [f for f in self.fields if f not in record]
        if missing:
            raise KeyError(f"{self.name}: record has no field(s) {', '.join(missing)}; "
                           f"fields: {', '.join(sorted(record))} ({self.hint})")
        image, topic, by_lang = self.read(record)
        if topic not in self.topics:
            raise ValueError(f"{self.name}: topic {topic!r} is not a known topic; "
                             f"topics: {', '.join(self.topics)}")
        texts = [by_lang.get(code, "") for code in self.languages]
        return {
            "image": self.image_text.resize(np.asarray(image)),
            "text": self.tokenizer.encode(texts[0]),
            "topic": np.int32(self.topics.index(topic)),
            "captions": self.tokenizer.encode_batch(texts),
            "has_caption": np.array([bool(t) for t in texts]),
        }


class TuxPaintItems(TopicalItems):
    name, languages, topics = "mvl_sib_items", LANGUAGES, CATEGORIES
    fields, hint = ("image", "captions", "category"), "use data.name=tuxpaint"

    def read(self, record):
        return record["image"], as_text(record["category"]), json.loads(as_text(record["captions"]))


class EmojiItems(TopicalItems):
    name, languages, topics = "mvl_sib_emoji", EMOJI_LOCALES, EMOJI_GROUPS
    fields, hint = ("name", "group", "cldr"), "use data.name=emoji_styles"

    def __init__(self, image_size: int, max_text_len: int, captions: str, style: str):
        super().__init__(image_size, max_text_len, captions)
        if style not in STYLES:
            raise ValueError(f"mvl_sib_emoji style={style!r}; valid: {', '.join(STYLES)}")
        self.style = style
        self.fields = (*self.fields, f"image_{style}")

    def read(self, record):
        cldr = json.loads(as_text(record["cldr"]) or "{}")
        by_lang = {code: entry.get("name", "") for code, entry in cldr.items()}
        by_lang["en"] = as_text(record["name"])     # every emoji has its emoji-test.txt name
        return record[f"image_{self.style}"], EMOJI_GROUPS[int(record["group"])], by_lang


@TRANSFORMS.register("mvl_sib_items")
def mvl_sib_items(image_size: int = 32, max_text_len: int = 48,
                  captions: str = "multi") -> TuxPaintItems:
    """Tux Paint stamps for MVL-SIB (see the module docstring)."""
    return TuxPaintItems(image_size, max_text_len, captions)


@TRANSFORMS.register("mvl_sib_emoji")
def mvl_sib_emoji(image_size: int = 32, max_text_len: int = 48, captions: str = "multi",
                  style: str = "noto") -> EmojiItems:
    """Emoji with CLDR names for MVL-SIB (see the module docstring)."""
    return EmojiItems(image_size, max_text_len, captions, style)
