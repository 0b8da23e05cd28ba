"""A small neural vocoder: normalised log-mel → STFT magnitude and phase → inverse STFT
(the iSTFT-head idea of Vocos, Siuzdak 2023, "Vocos: Closing the gap between time-domain and
Fourier-based neural vocoders"), shrunk to a 1-D conv net that trains in minutes on a CPU:

    h = conv1d stack over frames (dilated residual blocks) of mel [B, F, M]
    log|S| = Dense(h),  (a, b) = Dense(h),  phase = (a + i b) / |a + i b|
    S = exp(log|S|) phase  →  x = iSTFT(S)

``__call__(mel) -> complex STFT [B, F, n_fft // 2 + 1]``; the waveform is
``MelConfig.istft(MelConfig.pad_frames(S), length)``, done by the caller so the model holds no
signal-length state. Trained by ``xmodal.projects.flowsep.vocoder_loss`` with a multi-resolution STFT loss.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.precision import dot_general_for


class ConvBlock1D(nn.Module):
    width: int
    dilation: int
    kernel: int = 5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype, name="ln")(x)
        h = nn.Conv(self.width, (self.kernel,), kernel_dilation=(self.dilation,),
                    padding="SAME", name="conv", **kw)(h.astype(self.dtype))
        h = nn.Dense(2 * self.width, name="fc1", dot_general=dot_general_for(self.dtype),
                     **kw)(nn.gelu(h))
        h = nn.Dense(self.width, name="fc2", kernel_init=nn.initializers.zeros,
                     dot_general=dot_general_for(self.dtype), **kw)(nn.gelu(h))
        return x + h


@MODELS.register("mel_vocoder")
class MelVocoder(nn.Module):
    n_fft: int = 1024
    width: int = 256
    depth: int = 4
    kernel: int = 5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, mel):
        if mel.ndim != 3:
            raise ValueError(f"MelVocoder expects mel [batch, frames, mels], got {mel.shape}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bins = self.n_fft // 2 + 1
        x = nn.Conv(self.width, (self.kernel,), padding="SAME", name="stem", **kw)(
            mel.astype(self.dtype))
        for i in range(self.depth):
            x = ConvBlock1D(self.width, 2 ** (i % 3), self.kernel, name=f"block_{i}", **kw)(x)
        x = nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype, name="ln_out")(x)
        out = nn.Dense(3 * bins, name="head", dot_general=dot_general_for(self.dtype),
                       **kw)(x.astype(self.dtype)).astype(jnp.float32)
        log_mag, re, im = jnp.split(out, 3, axis=-1)
        mag = jnp.exp(jnp.clip(log_mag, -20.0, 5.0))
        norm = jnp.sqrt(re ** 2 + im ** 2 + 1e-8)
        return mag * (re / norm) + 1j * mag * (im / norm)
