"""Language-queried source separation mixtures (LASS: "separate the violin").

Each example mixes k = 2 or 3 real sources for 4 s at 16 kHz: instrument phrases rendered from
a General MIDI soundfont (see ``instruments``), and in the ``tuxpaint`` configs Tux Paint sound
effects (animal calls, tools, vehicles). The first source is the target; the query names it.

Configs and what is held out for test:
  * ``default`` / ``fluidr3_tiny``: train renders with TimGM6mb, test with FluidR3 (Debian
    ``fluid-soundfont-gm``): the same instruments, different recordings and phrases.
  * ``tiny`` / ``pip``: pip-only. There is one font, so the test split holds out instruments:
    test queries name instruments never heard in training (a harder, zero-shot split).
  * ``tuxpaint`` / ``tuxpaint_tiny``: as ``default`` plus sound effects from Debian
    ``tuxpaint-stamps-default``, effects held out by file.

Every config also has a ``dev`` split: mixtures drawn like the test split's (its font, its
instruments and effects) from other seeds, where settings (a sampler's steps, a renderer) are
chosen so that the test split is read once.

Every example is a pure function of (config, split, index): its RNG is seeded by sha1 of those.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets import instruments as ins

SAMPLE_RATE = 16000
SECONDS = 4.0
SOURCE_DB = -25.0            # every source is first set to this RMS level (dBFS)
GAIN_DB = 6.0                # then given a uniform random gain in [-6, +6] dB
MAX_DRAWS = 10               # attempts at an audible source before giving up
PEAK = 0.99                  # mixtures louder than this are scaled down with their target
TEST_MODULUS = 5
TUXPAINT_DIR = "/usr/share/tuxpaint/stamps"
# Spoken letters/digits and instrument recordings: not sound effects, or they would collide
# with the instrument sources' names.
TUXPAINT_EXCLUDED = ("symbols/", "hobbies/music/")
LOCALISED = re.compile(r"_desc|_[a-z]{2,3}(_[A-Za-z]{2,4})?$")


@dataclasses.dataclass(frozen=True)
class Effect:
    label: str      # "badger sound"
    path: str


def list_effects(stamp_dir: str) -> list[Effect]:
    """Tux Paint stamps' own sound files ``<stamp>.ogg`` (not ``<stamp>_desc*.ogg``, spoken
    descriptions, nor localised names ``<stamp>_<lang>.ogg``), sorted by path.

    Label: the stamp name with '_'/'-' as spaces, trailing digits dropped, + " sound".
    """
    if not os.path.isdir(stamp_dir):
        raise FileNotFoundError(f"Tux Paint stamps not found at {stamp_dir}; install with: "
                                "apt-get update && apt-get install -y tuxpaint-stamps-default")
    effects = []
    for path in sorted(glob.glob(os.path.join(stamp_dir, "**", "*.ogg"), recursive=True)):
        rel = os.path.relpath(path, stamp_dir)
        stem = os.path.splitext(os.path.basename(path))[0]
        if rel.startswith(TUXPAINT_EXCLUDED) or LOCALISED.search(stem):
            continue
        name = re.sub(r"[\d\s]+$", "", re.sub(r"[_-]+", " ", stem)).strip().lower()
        effects.append(Effect(label=f"{name} sound", path=path))
    return effects


def load_effect(path: str) -> np.ndarray:
    """An .ogg file as 16 kHz mono float32 (channels averaged, resampled polyphase)."""
    import soundfile

    try:
        x, sr = soundfile.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise ValueError(f"cannot read sound effect {path}: {e}; reinstall with: "
                         "apt-get install --reinstall tuxpaint-stamps-default") from e
    from xmodal.audio import dsp as audio  # jax: imported only when building
    return audio.resample(x.mean(axis=1), sr, SAMPLE_RATE)


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random n-sample window of x, or x at a random offset in n zeros when shorter."""
    if len(x) >= n:
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]
    out = np.zeros(n, np.float32)
    start = int(rng.integers(0, n - len(x) + 1))
    out[start:start + len(x)] = x
    return out


def input_snr_db(mixture: np.ndarray, target: np.ndarray) -> float:
    """10 log10(|target|^2 / |mixture - target|^2): the target's SNR before separation."""
    t = target.astype(np.float64)
    rest = mixture.astype(np.float64) - t
    return float(10 * np.log10(np.sum(t ** 2) / max(np.sum(rest ** 2), 1e-20)))


def query(label: str) -> str:
    return f"separate the {label}"


def held_out(name: str) -> bool:
    return ins.seed_of(name) % TEST_MODULUS == 0


