"""Real speech with exact transcripts: the Asterisk PBX core prompts in English, French, Spanish.

Each prompt ("Please enter your password followed by the pound key.") is a studio recording by
one professional voice per language (en: Allison, US; fr: June, Canada; es: Allison, Mexico),
with the same prompt ids across languages, so the set is parallel by prompt id.

The recordings are 8 kHz 16-bit PCM WAV (telephone band: nothing above 4 kHz). They are stored
at 16 kHz, resampled polyphase (``audio.resample``, scipy) so they line up with the other audio
sets; the upsampling adds no content above 4 kHz.
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import hashlib
import os
import wave
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

SAMPLE_RATE = 16000
SOURCE_RATE = 8000
TEST_MODULUS = 10  # test = sha1(prompt id) % 10 == 0
LANGUAGES = ("en", "fr", "es")
VOICES = {"en": "en_US_f_Allison", "fr": "fr_CA_f_June", "es": "es_MX_f_Allison"}
VOICE_DIR = "/usr/share/asterisk/sounds/{voice}"
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"

SKIP_NOT_SPEECH = "transcript in [brackets]: a tone or beep, not speech"
SKIP_NO_RECORDING = "transcript without a .wav recording"
SKIP_EMPTY = "empty transcript"


@dataclasses.dataclass(frozen=True)
class Prompt:
    prompt_id: str       # e.g. "agent-pass" or "digits/7"
    language: str
    transcript: str
    path: str


def read_transcripts(path: str) -> dict[str, str]:
    """``core-sounds-<lang>.txt.gz``: lines ``<prompt id>: <text>``; ';' starts a comment."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Asterisk transcripts {path} not found; install with: "
                                "apt-get update && apt-get install -y asterisk-core-sounds-en "
                                "asterisk-core-sounds-en-wav (and -fr, -es)")
    out = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="strict") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            key, text = line.split(":", 1)
            out[key.strip()] = text.strip()
    return out


def list_prompts(languages=LANGUAGES) -> tuple[list[Prompt], dict[str, int]]:
    """Every transcribed speech prompt with a recording, and skip reason -> count."""
    prompts, skipped = [], collections.Counter()
    for lang in languages:
        transcripts = read_transcripts(sources.resolve_file(TRANSCRIPTS.format(lang=lang)))
        voice_dir = sources.resolve_file(VOICE_DIR.format(voice=VOICES[lang]))
        for prompt_id, text in sorted(transcripts.items()):
            path = os.path.join(voice_dir, prompt_id + ".wav")
            if not text:
                skipped[SKIP_EMPTY] += 1
            elif text.startswith("["):
                skipped[SKIP_NOT_SPEECH] += 1
            elif not os.path.isfile(path):
                skipped[SKIP_NO_RECORDING] += 1
            else:
                prompts.append(Prompt(prompt_id, lang, text, path))
    return prompts, dict(skipped)


def read_wav(path: str) -> np.ndarray:
    """8 kHz mono 16-bit PCM WAV -> float32 in [-1, 1). Any other format stops with the path."""
    try:
        with wave.open(path, "rb") as w:
            params = w.getparams()
            data = w.readframes(params.nframes)
    except (wave.Error, EOFError) as e:
        raise ValueError(f"cannot read Asterisk prompt {path}: {e}") from e
    if (params.nchannels, params.sampwidth, params.framerate) != (1, 2, SOURCE_RATE):
        raise ValueError(f"Asterisk prompt {path} is {params.nchannels} ch, "
                         f"{8 * params.sampwidth} bit, {params.framerate} Hz; expected mono "
                         f"16 bit {SOURCE_RATE} Hz (the *-wav packages)")
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def split_of(prompt_id: str) -> str:
    """By prompt id, so a prompt is in the same split in every language."""
    digest = int(hashlib.sha1(prompt_id.encode()).hexdigest()[:16], 16)
    return "test" if digest % TEST_MODULUS == 0 else "train"


