"""Instrument sounds: single notes and short phrases rendered from General MIDI soundfonts.

Each example is 2 s of 16 kHz mono float32 audio of one GM instrument with a caption such as
"a violin playing C4" or "a cello playing a short phrase". One config per soundfont, all with the
same items (instrument + note, or instrument + phrase seed), so a model can be trained on one
font's recordings and tested on another's:

  * ``default`` / ``tiny``: TimGM6mb, shipped inside the pip package ``pretty-midi``.
  * ``fluidr3`` / ``fluidr3_tiny``: FluidR3 GM (Debian ``fluid-soundfont-gm``).
  * ``musescore`` / ``musescore_tiny``: MuseScore General Lite .sf3 (Debian
    ``musescore-general-soundfont-small``).

Rendering is by ``tinysoundfont`` (pip, install with ``--no-deps``: its optional pyaudio
dependency needs a C toolchain and is only for live playback).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

SAMPLE_RATE = 16000
CLIP_SECONDS = 2.0
NOTE_SECONDS = 1.5          # note held this long, then released: the clip keeps the decay
VELOCITY = 100
SILENT_RMS_DB = -50.0       # quieter clips (dBFS RMS): the font has no usable sample there
TEST_MODULUS = 5            # test = sha1(item id) % 5 == 0, about 20% of items

# (caption name, GM program 0-127, lowest MIDI note, highest MIDI note). Ranges are the
# instrument's usual sounding range, kept a little inside it: soundfonts map samples only over
# the real range (FluidR3's contrabass is silent at MIDI 60).
INSTRUMENTS: tuple[tuple[str, int, int, int], ...] = (
    ("acoustic grand piano", 0, 36, 96),
    ("electric piano", 4, 36, 84),
    ("harpsichord", 6, 41, 84),
    ("celesta", 8, 60, 96),
    ("glockenspiel", 9, 79, 103),
    ("vibraphone", 11, 53, 89),
    ("marimba", 12, 48, 84),
    ("xylophone", 13, 65, 96),
    ("tubular bells", 14, 60, 77),
    ("church organ", 19, 36, 84),
    ("accordion", 21, 53, 84),
    ("harmonica", 22, 60, 84),
    ("nylon-string guitar", 24, 40, 76),
    ("steel-string guitar", 25, 40, 76),
    ("electric guitar", 27, 40, 76),
    ("acoustic bass", 32, 28, 52),
    ("electric bass", 33, 28, 55),
    ("violin", 40, 55, 88),
    ("viola", 41, 48, 79),
    ("cello", 42, 36, 69),
    ("contrabass", 43, 28, 50),
    ("harp", 46, 36, 88),
    ("timpani", 47, 40, 55),
    ("trumpet", 56, 55, 80),
    ("trombone", 57, 40, 70),
    ("tuba", 58, 29, 55),
    ("french horn", 60, 41, 74),
    ("soprano saxophone", 64, 56, 84),
    ("alto saxophone", 65, 49, 78),
    ("tenor saxophone", 66, 44, 72),
    ("baritone saxophone", 67, 36, 65),
    ("oboe", 68, 58, 88),
    ("english horn", 69, 52, 79),
    ("bassoon", 70, 34, 70),
    ("clarinet", 71, 50, 88),
    ("piccolo", 72, 74, 100),
    ("flute", 73, 60, 93),
    ("recorder", 74, 60, 91),
    ("pan flute", 75, 60, 88),
    ("banjo", 105, 48, 76),
    ("sitar", 104, 48, 76),
    ("steel drums", 114, 52, 76),
)
INSTRUMENT_NAMES: tuple[str, ...] = tuple(name for name, *_ in INSTRUMENTS)
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

TIMGM6MB = "TimGM6mb"
FLUIDR3 = "FluidR3_GM"
MUSESCORE = "MuseScore_General_Lite"
FLUIDR3_FILE = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MUSESCORE_FILE = "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"
FONT_LICENCES = {
    TIMGM6MB: "GPL-2.0 (TimGM6mb by Tim Brechbill, shipped in pretty-midi)",
    FLUIDR3: "MIT (FluidR3 GM by Frank Wen, Debian fluid-soundfont-gm)",
    MUSESCORE: "MIT (MuseScore General by S. Christian Collins, Debian "
               "musescore-general-soundfont-small)",
}

def font_path(font: str) -> str:
    """File of soundfont ``font`` (TIMGM6MB, FLUIDR3 or MUSESCORE)."""
    if font == TIMGM6MB:
        import pretty_midi
        return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")
    if font == FLUIDR3:
        return sources.resolve_file(FLUIDR3_FILE)
    if font == MUSESCORE:
        return sources.resolve_file(MUSESCORE_FILE)
    raise ValueError(f"unknown soundfont {font!r}; fonts: {TIMGM6MB}, {FLUIDR3}, {MUSESCORE}")


def note_name(pitch: int) -> str:
    """MIDI note number -> scientific pitch name (60 -> "C4")."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def instrument(name: str) -> tuple[str, int, int, int]:
    for entry in INSTRUMENTS:
        if entry[0] == name:
            return entry
    raise ValueError(f"unknown instrument {name!r}; instruments: {', '.join(INSTRUMENT_NAMES)}")


