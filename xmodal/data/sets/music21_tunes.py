"""Tunes from the music21 corpus rendered to audio, with title, key, meter and origin as text.

The corpus (pip ``music21``) holds folk-tune collections in ABC notation: Essen folk songs
(German and other European songs, with their region), O'Neill's "Music of Ireland" (1850),
Ryan's Mammoth Collection (1883), the Aird airs. Each tune is parsed, its notes are placed in
seconds by its tempo marks (``secondsMap``; music21 assumes 120 quarter notes per minute where
the tune gives none) and rendered with a General MIDI soundfont through ``instruments``'s
renderer on one of a few melody instruments, then cut into fixed-length segments.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets import instruments as ins

SAMPLE_RATE = 16000
SEGMENT_SECONDS = 8.0
MIN_TAIL = 0.5               # a last segment at least this full is zero-padded, else dropped
TAIL_SECONDS = 1.0           # rendered past the last note so it can decay
TEST_MODULUS = 10            # test = sha1(tune id) % 10 == 0
MELODY_INSTRUMENTS = ("violin", "flute", "acoustic grand piano", "accordion", "clarinet",
                      "harp")
COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")
COLLECTION_NAMES = {
    "essenFolksong": "Essen folk song collection",
    "oneills1850": "O'Neill's Music of Ireland (1850)",
    "ryansMammoth": "Ryan's Mammoth Collection (1883)",
    "airdsAirs": "Aird's Selection of Scotch, English, Irish and Foreign Airs",
}
# Tiny config: (corpus path, number in a multi-tune ABC book or None).
TINY_TUNES: tuple[tuple[str, int | None], ...] = (
    ("oneills1850/0001-0050.abc", 1), ("oneills1850/0001-0050.abc", 2),
    ("oneills1850/0001-0050.abc", 3), ("oneills1850/0001-0050.abc", 4),
    ("oneills1850/0001-0050.abc", 12), ("oneills1850/0001-0050.abc", 13),
    ("oneills1850/0001-0050.abc", 16), ("essenFolksong/ballad10.abc", 1),
    ("essenFolksong/ballad10.abc", 2), ("ryansMammoth/AlhambraReel.abc", None),
)

SKIP_TAIL = f"final segment under {MIN_TAIL:.0%} of {SEGMENT_SECONDS} s"
SKIP_SILENT = f"segment below {ins.SILENT_RMS_DB} dBFS RMS (rests only)"
SKIP_NO_NOTES = "tune without notes"


def tune_id(path: str, number: int | None) -> str:
    return path if number is None else f"{path}#{number}"


def split_of(title: str) -> str:
    """By title, lower-cased (sha1 % 10 == 0 -> test): variants of one song printed as separate
    tunes share a title and so a split, and no test caption's title is seen in training."""
    digest = int(hashlib.sha1(title.strip().lower().encode()).hexdigest()[:16], 16)
    return "test" if digest % TEST_MODULUS == 0 else "train"


def list_corpus_tunes(collections_: tuple[str, ...] = COLLECTIONS) -> list[tuple[str, int | None]]:
    """(path, number) of every tune of ``collections_`` in music21's corpus metadata bundle."""
    from music21 import corpus

    bundle = corpus.corpora.CoreCorpus().metadataBundle
    tunes = set()
    for entry in bundle:
        path = str(entry.sourcePath)
        if path.split("/")[0] in collections_:
            tunes.add((path, entry.number if entry.number is None else int(entry.number)))
    return sorted(tunes, key=lambda t: (t[0], t[1] or 0))


@dataclasses.dataclass(frozen=True)
class Tune:
    id: str
    title: str
    key: str           # "G major"; "" when the tune has no key signature
    meter: str         # "6/8"; "" when none
    region: str        # Essen's locale of composition, e.g. "Mitteleuropa, Deutschland"
    composer: str
    collection: str
    events: tuple[ins.Event, ...]
    grace_notes: int   # not sounded: music21 gives grace notes zero duration


