"""Reading a user's audio file for a trained model: mono, at the model's sample rate."""
from __future__ import annotations

import os

import numpy as np

from xmodal.audio import dsp
from xmodal.core.registry import CommandError

MIN_SECONDS = 0.05


def read_audio(path: str, sample_rate: int | None) -> tuple[np.ndarray, int]:
    """(mono float32 waveform at ``sample_rate``, the file's own rate), read with soundfile
    (wav, flac, ogg, ...): channels averaged, another rate resampled (polyphase; ``None``
    keeps the file's own rate, for reading before the model's rate is known). A missing,
    unreadable, empty, non-finite or too short file is a CommandError naming it."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise CommandError(f"input file {path!r} does not exist")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise CommandError(f"cannot read {path!r} as audio ({e}); give a wav/flac/ogg file")
    if data.size == 0 or data.shape[0] == 0:
        raise CommandError(f"{path!r} holds no samples (empty audio)")
    if not np.all(np.isfinite(data)):
        raise CommandError(f"{path!r} holds NaN or infinite samples")
    if data.shape[0] < MIN_SECONDS * rate:
        raise CommandError(f"{path!r} is {data.shape[0] / rate * 1000:.1f} ms long; need at least "
                           f"{MIN_SECONDS * 1000:.0f} ms")
    mono = data.mean(axis=1)
    if sample_rate is None:
        return mono, int(rate)
    return dsp.resample(mono, int(rate), int(sample_rate)), int(rate)