def seed_of(text: str) -> int:
    """A stable 64-bit seed from a string (Python's hash() changes between runs)."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:16], 16)


def split_of(item: str) -> str:
    """'test' for about 1 in 5 items by sha1(item id): the same in every font."""
    return "test" if seed_of(item) % TEST_MODULUS == 0 else "train"


# A note event: (start seconds, duration seconds, MIDI pitch).
Event = tuple[float, float, int]


def random_phrase(rng: np.random.Generator, low: int, high: int,
                  seconds: float = CLIP_SECONDS) -> list[Event]:
    """A monophonic phrase filling ``seconds``: durations from {1/8, 1/4, 3/8, 1/2} s, pitches
    a random walk of steps in [-4, 4] semitones kept inside [low, high]."""
    events, t = [], 0.0
    pitch = int(rng.integers(low, high + 1))
    while t < seconds - 0.25:
        duration = float(rng.choice([0.125, 0.25, 0.375, 0.5]))
        events.append((t, min(duration, seconds - t), pitch))
        t += duration
        pitch = int(np.clip(pitch + rng.integers(-4, 5), low, high))
    return events


class FontRenderer:
    """One loaded soundfont; ``render`` turns note events into mono float32 audio."""

    def __init__(self, font: str, sample_rate: int = SAMPLE_RATE):
        import tinysoundfont

        path = font_path(font)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"soundfont {font} not found at {path}; see the install "
                                    "commands of the instruments datasets in xmodal.core.datasets")
        self.font = font
        self.sample_rate = sample_rate
        self._synth = tinysoundfont.Synth(samplerate=sample_rate)
        self._sfid = self._synth.sfload(path)

    def _generate(self, n: int) -> np.ndarray:
        stereo = np.frombuffer(self._synth.generate(n), np.float32).reshape(-1, 2)
        return stereo.mean(axis=1)

    def render(self, program: int, events: Sequence[Event], seconds: float) -> np.ndarray:
        """Events on GM ``program`` (bank 0) -> ``float32[seconds * sample_rate]``.

        Voices of the previous clip are cut and flushed first so nothing rings into this one.
        """
        synth, sr = self._synth, self.sample_rate
        synth.sounds_off(0)
        self._generate(sr // 10)
        synth.program_select(0, self._sfid, 0, program)
        out = np.zeros(int(round(seconds * sr)), np.float32)
        changes = sorted([(start, 1, pitch) for start, _, pitch in events]
                         + [(start + duration, 0, pitch) for start, duration, pitch in events])
        cursor = 0
        for time, is_on, pitch in changes:
            stop = min(int(round(time * sr)), len(out))
            if stop > cursor:
                out[cursor:stop] = self._generate(stop - cursor)
                cursor = stop
            if is_on:
                synth.noteon(0, pitch, VELOCITY)
            else:
                synth.noteoff(0, pitch)
        if cursor < len(out):
            out[cursor:] = self._generate(len(out) - cursor)
        return out


@dataclasses.dataclass(frozen=True)
class Item:
    id: str                  # "violin/note/C4" or "violin/phrase/3"
    instrument: str
    program: int
    kind: str                # "note" or "phrase"
    pitch: int               # the note's MIDI pitch; -1 for a phrase
    events: tuple[Event, ...]
    caption: str


def list_items(instruments: Sequence[str], note_step: int, phrases: int) -> list[Item]:
    """Every ``note_step``-th semitone of each instrument's range, plus ``phrases`` phrases.

    Phrase pitches come from an RNG seeded by the item id, so an item sounds the same notes in
    every font and every build.
    """
    items = []
    for name in instruments:
        _, program, low, high = instrument(name)
        article = "an" if name[0] in "aeiou" else "a"
        for pitch in range(low, high + 1, note_step):
            items.append(Item(
                id=f"{name}/note/{note_name(pitch)}", instrument=name, program=program,
                kind="note", pitch=pitch, events=((0.0, NOTE_SECONDS, pitch),),
                caption=f"{article} {name} playing {note_name(pitch)}"))
        for k in range(phrases):
            item_id = f"{name}/phrase/{k}"
            rng = np.random.default_rng(seed_of(item_id))
            items.append(Item(
                id=item_id, instrument=name, program=program, kind="phrase", pitch=-1,
                events=tuple(random_phrase(rng, low, high)),
                caption=f"{article} {name} playing a short phrase"))
    return items


def is_silent(clip: np.ndarray) -> bool:
    rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64))))
    return rms < 10 ** (SILENT_RMS_DB / 20)


@dataclasses.dataclass
class InstrumentsConfig(tfds.core.BuilderConfig):
    font: str = TIMGM6MB
    instruments: tuple[str, ...] = INSTRUMENT_NAMES
    note_step: int = 1             # every semitone of the range
    phrases: int = 8               # phrases per instrument


TINY_INSTRUMENTS = ("violin", "acoustic grand piano", "contrabass", "flute")


def _configs() -> list[InstrumentsConfig]:
    configs = []
    for prefix, font in (("", TIMGM6MB), ("fluidr3", FLUIDR3), ("musescore", MUSESCORE)):
        full = prefix or "default"
        tiny = f"{prefix}_tiny" if prefix else "tiny"
        configs.append(InstrumentsConfig(
            name=full, font=font, description=f"{len(INSTRUMENTS)} instruments, {font}."))
        configs.append(InstrumentsConfig(
            name=tiny, font=font, instruments=TINY_INSTRUMENTS, note_step=5, phrases=2,
            description=f"4 instruments, every 5th semitone, 2 phrases each, {font}."))
    return configs


class Instruments(Builder):
    """TFDS builder ``xmodal_instruments``."""

    name = "xmodal_instruments"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Notes and phrases of 42 GM instruments, 2 s at 16 kHz."}
    BUILDER_CONFIGS = _configs()

    def _info(self) -> tfds.core.DatasetInfo:
        samples = int(CLIP_SECONDS * SAMPLE_RATE)
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                f"General MIDI instruments rendered from {self.builder_config.font}: single notes "
                "and short phrases with captions; test = items with sha1(item id) % 5 == 0, the "
                "same items in every font's config."),
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(samples,), dtype=np.float32),
                "caption": tfds.features.Text(),
                "instrument": tfds.features.ClassLabel(names=list(INSTRUMENT_NAMES)),
                "program": tfds.features.Scalar(dtype=np.int32),
                "kind": tfds.features.Text(),
                "pitch": tfds.features.Scalar(dtype=np.int32),
                "item": tfds.features.Text(),
                "font": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            license=FONT_LICENCES[self.builder_config.font],
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # soundfonts come from installed packages
        config = self.builder_config
        items = list_items(config.instruments, config.note_step, config.phrases)
        by_split: dict[str, list[Item]] = {"train": [], "test": []}
        for item in items:
            by_split[split_of(item.id)].append(item)
        renderer = FontRenderer(config.font)
        self.info.metadata["skipped_silent"] = {}
        return {split: self._generate_examples(renderer, split, items)
                for split, items in by_split.items()}

    def _generate_examples(self, renderer: FontRenderer, split: str, items: list[Item]):
        skipped = []
        for item in items:
            clip = renderer.render(item.program, item.events, CLIP_SECONDS)
            if is_silent(clip):
                skipped.append(item.id)
                continue
            yield item.id, {
                "audio": clip, "caption": item.caption,
                "instrument": INSTRUMENT_NAMES.index(item.instrument), "program": item.program,
                "kind": item.kind, "pitch": item.pitch, "item": item.id, "font": renderer.font,
            }
        # Saved with the dataset info: silent renders are dropped, never silently.
        self.info.metadata["skipped_silent"][split] = skipped


_PIP = ("pretty-midi", "tinysoundfont")
_MODULES = ("pretty_midi", "tinysoundfont")
_HINT = "TimGM6mb font ships in pretty-midi; install tinysoundfont with pip --no-deps"
_FONT_APT = {FLUIDR3: ("fluid-soundfont-gm",), MUSESCORE: ("musescore-general-soundfont-small",)}
_FONT_FILES = {FLUIDR3: (FLUIDR3_FILE,), MUSESCORE: (MUSESCORE_FILE,)}

for _config in Instruments.BUILDER_CONFIGS:
    sources.register(
        "instruments" if _config.name == "default" else f"instruments/{_config.name}",
        sources.DatasetEntry(
            Instruments, _config.name, _PIP, _MODULES, _HINT,
            apt=_FONT_APT.get(_config.font, ()), files=_FONT_FILES.get(_config.font, ())))

CARD: dict = {
    "title": "Instruments: GM soundfont notes and phrases with captions",
    "sources": (
        "TimGM6mb.sf2 inside pip pretty-midi (version of the installed wheel); FluidR3_GM.sf2 "
        "from Debian fluid-soundfont-gm; MuseScore_General_Lite.sf3 from Debian "
        "musescore-general-soundfont-small (versions from dpkg); rendered with pip "
        "tinysoundfont (installed --no-deps)"),
    "licence": "; ".join(FONT_LICENCES.values()) + ". The generated audio follows its font.",
    "splits": (
        "Held out by item: an item is an instrument + note (e.g. violin/note/C4) or instrument "
        "+ phrase seed (violin/phrase/3); test = sha1(item id) % 5 == 0. The items and their "
        "split are identical in every font, so one can train on TimGM6mb's train split and test "
        "on FluidR3's or MuseScore's test split (different recordings of unseen items)."),
    "languages": "en (captions)",
    "skipped": (
        f"Clips whose RMS is below {SILENT_RMS_DB} dBFS are dropped because the font has no "
        "sample there; the dropped item ids are listed per split in the dataset info "
        "metadata ('skipped_silent': split -> item ids). Pitches are kept inside each "
        "instrument's range, so this is rare, except in MuseScore General Lite: through "
        "tinysoundfont its pianos render at about -65 dBFS (modulators it does not apply), so "
        "most of its acoustic grand piano items are dropped (61 of 1714 items; TimGM6mb 1, "
        "FluidR3 7). "
        "GM programs without a definite pitch or caption-worthy name (synth pads, sound "
        "effects, drum kit) are not rendered."),
    "fields": {
        "audio": f"float32[{int(CLIP_SECONDS * SAMPLE_RATE)}], {SAMPLE_RATE} Hz mono, "
                 f"{CLIP_SECONDS} s; a note is held {NOTE_SECONDS} s then released",
        "caption": "'a violin playing C4' or 'a violin playing a short phrase'",
        "instrument": "class label over the 42 instrument names",
        "program": "General MIDI program number (0-127)",
        "kind": "'note' or 'phrase'",
        "pitch": "MIDI pitch of a note (C4 = 60); -1 for a phrase",
        "item": "item id, shared across fonts",
        "font": "soundfont that rendered the clip",
    },
}
