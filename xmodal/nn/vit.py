"""Vision Transformer image tower (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021).

Patches of ``patch_size x patch_size`` pixels are flattened (einops) and projected by a Dense
(``patch_embed``, equivalent to a stride-``patch_size`` convolution), a learned position
embedding (``pos_embedding``) is added, pre-LN Transformer blocks and a final LayerNorm follow,
and the tokens are pooled to one ``[batch, width]`` vector:

- ``"gap"``: mean over patch tokens (Zhai et al., "Scaling Vision Transformers", 2022);
- ``"cls"``: a learned ``cls`` token prepended to the patches, read out after the encoder;
- ``"map"``: multi-head attention pooling with a learned probe (``map_head``; Lee et al.,
  "Set Transformer", 2019, as in big_vision's MAPHead and SigLIP).
"""
from __future__ import annotations

from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import (EMBED_INIT, MLP, Attention, Encoder, LayerNorm, check_tower,
                              constrain)
from xmodal.nn.precision import dot_general_for

POOLS = ("gap", "cls", "map")


def normalise_pixels(images: jax.Array) -> jax.Array:
    """uint8 pixels in [0, 255] to f32 in [-1, 1]; floating images are taken as normalised."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 127.5 - 1.0
    if jnp.issubdtype(images.dtype, jnp.floating):
        return images
    raise TypeError(f"ViT images must be uint8 pixels or floats in [-1, 1], got {images.dtype}")


class MAPHead(nn.Module):
    """Attention pooling: a learned ``probe`` query attends over the tokens, then an MLP
    residual: ``y = attn(probe, x); y + mlp(ln(y))``."""
    num_heads: int
    mlp_dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        probe = self.param("probe", nn.initializers.xavier_uniform(), (1, 1, x.shape[-1]),
                           self.param_dtype)
        probe = jnp.broadcast_to(probe.astype(self.dtype), (x.shape[0], 1, x.shape[-1]))
        y = Attention(self.num_heads, name="attn", **kw)(probe, x)
        y = y + MLP(self.mlp_dim, name="mlp", **kw)(LayerNorm(name="ln", **kw)(y))
        return y[:, 0]


@MODELS.register("vit")
class ViT(nn.Module):
    """ViT encoder: images ``[B, H, W, C]`` (uint8 or floats in [-1, 1]) -> ``[B, width]``.

    ``H`` and ``W`` must be multiples of ``patch_size``; the position embedding is created for
    the image size seen at init. ``mlp_dim`` defaults to ``4 * width``.
    """
    patch_size: int = 4
    width: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_dim: int | None = None
    pool: str = "gap"
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_tower("ViT", self.width, self.depth, self.num_heads, self.dropout)
        if self.pool not in POOLS:
            raise ValueError(f"ViT pool={self.pool!r} is not one of {', '.join(POOLS)}")
        if images.ndim != 4:
            raise ValueError(f"ViT expects images [batch, height, width, channels], "
                             f"got shape {images.shape}")
        _, h, w, _ = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"ViT image size {h}x{w} is not a multiple of patch_size={p}; "
                             "resize or crop the images, or change patch_size")
        mlp_dim = self.mlp_dim or 4 * self.width
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        x = normalise_pixels(images).astype(self.dtype)
        x = einops.rearrange(x, "b (h p) (w q) c -> b (h w) (p q c)", p=p, q=p)
        x = nn.Dense(self.width, kernel_init=nn.initializers.lecun_normal(),
                     dot_general=dot_general_for(self.dtype), name="patch_embed", **kw)(x)
        pos = self.param("pos_embedding", EMBED_INIT, (1, x.shape[1], self.width),
                         self.param_dtype)
        x = x + pos.astype(self.dtype)
        if self.pool == "cls":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width), self.param_dtype)
            cls = jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width))
            x = jnp.concatenate([cls, x], axis=1)
        x = constrain(x, "batch", "length", "embed")
        x = Encoder(self.depth, self.num_heads, mlp_dim, self.dropout, name="encoder", **kw)(
            x, None, train)

        if self.pool == "gap":
            return jnp.mean(x.astype(jnp.float32), axis=1).astype(self.dtype)
        if self.pool == "cls":
            return x[:, 0]
        return MAPHead(self.num_heads, mlp_dim, name="map_head", **kw)(x)

