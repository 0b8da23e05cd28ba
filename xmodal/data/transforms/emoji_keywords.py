"""English CLDR keywords of ``emoji_styles`` records, shared by the m3el and m3pt transforms.

CLDR annotates most emoji with keywords (😀: "face", "grin", "grinning face") but derives the
names of skin-tone variants instead of listing them, so about half of the records carry no
English keywords. A variant has the meaning of its base emoji (👍🏽 is still "thumbs up"), so
``keywords_by_base`` maps every base code point sequence that has keywords to them, and
``record_keywords`` falls back to the base's keywords. Base emoji are split together with their
variants (``emoji_styles`` splits by base), so the fallback never reads across splits.

A keyword equal to the record's own English name is dropped: it would turn entity linking into
string matching and make the item's name one of its tags.
"""
from __future__ import annotations

import functools
import json
from typing import Mapping

import tensorflow_datasets as tfds

from xmodal.core import datasets as sources

LOCALE = "en"


def text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def own_keywords(record: Mapping) -> list[str]:
    """The record's English CLDR keywords, lower-cased, without its own name, in CLDR order."""
    if "cldr" not in record or "name" not in record:
        raise KeyError(f"an emoji_styles record needs 'cldr' and 'name' fields; got "
                       f"{', '.join(sorted(record))} (use data.name=emoji_styles...)")
    entry = json.loads(text(record["cldr"]) or "{}").get(LOCALE, {})
    name = text(record["name"]).lower()
    out = []
    for k in entry.get("keywords", []):
        k = k.strip().lower()
        if k and k != name and k not in out:
            out.append(k)
    return out


@functools.lru_cache(maxsize=8)
def keywords_by_base(dataset: str, data_dir: str = "") -> dict[str, tuple[str, ...]]:
    """base code points -> English keywords, from every split of ``dataset`` (cached).

    Images are not decoded (SkipDecoding), so this reads the ~3k records in well under a second.
    """
    builder = sources.prepare(dataset, data_dir or None)
    needed = {"cldr", "name", "base", "codepoints", "image_noto"}
    if not needed <= set(builder.info.features):
        raise ValueError(f"dataset {dataset!r} lacks {sorted(needed - set(builder.info.features))};"
                         " the emoji keyword transforms need an emoji_styles config with one "
                         "image per style (emoji_styles or emoji_styles/tiny)")
    skip = {k: tfds.decode.SkipDecoding() for k in builder.info.features
            if k.startswith("image")}
    out: dict[str, tuple[str, ...]] = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split, decoders=skip)
        for i in range(len(source)):
            r = source[i]
            if text(r["codepoints"]) == text(r["base"]):
                words = own_keywords(r)
                if words:
                    out[text(r["base"])] = tuple(words)
    return out


def record_keywords(record: Mapping, by_base: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The record's own keywords, or its base emoji's when it has none (skin-tone variants)."""
    words = own_keywords(record)
    if words:
        return words
    name = text(record["name"]).lower()
    return [k for k in by_base.get(text(record.get("base", b"")), ()) if k != name]