def select_prompt_ids(prompts: list[Prompt], max_prompts: int | None) -> set[str]:
    """The first ``max_prompts`` ids present in every language, in sha1 order (all if None)."""
    ids = sorted({p.prompt_id for p in prompts})
    if max_prompts is None:
        return set(ids)
    langs = collections.defaultdict(set)
    for p in prompts:
        langs[p.prompt_id].add(p.language)
    everywhere = [i for i in ids if len(langs[i]) == len(LANGUAGES)]
    by_split = {"train": [], "test": []}
    for i in sorted(everywhere, key=lambda i: hashlib.sha1(i.encode()).hexdigest()):
        by_split[split_of(i)].append(i)
    # keep both splits non-empty in a small subset: a tenth of it from test
    n_test = max(1, max_prompts // 10)
    return set(by_split["test"][:n_test] + by_split["train"][:max_prompts - n_test])


@dataclasses.dataclass
class SpeechConfig(tfds.core.BuilderConfig):
    max_prompts: int | None = None


class Speech(Builder):
    """TFDS builder ``xmodal_speech``."""

    name = "xmodal_speech"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Asterisk core prompts en/fr/es, 8 kHz resampled to 16 kHz."}
    BUILDER_CONFIGS = [
        SpeechConfig(name="default", description="All transcribed prompts, en/fr/es."),
        SpeechConfig(name="tiny", max_prompts=10,
                     description="10 prompts present in all three languages."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "audio": tfds.features.Tensor(shape=(None,), dtype=np.float32),
                "transcript": tfds.features.Text(),
                "language": tfds.features.ClassLabel(names=list(LANGUAGES)),
                "prompt_id": tfds.features.Text(),
                "voice": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://www.asterisk.org",
            license="CC-BY-SA-3.0 (Digium / Sangoma Asterisk core sounds)",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager
        prompts, skipped = list_prompts()
        self.info.metadata["skipped"] = skipped
        keep = select_prompt_ids(prompts, self.builder_config.max_prompts)
        by_split: dict[str, list[Prompt]] = {"train": [], "test": []}
        for p in prompts:
            if p.prompt_id in keep:
                by_split[split_of(p.prompt_id)].append(p)
        return {split: self._generate_examples(ps) for split, ps in by_split.items()}

    def _generate_examples(self, prompts: list[Prompt]):
        from xmodal.audio import dsp as audio  # jax: imported only when building
        for p in prompts:
            yield f"{p.language}/{p.prompt_id}", {
                "audio": audio.resample(read_wav(p.path), SOURCE_RATE, SAMPLE_RATE),
                "transcript": p.transcript, "language": LANGUAGES.index(p.language),
                "prompt_id": p.prompt_id, "voice": VOICES[p.language],
            }


_APT = tuple(f"asterisk-core-sounds-{lang}{suffix}"
             for lang in LANGUAGES for suffix in ("", "-wav"))
_FILES = tuple(TRANSCRIPTS.format(lang=lang) for lang in LANGUAGES) + tuple(
    VOICE_DIR.format(voice=VOICES[lang]) for lang in LANGUAGES)
for _config in Speech.BUILDER_CONFIGS:
    sources.register(
        "speech" if _config.name == "default" else f"speech/{_config.name}",
        sources.DatasetEntry(Speech, _config.name, ("scipy",), ("scipy",),
                             "recordings come from Debian's Asterisk sound packages",
                             apt=_APT, files=_FILES))

CARD: dict = {
    "title": "Speech: Asterisk core prompts with transcripts (en, fr, es)",
    "sources": (
        "Debian asterisk-core-sounds-{en,fr,es} (transcripts core-sounds-<lang>.txt.gz) and "
        "asterisk-core-sounds-{en,fr,es}-wav (recordings); versions from dpkg"),
    "licence": "CC-BY-SA-3.0",
    "splits": (
        "Held out by prompt id: test = sha1(prompt id) % 10 == 0, so a prompt is in the same "
        "split in all three languages and no test sentence (in any language) is seen in "
        "training. One voice per language, so there is no hold-out by speaker."),
    "languages": "en (US), fr (Canada), es (Mexico)",
    "skipped": (
        "Counted per reason in the dataset info metadata ('skipped'): transcripts in [brackets] "
        "(tones, beeps), transcripts whose .wav is not installed, empty transcripts. A .wav "
        "that cannot be read or is not 8 kHz mono 16-bit stops the build with its path."),
    "fields": {
        "audio": "float32[n], 16 kHz mono, resampled from the 8 kHz originals (scipy "
                 "resample_poly, up 2); telephone band, no content above 4 kHz",
        "transcript": "the prompt's text as in core-sounds-<lang>.txt",
        "language": "class label: en, fr, es",
        "prompt_id": "Asterisk sound name (e.g. 'agent-pass', 'digits/7'), shared across "
                     "languages",
        "voice": "Asterisk voice directory (en_US_f_Allison, fr_CA_f_June, es_MX_f_Allison)",
    },
}
