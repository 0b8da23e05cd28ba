"""The language-queried separation transform (records of ``lass_mix``)."""
from __future__ import annotations

from typing import Any, Mapping

import grain
import numpy as np

from xmodal.audio import dsp as audio
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import TRANSFORMS


class SeparationTransform(grain.transforms.Map):
    """Record → {"mixture": float32 [T], "target": float32 [T], "query": int32 [max_text_len]}.

    The waveforms are resampled from ``source_rate`` to ``sample_rate`` (polyphase, on the host)
    and cropped to ``length`` samples from ``offset`` seconds (0 = keep all), so the result is a
    deterministic function of the record. The query string itself is not kept (strings do not
    batch); ``tokenizer`` turns query strings into the same tokens for evaluators and commands.
    """

    def __init__(self, sample_rate: int, source_rate: int, length: int, offset: float,
                 max_text_len: int, query_field: str):
        if sample_rate <= 0 or source_rate <= 0:
            raise ValueError(f"sample rates must be positive, got sample_rate={sample_rate}, "
                             f"source_rate={source_rate}")
        if length < 0 or offset < 0:
            raise ValueError(f"length ({length}) and offset ({offset}) must be >= 0")
        self.sample_rate, self.source_rate = sample_rate, source_rate
        self.length, self.offset = length, offset
        self.query_field = query_field
        self.tokenizer = ByteTokenizer(max_text_len)

    def __repr__(self) -> str:
        return (f"SeparationTransform(sample_rate={self.sample_rate}, length={self.length}, "
                f"offset={self.offset}, max_text_len={self.tokenizer.max_len})")

    def wave(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32).reshape(-1)
        start = int(round(self.offset * self.sample_rate))
        if self.length:
            x = audio.resample_span(x, self.source_rate, self.sample_rate, start, self.length)
            if len(x) < self.length:
                raise ValueError(f"record has {len(x)} samples after offset {self.offset} s at "
                                 f"{self.sample_rate} Hz; need length={self.length}")
            return x
        return audio.resample(x, self.source_rate, self.sample_rate)[start:]

    def map(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        for field in ("mixture", "target", self.query_field):
            if field not in record:
                raise KeyError(f"SeparationTransform: record has no field {field!r}; fields: "
                               f"{', '.join(sorted(record))}")
        return {"mixture": self.wave(record["mixture"]),
                "target": self.wave(record["target"]),
                "query": self.tokenizer.encode(record[self.query_field])}


@TRANSFORMS.register("separation")
def separation(sample_rate: int = 16000, source_rate: int = 16000, length: int = 0,
               offset: float = 0.0, max_text_len: int = 48,
               query_field: str = "query") -> SeparationTransform:
    """Mixture and target waveforms and the query's byte tokens; see ``SeparationTransform``."""
    return SeparationTransform(sample_rate, source_rate, length, offset, max_text_len,
                               query_field)
