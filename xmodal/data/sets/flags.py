"""Flags of countries and territories with their names in every CLDR locale.

Images: Debian ``iso-flags-png-320x240`` (``/usr/share/iso-flags-png-320x240/<code>.png``,
ISO 3166-1 alpha-2 codes in lower case). Names: CLDR territory names shipped with ``babel``
(1,082 locales in babel 2.18), looked up as ``Locale.parse(locale).territories[CODE]``.
Split by flag: test = sha1(code) % 10 == 0, so test flags (and their names) are unseen.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Iterator, Mapping

import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import encode_png, split_of
from xmodal.data.sets.emoji_styles import square_on_white

FLAGS_DIR = "/usr/share/iso-flags-png-320x240"
# CLDR "ZZ" is "Unknown Region": a placeholder flag, not a caption worth learning.
PLACEHOLDER_CODES = frozenset({"zz"})

SKIP_NO_CLDR_NAME = "no CLDR territory name (regional flags such as _basque, and 'brl', 'eo')"
SKIP_PLACEHOLDER = "placeholder flag 'zz' (CLDR 'Unknown Region')"

CARD: dict = {
    "title": "Flags with CLDR territory names in every locale",
    "sources": "Debian iso-flags-png-320x240 (version: dpkg -s iso-flags-png-320x240); pip "
               "babel (CLDR data; version: babel.__version__).",
    "licence": "Flags: public domain (iso-flags); CLDR names: Unicode-3.0",
    "splits": "By flag: test = sha1(lower-case code) % 10 == 0.",
    "languages": "English name as 'name'; every babel locale that names the territory "
                 "(about 900 of 1,082 for common codes) as JSON in 'names'.",
    "skipped": "Files whose code has no CLDR territory name (regional flags named '_basque', "
               "'_wales', ..., 'brl', and 'eo' which is a language) and the 'zz' placeholder; "
               "counted by reason in FlagsCatalog.skipped. An unreadable PNG stops the build "
               "with its path.",
    "fields": {
        "image": "64 px RGB flag, padded to square over white (aspect ratio kept)",
        "name": "English CLDR name, e.g. 'France'",
        "names": "JSON {locale: name}",
        "code": "lower-case ISO 3166 / CLDR region code (split key)",
    },
}


@dataclasses.dataclass(frozen=True)
class Flag:
    code: str
    path: str
    names: Mapping[str, str]   # locale -> territory name; "en" always present


@dataclasses.dataclass(frozen=True)
class FlagsCatalog:
    flags: tuple[Flag, ...]
    skipped: Mapping[str, int]


def territory_names(codes: list[str]) -> dict[str, dict[str, str]]:
    """code -> {locale: name} over every babel locale (loading a locale is the slow part)."""
    from babel import Locale
    from babel.localedata import locale_identifiers

    out: dict[str, dict[str, str]] = {c: {} for c in codes}
    for locale in sorted(locale_identifiers()):
        territories = Locale.parse(locale).territories
        for code in codes:
            name = territories.get(code.upper())
            if name:
                out[code][locale] = name
    return out


def read_catalog(flags_dir: str | None = None) -> FlagsCatalog:
    root = flags_dir or sources.resolve_file(FLAGS_DIR)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"flag folder {root} is missing; install with: "
                                "apt-get install -y iso-flags-png-320x240")
    codes = sorted(f[:-len(".png")] for f in os.listdir(root) if f.endswith(".png"))
    names = territory_names(codes)
    flags, skipped = [], collections.Counter()
    for code in codes:
        if code in PLACEHOLDER_CODES:
            skipped[SKIP_PLACEHOLDER] += 1
        elif "en" not in names[code]:
            skipped[SKIP_NO_CLDR_NAME] += 1
        else:
            flags.append(Flag(code=code, path=os.path.join(root, code + ".png"),
                              names=names[code]))
    return FlagsCatalog(flags=tuple(flags), skipped=dict(skipped))


@dataclasses.dataclass
class FlagsConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_items: int | None = None


class Flags(Builder):
    """TFDS builder ``xmodal_flags``."""

    name = "xmodal_flags"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "iso-flags 320x240 PNG with babel (CLDR) names."}
    BUILDER_CONFIGS = [
        FlagsConfig(name="default", description="Every named flag."),
        FlagsConfig(name="tiny", description="30 flags (sha1 order).", max_items=30),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self, description=CARD["title"] + ". " + CARD["splits"],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "name": tfds.features.Text(),
                "names": tfds.features.Text(),
                "code": tfds.features.Text(),
            }),
            homepage="https://github.com/matthiaskoenig/iso-flags", license=CARD["licence"])

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from installed packages
        flags = list(read_catalog().flags)
        if self.builder_config.max_items is not None:
            flags = sorted(flags, key=lambda f: hashlib.sha1(f.code.encode()).hexdigest())
            flags = flags[:self.builder_config.max_items]
        by_split: dict[str, list[Flag]] = {"train": [], "test": []}
        for f in flags:
            by_split[split_of(f.code)].append(f)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, flags: list[Flag]):
        size = self.builder_config.image_size
        for f in flags:
            try:
                with Image.open(f.path) as image:
                    # Flags are whole rectangles: no crop, only pad to square.
                    pixels = square_on_white(image, size, crop=False)
            except OSError as e:
                raise ValueError(f"could not read flag {f.path}: {e}") from e
            yield f.code, {"image": encode_png(pixels), "name": f.names["en"],
                           "names": json.dumps(f.names, ensure_ascii=False, sort_keys=True),
                           "code": f.code}


for _config in ("default", "tiny"):
    sources.register(
        "flags" if _config == "default" else f"flags/{_config}",
        sources.DatasetEntry(Flags, _config, ("babel",), ("babel",),
                             "flag images come from Debian iso-flags-png-320x240",
                             apt=("iso-flags-png-320x240",), files=(FLAGS_DIR,)))
