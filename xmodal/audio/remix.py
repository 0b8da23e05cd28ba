"""Dynamic mixing for separation training, on device, inside a batch.

A record of ``lass_mix`` is a fixed (target, mixture) pair; its interference is
``mixture - target``. ``remix`` gives an example, with probability ``prob``, the interference of
the next example in the batch instead of its own, at a random gain in ``±gain_db``:

    mixture' = target + g * roll(mixture - target, 1)

so the training set stops being the ~2,000 fixed mixtures and the network sees each target with
many backgrounds (dynamic mixing, as used by Wavesplit, Zeghidour & Grangier 2021, and
SepFormer, Subakan et al. 2021). The target and the query stay the example's own. Batches are
shuffled, so the neighbour is a random other record; when it holds an instrument of the same
kind as the target (2-3 sources out of 42 instruments: ~5 % of remixed examples) the new
mixture holds two sources the query names and only one is the target: label noise that the
gain in variety pays for. The draw comes from the loss's RNG key, so it is reproducible and
resumes exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def check_remix(prob: float, gain_db: float) -> None:
    if not 0.0 <= prob <= 1.0 or gain_db < 0:
        raise ValueError(f"remix prob must be in [0, 1] and gain_db >= 0, got {prob}, {gain_db}")


def remix(rng, target, mixture, prob: float, gain_db: float = 0.0):
    """Mixtures [B, T] with, per example, probability ``prob`` of the next example's
    interference at a gain uniform in ``±gain_db`` dB (see the module docstring)."""
    check_remix(prob, gain_db)
    if prob == 0.0:
        return mixture
    k_swap, k_gain = jax.random.split(rng)
    b = target.shape[0]
    swap = jax.random.bernoulli(k_swap, prob, (b,))[:, None]
    gain = 10.0 ** (jax.random.uniform(k_gain, (b, 1), minval=-gain_db, maxval=gain_db) / 20.0)
    other = jnp.roll(mixture - target, 1, axis=0)
    return jnp.where(swap, target + gain * other, mixture)
