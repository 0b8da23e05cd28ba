"""A lecture clip for the pretext task and for segmentation: the view, the narration, the raw
audio features, and where the clip sits in its lecture.

Record (``fillets``) -> {"image": uint8 [S, S, 3], "text": byte tokens of the narration (the
transcript of what is said), "audio_features": float32 [2 * n_mels] (the mean and standard
deviation over time of the recording's log-mel: the raw audio row of the table), "lecture":
int32 (a stable id of the lecture's name), "segment": int32 (its topic, for scoring only),
"position": int32 (its index in the lecture)}.

The clip objective reads only image and text: the segment never reaches training.
"""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

import grain
import numpy as np

from xmodal.audio import dsp
from xmodal.core.registry import TRANSFORMS
from xmodal.data.tokenizer import ByteTokenizer

FIELDS = ("image", "audio", "lecture", "segment", "position")


def lecture_id(name: str | bytes) -> int:
    """A lecture's name as a non-negative int32 (the first 31 bits of its sha1)."""
    name = name if isinstance(name, bytes) else name.encode()
    return int(hashlib.sha1(name).hexdigest()[:8], 16) & 0x7FFFFFFF


def log_mel_stats(wav: np.ndarray, sample_rate: int, n_fft: int, hop: int,
                  n_mels: int) -> np.ndarray:
    """float32 [2 * n_mels]: per band, the mean and the standard deviation over time of
    log(mel power + 1e-6) (Hann frames, no centring; a clip shorter than one frame is padded).
    NumPy, not ``dsp.log_mel``: JAX per record in the input pipeline would compile a program
    for every clip length."""
    wav = np.asarray(wav, np.float64)
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = np.log(power @ dsp.mel_filterbank(sample_rate, n_fft, n_mels).T.astype(np.float64)
                 + 1e-6)
    return np.concatenate([mel.mean(0), mel.std(0)]).astype(np.float32)


class LectureClip(grain.transforms.Map):
    def __init__(self, max_text_len: int, text_field: str, sample_rate: int, n_fft: int,
                 hop: int, n_mels: int):
        self.tokenizer = ByteTokenizer(max_text_len)
        self.text_field = text_field
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels

    def __repr__(self) -> str:
        return (f"LectureClip(max_text_len={self.tokenizer.max_len}, "
                f"text_field={self.text_field!r}, n_mels={self.n_mels})")

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        missing = [f for f in FIELDS + (self.text_field,) if f not in record]
        if missing:
            raise KeyError(f"lecture_clip: record has no field(s) {', '.join(missing)}; fields: "
                           f"{', '.join(sorted(record))} (the fillets set has them)")
        return {"image": np.asarray(record["image"], np.uint8),
                "text": self.tokenizer.encode(record[self.text_field]),
                "audio_features": log_mel_stats(record["audio"], self.sample_rate, self.n_fft,
                                                self.hop, self.n_mels),
                "lecture": np.int32(lecture_id(record["lecture"])),
                "segment": np.int32(record["segment"]),
                "position": np.int32(record["position"])}


@TRANSFORMS.register("lecture_clip")
def lecture_clip(max_text_len: int = 64, text_field: str = "transcript",
                 sample_rate: int = 8000, n_fft: int = 512, hop: int = 256,
                 n_mels: int = 40) -> LectureClip:
    """The clip of ``fillets`` (module docstring); ``text_field`` "transcript" (what is said,
    Dutch) or "text" (its English source)."""
    return LectureClip(max_text_len, text_field, sample_rate, n_fft, hop, n_mels)
