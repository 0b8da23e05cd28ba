"""Item/tag encoder of M3PT (Yang et al. 2023, "M3PT: A Multi-Modal Model for POI Tagging").

An image tower and a text tower (registered towers, e.g. ``vit`` and ``text_transformer``):

- ``encode_image`` / ``encode_text``: unit-norm embeddings of the item's image and text (heads
  ``img_head``, ``txt_head``); the image one is what M3PT's domain-adaptive image encoder (DIE)
  aligns with the gold tags, and the two are aligned with each other by the contrastive term;
- ``encode_item``: the text-image fusion (TIF), a 2-layer MLP over the concatenated tower
  features, ``z = norm(W2 gelu(W1 [h_img; h_txt]))``. ``item_modalities`` = "text" or "image"
  keeps one tower only (the uni-modal ablations; the other tower is then never built);
- ``encode_tags``: tag strings through the *text tower* and a separate ``tag_head``, so any tag
  string can be scored, including tags never seen in training.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.precision import dot_general_for
from xmodal.nn.two_tower import ImageTextEncoding, build_tower, l2_normalise

MODALITIES = ("both", "text", "image")


@MODELS.register("tagging_model")
class TaggingModel(ImageTextEncoding, nn.Module):
    """``(image, text, tag_tokens) -> (zitem [B, D], ztag [T, D], extras)``.

    extras: ``zimg``/``ztxt`` (None for a modality the item does not use), ``logit_scale``
    (exp of a learned scalar) and ``logit_bias`` (a learned scalar, for the sigmoid loss).
    """
    image: Mapping[str, Any]
    text: Mapping[str, Any]
    embed_dim: int = 256
    item_modalities: str = "both"
    temperature_init: float = math.log(1 / 0.07)
    bias_init: float = -5.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        if self.item_modalities not in MODALITIES:
            raise ValueError(f"tagging_model item_modalities={self.item_modalities!r} is not one "
                             f"of {', '.join(MODALITIES)}")
        # The text tower always exists: it embeds the tags.
        self.txt = build_tower(self.text, "tagging_model text", self.dtype, self.param_dtype,
                               name="txt")
        if self.uses_image:
            self.img = build_tower(self.image, "tagging_model image", self.dtype,
                                   self.param_dtype, name="img")
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                     dot_general=dot_general_for(self.dtype))
        self.img_head = nn.Dense(self.embed_dim, use_bias=False, **dense)
        self.txt_head = nn.Dense(self.embed_dim, use_bias=False, **dense)
        self.tag_head = nn.Dense(self.embed_dim, use_bias=False, **dense)
        self.fuse1 = nn.Dense(2 * self.embed_dim, **dense)
        self.fuse2 = nn.Dense(self.embed_dim, use_bias=False, **dense)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(
            self.temperature_init), (), self.param_dtype)
        self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.bias_init),
                                     (), self.param_dtype)

    @property
    def uses_image(self) -> bool:
        return self.item_modalities in ("both", "image")

    @property
    def uses_text(self) -> bool:
        return self.item_modalities in ("both", "text")

    def encode_image(self, image, train: bool = False):
        return l2_normalise(self.img_head(self.img(image, train=train)))

    def encode_text(self, text, train: bool = False):
        return l2_normalise(self.txt_head(self.txt(text, train=train)))

    def encode_tags(self, tag_tokens, train: bool = False):
        return l2_normalise(self.tag_head(self.txt(tag_tokens, train=train)))

    def features(self, image, text, train: bool = False) -> tuple[jax.Array, dict]:
        parts, out = [], {"zimg": None, "ztxt": None}
        if self.uses_image:
            hi = self.img(image, train=train)
            parts.append(hi)
            out["zimg"] = l2_normalise(self.img_head(hi))
        if self.uses_text:
            ht = self.txt(text, train=train)
            parts.append(ht)
            out["ztxt"] = l2_normalise(self.txt_head(ht))
        h = jnp.concatenate(parts, axis=-1)
        return l2_normalise(self.fuse2(nn.gelu(self.fuse1(h)))), out

    def encode_item(self, image, text, train: bool = False):
        return self.features(image, text, train)[0]

    def __call__(self, image, text, tag_tokens, train: bool = False):
        zitem, extras = self.features(image, text, train)
        ztag = self.encode_tags(tag_tokens, train)
        extras.update(logit_scale=jnp.exp(self.logit_scale.astype(jnp.float32)),
                      logit_bias=self.logit_bias.astype(jnp.float32))
        return zitem, ztag, extras
