"""Text Transformer tower over byte-level token ids (as in CLIP's text encoder, Radford et al.,
"Learning Transferable Visual Models From Natural Language Supervision", 2021).

Token ids: 0 = pad, 1 = bos, 2 = eos, byte b = b + 3, so ``vocab_size = 259``. Pads are masked
out as attention keys and from pooling, so appending pads never changes the output:

- ``"eos"``: the hidden state at the last non-pad position (the eos token for well-formed
  input; with ``causal=True`` the only position that has seen the whole text);
- ``"mean"``: the mean of the hidden states at non-pad positions;
- ``"argmax"``: the hidden state at the largest token id of each row, CLIP's end-of-text
  pooling (open_clip's ``text_global_pool(..., "argmax")``; CLIP's end token 49407 is its
  largest id).

Optional fields for OpenAI / open_clip CLIP text towers (defaults keep xmodal's behaviour and
parameter tree): ``pad_mask=False`` stops treating id 0 as padding in attention (in CLIP's BPE
vocabulary id 0 is "!"; CLIP masks only causally, and with ``causal=True`` the positions after
the end token cannot reach it), and ``activation`` / ``ln_epsilon`` of the blocks
(``xmodal.nn.layers``). The encoder's final LayerNorm is CLIP's ``ln_final``.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import EMBED_INIT, Encoder, check_tower, constrain

PAD_ID = 0
POOLS = ("eos", "mean", "argmax")


@MODELS.register("text_transformer")
class TextTransformer(nn.Module):
    """Token ids ``[B, L]`` (int, 0 = pad, ``L <= max_len``) -> ``[B, width]``.

    Parameters: ``token_embed/embedding`` ``[vocab_size, width]``, ``pos_embedding``
    ``[1, max_len, width]``, then ``encoder/...``. ``mlp_dim`` defaults to ``4 * width``.
    The fields after ``param_dtype`` are the optional CLIP ones of the module docstring.
    """
    vocab_size: int = 259
    max_len: int = 64
    width: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_dim: int | None = None
    pool: str = "eos"
    causal: bool = False
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    pad_mask: bool = True
    activation: str = "gelu"
    ln_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        check_tower("TextTransformer", self.width, self.depth, self.num_heads, self.dropout)
        if self.pool not in POOLS:
            raise ValueError(f"TextTransformer pool={self.pool!r} is not one of "
                             f"{', '.join(POOLS)}")
        if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"TextTransformer expects integer token ids [batch, length], got "
                             f"{ids.dtype} array of shape {ids.shape}")
        length = ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"TextTransformer got {length} tokens but max_len={self.max_len}; "
                             "truncate the text or raise max_len")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        valid = ids != PAD_ID  # [B, L]

        x = nn.Embed(self.vocab_size, self.width, embedding_init=EMBED_INIT,
                     name="token_embed", **kw)(ids)
        pos = self.param("pos_embedding", EMBED_INIT, (1, self.max_len, self.width),
                         self.param_dtype)
        x = constrain(x + pos[:, :length].astype(self.dtype), "batch", "length", "embed")
        mask = valid[:, None, None, :] if self.pad_mask else None  # keys: [B, 1, 1, k]
        if self.causal:
            causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
            mask = causal if mask is None else mask & causal
        x = Encoder(self.depth, self.num_heads, self.mlp_dim or 4 * self.width, self.dropout,
                    activation=self.activation, ln_epsilon=self.ln_epsilon, name="encoder",
                    **kw)(x, mask, train)

        if self.pool == "argmax":
            last = jnp.argmax(ids, axis=1)
            return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]

        if self.pool == "eos":
            # Last non-pad position; robust to any padding side. An all-pad row reads position 0.
            last = jnp.argmax(jnp.where(valid, jnp.arange(length), -1), axis=1)
            return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
        w = valid.astype(jnp.float32)[..., None]
        total = jnp.sum(x.astype(jnp.float32) * w, axis=1)
        return (total / jnp.maximum(jnp.sum(w, axis=1), 1.0)).astype(self.dtype)