@dataclasses.dataclass
class LassMixConfig(tfds.core.BuilderConfig):
    train_font: str = ins.TIMGM6MB
    test_font: str = ins.FLUIDR3
    effects: bool = False
    num_train: int = 2000
    num_test: int = 400
    num_dev: int = 200
    instruments: tuple[str, ...] = ins.INSTRUMENT_NAMES


TINY = dict(num_train=24, num_test=12, num_dev=8)


class LassMix(Builder):
    """TFDS builder ``xmodal_lass_mix``."""

    name = "xmodal_lass_mix"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "2-3 source mixtures of GM instruments (+ Tux Paint effects).",
                     "1.1.0": "A dev split drawn like test (its font and held-out sources), "
                              "other seeds; train and test unchanged."}
    BUILDER_CONFIGS = [
        LassMixConfig(name="default", description="Train TimGM6mb, test FluidR3."),
        LassMixConfig(name="fluidr3_tiny", description="Tiny default.", **TINY),
        LassMixConfig(name="pip", test_font=ins.TIMGM6MB,
                      description="TimGM6mb only; test holds out instruments."),
        LassMixConfig(name="tiny", test_font=ins.TIMGM6MB, description="Tiny pip.", **TINY),
        LassMixConfig(name="tuxpaint", effects=True,
                      description="Default plus Tux Paint sound effects held out by file."),
        LassMixConfig(name="tuxpaint_tiny", effects=True, description="Tiny tuxpaint.", **TINY),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        samples = int(SECONDS * SAMPLE_RATE)
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "mixture": tfds.features.Tensor(shape=(samples,), dtype=np.float32),
                "target": tfds.features.Tensor(shape=(samples,), dtype=np.float32),
                "query": tfds.features.Text(),
                "target_label": tfds.features.Text(),
                "source_labels": tfds.features.Sequence(tfds.features.Text()),
                "snr_db": tfds.features.Scalar(dtype=np.float32),
                "font": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            license=("instrument audio follows its soundfont: TimGM6mb GPL-2.0, FluidR3 MIT; "
                     "Tux Paint stamps GPL-2.0"),
        )

    def pools(self) -> tuple[dict[str, dict], list[str]]:
        """Per split: the font, the instruments and the effects its mixtures draw from; and the
        effect files left out as silent."""
        config = self.builder_config
        same_font = config.train_font == config.test_font
        pools = {}
        for split, font in (("train", config.train_font), ("test", config.test_font)):
            names = [n for n in config.instruments
                     if not same_font or held_out(n) == (split == "test")]
            pools[split] = {"font": font, "instruments": names, "effects": []}
        pools["dev"] = pools["test"]   # drawn like test; its own seeds ('<config>/dev/<i>')
        silent = []
        if config.effects:
            for effect in list_effects(sources.resolve_file(TUXPAINT_DIR)):
                # a few stamps ship an all-zero .ogg (wombat, giraffe, ...)
                if ins.is_silent(load_effect(effect.path)):
                    silent.append(os.path.basename(effect.path))
                    continue
                split = "test" if held_out(os.path.basename(effect.path)) else "train"
                pools[split]["effects"].append(effect)
        return pools, silent

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager
        config = self.builder_config
        counts = {"train": config.num_train, "test": config.num_test, "dev": config.num_dev}
        pools, silent = self.pools()
        self.info.metadata["skipped_silent_effects"] = silent
        return {split: self._generate_examples(split, pool, counts[split])
                for split, pool in pools.items()}

    @staticmethod
    def _draw_source(label: str, effects: dict[str, list[str]], renderer: ins.FontRenderer,
                     rng: np.random.Generator, n: int) -> np.ndarray:
        """An audible n-sample source for ``label``. A silent draw (a window of an effect's
        trailing silence, a phrase on a font's missing samples) would make a target that
        cannot be separated, so it is redrawn from the same RNG, which keeps it deterministic."""
        for _ in range(MAX_DRAWS):
            if label in effects:
                path = effects[label][int(rng.integers(len(effects[label])))]
                track = fit_length(load_effect(path), n, rng)
            else:
                _, program, low, high = ins.instrument(label)
                track = renderer.render(program, ins.random_phrase(rng, low, high, SECONDS),
                                        SECONDS)
            if not ins.is_silent(track):
                return track
        raise ValueError(f"{MAX_DRAWS} draws of source {label!r} were all below "
                         f"{ins.SILENT_RMS_DB} dBFS; check its sound file or soundfont")

    def _generate_examples(self, split: str, pool: dict, count: int):
        renderer = ins.FontRenderer(pool["font"], SAMPLE_RATE)
        n = int(SECONDS * SAMPLE_RATE)
        effects: dict[str, list[str]] = {}  # label -> files (pig_golden, pig_golden2, ...)
        for effect in pool["effects"]:
            effects.setdefault(effect.label, []).append(effect.path)
        labels = list(pool["instruments"]) + sorted(effects)
        for index in range(count):
            key = f"{self.builder_config.name}/{split}/{index}"
            rng = np.random.default_rng(ins.seed_of(key))
            k = int(rng.integers(2, 4))
            chosen = [labels[i] for i in rng.choice(len(labels), size=k, replace=False)]
            tracks = []
            for label in chosen:
                track = self._draw_source(label, effects, renderer, rng, n)
                gain_db = SOURCE_DB + float(rng.uniform(-GAIN_DB, GAIN_DB))
                from xmodal.audio import dsp as audio  # jax: imported only when building
                tracks.append(np.asarray(audio.loudness_normalise(track, gain_db)))
            mixture = np.sum(tracks, axis=0)
            target = tracks[0]
            peak = float(np.abs(mixture).max())
            if peak > PEAK:
                mixture, target = mixture * (PEAK / peak), target * (PEAK / peak)
            yield key, {
                "mixture": mixture.astype(np.float32), "target": target.astype(np.float32),
                "query": query(chosen[0]), "target_label": chosen[0], "source_labels": chosen,
                "snr_db": input_snr_db(mixture, target), "font": pool["font"],
            }