def read_tune(path: str, number: int | None) -> Tune:
    """Parses one tune and lists its notes as (start s, duration s, MIDI pitch) events.

    Ties are merged first so a tied note sounds once. Chords give one event per pitch.
    """
    from music21 import chord, corpus, key, meter, note

    score = corpus.parse(path, number=number) if number is not None else corpus.parse(path)
    score = score.stripTies()
    md = score.metadata
    signature = score.recurse().getElementsByClass(key.KeySignature).first()
    if signature is None:
        key_text = ""
    elif isinstance(signature, key.Key):
        key_text = f"{signature.tonic.name} {signature.mode}"
    else:
        key_text = f"{signature.asKey().tonic.name} major"  # a bare signature: major assumed
    time_signature = score.recurse().getElementsByClass(meter.TimeSignature).first()
    events, grace = [], 0
    for item in score.flatten().secondsMap:
        element = item["element"]
        if not isinstance(element, (note.Note, chord.Chord)):
            continue
        if element.duration.isGrace:
            grace += 1
            continue
        pitches = [element.pitch] if isinstance(element, note.Note) else element.pitches
        for p in pitches:
            events.append((float(item["offsetSeconds"]), float(item["durationSeconds"]),
                           int(p.midi)))
    collection = path.split("/")[0]
    return Tune(
        id=tune_id(path, number), title=(md.title or "").strip() if md else "",
        key=key_text, meter=time_signature.ratioString if time_signature else "",
        region=(md.localeOfComposition or "") if md else "",
        composer=(md.composer or "") if md else "",
        collection=COLLECTION_NAMES.get(collection, collection),
        events=tuple(sorted(events)), grace_notes=grace)


def instrument_for(tune: str) -> str:
    """A melody instrument picked by sha1 of the tune id: fixed per tune, varied across tunes."""
    digest = int(hashlib.sha1(("instrument:" + tune).encode()).hexdigest()[:16], 16)
    return MELODY_INSTRUMENTS[digest % len(MELODY_INSTRUMENTS)]


def caption(tune: Tune, instrument: str) -> str:
    """'The Little Heathy Hill, in G minor, 4/4, from O'Neill's ..., played on violin'."""
    parts = [tune.title or "an untitled tune"]
    if tune.key:
        parts.append(f"in {tune.key}")
    if tune.meter:
        parts.append(tune.meter)
    if tune.composer:
        parts.append(f"by {tune.composer}")
    parts.append(f"from {tune.region}" if tune.region else f"from {tune.collection}")
    parts.append(f"played on {instrument}")
    return ", ".join(parts)


def segments(clip: np.ndarray, n: int) -> tuple[list[np.ndarray], int]:
    """Consecutive n-sample segments; a shorter last one is zero-padded if at least MIN_TAIL
    full, else dropped. Returns (segments, number dropped)."""
    out = [clip[i:i + n] for i in range(0, len(clip) - n + 1, n)]
    tail = clip[len(out) * n:]
    if len(tail) >= MIN_TAIL * n:
        out.append(np.pad(tail, (0, n - len(tail))))
        return out, 0
    return out, int(len(tail) > 0)


@dataclasses.dataclass
class Music21Config(tfds.core.BuilderConfig):
    font: str = ins.TIMGM6MB
    tunes: tuple[tuple[str, int | None], ...] | None = None  # None: tunes of COLLECTIONS
    # Parsing the whole corpus (~12,800 tunes) takes far over 20 minutes on 2 cores; the default
    # takes a fixed, collection-mixed subset: the tunes with the smallest sha1 of their id.
    max_tunes: int | None = 1500


