"""Tux Paint stamps: clip-art and photos with a sentence in up to ~80 languages, and sounds.

Layout of Debian ``tuxpaint-stamps-default`` (``/usr/share/tuxpaint/stamps/<category>/...``):

    <name>.svg | <name>.png     the stamp (RGBA); Tux Paint prefers the SVG when both exist
    <name>.txt                  line 1: English sentence; then ``<lang>.utf8=<sentence>``
    <name>.ogg                  sound effect of the thing (an animal call, an engine), optional
    <name>_desc[_<lang>].ogg    the sentence spoken (English without suffix), optional

Configs ``default``/``tiny``: one record per stamp (image, every caption, sound effect).
Configs ``effects``/``effects_tiny``: the same records, only for stamps with an audible sound
effect (130 of 950: 118 train, 12 test), for audio-text training (``specs/clap.py``).
Configs ``speech``/``speech_tiny``: one record per spoken description (audio, its language,
the caption in that language, the stamp's image), kept apart so stamp records stay small.
Both are split by stamp (test = sha1(stamp id) % 10 == 0): a test stamp's image, captions and
recordings are never trained on.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import hashlib
import json
import os
from typing import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import encode_png, split_of
from xmodal.data.sets.emoji_styles import square_on_white, svg_to_image
from xmodal.data.sets.instruments import is_silent

STAMPS_DIR = "/usr/share/tuxpaint/stamps"
SAMPLE_RATE = 16_000
MAX_SECONDS = 5.0   # most sound effects are under 2 s; the few longer ones are cut, not dropped
SVG_RENDERERS = ("cairosvg", "resvg")  # resvg refuses ~40 stamp SVGs ("invalid size")

SKIP_NO_IMAGE = "caption file without a .svg or .png stamp next to it"
SKIP_EMPTY_CAPTION = "caption file with no English line"

CARD: dict = {
    "title": "Tux Paint stamps: image, captions in many languages, sound effect, speech",
    "sources": "Debian tuxpaint-stamps-default (version: dpkg -s tuxpaint-stamps-default); "
               "SVG rendered with cairosvg, resvg-py where cairo fails; .ogg decoded with "
               "soundfile (libsndfile) and resampled with scipy.signal.resample_poly.",
    "licence": "GPL-2.0-or-later (Tux Paint stamps)",
    "splits": "By stamp: test = sha1(stamp path) % 10 == 0. The speech config uses the same "
              "rule, so a stamp's recordings are in the split of its image.",
    "languages": "English plus every '<lang>.utf8=' line present (up to ~80 locales; coverage "
                 "varies per stamp), stored as JSON; spoken descriptions in the languages "
                 "recorded (most in fr, ru, es).",
    "skipped": "Caption files with no stamp image or no English line are counted in "
               "TuxpaintCatalog.skipped. A stamp image or sound that fails to decode stops "
               "the build with its path (a broken install, not noise to drop). Sounds longer "
               f"than {MAX_SECONDS:g} s are cut to {MAX_SECONDS:g} s. The effects configs keep "
               "only stamps with a sound effect that is not silent throughout (RMS at least "
               "-50 dBFS; 4 of 134 in 2022.06.04 are silent: nandou, iguana, giraffe, wombat).",
    "fields": {
        "image": "64 px RGB stamp (cropped, padded square, over white)",
        "caption": "English sentence, e.g. 'A crow.'",
        "captions": "JSON {lang: sentence} for every language in the .txt file (en included)",
        "sound": f"float32 mono {SAMPLE_RATE} Hz sound effect, empty if none",
        "stamp": "stamp path under stamps/, e.g. 'animals/birds/crow' (split key)",
        "category": "top-level folder, e.g. 'animals'",
        "speech (speech config)": f"float32 mono {SAMPLE_RATE} Hz spoken sentence",
        "language (speech config)": "language code of the recording ('en' when unsuffixed)",
    },
}


@dataclasses.dataclass(frozen=True)
class Stamp:
    stamp: str                      # "animals/birds/crow"
    image_path: str
    captions: Mapping[str, str]     # lang -> sentence, "en" first
    sound_path: str | None
    speech_paths: Mapping[str, str]  # lang -> _desc .ogg


@dataclasses.dataclass(frozen=True)
class TuxpaintCatalog:
    stamps: tuple[Stamp, ...]
    skipped: Mapping[str, int]


def parse_captions(path: str) -> dict[str, str]:
    """First non-empty line is English; ``xx.utf8=...`` lines are translations."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    if not lines:
        return {}
    captions = {"en": lines[0]}
    for line in lines[1:]:
        key, sep, text = line.partition("=")
        if sep and key.endswith(".utf8") and text.strip():
            captions[key[:-len(".utf8")]] = text.strip()
    return captions


