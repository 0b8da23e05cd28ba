"""A small convolutional image tower (the visual channel of "Deep Learning Applied to Image and
Text Matching", 2015, which embeds images with a CNN; LeCun et al. 1998, Krizhevsky et al. 2012).

``len(channels)`` stages; stage s is ``conv3x3(c_s) -> GroupNorm -> relu`` repeated
``convs_per_stage`` times, then (``se_reduction`` > 0) a squeeze-and-excitation block (Hu et
al., 2018: each channel scaled by a gate computed from every channel's global average), then a
stride-2 2x2 max pool (except after the last stage). ``stem_stride`` > 1 puts a strided conv
before the stages (large frames into small stages). A global average pool over the remaining
grid and a Dense give ``[B, width]``. GroupNorm (Wu & He 2018)
instead of BatchNorm keeps the tower stateless, so it fits the framework's params-only state
and behaves the same in training and evaluation.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import KERNEL_INIT
from xmodal.nn.precision import dot_general_for
from xmodal.nn.vit import normalise_pixels


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 mean_hw(x))); ``reduction`` narrows the gate's hidden layer."""
    reduction: int = 4

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        squeezed = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        hidden = nn.relu(nn.Dense(max(1, c // self.reduction), name="reduce")(squeezed))
        gate = nn.sigmoid(nn.Dense(c, name="expand")(hidden))
        return x * gate[:, None, None, :].astype(x.dtype)


@MODELS.register("cnn")
class CNN(nn.Module):
    """Images ``[B, H, W, 3]`` (uint8, or floats in [-1, 1] like ViT) -> ``[B, width]``."""
    channels: Sequence[int] = (32, 64, 128)
    convs_per_stage: int = 1
    width: int = 256
    groups: int = 8
    se_reduction: int = 0         # 0: no squeeze-and-excitation blocks
    stem_stride: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        if images.ndim != 4:
            raise ValueError(f"CNN expects images [batch, height, width, channels], got shape "
                             f"{images.shape}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"CNN channels must be positive ints, got {self.channels!r}")
        if self.convs_per_stage < 1 or self.width < 1:
            raise ValueError(f"CNN convs_per_stage and width must be >= 1, got "
                             f"{self.convs_per_stage}, {self.width}")
        downs = len(self.channels) - 1
        if min(images.shape[1:3]) < 2 ** downs:
            raise ValueError(f"CNN: images {images.shape[1]}x{images.shape[2]} are too small "
                             f"for {downs} 2x pools; use fewer stages or larger images")
        x = normalise_pixels(images).astype(self.dtype)
        if self.stem_stride > 1:
            x = nn.Conv(int(self.channels[0]), (3, 3), strides=self.stem_stride, padding="SAME",
                        dtype=self.dtype, param_dtype=self.param_dtype, name="stem")(x)
        for s, c in enumerate(self.channels):
            c = int(c)
            groups = self.groups if c % self.groups == 0 else 1
            for k in range(self.convs_per_stage):
                x = nn.Conv(c, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                            param_dtype=self.param_dtype, name=f"conv_{s}_{k}")(x)
                # Normalisation statistics in f32 (bf16 means and variances lose bits).
                x = nn.GroupNorm(num_groups=groups, dtype=jnp.float32,
                                 param_dtype=self.param_dtype, name=f"gn_{s}_{k}")(x)
                x = nn.relu(x).astype(self.dtype)
            if self.se_reduction:
                x = SqueezeExcite(self.se_reduction, name=f"se_{s}")(x)
            if s < downs:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=KERNEL_INIT, dot_general=dot_general_for(self.dtype),
                        name="head")(pooled.astype(self.dtype))
