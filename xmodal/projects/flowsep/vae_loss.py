"""The mel VAE's objective (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"):

    L = mean |mel - decode(z)|  +  kl_weight * mean KL(N(mean, exp(logvar)) || N(0, I))
    KL per element = 0.5 (mean^2 + exp(logvar) - 1 - logvar)

on the normalised log-mel (``xmodal.audio.mel.MelConfig``) of both the targets and the
mixtures of a separation batch, so the latent space covers single sources and mixtures (the
flow encodes both). L1 reconstruction as in AudioLDM's VAE; its adversarial and perceptual
terms are left out at this scale. A small ``kl_weight`` keeps the latent close to deterministic.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from xmodal.audio.mel import MelConfig
from xmodal.core.registry import OBJECTIVES


def gaussian_kl(mean, logvar):
    """Elementwise KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


@dataclasses.dataclass(frozen=True)
class MelVAEObjective:
    model: Any
    mel: MelConfig
    kl_weight: float
    groups: tuple = ("model",)

    def features(self, batch):
        waves = jnp.concatenate([batch["target"], batch["mixture"]], 0)
        return self.mel.mel(waves)

    def init(self, rng, batch):
        mel = self.mel.mel(batch["target"][:1])
        return {"model": self.model.init({"params": rng}, mel, rng)["params"]}

    def loss(self, params, batch, rng, group="model"):
        mel = self.features(batch)
        recon, mean, logvar = self.model.apply({"params": params["model"]}, mel, rng)
        rec = jnp.mean(jnp.abs(recon - mel))
        kl = jnp.mean(gaussian_kl(mean, logvar))
        return rec + self.kl_weight * kl, {"recon_l1": rec, "kl": kl,
                                           "latent_std": jnp.std(mean)}

    def stage_outputs(self, ctx):
        """What the flow stage scales its latents by: the std (and mean) of the VAE mean over
        targets and mixtures of the *training* records (``core/objective.py``)."""
        waves = np.concatenate([ctx.arrays["target"], ctx.arrays["mixture"]])

        def encode(params, wave):
            return self.model.apply({"params": params["model"]}, self.mel.mel(wave),
                                    method="encode")[0]

        mean = ctx.apply(encode, waves)
        return {"latent_std": float(np.std(mean)), "latent_mean": float(np.mean(mean))}


@OBJECTIVES.register("mel_vae")
def mel_vae(kl_weight: float = 1e-3, mel: dict | None = None):
    """``mel``: MelConfig keyword arguments (sample_rate, n_fft, hop, n_mels, ...)."""
    if kl_weight < 0:
        raise ValueError(f"mel_vae kl_weight must be >= 0, got {kl_weight}")
    cfg = MelConfig(**(mel or {}))
    return lambda model, mesh: MelVAEObjective(model, cfg, kl_weight)
