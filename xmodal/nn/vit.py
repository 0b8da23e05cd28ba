"""Vision Transformer image tower (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021).

Patches of ``patch_size x patch_size`` pixels are flattened (einops) and projected by a Dense
(``patch_embed``, equivalent to a stride-``patch_size`` convolution), a learned position
embedding (``pos_embedding``) is added, pre-LN Transformer blocks and a final LayerNorm follow,
and the tokens are pooled to one ``[batch, width]`` vector:

- ``"gap"``: mean over patch tokens (Zhai et al., "Scaling Vision Transformers", 2022);
- ``"cls"``: a learned ``cls`` token prepended to the patches, read out after the encoder;
- ``"map"``: multi-head attention pooling with a learned probe (``map_head``; Lee et al.,
  "Set Transformer", 2019, as in big_vision's MAPHead and SigLIP).

Optional fields for OpenAI / open_clip CLIP image towers (defaults keep xmodal's own layout and
parameter tree): ``patch_bias=False`` (a bias-free patch projection, CLIP's ``conv1``),
``ln_pre`` (a LayerNorm on the embedded tokens before the encoder), ``cls_in_pos_embedding``
(with ``pool="cls"``: the position embedding covers ``[cls] + patches`` and is added after the
``cls`` token is prepended, so the token has a position too), ``activation`` and ``ln_epsilon``
of the blocks (``xmodal.nn.layers``), and ``pixel_mean`` / ``pixel_std`` (uint8 pixels are
normalised as ``(x / 255 - mean) / std`` per channel, CLIP's preprocessing, instead of to
[-1, 1]). The encoder's final LayerNorm is CLIP's ``ln_post``: it is applied to every token
before pooling, which for ``"cls"`` equals normalising the pooled token.
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


def normalise_pixels(images: jax.Array, mean: Any = None, std: Any = None) -> jax.Array:
    """uint8 pixels in [0, 255] to f32 in [-1, 1], or to ``(x / 255 - mean) / std`` per channel
    when ``mean`` and ``std`` are given; floating images are taken as normalised."""
    if images.dtype == jnp.uint8:
        if mean is not None:
            x = images.astype(jnp.float32) / 255.0
            return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
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
    the image size seen at init. ``mlp_dim`` defaults to ``4 * width``. The fields after
    ``param_dtype`` are the optional CLIP ones of the module docstring.
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
    patch_bias: bool = True
    ln_pre: bool = False
    cls_in_pos_embedding: bool = False
    activation: str = "gelu"
    ln_epsilon: float = 1e-6
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
        check_tower("ViT", self.width, self.depth, self.num_heads, self.dropout)
        if self.pool not in POOLS:
            raise ValueError(f"ViT pool={self.pool!r} is not one of {', '.join(POOLS)}")
        if self.cls_in_pos_embedding and self.pool != "cls":
            raise ValueError(f"ViT cls_in_pos_embedding=True needs pool='cls', got "
                             f"pool={self.pool!r}")
        if (self.pixel_mean is None) != (self.pixel_std is None):
            raise ValueError("ViT pixel_mean and pixel_std are set together (one per channel) "
                             "or not at all")
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

        x = normalise_pixels(images, self.pixel_mean, self.pixel_std).astype(self.dtype)
        x = einops.rearrange(x, "b (h p) (w q) c -> b (h w) (p q c)", p=p, q=p)
        x = nn.Dense(self.width, use_bias=self.patch_bias,
                     kernel_init=nn.initializers.lecun_normal(),
                     dot_general=dot_general_for(self.dtype), name="patch_embed", **kw)(x)

        def prepend_cls(x):
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.width), self.param_dtype)
            cls = jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, self.width))
            return jnp.concatenate([cls, x], axis=1)

        if self.cls_in_pos_embedding:  # CLIP: [cls] + patches, then one position embedding
            x = prepend_cls(x)
        pos = self.param("pos_embedding", EMBED_INIT, (1, x.shape[1], self.width),
                         self.param_dtype)
        x = x + pos.astype(self.dtype)
        if self.pool == "cls" and not self.cls_in_pos_embedding:
            x = prepend_cls(x)
        if self.ln_pre:
            x = LayerNorm(epsilon=self.ln_epsilon, name="ln_pre", **kw)(x)
        x = constrain(x, "batch", "length", "embed")
        x = Encoder(self.depth, self.num_heads, mlp_dim, self.dropout, activation=self.activation,
                    ln_epsilon=self.ln_epsilon, name="encoder", **kw)(x, None, train)

        if self.pool == "gap":
            return jnp.mean(x.astype(jnp.float32), axis=1).astype(self.dtype)
        if self.pool == "cls":
            return x[:, 0]
        return MAPHead(self.num_heads, mlp_dim, name="map_head", **kw)(x)

