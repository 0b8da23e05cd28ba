"""The audio-text transform of CLAP-style training: waveform, caption tokens, label.

The waveform stays a waveform: the audio tower computes its log-mel spectrogram in JAX
(``xmodal.nn.audio_encoder``), so one trained model embeds a dataset clip and a separated
estimate the same way. The waveform goes in the batch's ``audio`` key, the name of the two-tower
model's audio tower (``towers.audio``).
"""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import TRANSFORMS


class AudioTextTransform(grain.transforms.Map):
    """Record -> {"audio": float32 [T] waveform, "text": int32 [max_text_len], "label": int32}.

    A clip longer than ``num_samples`` is cut to its start, a shorter one zero-padded at the
    end; ``num_samples=0`` keeps the stored length (it must then be the same for all records).
    ``label_field=""``: the records have no label (Tux Paint effects); ``label`` is -1 and
    ``label_text`` (with a ``label_prompt``) is the caption itself, so such a source batches
    with a labelled one and the label-caption swap leaves its caption as it is.
    """

    def __init__(self, max_text_len: int, audio_field: str, text_field: str, label_field: str,
                 num_samples: int, label_prompt: str = "", label_names: tuple = ()):
        if not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"audio_text num_samples must be an int >= 0, got {num_samples!r}")
        if label_prompt and not label_names:
            raise ValueError("audio_text label_prompt needs label_names (the label field's "
                             "class names, in order)")
        self.tokenizer = ByteTokenizer(max_text_len)
        self.audio_field, self.text_field = audio_field, text_field
        self.label_field, self.num_samples = label_field, num_samples
        self.label_prompt, self.label_names = label_prompt, tuple(label_names)
        self.augment = None

    def __repr__(self) -> str:
        return (f"AudioTextTransform(max_text_len={self.tokenizer.max_len}, "
                f"audio_field={self.audio_field!r}, text_field={self.text_field!r}, "
                f"label_field={self.label_field!r}, num_samples={self.num_samples})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        for field in filter(None, (self.audio_field, self.text_field, self.label_field)):
            if field not in record:
                raise KeyError(f"audio_text: record has no field {field!r}; fields: "
                               f"{', '.join(sorted(record))}")
        wav = np.asarray(record[self.audio_field], dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"audio_text expects mono [T] audio in {self.audio_field!r}, got "
                             f"shape {wav.shape}")
        if self.num_samples:
            wav = fit(wav, self.num_samples)
        label = int(record[self.label_field]) if self.label_field else -1
        out = {"audio": wav, "text": self.tokenizer.encode(record[self.text_field]),
               "label": np.int32(label)}
        if self.label_prompt and not self.label_field:
            out["label_text"] = out["text"]
        elif self.label_prompt:
            if not 0 <= label < len(self.label_names):
                raise ValueError(f"audio_text: label {label} outside the {len(self.label_names)} "
                                 "label_names")
            out["label_text"] = self.tokenizer.encode(label_caption(self.label_prompt,
                                                                    self.label_names[label]))
        return out


def label_caption(prompt: str, name: str) -> str:
    """``prompt`` with ``{label}`` and ``{article}`` ("a"/"an") filled: "an oboe playing ..."."""
    article = "an" if name[:1].lower() in "aeiou" and name else "a"
    return prompt.format(label=name, article=article)


def fit(wav: np.ndarray, n: int) -> np.ndarray:
    """The first n samples of ``wav``, zero-padded at the end if it is shorter."""
    if len(wav) >= n:
        return wav[:n]
    return np.concatenate([wav, np.zeros(n - len(wav), np.float32)])


class AudioTextAugment(grain.transforms.RandomMap):
    """Training-only: multiplies the waveform by a gain uniform in ``[-db, +db]`` dB (the tower
    normalises level anyway, but separated estimates come at any level), and with probability
    ``label_prob`` replaces the caption by the label caption (``label_text``), so the text
    tower also learns the label-level prompts a scorer uses ("a violin playing a short
    phrase" for any violin clip, not only for phrases)."""

    def __init__(self, db: float = 0.0, label_prob: float = 0.0, field: str = "audio"):
        if db < 0 or not 0 <= label_prob <= 1:
            raise ValueError(f"AudioTextAugment needs db >= 0 and 0 <= label_prob <= 1, got "
                             f"db={db}, label_prob={label_prob}")
        self.db, self.label_prob, self.field = float(db), float(label_prob), field

    def random_map(self, element: dict, rng: np.random.Generator) -> dict:
        gain = np.float32(10 ** (rng.uniform(-self.db, self.db) / 20))
        out = dict(element, **{self.field: element[self.field] * gain})
        if self.label_prob and "label_text" in element and rng.uniform() < self.label_prob:
            out["text"] = element["label_text"]
        return out


@TRANSFORMS.register("audio_text")
def audio_text(max_text_len: int = 48, audio_field: str = "audio", text_field: str = "caption",
               label_field: str = "instrument", num_samples: int = 0,
               gain_db: float = 0.0, label_prompt: str = "", label_names: tuple = (),
               label_prob: float = 0.0) -> AudioTextTransform:
    """{"audio": float32 [T] waveform, "text": byte tokens of ``text_field``, "label":
    ``record[label_field]``, or -1 with ``label_field=""``} (defaults fit the ``instruments``
    set), plus "label_text" (tokens of ``label_prompt`` filled with ``label_names[label]``)
    when ``label_prompt`` is set.
    Training augmentation: ``gain_db`` > 0, a random gain in [-gain_db, gain_db] dB;
    ``label_prob`` > 0, the caption swapped for the label caption with that probability."""
    transform = AudioTextTransform(max_text_len, audio_field, text_field, label_field,
                                   num_samples, label_prompt, label_names)
    if label_prob and not label_prompt:
        raise ValueError("audio_text label_prob > 0 needs a label_prompt")
    augment = gain_db > 0 or label_prob > 0
    transform.augment = AudioTextAugment(gain_db, label_prob) if augment else None
    return transform