def read_catalog(stamps_dir: str | None = None) -> TuxpaintCatalog:
    root = stamps_dir or sources.resolve_file(STAMPS_DIR)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Tux Paint stamps folder {root} is missing; install with: "
            "apt-get install -y tuxpaint-stamps-default")
    stamps, skipped = [], collections.Counter()
    for txt in sorted(glob.glob(os.path.join(glob.escape(root), "**", "*.txt"), recursive=True)):
        stem = txt[:-len(".txt")]
        image = next((stem + ext for ext in (".svg", ".png") if os.path.isfile(stem + ext)), None)
        if image is None:
            skipped[SKIP_NO_IMAGE] += 1
            continue
        captions = parse_captions(txt)
        if not captions:
            skipped[SKIP_EMPTY_CAPTION] += 1
            continue
        prefix = os.path.basename(stem) + "_desc"
        speech = {}
        for p in sorted(glob.glob(glob.escape(stem) + "_desc*.ogg")):
            suffix = os.path.basename(p)[len(prefix):-len(".ogg")]
            speech[suffix.lstrip("_") or "en"] = p
        stamps.append(Stamp(
            stamp=os.path.relpath(stem, root), image_path=image, captions=captions,
            sound_path=stem + ".ogg" if os.path.isfile(stem + ".ogg") else None,
            speech_paths=speech))
    return TuxpaintCatalog(stamps=tuple(stamps), skipped=dict(skipped))


def load_image(path: str, size: int) -> np.ndarray:
    if path.endswith(".svg"):
        image = svg_to_image(path=path, width=4 * size, renderers=SVG_RENDERERS)
        return square_on_white(image, size)
    try:
        with Image.open(path) as image:
            return square_on_white(image, size)
    except OSError as e:
        raise ValueError(f"could not read stamp image {path}: {e}") from e


