"""Two towers plus cross-modal fusion and an MLM head (IRRA, LightCLIP).

The global embeddings are exactly those of ``two_tower`` (``z = normalise(head(pooled))``), so
the ``retrieval`` / ``zeroshot`` evaluators work unchanged and inference costs what a plain
two-tower model costs. For training the model also returns token-level outputs:

- ``patches`` [B, P, D]: the image tower's patch tokens through ``img_head`` (same space as
  ``zimg``), for LightCLIP's patch-word matching;
- ``words`` [B, L, D]: the text tower's tokens through ``txt_head``, ``word_mask`` [B, L] True
  at byte tokens (not pad, bos or eos);
- ``mlm_logits`` [B, L, vocab] when a masked caption is given, from one of two fusions
  (``fusion``):
    * ``"encoder"`` (IRRA): masked caption tokens -> ``FusionEncoder`` with the image tokens
      -> ``MLMHead``;
    * ``"inject"`` (LightCLIP): image tokens injected after text blocks ``inject_layers`` of
      the masked pass (``Injection``), then ``MLMHead`` on the text tower's output.

Token ids follow ``xmodal.data.tokenizer`` (0 pad, 1 bos, 2 eos, bytes + 3); the mask token is
``text.vocab_size - 1``, so a text tower used with MLM needs ``vocab_size >= 260`` (259 byte
ids + the mask id).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.data.tokenizer import EOS_ID
from xmodal.core.registry import MODELS, SpecError
from xmodal.nn.fusion import FusionEncoder, Injection, MLMHead, block_names, tower_tokens
from xmodal.nn.precision import dot_general_for
from xmodal.nn.two_tower import ImageTextEncoding, build_tower, l2_normalise

FUSIONS = ("encoder", "inject")
BYTE_VOCAB = 259  # pad, bos, eos + 256 bytes


def word_mask_of(ids: jax.Array) -> jax.Array:
    """True at byte tokens: neither pad (0), bos (1), eos (2) nor anything above the bytes."""
    return (ids > EOS_ID) & (ids < BYTE_VOCAB)


@MODELS.register("fusion_two_tower")
class FusionTwoTower(ImageTextEncoding, nn.Module):
    """Two towers (``img``, ``txt``), heads (``img_head``, ``txt_head``), a learned logit scale,
    and a fusion (``fusion`` submodule or ``inject_<k>``) with an ``mlm_head``."""
    image: Mapping[str, Any]
    text: Mapping[str, Any]
    embed_dim: int = 256
    temperature_init: float = math.log(1 / 0.07)
    bias_init: float | None = None
    fusion: str = "encoder"
    fusion_depth: int = 2
    fusion_heads: int = 4
    fusion_width: int | None = None     # default: the text tower's width
    inject_layers: tuple = (0,)         # text blocks after which "inject" adds image tokens
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion_two_tower fusion={self.fusion!r} is not one of {FUSIONS}")
        self.img = build_tower(self.image, "fusion_two_tower image", self.dtype,
                               self.param_dtype, name="img")
        self.txt = build_tower(self.text, "fusion_two_tower text", self.dtype,
                               self.param_dtype, name="txt")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        head = dict(use_bias=False, dot_general=dot_general_for(self.dtype), **kw)
        self.img_head = nn.Dense(self.embed_dim, **head)
        self.txt_head = nn.Dense(self.embed_dim, **head)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(
            self.temperature_init), (), self.param_dtype)
        if self.bias_init is not None:
            self.logit_bias = self.param("logit_bias", nn.initializers.constant(self.bias_init),
                                         (), self.param_dtype)
        vocab = self.text.get("vocab_size", BYTE_VOCAB)
        if self.fusion == "encoder":
            width = self.fusion_width or self.text.get("width", 256)
            self.fusion_encoder = FusionEncoder(width, self.fusion_depth, self.fusion_heads,
                                                name="fusion", **kw)
        else:
            names = block_names(self.inject_layers, self.text.get("depth", 6))
            self.injections = {n: Injection(self.fusion_heads, name=f"inject_{n}", **kw)
                               for n in names}
        self.mlm_head = MLMHead(vocab, name="mlm_head", **kw)

    @property
    def mask_id(self) -> int:
        return self.text.get("vocab_size", BYTE_VOCAB) - 1

    # ------------------------------------------------------------------ inference
    def encode_image(self, image: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalise(self.img_head(self.img(image, train=train)))

    def encode_text(self, text: jax.Array, train: bool = False) -> jax.Array:
        return l2_normalise(self.txt_head(self.txt(text, train=train)))

    # ------------------------------------------------------------------ training outputs
    def image_tokens(self, image: jax.Array, train: bool = False):
        pooled, tokens = tower_tokens(self.img, image, train)
        if self.image.get("pool") == "cls":
            tokens = tokens[:, 1:]  # the cls token is not a patch
        return pooled, tokens

    def mlm_logits(self, image_tokens: jax.Array, masked_text: jax.Array,
                   train: bool = False) -> jax.Array:
        """[B, L, vocab] logits for the masked caption, fused with the image tokens."""
        if self.fusion == "encoder":
            _, tokens = tower_tokens(self.txt, masked_text, train)
            tokens = self.fusion_encoder(tokens, masked_text != 0, image_tokens)
        else:
            edits = {n: (lambda x, inj=inj: inj(x, image_tokens))
                     for n, inj in self.injections.items()}
            _, tokens = tower_tokens(self.txt, masked_text, train, edits)
        return self.mlm_head(tokens)

    def __call__(self, image: jax.Array, text: jax.Array, masked_text: jax.Array | None = None,
                 train: bool = False) -> dict[str, jax.Array | None]:
        """Every output a loss may need; ``mlm_logits`` only when ``masked_text`` is given."""
        img_pooled, img_tokens = self.image_tokens(image, train)
        txt_pooled, txt_tokens = tower_tokens(self.txt, text, train)
        out = {
            "zimg": l2_normalise(self.img_head(img_pooled)),
            "ztxt": l2_normalise(self.txt_head(txt_pooled)),
            "patches": self.img_head(img_tokens).astype(jnp.float32),
            "words": self.txt_head(txt_tokens).astype(jnp.float32),
            "word_mask": word_mask_of(text),
            "logit_scale": jnp.exp(self.logit_scale.astype(jnp.float32)),
            "logit_bias": (self.logit_bias.astype(jnp.float32) if self.bias_init is not None
                           else None),
            "mlm_logits": None,
        }
        if masked_text is not None:
            out["mlm_logits"] = self.mlm_logits(img_tokens, masked_text, train)
        return out


def check_fusion_model(model: Any, name: str, needs_mlm: bool) -> None:
    """Raises SpecError unless ``model`` is a fusion two-tower (with a usable MLM mask id)."""
    if not hasattr(model, "mlm_logits"):
        raise SpecError(f"objective {name} needs model fusion_two_tower (token outputs and an "
                        f"MLM head); got {type(model).__name__}")
    if needs_mlm and model.mask_id <= 258:
        raise SpecError(f"objective {name} with MLM needs model.text.vocab_size >= 260 (259 "
                        f"byte ids + a mask id); got {model.mask_id + 1}")
