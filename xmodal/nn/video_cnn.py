"""A per-frame convolutional stream for video with temporal pooling: the stream of two-stream
networks (Simonyan & Zisserman, 2014: one stream on RGB frames, one on optical flow).

    frames [B, T, H, W, C] -> every frame through ``nn.cnn.CNN`` (here with squeeze-and-
    excitation blocks and a strided stem by default) -> [B, T, width]
    -> mean over windows of ``pool`` frames (stride ``pool``) -> [B, T / pool, width]

RGB frames (uint8) are scaled to [-1, 1] by the CNN; any other input (flow in pixels per frame)
is divided by ``input_scale`` first, so a few pixels of motion is of order one.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.cnn import CNN


@MODELS.register("video_cnn")
class VideoCNN(nn.Module):
    channels: Sequence[int] = (16, 32, 64)
    width: int = 128
    pool: int = 2                 # frames per temporal pooling window (1: none)
    stem_stride: int = 2
    se_reduction: int = 4         # 0: no squeeze-and-excitation (the ablation)
    input_scale: float = 1.0      # non-uint8 inputs are divided by this (flow: ~ max speed)
    groups: int = 8
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, frames: jax.Array, train: bool = False) -> jax.Array:
        if frames.ndim != 5:
            raise ValueError(f"VideoCNN expects frames [batch, time, height, width, channels], "
                             f"got shape {frames.shape}")
        b, t = frames.shape[:2]
        if self.pool < 1 or t % self.pool:
            raise ValueError(f"VideoCNN: {t} frames do not split into temporal windows of "
                             f"pool={self.pool}")
        x = frames.reshape((b * t,) + frames.shape[2:])
        if x.dtype != jnp.uint8:
            x = x.astype(jnp.float32) / self.input_scale
        per_frame = CNN(self.channels, width=self.width, groups=self.groups,
                        se_reduction=self.se_reduction, stem_stride=self.stem_stride,
                        dtype=self.dtype, name="frame_cnn")(x, train)
        per_frame = per_frame.astype(jnp.float32).reshape(b, t // self.pool, self.pool, -1)
        return jnp.mean(per_frame, axis=2)
