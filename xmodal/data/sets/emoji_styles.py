"""One emoji, four artists: Noto, Twemoji, OpenMoji and Fluent drawings matched by code point.

Each record holds the same emoji drawn in every style, its English name, Unicode group and
subgroup (``emoji-test.txt``) and its CLDR names and keywords in every CLDR locale. Two ways
to split it:

  * ``default`` / ``tiny``: held out by emoji. ``base`` is the code points without skin-tone
    modifiers, and test = sha1(base) % 10 == 0, so no skin tone of a test emoji is trained on.
  * ``style_shift`` / ``style_shift_tiny``: one record per (emoji, style); train = every emoji
    in three styles, test = every emoji in the held-out style (Fluent): the concepts are seen,
    the drawing style is not (domain shift, as in DomainNet-style benchmarks).

Images are cropped to their drawn pixels, padded to a square, composited over white and
resized to ``image_size`` (Lanczos), so the four styles differ in drawing, not in margins.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import io
import json
import os
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import EMOJI_GROUPS, encode_png, select_bases, split_of

STYLES: tuple[str, ...] = ("noto", "twemoji", "openmoji", "fluent")
HELD_OUT_STYLE = "fluent"

EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
NOTO_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
# NotoColorEmoji is a CBDT bitmap font: FreeType loads it only at its one strike size.
NOTO_SIZE = 109
TWEMOJI_DIR = "emoji-datasource-twitter/img/twitter/64"
OPENMOJI_DIR = "openmoji/color/svg"
FLUENT_DIR = "@iconify-json/fluent-emoji-flat"
CLDR_DIR = "cldr-annotations-full/annotations"

SKIN_TONE_MODIFIERS = frozenset({"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"})
VARIATION_SELECTOR_16 = "FE0F"

SKIP_COMPONENT = "group 'Component' (skin-tone/hair swatches, not standalone emoji)"
SKIP_NOT_FULLY_QUALIFIED = "not fully-qualified in emoji-test.txt (duplicate spellings)"


def skip_missing(style: str) -> str:
    return f"not drawn in every style (first missing: {style})"


CARD: dict = {
    "title": "Emoji in four styles (Noto, Twemoji, OpenMoji, Fluent) with Unicode and CLDR names",
    "sources": (
        "Debian fonts-noto-color-emoji (Noto Color Emoji font, rendered with Pillow/raqm); "
        "Debian unicode-data (emoji-test.txt: names, groups, subgroups; Emoji version in its "
        "header); npm emoji-datasource-twitter (Twemoji 64 px PNG), npm openmoji (SVG), npm "
        "@iconify-json/fluent-emoji-flat (Microsoft Fluent flat SVG), npm cldr-annotations-full "
        "(CLDR names + keywords); versions are those of the installed Debian / npm packages "
        "(dpkg -s, package.json)."),
    "licence": "Noto: OFL-1.1; Twemoji graphics: CC-BY-4.0; OpenMoji: CC-BY-SA-4.0; Fluent "
               "Emoji: MIT; Unicode data and CLDR: Unicode-3.0",
    "splits": (
        "default/tiny: by emoji, test = sha1(base code points) % 10 == 0, all skin tones of an "
        "emoji in one split. style_shift: train = all emoji in noto/twemoji/openmoji, test = "
        "all emoji in fluent (same concepts, unseen style)."),
    "languages": (
        "English names from emoji-test.txt; CLDR names and keywords in every locale of "
        "cldr-annotations-full that has entries (163 of 170 in version 48), stored as one "
        "JSON text rather than 326 fields: locales come and go between CLDR versions and a "
        "fixed feature list would silently drop them."),
    "skipped": (
        "Component group (9 lines: skin-tone and hair swatches); minimally-/un-qualified "
        "spellings (the fully-qualified one is kept); emoji not drawn by all four styles "
        "(630 of 3,655 with Emoji 15.0; Fluent has the fewest), each counted by reason in "
        "EmojiStylesCatalog.skipped. CLDR annotations have no entry for most skin-tone and "
        "gender variants (CLDR derives those names), so about half of the 3,025 records "
        "have an empty or partial 'cldr' JSON rather than a guessed one."),
    "fields": {
        "image_<style>": "64 px RGB drawing in each of noto, twemoji, openmoji, fluent "
                         "(default/tiny); style_shift has one 'image' plus 'style'",
        "name": "English name from emoji-test.txt, e.g. 'grinning face'",
        "group": "Unicode emoji group (ClassLabel, Component excluded)",
        "subgroup": "Unicode emoji subgroup, e.g. 'face-smiling'",
        "cldr": "JSON {locale: {'name': tts name, 'keywords': [...]}} for locales that have it",
        "codepoints": "upper-case hex code points joined by '-'",
        "base": "code points without skin-tone modifiers (split key)",
    },
}


@dataclasses.dataclass(frozen=True)
class EmojiTestEntry:
    emoji: str
    codepoints: str     # "1F44D-1F3FD"
    base: str           # "1F44D"
    name: str
    group: str
    subgroup: str


@dataclasses.dataclass(frozen=True)
class EmojiStylesCatalog:
    entries: tuple[EmojiTestEntry, ...]   # emoji-test.txt order
    skipped: Mapping[str, int]


def read_emoji_test(path: str) -> tuple[list[EmojiTestEntry], dict[str, int]]:
    """Fully-qualified emoji of ``emoji-test.txt`` with group and subgroup, plus skip counts.

    Line format (UTS #51): ``1F600 ; fully-qualified # 😀 E1.0 grinning face`` under
    ``# group: ...`` and ``# subgroup: ...`` headers.
    """
    entries: list[EmojiTestEntry] = []
    skipped: collections.Counter[str] = collections.Counter()
    group = subgroup = ""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line and not line.startswith("#"):
                fields, _, comment = line.partition("#")
                codes, _, status = fields.partition(";")
                codepoints = "-".join(codes.split())
                if group == "Component":
                    skipped[SKIP_COMPONENT] += 1
                    continue
                if status.strip() != "fully-qualified":
                    skipped[SKIP_NOT_FULLY_QUALIFIED] += 1
                    continue
                if group not in EMOJI_GROUPS:
                    raise ValueError(
                        f"{path}:{line_no}: group {group!r} is not in EMOJI_GROUPS "
                        f"{EMOJI_GROUPS}; add it there and bump the dataset VERSION")
                # comment = " 😀 E1.0 grinning face": the name follows the version token.
                name = comment.strip().split(" ", 2)[2]
                entries.append(EmojiTestEntry(
                    emoji="".join(chr(int(c, 16)) for c in codepoints.split("-")),
                    codepoints=codepoints,
                    base="-".join(c for c in codepoints.split("-")
                                  if c not in SKIN_TONE_MODIFIERS),
                    name=name, group=group, subgroup=subgroup))
    return entries, dict(skipped)


def _spellings(codepoints: str, sep: str = "-", upper: bool = True) -> list[str]:
    """File-name spellings to try: as is, then without U+FE0F (artists differ on keeping it)."""
    parts = codepoints.split("-")
    bare = [c for c in parts if c != VARIATION_SELECTOR_16]
    out = [sep.join(parts)] + ([sep.join(bare)] if bare != parts else [])
    return [s if upper else s.lower() for s in out]


# ---- rendering shared by the image sources in this package ----

def square_on_white(image: Image.Image, size: int, crop: bool = True) -> np.ndarray:
    """Any PIL image -> uint8 [size, size, 3]: crop to drawn pixels, pad square, over white.

    Cropping uses the alpha channel (transparent margins differ between artists); images
    without alpha are not cropped. Padding keeps the aspect ratio; Lanczos downsampling keeps
    thin outlines from aliasing.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgba = image.convert("RGBA")
    if crop and has_alpha:
        bbox = rgba.getchannel("A").getbbox()
        if bbox:
            rgba = rgba.crop(bbox)
    side = max(rgba.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 0))
    square.paste(rgba, ((side - rgba.size[0]) // 2, (side - rgba.size[1]) // 2))
    white = Image.new("RGBA", square.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, square).convert("RGB")
    return np.asarray(rgb.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def svg_to_image(*, path: str | None = None, text: str | None = None, width: int,
                 renderers: tuple[str, ...] = ("resvg", "cairosvg")) -> Image.Image:
    """SVG file or string -> RGBA PIL image ``width`` px wide, trying ``renderers`` in order.

    resvg is self-contained and fast but refuses some hand-written SVGs ("invalid size");
    cairosvg (libcairo) draws most of those. Raises ValueError naming the file if all fail.
    """
    errors = []
    for renderer in renderers:
        try:
            if renderer == "resvg":
                import resvg_py
                png = bytes(resvg_py.svg_to_bytes(svg_path=path, width=width) if path else
                            resvg_py.svg_to_bytes(svg_string=text, width=width))
            elif renderer == "cairosvg":
                import cairosvg
                png = (cairosvg.svg2png(url=path, output_width=width) if path else
                       cairosvg.svg2png(bytestring=text.encode("utf-8"), output_width=width))
            else:
                raise ValueError(f"unknown SVG renderer {renderer!r}; use resvg or cairosvg")
            return Image.open(io.BytesIO(png)).convert("RGBA")
        except ImportError:
            raise
        except Exception as e:  # each renderer raises its own exception types
            errors.append(f"{renderer}: {e}")
    raise ValueError(f"could not render SVG {path or text[:80]!r}: {'; '.join(errors)}")


# ---- the four styles ----

class StyleSources:
    """Finds and renders one emoji in each style; file lookups are cached per instance."""

    def __init__(self, npm_modules: str | None = None):
        self.npm = npm_modules or sources.npm_modules()
        fluent = os.path.join(self.npm, FLUENT_DIR)
        with open(os.path.join(fluent, "icons.json"), encoding="utf-8") as f:
            self._fluent = json.load(f)
        with open(os.path.join(fluent, "chars.json"), encoding="utf-8") as f:
            self._fluent_chars = json.load(f)

    @functools.cached_property
    def _noto_font(self):
        from PIL import ImageFont
        return ImageFont.truetype(sources.resolve_file(NOTO_FONT), NOTO_SIZE,
                                  layout_engine=ImageFont.Layout.RAQM)

    @functools.cached_property
    def _noto_glyph_width(self) -> float:
        return self._noto_font.getlength("\U0001F600")

    def has(self, style: str, e: EmojiTestEntry) -> bool:
        if style == "noto":
            # A sequence the font lacks falls apart into several glyphs, so it is wider.
            return self._noto_font.getlength(e.emoji) < 1.5 * self._noto_glyph_width
        return self._locate(style, e.codepoints) is not None

    def _locate(self, style: str, codepoints: str):
        if style == "twemoji":
            for stem in _spellings(codepoints, upper=False):
                p = os.path.join(self.npm, TWEMOJI_DIR, stem + ".png")
                if os.path.isfile(p):
                    return p
        elif style == "openmoji":
            for stem in _spellings(codepoints):
                p = os.path.join(self.npm, OPENMOJI_DIR, stem + ".svg")
                if os.path.isfile(p):
                    return p
        elif style == "fluent":
            for stem in _spellings(codepoints, upper=False):
                name = self._fluent_chars.get(stem)
                name = self._fluent.get("aliases", {}).get(name, {}).get("parent", name)
                if name in self._fluent["icons"]:
                    return name
        else:
            raise ValueError(f"unknown emoji style {style!r}; styles: {', '.join(STYLES)}")
        return None

    def render(self, style: str, e: EmojiTestEntry, size: int) -> np.ndarray:
        if style == "noto":
            from PIL import ImageDraw
            canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
            ImageDraw.Draw(canvas).text((0, 0), e.emoji, font=self._noto_font,
                                        embedded_color=True)
            return square_on_white(canvas, size)
        where = self._locate(style, e.codepoints)
        if where is None:
            raise FileNotFoundError(f"no {style} drawing of {e.codepoints} ({e.name})")
        if style == "twemoji":
            with Image.open(where) as im:
                return square_on_white(im, size)
        if style == "openmoji":
            return square_on_white(svg_to_image(path=where, width=4 * size), size)
        icon = self._fluent["icons"][where]
        w = icon.get("width", self._fluent.get("width", 32))
        h = icon.get("height", self._fluent.get("height", 32))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
               f'width="{w}" height="{h}">{icon["body"]}</svg>')
        return square_on_white(svg_to_image(text=svg, width=4 * size), size)


def read_catalog(styles: StyleSources | None = None,
                 emoji_test: str | None = None) -> EmojiStylesCatalog:
    """emoji-test.txt entries drawn by all four styles; the rest counted by first missing style."""
    styles = styles or StyleSources()
    entries, skipped = read_emoji_test(emoji_test or sources.resolve_file(EMOJI_TEST))
    counts = collections.Counter(skipped)
    kept = []
    for e in entries:
        missing = next((s for s in STYLES if not styles.has(s, e)), None)
        if missing is None:
            kept.append(e)
        else:
            counts[skip_missing(missing)] += 1
    return EmojiStylesCatalog(entries=tuple(kept), skipped=dict(counts))


def read_cldr(cldr_dir: str | None = None) -> dict[str, dict]:
    """locale -> {emoji: {'name': str, 'keywords': [str]}} from cldr-annotations-full."""
    cldr_dir = cldr_dir or os.path.join(sources.npm_modules(), CLDR_DIR)
    out = {}
    for locale in sorted(os.listdir(cldr_dir)):
        path = os.path.join(cldr_dir, locale, "annotations.json")
        with open(path, encoding="utf-8") as f:
            # A few locales (e.g. "und", "sr-Cyrl") hold only an identity block: no entries.
            table = json.load(f)["annotations"].get("annotations", {})
        if not table:
            continue
        out[locale] = {
            k: {"name": " ".join(v.get("tts", [])), "keywords": v.get("default", [])}
            for k, v in table.items()}
    return out


def cldr_json(emoji: str, cldr: Mapping[str, Mapping]) -> str:
    """The emoji's CLDR entries as sorted JSON; CLDR keys drop U+FE0F, so both are tried."""
    bare = emoji.replace("\ufe0f", "")
    found = {}
    for locale, table in cldr.items():
        entry = table.get(emoji) or table.get(bare)
        if entry:
            found[locale] = entry
    return json.dumps(found, ensure_ascii=False, sort_keys=True)


@dataclasses.dataclass
class EmojiStylesConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_bases: int | None = None      # None: every emoji all four styles draw
    held_out_style: str | None = None  # set: style-shift layout, one record per (emoji, style)


class EmojiStyles(Builder):
    """TFDS builder ``xmodal_emoji_styles``."""

    name = "xmodal_emoji_styles"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Noto, Twemoji, OpenMoji, Fluent; Unicode + CLDR names."}
    BUILDER_CONFIGS = [
        EmojiStylesConfig(name="default", description="All emoji in 4 styles, split by emoji."),
        EmojiStylesConfig(name="tiny", description="40 base emoji.", max_bases=40),
        EmojiStylesConfig(name="style_shift", description="Train 3 styles, test Fluent.",
                          held_out_style=HELD_OUT_STYLE),
        EmojiStylesConfig(name="style_shift_tiny", description="style_shift, 40 base emoji.",
                          held_out_style=HELD_OUT_STYLE, max_bases=40),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        image = tfds.features.Image(shape=(cfg.image_size,) * 2 + (3,), encoding_format="png")
        if cfg.held_out_style is None:
            images = {f"image_{s}": image for s in STYLES}
        else:
            images = {"image": image, "style": tfds.features.ClassLabel(names=list(STYLES))}
        return tfds.core.DatasetInfo(
            builder=self,
            description=CARD["title"] + ". " + CARD["splits"],
            features=tfds.features.FeaturesDict({
                **images,
                "name": tfds.features.Text(),
                "group": tfds.features.ClassLabel(names=list(EMOJI_GROUPS)),
                "subgroup": tfds.features.Text(),
                "cldr": tfds.features.Text(),
                "codepoints": tfds.features.Text(),
                "base": tfds.features.Text(),
            }),
            homepage="https://unicode.org/emoji/",
            license=CARD["licence"],
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from installed Debian and npm packages
        cfg = self.builder_config
        if cfg.held_out_style is not None and cfg.held_out_style not in STYLES:
            raise ValueError(f"held_out_style {cfg.held_out_style!r} is not one of {STYLES}")
        styles = StyleSources()
        entries = select_bases(read_catalog(styles).entries, cfg.max_bases)
        cldr = read_cldr()
        if cfg.held_out_style is None:
            by_split: dict[str, list] = {"train": [], "test": []}
            for e in entries:
                by_split[split_of(e.base)].append(e)
            return {split: self._generate_examples(items, styles, cldr)
                    for split, items in by_split.items()}
        train_styles = [s for s in STYLES if s != cfg.held_out_style]
        return {"train": self._generate_examples(entries, styles, cldr, train_styles),
                "test": self._generate_examples(entries, styles, cldr, [cfg.held_out_style])}

    def _text(self, e: EmojiTestEntry, cldr) -> dict:
        return {"name": e.name, "group": EMOJI_GROUPS.index(e.group), "subgroup": e.subgroup,
                "cldr": cldr_json(e.emoji, cldr), "codepoints": e.codepoints, "base": e.base}

    def _generate_examples(self, entries, styles: StyleSources, cldr,
                           one_style: list[str] | None = None):
        """All styles in one record, or (``one_style`` given) one record per listed style."""
        size = self.builder_config.image_size
        for e in entries:
            if one_style is None:
                yield e.codepoints, {
                    **{f"image_{s}": encode_png(styles.render(s, e, size)) for s in STYLES},
                    **self._text(e, cldr)}
                continue
            for s in one_style:
                yield f"{e.codepoints}/{s}", {
                    "image": encode_png(styles.render(s, e, size)),
                    "style": STYLES.index(s), **self._text(e, cldr)}


_NPM = ("emoji-datasource-twitter", "openmoji", "@iconify-json/fluent-emoji-flat",
        "cldr-annotations-full")
_APT = ("fonts-noto-color-emoji", "unicode-data")
_FILES = (EMOJI_TEST, NOTO_FONT)
_HINT = "emoji fonts/drawings and names come from Debian and npm packages; resvg-py renders SVG"

for _config in ("default", "tiny", "style_shift", "style_shift_tiny"):
    sources.register(
        "emoji_styles" if _config == "default" else f"emoji_styles/{_config}",
        sources.DatasetEntry(EmojiStyles, _config, ("resvg-py", "cairosvg"),
                             ("resvg_py", "cairosvg"), _HINT, apt=_APT, npm=_NPM, files=_FILES))