class Music21Tunes(Builder):
    """TFDS builder ``xmodal_music21``."""

    name = "xmodal_music21"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "music21 folk corpora, 8 s segments at 16 kHz, TimGM6mb."}
    BUILDER_CONFIGS = [
        Music21Config(name="default", description="1,500 tunes (by sha1 of their id) of "
                      + ", ".join(COLLECTIONS)),
        Music21Config(name="full", max_tunes=None, description="Every tune of "
                      + ", ".join(COLLECTIONS)),
        Music21Config(name="tiny", tunes=TINY_TUNES, description="10 tunes."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        samples = int(SEGMENT_SECONDS * SAMPLE_RATE)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(samples,), dtype=np.float32),
                "caption": tfds.features.Text(),
                "title": tfds.features.Text(),
                "key": tfds.features.Text(),
                "meter": tfds.features.Text(),
                "region": tfds.features.Text(),
                "composer": tfds.features.Text(),
                "collection": tfds.features.Text(),
                "instrument": tfds.features.Text(),
                "tune": tfds.features.Text(),
                "segment": tfds.features.Scalar(dtype=np.int32),
                "grace_notes": tfds.features.Scalar(dtype=np.int32),
            }),
            metadata=tfds.core.MetadataDict(),
            license=("Essen folk songs: non-commercial research use; O'Neill, Ryan, Aird: public "
                     "domain (as packaged by music21, BSD-3). Audio rendered with TimGM6mb "
                     "(GPL-2.0)."),
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager
        tunes = self.builder_config.tunes or tuple(list_corpus_tunes())
        cap = self.builder_config.max_tunes
        if cap and not self.builder_config.tunes:
            key = lambda t: hashlib.sha1(f"{t[0]}:{t[1]}".encode()).hexdigest()  # noqa: E731
            tunes = tuple(sorted(tunes, key=key)[:cap])
        by_split: dict[str, list[Tune]] = {"train": [], "test": []}
        for path, number in tunes:
            tune = read_tune(path, number)
            by_split[split_of(tune.title or tune.id)].append(tune)
        renderer = ins.FontRenderer(self.builder_config.font, SAMPLE_RATE)
        self.info.metadata["skipped"] = {}
        return {split: self._generate_examples(renderer, split, ts)
                for split, ts in by_split.items()}

    def _generate_examples(self, renderer: ins.FontRenderer, split: str, tunes: list[Tune]):
        n = int(SEGMENT_SECONDS * SAMPLE_RATE)
        skipped = collections.Counter()
        for tune in tunes:
            if not tune.events:
                skipped[SKIP_NO_NOTES] += 1
                continue
            name = instrument_for(tune.id)
            _, program, _, _ = ins.instrument(name)
            end = max(start + duration for start, duration, _ in tune.events) + TAIL_SECONDS
            clip = renderer.render(program, tune.events, end)
            pieces, dropped = segments(clip, n)
            skipped[SKIP_TAIL] += dropped
            text = caption(tune, name)
            for index, piece in enumerate(pieces):
                if ins.is_silent(piece):
                    skipped[SKIP_SILENT] += 1
                    continue
                yield f"{tune.id}/{index}", {
                    "audio": piece.astype(np.float32), "caption": text, "title": tune.title,
                    "key": tune.key, "meter": tune.meter, "region": tune.region,
                    "composer": tune.composer, "collection": tune.collection,
                    "instrument": name, "tune": tune.id, "segment": index,
                    "grace_notes": tune.grace_notes,
                }
        self.info.metadata["skipped"][split] = dict(skipped)


_PIP = ("music21", "pretty-midi", "tinysoundfont")
_MODULES = ("music21", "pretty_midi", "tinysoundfont")
_HINT = "corpus ships in music21; TimGM6mb in pretty-midi; tinysoundfont with pip --no-deps"
for _config in Music21Tunes.BUILDER_CONFIGS:
    sources.register(
        "music21" if _config.name == "default" else f"music21/{_config.name}",
        sources.DatasetEntry(Music21Tunes, _config.name, _PIP, _MODULES, _HINT))

CARD: dict = {
    "title": "music21 tunes: folk melodies with title, key, meter and origin",
    "sources": (
        "pip music21 (its bundled corpus; version of the installed wheel) for the scores; "
        "TimGM6mb from pip pretty-midi rendered with pip tinysoundfont"),
    "licence": ("Essen folk song collection: free for non-commercial research; O'Neill 1850, "
                "Ryan 1883, Aird: public domain transcriptions; music21 code BSD-3. Audio "
                "follows TimGM6mb (GPL-2.0)."),
    "splits": (
        "Held out by title: test = sha1(lower-cased title) % 10 == 0 (the tune id for an "
        "untitled tune); all segments of a tune, and all tunes sharing a title (Essen prints "
        "variants of one song under one title), are in one split, so no test title is seen in "
        "training. Variants under different titles are not linked and may straddle splits."),
    "languages": "en captions; titles and regions as in the sources (German, Irish English...)",
    "skipped": (
        "Counted per split in the dataset info metadata ('skipped'): tunes without notes, "
        "final segments shorter than half a segment, segments with rests only. Grace notes "
        "(zero duration in music21) are not sounded; their count per tune is the field "
        "'grace_notes'. A tune that fails to parse stops the build with its path."),
    "fields": {
        "audio": f"float32[{int(SEGMENT_SECONDS * SAMPLE_RATE)}], {SAMPLE_RATE} Hz mono, one "
                 f"{SEGMENT_SECONDS} s segment",
        "caption": "title, key, meter, composer or region/collection and instrument in one line",
        "title": "tune title",
        "key": "'G major' / 'e minor' from the key field; major assumed for a bare signature; "
               "'' if none",
        "meter": "first time signature, e.g. '6/8'",
        "region": "Essen's locale of composition ('' elsewhere)",
        "composer": "composer if the source names one",
        "collection": "corpus collection",
        "instrument": "GM instrument it was rendered on, fixed per tune by sha1",
        "tune": "'<corpus path>#<number>'",
        "segment": "index of the segment in the tune",
        "grace_notes": "grace notes in the tune that were not sounded",
    },
}
