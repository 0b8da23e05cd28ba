"""A class-conditional velocity MLP for vector data (2-D toys, small latents).

    v(x_t, t, label) = MLP([x_t, sinusoidal(t), embed(label)])

``label`` indexes ``num_classes + 1`` embeddings: the last one is the null class classifier-free
guidance drops to (``null_label``). Residual SiLU blocks keep a deep narrow MLP trainable.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.dit import timestep_embedding


@MODELS.register("velocity_mlp")
class VelocityMLP(nn.Module):
    num_classes: int = 8
    width: int = 128
    depth: int = 3
    time_dim: int = 32
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def null_label(self) -> int:
        return self.num_classes

    @nn.compact
    def __call__(self, x_t, t, label):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        temb = timestep_embedding(t, self.time_dim)
        lemb = nn.Embed(self.num_classes + 1, self.time_dim, param_dtype=self.param_dtype)(label)
        h = nn.Dense(self.width, **kw)(jnp.concatenate(
            [x_t.astype(self.dtype), temb.astype(self.dtype), lemb.astype(self.dtype)], -1))
        for _ in range(self.depth):
            h = h + nn.Dense(self.width, **kw)(nn.silu(nn.Dense(self.width, **kw)(nn.silu(h))))
        out = nn.Dense(x_t.shape[-1], dtype=self.dtype, param_dtype=self.param_dtype)(nn.silu(h))
        return out.astype(jnp.float32)
