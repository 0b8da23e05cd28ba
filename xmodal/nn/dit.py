"""Diffusion Transformer for flow velocities on a 2-D latent (Peebles & Xie 2023, "Scalable
Diffusion Models with Transformers"), conditioned three ways as in FlowSep (Yuan et al. 2024):

* time t: a sinusoidal embedding → MLP, plus the mean of the text tokens, drives adaLN-Zero:
  every block's LayerNorms are modulated ``ln(x) (1 + scale) + shift`` and its branches gated,
  with the modulation initialised to zero so each block starts as the identity;
* the mixture latent: concatenated to x_t as extra input channels before patchifying;
* the text query: byte tokens → a small Transformer (``TextTokens``), attended to by a
  cross-attention layer in each block (pads masked).

``__call__(x_t [B, H, W, C], t [B], cond [B, H, W, Cc], text [B, L] ids | [B, D] embedded)
-> v [B, H, W, C]`` (an embedded query: see ``TextTokens``).
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import EMBED_INIT, KERNEL_INIT, MLP, Attention, Encoder, LayerNorm
from xmodal.nn.precision import dot_general_for

PAD_ID = 0


def timestep_embedding(t, dim: int, max_period: float = 10000.0):
    """Sinusoidal embedding of t ∈ [0, 1] (scaled by 1000, as diffusion models' step index):
    [cos(1000 t f_i), sin(1000 t f_i)] with f_i = max_period^(-i / (dim/2))."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimeEmbed(nn.Module):
    width: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, t):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  dot_general=dot_general_for(self.dtype))
        h = nn.Dense(self.width, name="fc1", **kw)(timestep_embedding(t, self.width))
        return nn.Dense(self.width, name="fc2", **kw)(nn.silu(h))


class TextTokens(nn.Module):
    """Byte token ids [B, L] → (hidden states [B, L, width], valid mask [B, L], mean [B, width]).

    An all-pad row (never made by the tokenizer, which always writes bos/eos) gives a mean of 0.
    A float [B, D] input is a query already embedded by a frozen text encoder (FlowSep's
    pretrained one; here a trained CLAP text tower): an MLP makes it one token of ``width``.
    """
    width: int = 128
    depth: int = 2
    num_heads: int = 4
    max_len: int = 64
    vocab_size: int = 259
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids):
        if ids.ndim == 2 and jnp.issubdtype(ids.dtype, jnp.floating):
            return self.embedded(ids)
        if ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"TextTokens expects token ids [batch, <= {self.max_len}], got "
                             f"shape {tuple(ids.shape)}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        valid = ids != PAD_ID
        x = nn.Embed(self.vocab_size, self.width, embedding_init=EMBED_INIT, name="token_embed",
                     **kw)(ids)
        pos = self.param("pos_embedding", EMBED_INIT, (1, self.max_len, self.width),
                         self.param_dtype)
        x = x + pos[:, : ids.shape[1]].astype(self.dtype)
        x = Encoder(self.depth, self.num_heads, 4 * self.width, name="encoder", **kw)(
            x, valid[:, None, None, :])
        w = valid.astype(jnp.float32)[..., None]
        mean = jnp.sum(x.astype(jnp.float32) * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)
        return x, valid, mean.astype(self.dtype)

    def embedded(self, query):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  dot_general=dot_general_for(self.dtype))
        h = nn.Dense(self.width, name="query_fc1", **kw)(query.astype(self.dtype))
        x = nn.Dense(self.width, name="query_fc2", **kw)(nn.silu(h))
        return x[:, None, :], jnp.ones((x.shape[0], 1), bool), x


class DiTBlock(nn.Module):
    """adaLN-Zero block: self-attention, cross-attention to text, MLP, each modulated by ``c``."""
    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, c, text, text_mask):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = x.shape[-1]
        mod = nn.Dense(9 * width, kernel_init=nn.initializers.zeros, name="ada",
                       dot_general=dot_general_for(self.dtype), **kw)(nn.silu(c))
        (s1, sc1, g1, s2, sc2, g2, s3, sc3, g3) = jnp.split(mod[:, None, :], 9, axis=-1)

        def modulate(h, shift, scale):
            return h * (1 + scale) + shift

        h = modulate(LayerNorm(name="ln1", **kw)(x), s1, sc1)
        x = x + g1 * Attention(self.num_heads, name="attn", **kw)(h, h)
        h = modulate(LayerNorm(name="ln2", **kw)(x), s2, sc2)
        x = x + g2 * Attention(self.num_heads, name="cross", **kw)(
            h, text, text_mask[:, None, None, :])
        h = modulate(LayerNorm(name="ln3", **kw)(x), s3, sc3)
        return x + g3 * MLP(4 * width, name="mlp", **kw)(h)


@MODELS.register("dit")
class DiT(nn.Module):
    """See the module docstring. ``patch`` × ``patch`` latent patches become tokens."""
    patch: int = 2
    width: int = 128
    depth: int = 4
    num_heads: int = 4
    text_width: int = 128
    text_depth: int = 2
    text_max_len: int = 64
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_t, t, cond, text):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        b, h, w, c = x_t.shape
        p = self.patch
        if h % p or w % p or cond.shape[:3] != x_t.shape[:3]:
            raise ValueError(f"DiT: latent {tuple(x_t.shape)} must divide by patch={p} and match "
                             f"the condition latent {tuple(cond.shape)} in [B, H, W]")
        x = jnp.concatenate([x_t, cond.astype(x_t.dtype)], -1).astype(self.dtype)
        x = x.reshape(b, h // p, p, w // p, p, -1).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, (h // p) * (w // p), p * p * x.shape[-1])
        x = nn.Dense(self.width, kernel_init=KERNEL_INIT, name="patch_embed",
                     dot_general=dot_general_for(self.dtype), **kw)(x)
        pos = self.param("pos_embedding", EMBED_INIT, (1, x.shape[1], self.width),
                         self.param_dtype)
        x = x + pos.astype(self.dtype)
        tokens, mask, pooled = TextTokens(self.text_width, self.text_depth, self.num_heads,
                                          self.text_max_len, name="text", **kw)(text)
        text_h = nn.Dense(self.width, name="text_proj", dot_general=dot_general_for(self.dtype),
                          **kw)(tokens)
        cvec = TimeEmbed(self.width, name="time", **kw)(t) + nn.Dense(
            self.width, name="text_pool", dot_general=dot_general_for(self.dtype), **kw)(pooled)
        for i in range(self.depth):
            x = DiTBlock(self.num_heads, name=f"block_{i}", **kw)(x, cvec, text_h, mask)
        shift, scale = jnp.split(nn.Dense(2 * self.width, kernel_init=nn.initializers.zeros,
                                          name="ada_final", **kw)(nn.silu(cvec))[:, None], 2, -1)
        x = LayerNorm(name="ln_final", **kw)(x) * (1 + scale) + shift
        x = nn.Dense(p * p * c, kernel_init=nn.initializers.zeros, name="out", **kw)(x)
        x = x.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, h, w, c).astype(jnp.float32)
