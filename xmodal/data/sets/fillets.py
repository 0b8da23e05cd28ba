"""Narrated sequences with topic boundaries: Fish Fillets NG's voiced levels as lectures.

Fish Fillets NG (Debian ``fillets-ng-data``, ``fillets-ng-data-nl``) is a puzzle game whose two
fish talk about each level's room as it is played: ~1,500 studio-recorded Dutch voice lines
with their transcripts (``dialogs_nl.lua``: the English source line and its Dutch text) and
each level's painted room. Read as lecture video:

- a **lecture** is one branch of the game's world map (``worldmap.lua``: "Fish House", "Ship
  Wrecks", ...), its levels in the map's order; a one-level branch joins the branch before it;
- a **topic segment** is one level: its lines talk about that room;
- a **clip** is one voice line, in the order of the level's dialog file: the recording, its
  transcripts, the speaker (the font of the line: small fish, big fish or another voice) and
  a view of the level's room.

The view: the room (its background picture with the room's walls composited on it, as the
game draws it) seen through a square window as tall as the room that pans from the left edge
to the right edge over the level's lines, resized to ``image_size``. Clips of one level share
the room but not the view; consecutive clips overlap most. The pan is this set's, not the
game's (the game shows the whole room): a slide that changes within a topic, from real art.

Held out by lecture (hence by level): the lectures are ordered by sha1("fillets:" + name); the
first ``TEST_LECTURES`` are ``test``, the next ``DEV_LECTURES`` ``dev`` (where settings are
chosen), the rest ``train``.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import encode_png

ROOT = "/usr/share/games/fillets-ng"
LANGUAGE = "nl"
SAMPLE_RATE = 8000          # the recordings are 22.05 kHz stereo; speech needs no more than 4 kHz
MAX_SECONDS = 10.0          # 4 of 1,529 lines are longer (the longest 14.3 s)
TEST_LECTURES, DEV_LECTURES = 3, 2
SPEAKERS = ("small fish", "big fish", "other")
_FONTS = {"font_small": "small fish", "font_big": "big fish"}

SKIP_NO_RECORDING = "line without a recording in this language"
SKIP_EMPTY = "recording shorter than 0.1 s"

_STR = r'"((?:[^"\\]|\\.)*)"'
_DIALOG = re.compile(r"dialogId\(\s*" + _STR + r"\s*,\s*" + _STR + r"\s*,\s*" + _STR
                     + r"\s*\)\s*dialogStr\(\s*" + _STR + r"\s*\)")
_NODE = re.compile(r'branch_addNode\(\s*"[^"]*"\s*,\s*"([^"]+)"')
_ROOM = re.compile(r'createRoom\([^)]*"images/"\s*\.\.\s*codename\s*\.\.\s*"/([^"]+)"')
_WALLS = re.compile(r'addItemAnim\(\s*room\s*,\s*"images/"\s*\.\.\s*codename\s*\.\.\s*"/([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Line:
    line_id: str          # e.g. "bar-v-videt0"
    speaker: str          # one of SPEAKERS
    english: str
    transcript: str       # the Dutch text that was recorded
    recording: str        # path of the .ogg


@dataclasses.dataclass(frozen=True)
class Lecture:
    name: str                             # the world-map branch, e.g. "Fish House"
    levels: tuple[str, ...]               # level code names, in the map's order


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)


def read_lectures(root: str = ROOT) -> list[Lecture]:
    """The world map's branches (``-- Name`` comment lines head each) with their levels; a
    branch of one level joins the one before it ("UFO Exit" joins "UFO")."""
    path = os.path.join(root, "script", "worldmap.lua")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found; install with: apt-get update && "
                                "apt-get install -y fillets-ng-data fillets-ng-data-nl")
    branches: list[tuple[str, list[str]]] = []
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        node = _NODE.search(line)
        if node and branches:
            branches[-1][1].append(node.group(1))
        elif line.startswith("-- ") and "(" not in line and not line.startswith("-- -"):
            branches.append((line[3:].strip(), []))
    lectures: list[Lecture] = []
    for name, levels in branches:
        if len(levels) == 1 and lectures:
            lectures[-1] = Lecture(lectures[-1].name, lectures[-1].levels + tuple(levels))
        elif levels:
            lectures.append(Lecture(name, tuple(levels)))
    return lectures


def read_lines(level: str, root: str = ROOT, language: str = LANGUAGE
               ) -> tuple[list[Line], collections.Counter]:
    """A level's voice lines in its dialog file's order, and skip reason -> count."""
    path = os.path.join(root, "script", level, f"dialogs_{language}.lua")
    skipped: collections.Counter = collections.Counter()
    if not os.path.isfile(path):
        return [], skipped
    lines = []
    for line_id, font, english, text in _DIALOG.findall(open(path, encoding="utf-8").read()):
        ogg = os.path.join(root, "sound", level, language, _unescape(line_id) + ".ogg")
        if not os.path.isfile(ogg):
            skipped[SKIP_NO_RECORDING] += 1
            continue
        lines.append(Line(_unescape(line_id), _FONTS.get(font, "other"), _unescape(english),
                          _unescape(text), ogg))
    return lines, skipped


def load_recording(path: str) -> np.ndarray:
    """.ogg -> float32 mono at SAMPLE_RATE (channel mean, polyphase resampling), at most
    MAX_SECONDS. A file that does not decode stops the build with its path."""
    import soundfile

    from xmodal.audio import dsp    # jax: imported only when building
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile.LibsndfileError and friends
        raise ValueError(f"could not decode {path}: {e}") from e
    mono = dsp.resample(audio.mean(axis=1), int(rate), SAMPLE_RATE)
    return mono[:int(MAX_SECONDS * SAMPLE_RATE)]


def room_picture(level: str, root: str = ROOT):
    """The level's room as the game draws it: the background of ``createRoom`` with the room
    model's walls (an RGBA picture) over it; a PIL RGB image."""
    from PIL import Image

    models = open(os.path.join(root, "script", level, "models.lua"), encoding="utf-8").read()
    background = _ROOM.search(models)
    if not background:
        raise ValueError(f"{level}/models.lua: no createRoom(...) picture")
    folder = os.path.join(root, "images", level)
    try:
        room = Image.open(os.path.join(folder, background.group(1))).convert("RGBA")
        walls = _WALLS.search(models)
        if walls:
            room.alpha_composite(Image.open(os.path.join(folder, walls.group(1)))
                                 .convert("RGBA").resize(room.size))
    except OSError as e:
        raise ValueError(f"could not read the room of level {level}: {e}") from e
    return room.convert("RGB")


