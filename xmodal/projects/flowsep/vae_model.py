"""A 2-D convolutional VAE over (normalised) log-mel spectrograms, as the latent space of
AudioLDM / FlowSep (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"; Liu et al. 2023,
"AudioLDM").

    mel [B, F, M]  --encoder-->  mean, logvar [B, F / 2^k, M / 2^k, C]
    z = mean + exp(logvar / 2) eps            (reparameterisation)
    z  --decoder-->  mel' [B, F, M]

k = len(widths) stride-2 stages; F and M must divide by 2^k. The objective
(``xmodal.projects.flowsep.vae_loss``) adds the reconstruction error and the KL term.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.conv import ResBlock2D, conv, group_norm


class VAEEncoder(nn.Module):
    latent_channels: int
    widths: tuple
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, mel):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # Full resolution only in the cheap 1-channel stem: every residual block runs after a
        # stride-2 conv, so the cost stays small on a CPU.
        x = conv(self.widths[0], 3, name="stem", **kw)(mel[..., None].astype(self.dtype))
        for i, w in enumerate(self.widths):
            x = conv(w, 3, stride=2, name=f"down_{i}", **kw)(x)
            x = ResBlock2D(w, name=f"res_{i}", **kw)(x)
        x = nn.silu(group_norm(self.widths[-1], name="gn_out", **kw)(x)).astype(self.dtype)
        out = conv(2 * self.latent_channels, 3, name="out", **kw)(x).astype(jnp.float32)
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(logvar, -20.0, 10.0)


class VAEDecoder(nn.Module):
    widths: tuple
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = conv(self.widths[-1], 3, name="stem", **kw)(z.astype(self.dtype))
        for i in reversed(range(len(self.widths))):
            x = ResBlock2D(self.widths[i], name=f"res_{i}", **kw)(x)
            b, h, wd, c = x.shape
            x = jax.image.resize(x, (b, 2 * h, 2 * wd, c), "nearest")
            x = conv(self.widths[max(i - 1, 0)], 3, name=f"up_{i}", **kw)(x)
        x = nn.silu(group_norm(self.widths[0], name="gn_out", **kw)(x)).astype(self.dtype)
        return conv(1, 3, name="out", **kw)(x)[..., 0].astype(jnp.float32)


@MODELS.register("mel_vae")
class MelVAE(nn.Module):
    """``__call__(mel, rng)`` → (reconstruction, mean, logvar); ``encode`` / ``decode`` alone.

    Parameters under ``encoder/`` and ``decoder/``. ``widths`` are the channel widths of the
    down-sampling stages (each halves time and frequency).
    """
    latent_channels: int = 8
    widths: tuple = (32, 64)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.encoder = VAEEncoder(self.latent_channels, tuple(self.widths), **kw)
        self.decoder = VAEDecoder(tuple(self.widths), **kw)

    def factor(self) -> int:
        return 2 ** len(self.widths)

    def _check(self, mel):
        f = 2 ** len(self.widths)
        if mel.ndim != 3 or mel.shape[1] % f or mel.shape[2] % f:
            raise ValueError(f"MelVAE expects mel [batch, frames, mels] with frames and mels "
                             f"divisible by {f}; got shape {tuple(mel.shape)}")

    def encode(self, mel):
        self._check(mel)
        return self.encoder(mel)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, mel, rng):
        mean, logvar = self.encode(mel)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
        return self.decode(z), mean, logvar
