"""2-D convolution blocks shared by the conv networks (the mel VAE, the U-Net): a SAME conv,
GroupNorm with the largest group count that divides the width, and a pre-norm residual block
with an optional time-embedding shift (DDPM / ADM style)."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xmodal.nn.precision import dot_general_for


def conv(features: int, kernel: int, dtype, param_dtype, stride: int = 1, name=None,
         zero: bool = False) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding="SAME",
                   dtype=dtype, param_dtype=param_dtype, name=name,
                   kernel_init=nn.initializers.zeros if zero else nn.initializers.lecun_normal())


def group_norm(width: int, dtype, param_dtype, name=None) -> nn.GroupNorm:
    groups = next(g for g in (8, 4, 2, 1) if width % g == 0)
    return nn.GroupNorm(num_groups=groups, dtype=jnp.float32, param_dtype=param_dtype, name=name)


class ResBlock2D(nn.Module):
    """``x + conv(silu(gn(conv(silu(gn(x))))))`` (+ an optional per-channel shift from ``emb``,
    the time embedding of a U-Net); a 1x1 conv matches the width when it changes."""
    width: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb=None):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = conv(self.width, 3, name="conv1", **kw)(nn.silu(group_norm(x.shape[-1], name="gn1",
                                                                       **kw)(x)).astype(self.dtype))
        if emb is not None:
            shift = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                             dot_general=dot_general_for(self.dtype), name="emb")(nn.silu(emb))
            h = h + shift[:, None, None, :]
        h = conv(self.width, 3, name="conv2", zero=True, **kw)(
            nn.silu(group_norm(self.width, name="gn2", **kw)(h)).astype(self.dtype))
        if x.shape[-1] != self.width:
            x = conv(self.width, 1, name="skip", **kw)(x)
        return x + h
