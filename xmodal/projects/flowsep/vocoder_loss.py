"""The vocoder's objective: multi-resolution STFT loss (Yamamoto et al. 2020, "Parallel WaveGAN",
eq. 4-6) plus a mel L1 term (as HiFi-GAN's mel loss, Kong et al. 2020), no adversary:

    L_sc(x, y)  = || |Y| - |X| ||_F / || |Y| ||_F
    L_mag(x, y) = mean | log |Y| - log |X| |              (magnitudes floored at 1e-5)
    L = mean over resolutions (L_sc + L_mag)  +  mel_weight * mean |mel(x) - mel(y)|

x = the vocoder's waveform from mel(y), y = the reference. Trained on the targets and the
mixtures of a separation batch (more kinds of sound for the same data).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from xmodal.audio import dsp as audio
from xmodal.audio.mel import MelConfig
from xmodal.core.registry import OBJECTIVES


def stft_losses(x, y, n_fft: int, hop: int, floor: float = 1e-5):
    """(spectral convergence, log-magnitude L1) of waveform x against reference y at one
    resolution, averaged over the batch."""
    mx = jnp.sqrt(audio.magnitude(audio.stft(x, n_fft, hop), 2.0) + floor ** 2)
    my = jnp.sqrt(audio.magnitude(audio.stft(y, n_fft, hop), 2.0) + floor ** 2)
    sc = jnp.sqrt(jnp.sum(jnp.square(my - mx), (-2, -1))) / jnp.maximum(
        jnp.sqrt(jnp.sum(jnp.square(my), (-2, -1))), 1e-8)
    mag = jnp.mean(jnp.abs(jnp.log(my) - jnp.log(mx)), (-2, -1))
    return jnp.mean(sc), jnp.mean(mag)


def multi_resolution_stft_loss(x, y, resolutions):
    """Mean over ``resolutions`` [(n_fft, hop), ...] of spectral convergence + log-magnitude."""
    total = 0.0
    for n_fft, hop in resolutions:
        sc, mag = stft_losses(x, y, n_fft, hop)
        total = total + sc + mag
    return total / len(resolutions)


def vocode(model, params, mel, cfg: MelConfig, length: int):
    """Waveform [B, length] from normalised mel [B, F, M] through a ``MelVocoder``."""
    spec = model.apply({"params": params}, mel)
    return cfg.istft(cfg.pad_frames(spec, length), length)


@dataclasses.dataclass(frozen=True)
class VocoderObjective:
    model: Any
    mel: MelConfig
    resolutions: tuple
    mel_weight: float
    groups: tuple = ("model",)

    def init(self, rng, batch):
        mel = self.mel.mel(batch["target"][:1])
        return {"model": self.model.init({"params": rng}, mel)["params"]}

    def loss(self, params, batch, rng, group="model"):
        y = jnp.concatenate([batch["target"], batch["mixture"]], 0)
        mel = self.mel.mel(y)
        x = vocode(self.model, params["model"], mel, self.mel, y.shape[-1])
        stft_loss = multi_resolution_stft_loss(x, y, self.resolutions)
        mel_l1 = jnp.mean(jnp.abs(self.mel.mel(x) - mel))
        return stft_loss + self.mel_weight * mel_l1, {"mr_stft": stft_loss, "mel_l1": mel_l1}


@OBJECTIVES.register("vocoder")
def vocoder(mel: dict | None = None, resolutions: tuple = ((512, 128), (1024, 256), (256, 64)),
            mel_weight: float = 1.0):
    """``mel``: MelConfig kwargs; ``resolutions``: the STFT (n_fft, hop) pairs of the loss."""
    cfg = MelConfig(**(mel or {}))
    res = tuple(tuple(int(v) for v in r) for r in resolutions)
    if not res:
        raise ValueError("vocoder needs at least one STFT resolution")
    return lambda model, mesh: VocoderObjective(model, cfg, res, mel_weight)
