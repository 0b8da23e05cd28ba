"""One embedding space for images, texts and image+text pairs (same-style product retrieval:
a product can be queried by a photo, by its title, or by both, and must land near the same
product drawn in another style).

An image tower and a text tower (any registered towers, as in ``two_tower``) are projected by
bias-free heads to ``p_i = img_head(h_img)`` and ``p_t = txt_head(h_txt)`` in ``embed_dim``. The
fused query is one of

- ``"gated"``: ``g = sigmoid(W [p_i; p_t] + b)`` (per dimension), ``z = g * p_i + (1 - g) * p_t``,
  a gated multimodal unit (Arevalo et al. 2017, "Gated Multimodal Units for Information
  Fusion");
- ``"mlp"``: ``z = p_i + p_t + fc2(relu(fc1([p_i; p_t])))``, a residual MLP over the concat.

All three outputs are L2-normalised (with a floor, so a zero vector gives zero and no NaN
gradient), so they are compared by cosine in the one space.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import KERNEL_INIT
from xmodal.nn.precision import dot_general_for
from xmodal.nn.two_tower import ImageTextEncoding, build_tower

FUSIONS = ("gated", "mlp")


def l2_normalize(x: jax.Array, floor: float = 1e-6) -> jax.Array:
    """``x / max(||x||, floor)`` in f32, written with the squared norm: the gradient of
    ``||x||`` at 0 is NaN, that of ``rsqrt(max(||x||^2, floor^2))`` is not."""
    x = x.astype(jnp.float32)
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, floor * floor))


@MODELS.register("unified")
class Unified(ImageTextEncoding, nn.Module):
    """``(image, text) -> (zimg, ztxt, zfused)``, each ``[B, embed_dim]`` unit-norm f32.

    Methods: ``encode_image``, ``encode_text``, ``encode_fused(image, text)`` and
    ``encode_pairs(image, image2, text)`` (the four embeddings a training step needs).
    """
    image: Mapping[str, Any]
    text: Mapping[str, Any]
    embed_dim: int = 256
    fusion: str = "gated"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"unified fusion={self.fusion!r} is not one of {FUSIONS}")
        self.img = build_tower(self.image, "unified image", self.dtype, self.param_dtype,
                               name="img")
        self.txt = build_tower(self.text, "unified text", self.dtype, self.param_dtype,
                               name="txt")
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                     dot_general=dot_general_for(self.dtype))
        self.img_head = nn.Dense(self.embed_dim, use_bias=False, **dense)
        self.txt_head = nn.Dense(self.embed_dim, use_bias=False, **dense)
        if self.fusion == "gated":
            self.gate = nn.Dense(self.embed_dim, kernel_init=KERNEL_INIT, **dense)
        else:
            self.fuse_fc1 = nn.Dense(2 * self.embed_dim, kernel_init=KERNEL_INIT, **dense)
            self.fuse_fc2 = nn.Dense(self.embed_dim, kernel_init=nn.initializers.zeros, **dense)

    def project_image(self, image: jax.Array, train: bool) -> jax.Array:
        return self.img_head(self.img(image, train=train)).astype(jnp.float32)

    def project_text(self, text: jax.Array, train: bool) -> jax.Array:
        return self.txt_head(self.txt(text, train=train)).astype(jnp.float32)

    def fuse(self, p_i: jax.Array, p_t: jax.Array) -> jax.Array:
        both = jnp.concatenate([p_i, p_t], axis=-1).astype(self.dtype)
        if self.fusion == "gated":
            g = jax.nn.sigmoid(self.gate(both).astype(jnp.float32))
            return g * p_i + (1.0 - g) * p_t
        h = nn.relu(self.fuse_fc1(both))
        return p_i + p_t + self.fuse_fc2(h).astype(jnp.float32)

    def encode_image(self, image: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalize(self.project_image(image, train))

    def encode_text(self, text: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalize(self.project_text(text, train))

    def encode_fused(self, image: jax.Array, text: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalize(self.fuse(self.project_image(image, train),
                                      self.project_text(text, train)))

    def encode_pairs(self, image: jax.Array, image2: jax.Array, text: jax.Array,
                     train: bool = False) -> tuple[jax.Array, ...]:
        """(image a, image b, text, image a + text), one pass of each tower per input."""
        n = image.shape[0]
        p = self.project_image(jnp.concatenate([image, image2], axis=0), train)
        p_a, p_b = p[:n], p[n:]
        p_t = self.project_text(text, train)
        return (l2_normalize(p_a), l2_normalize(p_b), l2_normalize(p_t),
                l2_normalize(self.fuse(p_a, p_t)))

    def __call__(self, image: jax.Array, text: jax.Array, train: bool = False
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        p_i, p_t = self.project_image(image, train), self.project_text(text, train)
        return l2_normalize(p_i), l2_normalize(p_t), l2_normalize(self.fuse(p_i, p_t))
