"""DMD2's GAN head: a real/fake classifier on the fake score network's own features.

DMD2 (Yin et al. 2024, sec. 4.3) puts a small classification branch on the fake score's
bottleneck and trains it, with the fake score, to tell noised data from noised generator
samples; the generator gets the non-saturating GAN loss through it. Here the features are taken
from any flow network without changing it: ``features`` runs the network's velocity under
``flax.linen.intercept_methods`` and keeps

- by default, the input of the last ``Dense``/``Conv`` the forward pass calls: what the
  network's output layer reads (its last hidden representation), for any architecture;
- with ``layer`` (a regex over the '/'-joined module path, e.g. ``"mid.*"`` for a U-Net's
  middle block), the output of the last module call whose path matches.

``FeatureHead`` averages the features over every axis between batch and channels (pixels,
frames, tokens) and maps them to one logit: LayerNorm → Dense(width) → SiLU → Dense(1).
"""
from __future__ import annotations

import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import SpecError

OUTPUT_LAYERS = (nn.Dense, nn.Conv, nn.ConvTranspose, nn.DenseGeneral)


def features(fn: Callable[[], Any], layer: str = "") -> tuple[Any, jax.Array]:
    """(fn()'s output, the features of the network it applies; see the module docstring)."""
    pattern = re.compile(layer) if layer else None
    found: list = []

    def tap(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        if pattern is None:
            if isinstance(context.module, OUTPUT_LAYERS) and args:
                found.append(args[0])
        elif pattern.fullmatch("/".join(context.module.path)) and isinstance(out, jax.Array):
            found.append(out)
        return out

    with nn.intercept_methods(tap):
        out = fn()
    if not found:
        raise SpecError(f"gan_layer={layer!r} matches no module call of the fake score network"
                        if layer else "the fake score network calls no Dense/Conv layer whose "
                        "input could feed the GAN head: set dmd gan_layer")
    return out, found[-1]


class FeatureHead(nn.Module):
    """Pooled features [B, ..., C] → one real/fake logit [B]."""
    width: int = 256

    @nn.compact
    def __call__(self, h):
        h = h.astype(jnp.float32)
        if h.ndim > 2:
            h = jnp.mean(h, axis=tuple(range(1, h.ndim - 1)))
        h = nn.LayerNorm()(h)
        h = nn.silu(nn.Dense(self.width)(h))
        return nn.Dense(1)(h)[:, 0]
