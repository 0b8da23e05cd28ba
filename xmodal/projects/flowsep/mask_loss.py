"""Training objective of the discriminative text-queried mask separator (``mask_separator``).

Batches come from the ``separation`` transform: ``mixture`` [B, T], ``target`` [B, T],
``query`` [B, L] tokens. Losses (``loss=``):

- ``"si_sdr"``: −mean SI-SDR(ŝ, s) of the masked-mixture waveform ŝ = iSTFT(M ⊙ X) (Le Roux
  et al. 2019; the usual training loss of time-domain and mask separators, Luo & Mesgarani 2019);
- ``"l1_mag"``: mean |M ⊙ |X| − |S||, the magnitude L1 of LASS-Net (Liu et al. 2022), S = STFT(s);
- ``"both"``: their sum, with the magnitude term scaled by ``mag_weight``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from xmodal.audio import dsp as audio
from xmodal.core.registry import OBJECTIVES

LOSSES = ("si_sdr", "l1_mag", "both")


def si_sdr_jax(estimate: jax.Array, reference: jax.Array, eps: float = 1e-8) -> jax.Array:
    """SI-SDR in dB per example, ``[B, T]`` -> ``[B]``, differentiable: the same formula and eps
    handling as ``xmodal.evaluate.separation.si_sdr`` (zero-mean; alpha = <ŝ,s>/||s||²;
    10 log10 ||alpha s||² / ||ŝ − alpha s||²), in float32."""
    est = estimate.astype(jnp.float32)
    ref = reference.astype(jnp.float32)
    est = est - jnp.mean(est, axis=-1, keepdims=True)
    ref = ref - jnp.mean(ref, axis=-1, keepdims=True)
    alpha = (jnp.sum(est * ref, -1, keepdims=True) + eps) / (jnp.sum(ref * ref, -1, keepdims=True)
                                                            + eps)
    target = alpha * ref
    residual = est - target
    return 10 * jnp.log10((jnp.sum(target ** 2, -1) + eps) / (jnp.sum(residual ** 2, -1) + eps))


@dataclasses.dataclass(frozen=True)
class MaskSeparationObjective:
    model: Any
    mesh: Mesh
    loss_kind: str
    mag_weight: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, batch["mixture"], batch["query"])
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        mixture, target = batch["mixture"], batch["target"]
        estimate, mask = self.model.apply({"params": params["model"]}, mixture, batch["query"],
                                          train=True, rngs={"dropout": rng})
        sdr = si_sdr_jax(estimate, target)
        sdr_mix = si_sdr_jax(mixture, target)
        aux = {"si_sdr": jnp.mean(sdr), "sdri": jnp.mean(sdr - sdr_mix),
               "mask_mean": jnp.mean(mask)}
        total = jnp.zeros((), jnp.float32)
        if self.loss_kind in ("si_sdr", "both"):
            total = total - jnp.mean(sdr)
        if self.loss_kind in ("l1_mag", "both"):
            n_fft, hop = self.model.n_fft, self.model.hop
            mix_mag = audio.magnitude(audio.stft(mixture.astype(jnp.float32), n_fft, hop))
            tgt_mag = audio.magnitude(audio.stft(target.astype(jnp.float32), n_fft, hop))
            l1 = jnp.mean(jnp.abs(mask * mix_mag - tgt_mag))
            aux["l1_mag"] = l1
            total = total + self.mag_weight * l1
        return total, aux


@OBJECTIVES.register("mask_separation")
def mask_separation(loss: str = "si_sdr", mag_weight: float = 1.0):
    """Negative SI-SDR and/or magnitude L1 of a ``mask_separator`` (see the module docstring)."""
    if loss not in LOSSES:
        raise ValueError(f"mask_separation loss {loss!r} is not one of {LOSSES}")
    return lambda model, mesh: MaskSeparationObjective(model, mesh, loss, float(mag_weight))
