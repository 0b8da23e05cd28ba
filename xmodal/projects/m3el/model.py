"""Mention/entity encoder of M3EL (Hu et al. 2024, "Multi-level Matching Network for Multimodal
Entity Linking"), with token outputs for fine-grained matching.

One image tower and one text tower (any registered towers, e.g. ``vit`` and
``text_transformer``) are shared by mentions and entities, as M3EL shares its CLIP encoder.
``encode(image, text)`` returns, all L2-normalised in f32:

- ``txt``/``img`` [B, D]: feature-extraction embeddings (heads ``txt_head``/``img_head``), where
  the intra-modal contrastive loss applies;
- ``txt_g``/``img_g`` [B, D]: global embeddings of the intra-modal matching network (heads
  ``g2g_txt``/``g2g_img``), matched global-to-global and global-to-local;
- ``txt_l`` [B, L, D], ``img_l`` [B, P, D], ``txt_mask`` [B, L], ``img_mask`` [B, P]: local
  (token) embeddings for global-to-local matching (heads ``local_txt``/``local_img``);
- ``t2v``/``v2t`` [B, D]: bidirectional cross-modal fusion. Textual-to-visual: every text token
  attends over the image tokens, ``t2v = head(mean_text_tokens(x_t + Attn(q=x_t, kv=x_v)))``;
  visual-to-textual the other way round, with padding tokens masked as keys and from the mean.

The tokens are the towers' encoder outputs (the module named ``encoder`` inside each tower),
read with ``flax.linen.intercept_methods`` so the towers themselves need no change.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import Attention, LayerNorm
from xmodal.nn.precision import dot_general_for
from xmodal.nn.text import PAD_ID
from xmodal.nn.two_tower import build_tower, l2_normalise

# Matching levels that own a learned temperature, in the order of ``logit_scale``.
LEVELS = ("intra", "g2g", "g2l", "cross")


def tower_with_tokens(tower: nn.Module, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """``tower(x)`` -> (pooled [B, W], tokens [B, N, W]): the output of the tower's ``encoder``."""
    seen = []

    def grab(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        m = context.module
        if (context.method_name == "__call__" and m.name == "encoder" and m.parent is not None
                and m.parent.name == tower.name):
            seen.append(out)
        return out

    with nn.intercept_methods(grab):
        pooled = tower(x, train=train)
    if len(seen) != 1:
        raise ValueError(f"tower {tower.name!r} ({type(tower).__name__}) has no single submodule "
                         "named 'encoder' whose token outputs m3el can read; use vit or "
                         "text_transformer towers")
    return pooled, seen[0]


class CrossFusion(nn.Module):
    """``mean_q( x_q + Attn(LN(x_q), LN(x_kv)) )`` over the real query tokens."""
    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, xq, xkv, q_mask, kv_mask):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        q = LayerNorm(name="ln_q", **kw)(xq)
        kv = LayerNorm(name="ln_kv", **kw)(xkv)
        y = xq + Attention(self.num_heads, name="attn", **kw)(q, kv, kv_mask[:, None, None, :])
        w = q_mask.astype(jnp.float32)[..., None]
        return jnp.sum(y.astype(jnp.float32) * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)


@MODELS.register("entity_model")
class EntityModel(nn.Module):
    """``(image, text) -> dict`` of mention/entity embeddings (see the module docstring).

    ``image`` and ``text`` are tower specs (``{"name": "vit", ...}``); ``fusion_width`` is the
    width both towers' tokens are projected to before cross-attention (default ``embed_dim``).
    ``logit_scale`` [4] holds exp-parametrised temperatures of the levels in ``LEVELS``.
    """
    image: Mapping[str, Any]
    text: Mapping[str, Any]
    embed_dim: int = 256
    num_heads: int = 4
    fusion_width: int | None = None
    temperature_init: float = math.log(1 / 0.07)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        self.img = build_tower(self.image, "entity_model image", self.dtype, self.param_dtype,
                               name="img")
        self.txt = build_tower(self.text, "entity_model text", self.dtype, self.param_dtype,
                               name="txt")
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                     dot_general=dot_general_for(self.dtype))
        d, f = self.embed_dim, self.fusion_width or self.embed_dim
        for name, width in (("img_head", d), ("txt_head", d), ("g2g_img", d), ("g2g_txt", d),
                            ("local_img", d), ("local_txt", d), ("t2v_head", d), ("v2t_head", d),
                            ("fuse_img", f), ("fuse_txt", f)):
            setattr(self, name, nn.Dense(width, use_bias=False, **dense))
        self.t2v = CrossFusion(self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype)
        self.v2t = CrossFusion(self.num_heads, dtype=self.dtype, param_dtype=self.param_dtype)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(
            self.temperature_init), (len(LEVELS),), self.param_dtype)

    def encode(self, image: jax.Array, text: jax.Array, train: bool = False) -> dict:
        if text.ndim != 2:
            raise ValueError(f"entity_model text must be token ids [batch, length], got shape "
                             f"{text.shape}")
        hi, img_tok = tower_with_tokens(self.img, image, train)
        ht, txt_tok = tower_with_tokens(self.txt, text, train)
        txt_mask = text != PAD_ID
        img_mask = jnp.ones(img_tok.shape[:2], bool)
        fi, ft = self.fuse_img(img_tok), self.fuse_txt(txt_tok)
        return {
            "txt": l2_normalise(self.txt_head(ht)),
            "img": l2_normalise(self.img_head(hi)),
            "txt_g": l2_normalise(self.g2g_txt(ht)),
            "img_g": l2_normalise(self.g2g_img(hi)),
            "txt_l": l2_normalise(self.local_txt(txt_tok)),
            "img_l": l2_normalise(self.local_img(img_tok)),
            "txt_mask": txt_mask,
            "img_mask": img_mask,
            "t2v": l2_normalise(self.t2v_head(self.t2v(ft, fi, txt_mask, img_mask))),
            "v2t": l2_normalise(self.v2t_head(self.v2t(fi, ft, img_mask, txt_mask))),
        }

    def scales(self) -> dict[str, jax.Array]:
        s = jnp.exp(self.logit_scale.astype(jnp.float32))
        return {level: s[i] for i, level in enumerate(LEVELS)}

    def __call__(self, mention_image, mention_text, entity_image, entity_text,
                 train: bool = False) -> tuple[dict, dict, dict]:
        """(mention outputs, entity outputs, {level: logit scale})."""
        return (self.encode(mention_image, mention_text, train),
                self.encode(entity_image, entity_text, train), self.scales())
