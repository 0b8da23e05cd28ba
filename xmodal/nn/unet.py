"""A small 2-D U-Net for flow velocities on a latent (Ronneberger et al. 2015; the diffusion
U-Net of Ho et al. 2020 / AudioLDM), with FlowSep's conditioning:

* time t: sinusoidal embedding → MLP (+ the mean of the text tokens), added per channel inside
  every residual block;
* the mixture latent: concatenated to x_t as extra input channels;
* the text query: ``TextTokens`` hidden states, attended to by cross-attention at every
  resolution below the first (the spatial positions are the queries).

``__call__(x_t [B, H, W, C], t [B], cond [B, H, W, Cc], text [B, L] ids | [B, D] embedded)
-> v [B, H, W, C]``;
H and W must divide by 2^(len(widths) - 1).

``control=True`` adds a ControlNet-style branch (Zhang et al. 2023) reading ``cond``: a stem
and one residual block per resolution, each level's features added to the encoder's through a
zero-initialised 1x1 convolution (``control_zero_<i>``), before they are kept as skips. Its
parameters are all named ``control_*`` and the rest are the plain U-Net's, so a controlled
student starts from a plain teacher's parameters and, with the zero convolutions, computes
exactly the teacher's velocity at its first step (InstaRevive's student).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.dit import TextTokens, TimeEmbed
from xmodal.nn.layers import Attention, LayerNorm
from xmodal.nn.conv import ResBlock2D, conv, group_norm
from xmodal.nn.precision import dot_general_for


class CrossAttention2D(nn.Module):
    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, text, mask):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        b, h, w, c = x.shape
        q = LayerNorm(name="ln", **kw)(x.reshape(b, h * w, c))
        kv = nn.Dense(c, name="text_proj", dot_general=dot_general_for(self.dtype), **kw)(text)
        y = Attention(self.num_heads, name="attn", **kw)(q, kv, mask[:, None, None, :])
        return x + y.reshape(b, h, w, c)


@MODELS.register("unet")
class UNet(nn.Module):
    widths: tuple = (64, 128)
    num_heads: int = 4
    text_width: int = 128
    text_depth: int = 2
    text_max_len: int = 64
    control: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_t, t, cond, text):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        b, h, w, c = x_t.shape
        f = 2 ** (len(self.widths) - 1)
        if h % f or w % f or cond.shape[:3] != x_t.shape[:3]:
            raise ValueError(f"UNet: latent {tuple(x_t.shape)} must divide by {f} and match the "
                             f"condition latent {tuple(cond.shape)} in [B, H, W]")
        tokens, mask, pooled = TextTokens(self.text_width, self.text_depth, self.num_heads,
                                          self.text_max_len, name="text", **kw)(text)
        emb_w = 4 * self.widths[0]
        emb = TimeEmbed(emb_w, name="time", **kw)(t) + nn.Dense(
            emb_w, name="text_pool", dot_general=dot_general_for(self.dtype), **kw)(pooled)
        x = jnp.concatenate([x_t, cond.astype(x_t.dtype)], -1).astype(self.dtype)
        x = conv(self.widths[0], 3, name="stem", **kw)(x)
        if self.control:
            ctl = conv(self.widths[0], 3, name="control_stem", **kw)(cond.astype(self.dtype))
        skips = []
        for i, wd in enumerate(self.widths):
            x = ResBlock2D(wd, name=f"down_res_{i}", **kw)(x, emb)
            if i:
                x = CrossAttention2D(self.num_heads, name=f"down_cross_{i}", **kw)(x, tokens, mask)
            if self.control:
                ctl = ResBlock2D(wd, name=f"control_res_{i}", **kw)(ctl, emb)
                x = x + conv(wd, 1, name=f"control_zero_{i}", zero=True, **kw)(ctl)
            skips.append(x)
            if i < len(self.widths) - 1:
                x = conv(wd, 3, stride=2, name=f"down_{i}", **kw)(x)
                if self.control:
                    ctl = conv(wd, 3, stride=2, name=f"control_down_{i}", **kw)(ctl)
        x = ResBlock2D(self.widths[-1], name="mid_res", **kw)(x, emb)
        for i, wd in reversed(list(enumerate(self.widths))):
            x = ResBlock2D(wd, name=f"up_res_{i}", **kw)(jnp.concatenate([x, skips[i]], -1), emb)
            if i:
                x = CrossAttention2D(self.num_heads, name=f"up_cross_{i}", **kw)(x, tokens, mask)
                bb, hh, ww, cc = x.shape
                x = jax.image.resize(x, (bb, 2 * hh, 2 * ww, cc), "nearest")
                x = conv(self.widths[i - 1], 3, name=f"up_{i}", **kw)(x)
        x = nn.silu(group_norm(self.widths[0], name="gn_out", **kw)(x)).astype(self.dtype)
        return conv(c, 3, name="out", zero=True, **kw)(x).astype(jnp.float32)