def view(room, index: int, count: int, size: int) -> np.ndarray:
    """Clip ``index`` of ``count``: the square window as tall as the room, panned from the left
    edge (first clip) to the right edge (last clip), resized to ``size``; uint8 [size, size, 3]."""
    from PIL import Image

    width, height = room.size
    side = min(width, height)
    x = round((width - side) * index / max(count - 1, 1))
    y = (height - side) // 2
    window = room.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
    return np.asarray(window, np.uint8)


def split_of_lectures(lectures: list[Lecture]) -> dict[str, str]:
    """Lecture name -> split: sha1 order, the first TEST_LECTURES test, the next DEV_LECTURES
    dev, the rest train."""
    order = sorted(lectures, key=lambda c: hashlib.sha1(f"fillets:{c.name}".encode()).hexdigest())
    return {c.name: ("test" if i < TEST_LECTURES else "dev" if i < TEST_LECTURES + DEV_LECTURES
                     else "train") for i, c in enumerate(order)}


@dataclasses.dataclass
class FilletsConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    max_levels: int | None = None      # the first levels of each lecture
    max_lines: int | None = None       # the first lines of each level


class Fillets(Builder):
    """TFDS builder ``xmodal_fillets``."""

    name = "xmodal_fillets"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "World-map branches as lectures, levels as segments, Dutch "
                              "voice lines as clips with a panned view of the room."}
    BUILDER_CONFIGS = [
        FilletsConfig(name="default", description="Every voiced level (nl), 64 px views."),
        FilletsConfig(name="tiny", max_levels=3, max_lines=6,
                      description="The first 3 levels of each lecture, 6 lines each."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "image": tfds.features.Image(shape=(size, size, 3)),
                "text": tfds.features.Text(),
                "transcript": tfds.features.Text(),
                "speaker": tfds.features.ClassLabel(names=list(SPEAKERS)),
                "lecture": tfds.features.Text(),
                "level": tfds.features.Text(),
                "segment": np.int32,
                "position": np.int32,
                "line_id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://fillets.sourceforge.net",
            license="GPL-2.0-or-later (Fish Fillets NG data)",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from the installed Debian packages
        root = sources.resolve_file(ROOT)
        lectures = read_lectures(root)
        split = split_of_lectures(lectures)
        self.info.metadata["lectures"] = {c.name: split[c.name] for c in lectures}
        self.info.metadata["skipped"] = {}
        return {s: self._generate_examples(root, [c for c in lectures if split[c.name] == s])
                for s in ("train", "dev", "test")}

    def _generate_examples(self, root: str, lectures: list[Lecture]):
        cfg = self.builder_config
        skipped = self.info.metadata["skipped"]
        for lecture in lectures:
            position, segment = 0, 0
            for level in lecture.levels[:cfg.max_levels]:
                lines, skip = read_lines(level, root)
                keep = []
                for line in lines[:cfg.max_lines]:
                    audio = load_recording(line.recording)
                    if len(audio) < SAMPLE_RATE // 10:
                        skip[SKIP_EMPTY] += 1
                    else:
                        keep.append((line, audio))
                for reason, n in skip.items():
                    skipped[reason] = skipped.get(reason, 0) + n
                if not keep:         # a level with no recorded line is no segment
                    continue
                room = room_picture(level, root)
                for i, (line, audio) in enumerate(keep):
                    yield f"{lecture.name}/{position:04d}", {
                        "audio": audio, "image": encode_png(view(room, i, len(keep),
                                                                 cfg.image_size)),
                        "text": line.english, "transcript": line.transcript,
                        "speaker": SPEAKERS.index(line.speaker), "lecture": lecture.name,
                        "level": level, "segment": segment, "position": position,
                        "line_id": line.line_id}
                    position += 1
                segment += 1


_APT = ("fillets-ng-data", "fillets-ng-data-nl")
for _config in Fillets.BUILDER_CONFIGS:
    sources.register(
        "fillets" if _config.name == "default" else f"fillets/{_config.name}",
        sources.DatasetEntry(Fillets, _config.name, ("soundfile", "scipy"),
                             ("soundfile", "scipy"),
                             "voice lines and rooms come from Debian fillets-ng-data(-nl)",
                             apt=_APT, files=(os.path.join(ROOT, "script", "worldmap.lua"),
                                              os.path.join(ROOT, "sound", "barrel", "nl"))))

CARD: dict = {
    "title": "Fish Fillets NG: voiced levels as narrated lectures with topic boundaries",
    "sources": ("Debian fillets-ng-data (level scripts, room pictures, world map) and "
                "fillets-ng-data-nl (Dutch voice recordings); versions from dpkg. .ogg decoded "
                "with soundfile (libsndfile), resampled with scipy.signal.resample_poly."),
    "licence": "GPL-2.0-or-later",
    "splits": (f"Held out by lecture, so by level: lectures in sha1('fillets:' + name) order, "
               f"the first {TEST_LECTURES} test, the next {DEV_LECTURES} dev (choose settings "
               "there), the rest train. The assignment is in the info metadata ('lectures'). "
               "One recording per line (one voice per fish), so no hold-out by speaker; "
               "Dutch only (the Czech voices are another package, not read)."),
    "languages": "nl speech and transcript; the English source text of each line",
    "skipped": (f"Counted in the info metadata ('skipped'): lines without a Dutch recording, "
                f"recordings shorter than 0.1 s; a level left with no line is not a segment. "
                f"Recordings longer than {MAX_SECONDS:g} s are cut. A recording or picture that "
                "fails to decode stops the build with its path."),
    "fields": {
        "audio": f"float32 mono {SAMPLE_RATE} Hz voice line",
        "image": "64 px RGB view of the level's room (panned over the level's lines)",
        "text": "the English source text of the line",
        "transcript": "the Dutch text that was recorded",
        "speaker": "small fish | big fish | other (the line's font)",
        "lecture": "world-map branch, e.g. 'Fish House' (the split key)",
        "level": "level code name, e.g. 'barrel' (the topic segment)",
        "segment": "the level's index in its lecture (0, 1, ...)",
        "position": "the clip's index in its lecture (time order)",
        "line_id": "the dialog id, e.g. 'bar-v-videt0'",
    },
}