_PIP = ("pretty-midi", "tinysoundfont", "soundfile", "scipy")
_MODULES = ("pretty_midi", "tinysoundfont", "soundfile", "scipy")
_HINT = "TimGM6mb ships in pretty-midi; install tinysoundfont with pip --no-deps"
for _config in LassMix.BUILDER_CONFIGS:
    _apt, _files = (), ()
    if _config.test_font == ins.FLUIDR3:
        _apt, _files = ("fluid-soundfont-gm",), (ins.FLUIDR3_FILE,)
    if _config.effects:
        _apt, _files = _apt + ("tuxpaint-stamps-default",), _files + (TUXPAINT_DIR,)
    sources.register(
        "lass_mix" if _config.name == "default" else f"lass_mix/{_config.name}",
        sources.DatasetEntry(LassMix, _config.name, _PIP, _MODULES, _HINT, apt=_apt,
                             files=_files))

CARD: dict = {
    "title": "LASS mixtures: language-queried separation of instruments and sound effects",
    "sources": (
        "instrument phrases rendered as in the instruments set (TimGM6mb from pip pretty-midi, "
        "FluidR3 from Debian fluid-soundfont-gm, rendered with pip tinysoundfont); sound effects "
        "from Debian tuxpaint-stamps-default (version from dpkg), read with pip soundfile"),
    "licence": "TimGM6mb GPL-2.0; FluidR3 MIT; Tux Paint stamps GPL-2.0. Mixtures follow these.",
    "splits": (
        "default/tuxpaint: train mixtures are rendered with TimGM6mb, test mixtures with FluidR3, "
        "so test sources are different recordings (and freshly drawn phrases) of the same "
        "instruments. Pip-only (pip/tiny): one font exists, so the honest hold-out is by "
        "instrument: instruments with sha1(name) % 5 == 0 occur only in test and their queries "
        "are never seen in training. Tux Paint effects are held out by file (sha1(file name) % 5 "
        "== 0 -> test) in every config. The dev split (200 mixtures; 8 in the tiny configs) is "
        "drawn like test (same font, same held-out instruments and effects) from other seeds: "
        "settings are chosen on it. Examples are seeded by sha1('<config>/<split>/<index>')."),
    "languages": "en (queries)",
    "skipped": (
        "Tux Paint .ogg files under symbols/ (spoken letters and digits) and hobbies/music/ "
        "(instrument recordings that would collide with instrument names) are not used, nor "
        "spoken descriptions (*_desc*.ogg) and localised names (*_<lang>.ogg). Effect files "
        f"that are silent throughout (below {ins.SILENT_RMS_DB} dBFS RMS; 4 of 100 in Debian's "
        "tuxpaint-stamps-default 2022.06.04: nandou, iguana, giraffe, wombat) are left out "
        "and listed in the dataset info metadata ('skipped_silent_effects'). An unreadable "
        "effect file stops the build with its path. A source draw below "
        f"{ins.SILENT_RMS_DB} dBFS RMS is redrawn (same RNG, so still deterministic); ten "
        "silent draws in a row stop the build. Nothing else is dropped."),
    "fields": {
        "mixture": f"float32[{int(SECONDS * SAMPLE_RATE)}], {SAMPLE_RATE} Hz mono: sum of sources",
        "target": "the first source as it is in the mixture (same scaling)",
        "query": "'separate the <target label>'",
        "target_label": "instrument name, or '<stamp name> sound' for an effect",
        "source_labels": "labels of all k = 2-3 sources, target first",
        "snr_db": "10 log10(|target|^2 / |mixture - target|^2), the input SNR",
        "font": "soundfont of the instrument sources",
    },
}
