"""Cross-modal fusion: text tokens attend to image patch tokens, and a masked-language-model
head reads the fused text tokens.

Two published uses share these pieces:

- IRRA (Jiang & Ye 2023, "Cross-Modal Implicit Relation Reasoning and Aligning for Text-to-Image
  Person Retrieval"): implicit relation reasoning is cross-modal MLM. The masked caption's
  tokens (queries) cross-attend to the image's patch tokens in a small multimodal encoder,
  and the MLM head predicts the masked tokens:

      h = FusionEncoder(text_tokens(masked caption), image_tokens(image))
      logits = MLMHead(h)                      [B, L, vocab]

- LightCLIP (Nie et al. 2023, "LightCLIP: Learning Multi-Level Interaction for Lightweight
  Vision-Language Models"): an auxiliary fusion module injects the (unmasked) image tokens
  into the masked text tokens *at several stages of the text encoder*; after text block k,

      x_k <- x_k + CrossAttention(LN(x_k), LN(image_tokens))      (``Injection``)

  and the MLM head reads the text encoder's output. Only the MLM pass is fused, so inference
  (``encode_text``) costs nothing extra. ``tower_tokens`` below captures and modifies the
  towers' token sequences without touching the tower code.

Each fusion block is pre-LN (Xiong et al. 2020):
``x += SelfAttn(LN(x), text mask); x += CrossAttn(LN(x), LN(img)); x += MLP(LN(x))``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.nn.layers import MLP, Attention, LayerNorm, constrain
from xmodal.nn.precision import dot_general_for

Dtype = Any


class FusionBlock(nn.Module):
    """One pre-LN block: text self-attention (pads masked), cross-attention to image, MLP."""
    num_heads: int
    mlp_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, text: jax.Array, text_mask: jax.Array, image: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(name="ln_self", **kw)(text)
        text = text + Attention(self.num_heads, name="self_attn", **kw)(
            y, y, text_mask[:, None, None, :])
        y = LayerNorm(name="ln_cross", **kw)(text)
        # Every image token is a valid key: no mask.
        text = text + Attention(self.num_heads, name="cross_attn", **kw)(
            y, LayerNorm(name="ln_image", **kw)(image))
        text = text + MLP(self.mlp_dim, name="mlp", **kw)(LayerNorm(name="ln_mlp", **kw)(text))
        return constrain(text, "batch", "length", "embed")


class FusionEncoder(nn.Module):
    """``(text [B, L, Wt], text_mask [B, L] bool, image [B, P, Wi]) -> [B, L, width]``.

    Both token sequences are first projected to ``width`` (``text_in``, ``image_in``), then
    ``depth`` ``FusionBlock`` s and a final LayerNorm. ``depth = 0`` leaves only the
    projections and LayerNorm (the text then never sees the image: a text-only MLM baseline).
    """
    width: int
    depth: int = 2
    num_heads: int = 4
    mlp_dim: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, text: jax.Array, text_mask: jax.Array, image: jax.Array) -> jax.Array:
        if self.depth < 0 or self.width % self.num_heads:
            raise ValueError(f"FusionEncoder: depth={self.depth} must be >= 0 and width="
                             f"{self.width} divisible by num_heads={self.num_heads}")
        if text.ndim != 3 or image.ndim != 3 or text.shape[0] != image.shape[0]:
            raise ValueError(f"FusionEncoder expects text [B, L, W] and image [B, P, W] with "
                             f"the same B; got {text.shape} and {image.shape}")
        if text_mask.shape != text.shape[:2]:
            raise ValueError(f"FusionEncoder text_mask must be [B, L] = {text.shape[:2]}, got "
                             f"{text_mask.shape}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        dense = dict(dot_general=dot_general_for(self.dtype), **kw)
        x = nn.Dense(self.width, name="text_in", **dense)(text)
        img = nn.Dense(self.width, name="image_in", **dense)(image)
        for i in range(self.depth):
            x = FusionBlock(self.num_heads, self.mlp_dim or 4 * self.width, name=f"block_{i}",
                            **kw)(x, text_mask, img)
        return LayerNorm(name="ln_final", **kw)(x)


class Injection(nn.Module):
    """LightCLIP's injection at one text stage: ``x + CrossAttn(LN(x), LN(Dense(image)))``."""
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, text: jax.Array, image: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        img = nn.Dense(text.shape[-1], name="image_in", dot_general=dot_general_for(self.dtype),
                       **kw)(image)
        y = Attention(self.num_heads, name="cross_attn", **kw)(
            LayerNorm(name="ln_text", **kw)(text), LayerNorm(name="ln_image", **kw)(img))
        return text + y


class MLMHead(nn.Module):
    """BERT's MLM head (Devlin et al. 2019): ``Dense(vocab)(LN(gelu(Dense(width)(h))))``,
    logits in float32."""
    vocab_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                     dot_general=dot_general_for(self.dtype))
        h = nn.gelu(nn.Dense(h.shape[-1], name="transform", **dense)(h))
        h = LayerNorm(name="ln", dtype=self.dtype, param_dtype=self.param_dtype)(h)
        return nn.Dense(self.vocab_size, name="decoder", **dense)(h).astype(jnp.float32)


def tower_tokens(tower: nn.Module, inputs: jax.Array, train: bool = False,
                 edits: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None
                 ) -> tuple[jax.Array, jax.Array]:
    """``(pooled, tokens)`` of a tower whose body is an ``encoder`` submodule (ViT,
    TextTransformer): ``tokens`` is the encoder's output sequence (after its final LayerNorm),
    captured with ``flax.linen.intercept_methods`` so the tower code stays as it is.

    ``edits`` maps an encoder block name (``"block_1"``) to a function applied to that block's
    output before the next block sees it (LightCLIP's injection of image tokens).
    """
    prefix = tower.scope.path + ("encoder",)
    edits = dict(edits or {})
    seen: dict[str, jax.Array] = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        path = context.module.scope.path
        if path == prefix:
            seen["tokens"] = out
        elif path[:-1] == prefix and path[-1] in edits:
            seen[path[-1]] = out
            out = edits[path[-1]](out)
        return out

    with nn.intercept_methods(interceptor):
        pooled = tower(inputs, train=train)
    if "tokens" not in seen:
        raise ValueError(f"tower {type(tower).__name__} has no 'encoder' submodule to read "
                         "tokens from; use vit or text_transformer towers")
    missing = sorted(set(edits) - set(seen))
    if missing:
        raise ValueError(f"tower {type(tower).__name__} has no encoder block(s) {missing} to "
                         f"inject into; check inject_layers against the text depth")
    return pooled, seen["tokens"]


def block_names(layers: Sequence[int], depth: int) -> list[str]:
    """``(0, 2)`` -> ``["block_0", "block_2"]``, each index checked against ``depth``."""
    bad = [i for i in layers if not 0 <= int(i) < depth]
    if bad:
        raise ValueError(f"inject_layers {tuple(layers)} must lie in [0, {depth}) (text depth)")
    return [f"block_{int(i)}" for i in layers]