def load_audio(path: str, max_seconds: float | None = MAX_SECONDS) -> np.ndarray:
    """.ogg -> float32 mono at SAMPLE_RATE (channel mean; polyphase resampling)."""
    import soundfile
    from scipy.signal import resample_poly

    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile.LibsndfileError and friends
        raise ValueError(f"could not decode {path}: {e}") from e
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(int(rate), SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    if max_seconds is not None:
        mono = mono[:int(max_seconds * SAMPLE_RATE)]
    return mono.astype(np.float32)


def select(stamps, max_items: int | None) -> list[Stamp]:
    """``max_items`` stamps in sha1(stamp) order, half of them with a sound effect (all if None).

    Only 134 of 950 stamps have a sound, so a plain hash-order subset would have few.
    """
    if max_items is None:
        return list(stamps)
    ordered = sorted(stamps, key=lambda s: hashlib.sha1(s.stamp.encode()).hexdigest())
    with_sound = [s for s in ordered if s.sound_path][:max_items // 2]
    chosen = {s.stamp for s in with_sound}
    rest = [s for s in ordered if s.stamp not in chosen][:max_items - len(with_sound)]
    return with_sound + rest


@dataclasses.dataclass
class TuxpaintConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_items: int | None = None
    speech: bool = False
    # Only stamps with an audible sound effect. A config of its own rather than a filter in
    # the training pipeline: the 130 records are found once at build time (reading the 950
    # stamp records on every run to drop 86 % of them would not be), the source stays
    # random-access with an exact length (what grain's shuffle, sharding and resume rely
    # on), and the split is the default config's stamp hash, so no test stamp is trained on.
    effects: bool = False


class Tuxpaint(Builder):
    """TFDS builder ``xmodal_tuxpaint``."""

    name = "xmodal_tuxpaint"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Tux Paint stamps, captions, sound effects, spoken captions."}
    BUILDER_CONFIGS = [
        TuxpaintConfig(name="default", description="Every stamp."),
        TuxpaintConfig(name="tiny", description="30 stamps.", max_items=30),
        TuxpaintConfig(name="speech", description="Spoken descriptions.", speech=True),
        TuxpaintConfig(name="speech_tiny", description="Speech of 8 stamps.", speech=True,
                       max_items=8),
        TuxpaintConfig(name="effects", description="Stamps with an audible sound effect.",
                       effects=True),
        # 40 of them: 36 train and 4 test stamps, so the tiny eval set is not a single clip.
        TuxpaintConfig(name="effects_tiny", description="40 stamps with a sound effect.",
                       effects=True, max_items=40),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        common = {
            "image": tfds.features.Image(shape=(cfg.image_size, cfg.image_size, 3),
                                         encoding_format="png"),
            "caption": tfds.features.Text(),
            "stamp": tfds.features.Text(),
            "category": tfds.features.Text(),
        }
        if cfg.speech:
            extra = {"speech": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                     "language": tfds.features.Text()}
        else:
            extra = {"captions": tfds.features.Text(),
                     "sound": tfds.features.Tensor(shape=(None,), dtype=np.float32)}
        return tfds.core.DatasetInfo(
            builder=self, description=CARD["title"] + ". " + CARD["splits"],
            features=tfds.features.FeaturesDict({**common, **extra}),
            homepage="https://tuxpaint.org", license=CARD["licence"])

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from the installed Debian package
        stamps = read_catalog().stamps
        if self.builder_config.speech:
            stamps = [s for s in stamps if s.speech_paths]
        if self.builder_config.effects:
            stamps = [s for s in stamps
                      if s.sound_path and not is_silent(load_audio(s.sound_path))]
        stamps = select(stamps, self.builder_config.max_items)
        by_split: dict[str, list[Stamp]] = {"train": [], "test": []}
        for s in stamps:
            by_split[split_of(s.stamp)].append(s)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, stamps: list[Stamp]):
        size = self.builder_config.image_size
        for s in stamps:
            common = {"image": encode_png(load_image(s.image_path, size)),
                      "stamp": s.stamp, "category": s.stamp.split("/")[0]}
            if not self.builder_config.speech:
                sound = (load_audio(s.sound_path) if s.sound_path
                         else np.zeros((0,), np.float32))
                yield s.stamp, {**common, "caption": s.captions["en"], "sound": sound,
                                "captions": json.dumps(s.captions, ensure_ascii=False,
                                                       sort_keys=True)}
                continue
            for lang, path in sorted(s.speech_paths.items()):
                # A recording whose language has no written caption keeps the English one.
                yield f"{s.stamp}/{lang}", {
                    **common, "caption": s.captions.get(lang, s.captions["en"]),
                    "language": lang, "speech": load_audio(path, max_seconds=None)}


for _config in ("default", "tiny", "speech", "speech_tiny", "effects", "effects_tiny"):
    sources.register(
        "tuxpaint" if _config == "default" else f"tuxpaint/{_config}",
        sources.DatasetEntry(
            Tuxpaint, _config, ("cairosvg", "resvg-py", "soundfile", "scipy"),
            ("cairosvg", "resvg_py", "soundfile", "scipy"),
            "stamps come from Debian tuxpaint-stamps-default; cairosvg needs Debian libcairo2",
            apt=("tuxpaint-stamps-default", "libcairo2"), files=(STAMPS_DIR,)))
