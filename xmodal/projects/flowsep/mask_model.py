"""Discriminative text-queried separator: a sigmoid mask on the mixture's STFT, conditioned on
the query (the LASS-Net family: Liu et al., "Separate What You Describe: Language-Queried Audio
Source Separation", Interspeech 2022 — the approach FlowSep improves on).

    X = STFT(mixture);  F = standardised log |X|²            [B, frames, bins]
    q = text tower(query tokens)                               [B, text width]
    h = Dense(F);  for each block i (dilation 2^i):
        h = h + W2 GELU(DilatedConv1D_k( FiLM(LN(h); q) ))      FiLM(x; q) = x (1 + γ(q)) + β(q)
    M = sigmoid(Dense(LN(h)))                                  [B, frames, bins]
    ŝ = iSTFT(M ⊙ X)                                           (the mixture's phase)

FiLM: Perez et al., "FiLM: Visual Reasoning with a General Conditioning Layer", 2018. The time
axis is modelled by dilated 1-D convolutions over frames with the frequency bins as channels
(a TCN, as in Conv-TasNet's separator; Luo & Mesgarani 2019), which is much cheaper on a CPU
than a 2-D U-Net over (frames, bins) like LASS-Net's ResUNet.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.audio import dsp as audio
from xmodal.core.registry import MODELS
from xmodal.nn.layers import LayerNorm
from xmodal.nn.precision import dot_general_for
from xmodal.nn.two_tower import build_tower


class FiLMBlock(nn.Module):
    """Residual block: h + W2 GELU(conv_k,d(FiLM(LN(h); q)))."""
    width: int
    kernel: int
    dilation: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array, q: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # γ, β start at 0 so every block starts unconditioned (FiLM = identity).
        film = nn.Dense(2 * self.width, kernel_init=nn.initializers.zeros, name="film",
                        dot_general=dot_general_for(self.dtype), **kw)(q)
        gamma, beta = jnp.split(film[:, None, :], 2, axis=-1)
        x = LayerNorm(name="ln", **kw)(h) * (1 + gamma) + beta
        x = nn.Conv(self.width, (self.kernel,), kernel_dilation=(self.dilation,),
                    padding="SAME", name="conv", **kw)(x)
        x = nn.gelu(x)
        x = nn.Dense(self.width, name="out", dot_general=dot_general_for(self.dtype), **kw)(x)
        return h + x


@MODELS.register("mask_separator")
class MaskSeparator(nn.Module):
    """``(mixture [B, T], query tokens [B, L]) -> (estimate [B, T], mask [B, frames, bins])``."""
    text: Mapping[str, Any]
    n_fft: int = 512
    hop: int = 128
    width: int = 256
    depth: int = 6
    kernel: int = 3
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        if self.depth < 1 or self.width < 1:
            raise ValueError(f"mask_separator needs depth >= 1 and width >= 1, got "
                             f"depth={self.depth}, width={self.width}")
        self.txt = build_tower(self.text, "mask_separator text", self.dtype, self.param_dtype,
                               name="txt")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  dot_general=dot_general_for(self.dtype))
        self.inp = nn.Dense(self.width, name="inp", **kw)
        self.blocks = [FiLMBlock(self.width, self.kernel, 2 ** i, dtype=self.dtype,
                                 param_dtype=self.param_dtype, name=f"block{i}")
                       for i in range(self.depth)]
        self.ln = LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="ln")
        self.head = nn.Dense(self.n_fft // 2 + 1, name="head", **kw)

    def spectrum(self, mixture: jax.Array) -> jax.Array:
        mixture = jnp.asarray(mixture, jnp.float32)
        if mixture.ndim != 2:
            raise ValueError(f"mask_separator takes mono mixtures [B, T], got {mixture.shape}")
        return audio.stft(mixture, self.n_fft, self.hop)

    def mask(self, spec: jax.Array, query: jax.Array, train: bool = False) -> jax.Array:
        """Complex mixture STFT ``[B, frames, bins]`` + query tokens -> mask in (0, 1)."""
        logpow = jnp.log(audio.magnitude(spec, 2) + 1e-8)
        mean = jnp.mean(logpow, axis=(1, 2), keepdims=True)
        std = jnp.std(logpow, axis=(1, 2), keepdims=True)
        feats = jnp.where(std > 1e-3, (logpow - mean) / (std + 0.1), 0.0)
        q = self.txt(query, train=train)
        h = self.inp(feats.astype(self.dtype))
        for block in self.blocks:
            h = block(h, q)
        return jax.nn.sigmoid(self.head(self.ln(h)).astype(jnp.float32))

    def __call__(self, mixture: jax.Array, query: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array]:
        spec = self.spectrum(mixture)
        m = self.mask(spec, query, train=train)
        estimate = audio.istft(spec * m, self.n_fft, self.hop, length=mixture.shape[-1])
        return estimate, m
