"""Audio tower: a small 2-D CNN over the log-mel spectrogram (the CNN family of PANNs: Kong et
al., "PANNs: Large-Scale Pretrained Audio Neural Networks", 2020; used as CLAP's audio
encoder by Elizalde et al., "CLAP: Learning Audio Concepts from Natural Language Supervision",
2023).

Input: a waveform ``[B, T]`` at ``sample_rate`` (the log-mel is computed here, in JAX, with
``xmodal.audio.dsp.log_mel``) or a log-mel ``[B, frames, n_mels]`` already computed. Each clip's
log-mel is standardised over all its bins, ``(L - mean) / (std + 0.1)``, so the tower does not
see the clip's overall level (a separated estimate can come at any gain). Then ``len(channels)``
blocks of [conv3x3 → GroupNorm → GELU] × 2 and a 2x2 average pool; the frequency axis is averaged
and time is pooled by mean + max (PANNs), then a Dense to ``width``. With ``pool="none"`` the
time axis is kept: ``[B, frames / 2^len(channels), width]``, one token per pooled frame, the
sequence a captioner's decoder attends to (same parameters).

Convolutions and global pooling accept any clip length, so the same weights embed the 2 s
training clips and 4 s separated mixtures.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.precision import dot_general_for

POOLS = ("meanmax", "none")


def standardise(feats: jax.Array, eps: float = 0.1, flat: float = 1e-3) -> jax.Array:
    """(L − mean) / (std + eps) over each clip's frames and bins; eps keeps silence finite.

    A clip whose log-mel is flat (std < ``flat``: silence, all bins at the floor) becomes
    exactly 0: else float rounding of its mean leaves ~1e-6 residuals that the GroupNorms
    downstream scale up to unit size, and the embedding of silence would be rounding noise."""
    mean = jnp.mean(feats, axis=(-2, -1), keepdims=True)
    std = jnp.std(feats, axis=(-2, -1), keepdims=True)
    return jnp.where(std > flat, (feats - mean) / (std + eps), 0.0)


@MODELS.register("audio_encoder")
class AudioEncoder(nn.Module):
    """``[B, T]`` waveform or ``[B, frames, n_mels]`` log-mel -> ``[B, width]`` (``pool``
"meanmax") or ``[B, frames', width]`` (``pool="none"``)."""
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    channels: tuple = (32, 64, 128, 256)
    width: int = 256
    pool: str = "meanmax"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def features(self, x: jax.Array) -> jax.Array:
        """Waveform -> standardised log-mel ``[B, frames, n_mels]`` (f32)."""
        from xmodal.audio import dsp as audio

        x = jnp.asarray(x)
        if x.ndim == 2:
            if x.shape[-1] <= self.n_fft // 2:
                raise ValueError(f"audio_encoder: clips of {x.shape[-1]} samples are shorter "
                                 f"than n_fft / 2 = {self.n_fft // 2}")
            feats = audio.log_mel(x.astype(jnp.float32), self.sample_rate, n_fft=self.n_fft,
                                  hop=self.hop, n_mels=self.n_mels, floor=1e-8)
        elif x.ndim == 3:
            if x.shape[-1] != self.n_mels:
                raise ValueError(f"audio_encoder: log-mel input has {x.shape[-1]} mel bins, the "
                                 f"model expects n_mels = {self.n_mels}")
            feats = x.astype(jnp.float32)
        else:
            raise ValueError(f"audio_encoder takes [B, T] waveforms or [B, frames, n_mels] "
                             f"log-mels, got shape {x.shape}")
        return standardise(feats)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train  # no dropout or batch statistics
        if self.pool not in POOLS:
            raise ValueError(f"audio_encoder pool={self.pool!r} is not one of {', '.join(POOLS)}")
        if not self.channels:
            raise ValueError("audio_encoder needs at least one conv block (channels)")
        h = self.features(x)[..., None].astype(self.dtype)      # [B, frames, mels, 1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, c in enumerate(self.channels):
            for j in range(2):
                h = nn.Conv(c, (3, 3), padding="SAME", use_bias=False, name=f"conv{i}_{j}",
                            **kw)(h)
                h = nn.GroupNorm(num_groups=min(8, c), name=f"norm{i}_{j}", **kw)(h)
                h = nn.gelu(h)
            if h.shape[1] >= 2 and h.shape[2] >= 2:
                h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        h = jnp.mean(h, axis=2)                                   # [B, frames', C]
        if self.pool == "meanmax":
            h = jnp.mean(h, axis=1) + jnp.max(h, axis=1)
        return nn.Dense(self.width, name="proj", dot_general=dot_general_for(self.dtype),
                        **kw)(h)
