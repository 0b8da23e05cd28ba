"""A trained audio-text model (``specs/clap.py``) as a scorer for separated audio.

    scorer = load_clap("/work/runs/clap")
    za = scorer.embed_audio(wavs)            # [B, D], unit norm; wavs at scorer.sample_rate
    zt = scorer.embed_text(["a violin playing a short phrase"])
    clap_score(scorer, wavs, texts)           # [B] cosine(audio_i, text_i)

CLAPScore (FlowSep, Yuan et al. 2024, after Xiao et al.'s CLAPScore for LASS) is the cosine
between the audio embedding of a separated estimate and the text embedding of its query; with
our own small model instead of LAION-CLAP. The Fréchet distance of the same audio embeddings
(``separation_metrics.frechet_distance``) stands in for FAD.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.core.registry import SpecError
from xmodal.core.stages import load_stage, read_spec
from xmodal.data.tokenizer import ByteTokenizer


class AudioTextScorer:
    """Embeds waveforms and texts with a two-tower audio-text model, in fixed-size chunks
    (one compiled shape per clip length and chunk size)."""

    def __init__(self, model, params, tokenizer: ByteTokenizer, sample_rate: int,
                 batch_size: int = 32):
        self.model, self.params, self.tokenizer = model, params, tokenizer
        self.sample_rate, self.batch_size = int(sample_rate), int(batch_size)
        self._audio = jax.jit(lambda p, x: model.apply({"params": p}, x, "audio",
                                                       method="encode"))
        self._text = jax.jit(lambda p, t: model.apply({"params": p}, t, "text", method="encode"))

    def _chunked(self, fn, x: np.ndarray) -> np.ndarray:
        # Fewer inputs than a batch run in the next power of two, not padded to the whole batch
        # (8 clips would pay for 32); still few compiled shapes: one per power of two used.
        bs, out = min(self.batch_size, 1 << max(len(x) - 1, 0).bit_length()), []
        for i in range(0, len(x), bs):
            chunk = x[i:i + bs]
            pad = bs - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            out.append(np.asarray(fn(self.params, jnp.asarray(chunk)))[:bs - pad])
        return np.concatenate(out)

    def embed_audio(self, wav) -> np.ndarray:
        """float32 ``[B, T]`` (or ``[T]``) mono waveforms at ``sample_rate`` -> ``[B, D]``."""
        x = np.asarray(wav, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"embed_audio takes mono waveforms [B, T] at {self.sample_rate} Hz, "
                             f"got shape {np.shape(wav)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("embed_audio: waveform holds NaN/Inf samples")
        return self._chunked(self._audio, x)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> ``[B, D]`` (byte tokens, truncated to the model's max length)."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings, not one string")
        if len(texts) == 0:
            raise ValueError("embed_text needs at least one text")
        return self._chunked(self._text, self.tokenizer.encode_batch(list(texts)))


def load_clap(workdir: str, batch_size: int = 32) -> AudioTextScorer:
    """The trained audio-text stage in ``workdir`` (``xmodal.core.stages``: newest checkpoint,
    EMA policy), in float32."""
    model_spec = read_spec(workdir)["model"]
    towers = model_spec.get("towers") or {}
    if model_spec.get("name") != "two_tower" or set(towers) != {"audio", "text"}:
        raise SpecError(f"{workdir}: model {model_spec.get('name')!r} with towers "
                        f"{sorted(towers)} is not an audio-text two_tower model (towers audio, "
                        "text)")
    audio_spec = towers["audio"]
    stage = load_stage(workdir)
    tokenizer = ByteTokenizer(int(stage.spec["data"]["transform"].get("max_text_len", 48)))
    sample_rate = int(audio_spec.get("sample_rate", 16000))
    return AudioTextScorer(stage.model, jax.tree.map(jnp.asarray, stage.params["model"]),
                           tokenizer, sample_rate, batch_size)


def clap_score(scorer: AudioTextScorer, wavs, texts: Sequence[str]) -> np.ndarray:
    """``[B]`` cosine(embed_audio(wav_i), embed_text(text_i)); both embeddings are unit norm."""
    za = scorer.embed_audio(wavs)
    if len(texts) != len(za):
        raise ValueError(f"clap_score: {len(za)} waveforms but {len(texts)} texts")
    zt = scorer.embed_text(texts)
    return np.sum(za * zt, axis=1)
