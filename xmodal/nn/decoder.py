"""Autoregressive Transformer decoder with cross-attention to an encoder's token sequence (the
decoder of Vaswani et al., "Attention Is All You Need", 2017, pre-LN), and the key/value cache
that makes decoding one token per step cost one position's work.

    ids [B, L] (0 = pad)  +  memory [B, S, D_m] (an encoder's tokens)  ->  logits [B, L, vocab]

Each block: ``x += self_attn(ln1(x))`` (causal), ``x += cross_attn(ln2(x), memory)``,
``x += mlp(ln3(x))``; a final LayerNorm, then the output projection: the token embedding's
transpose (``tie_embedding=True``, Press & Wolf 2017) or its own ``head`` Dense. Memory of
another width is projected to the decoder's (``memory_proj``).

Positions (``positions``): ``"learned"`` (an embedding added to the tokens, CLIP/GPT-2) or
``"rope"`` (rotary positions on queries and keys, Su et al., "RoFormer", 2021; relative, so it
needs no table).

Parameter names follow ``xmodal.nn.layers`` so the towers' sharding rules address them:
``block_i/self_attn/{query,key,value,out}/kernel``, ``block_i/cross_attn/...``,
``block_i/mlp/{fc1,fc2}/kernel``, ``token_embed/embedding`` ``[vocab, width]``, ``head/kernel``.

**Decoding** (``decode=True``): the ``cache`` collection holds each block's keys and values for
every position written so far and one ``index`` (the next position to write). It is made by a
first apply with ``mutable=["cache"]`` on a ``[B, max_len]`` placeholder (:func:`init_cache`);
each later call takes ``[B, 1]`` ids, writes its keys and values at ``index`` and attends to
positions ``<= index`` only. Shapes are fixed, so one compiled step serves every position.
Cross-attention keys and values are recomputed from the memory each step (the memory is short
next to the decoder's MLPs: an audio clip's 16-64 tokens).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.nn.layers import (EMBED_INIT, KERNEL_INIT, MLP, Attention, LayerNorm, check_tower,
                              constrain, dot_product_attention)
from xmodal.nn.precision import dot_general_for

Dtype = Any
POSITIONS = ("learned", "rope")


def rotate(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding of ``x`` [B, L, heads, head_dim] at ``positions`` [B, L]:
    channel pairs (i, i + head_dim/2) rotate by ``position * base^(-2i/head_dim)`` (the
    GPT-NeoX layout). A query at position p and a key at q then score as a function of p - q."""
    half = x.shape[-1] // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions.astype(jnp.float32)[..., None, None] * freqs       # [B, L, 1, half]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).astype(x.dtype)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention with an optional key/value cache (module docstring).
    ``positions`` [B, L] are the tokens' absolute positions (for rotary positions and, when
    decoding, where in the cache they go)."""
    num_heads: int
    rope: bool = False
    decode: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        batch, length, width = x.shape
        head_dim = width // self.num_heads
        dot = dot_general_for(self.dtype)

        def proj(name: str) -> jax.Array:
            y = nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                param_dtype=self.param_dtype, kernel_init=KERNEL_INIT,
                                dot_general=dot, name=name)(x)
            return constrain(y, "batch", "length", "heads", "kv")

        q, k, v = proj("query"), proj("key"), proj("value")
        if self.rope:
            q, k = rotate(q, positions), rotate(k, positions)
        query_pos, key_pos = positions, positions
        if self.decode:
            # The first (placeholder) apply makes the cache at full length; later calls fill it.
            filled = self.has_variable("cache", "cached_key")
            cached_k = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
            cached_v = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
            if filled:
                if length != 1:
                    raise ValueError(f"cached decoding takes one token per step, got {length}")
                at = positions[0, 0]
                cached_k.value = jax.lax.dynamic_update_slice_in_dim(cached_k.value, k, at, 1)
                cached_v.value = jax.lax.dynamic_update_slice_in_dim(cached_v.value, v, at, 1)
                k, v = cached_k.value, cached_v.value
                key_pos = jnp.broadcast_to(jnp.arange(k.shape[1]), (batch, k.shape[1]))
        mask = (key_pos[:, None, None, :] <= query_pos[:, None, :, None])   # [B, 1, q, k]
        y = dot_product_attention(q, k, v, mask, self.dtype)
        y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                            kernel_init=KERNEL_INIT, dot_general=dot, name="out")(y)
        return constrain(y, "batch", "length", "embed")


class DecoderBlock(nn.Module):
    num_heads: int
    mlp_dim: int
    rope: bool = False
    decode: bool = False
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, positions, memory, memory_mask, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        drop = nn.Dropout(self.dropout, deterministic=not train)
        y = LayerNorm(name="ln1", **kw)(x)
        x = x + drop(CausalSelfAttention(self.num_heads, self.rope, self.decode,
                                         name="self_attn", **kw)(y, positions))
        y = LayerNorm(name="ln2", **kw)(x)
        x = x + drop(Attention(self.num_heads, name="cross_attn", **kw)(y, memory, memory_mask))
        y = LayerNorm(name="ln3", **kw)(x)
        x = x + drop(MLP(self.mlp_dim, name="mlp", **kw)(y))
        return constrain(x, "batch", "length", "embed")


class TransformerDecoder(nn.Module):
    """``(ids [B, L], memory [B, S, D_m], memory_valid [B, S] or None) -> logits [B, L, V]``
    (f32). ``memory_valid`` False marks memory tokens to ignore (padding); ``drop_memory`` [B]
    True replaces a row's memory by the learned ``null_memory`` (unconditional). See the module
    docstring for ``decode``; ``max_len`` bounds L (and the cache)."""
    vocab_size: int = 259
    max_len: int = 64
    width: int = 256
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int | None = None
    positions: str = "learned"
    tie_embedding: bool = True
    dropout: float = 0.0
    decode: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, memory: jax.Array,
                 memory_valid: jax.Array | None = None, train: bool = False,
                 drop_memory: jax.Array | None = None) -> jax.Array:
        check_tower("TransformerDecoder", self.width, self.depth, self.num_heads, self.dropout)
        if self.positions not in POSITIONS:
            raise ValueError(f"TransformerDecoder positions={self.positions!r} is not one of "
                             f"{', '.join(POSITIONS)}")
        batch, length = ids.shape
        if length > self.max_len:
            raise ValueError(f"TransformerDecoder got {length} tokens but max_len="
                             f"{self.max_len}; truncate the text or raise max_len")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
        if self.decode:
            filled = self.has_variable("cache", "index")
            index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
            if filled:
                positions = jnp.full((batch, length), index.value)
                index.value = index.value + length
        embed = nn.Embed(self.vocab_size, self.width, embedding_init=EMBED_INIT,
                         name="token_embed", **kw)
        x = embed(ids)
        if self.positions == "learned":
            table = self.param("pos_embedding", EMBED_INIT, (self.max_len, self.width),
                               self.param_dtype)
            x = x + jnp.take(table, positions, axis=0).astype(self.dtype)
        x = constrain(x, "batch", "length", "embed")
        if memory.shape[-1] != self.width:
            memory = nn.Dense(self.width, name="memory_proj", kernel_init=KERNEL_INIT,
                              dot_general=dot_general_for(self.dtype), **kw)(memory)
        memory = constrain(memory.astype(self.dtype), "batch", "length", "embed")
        # A learned stand-in for "no condition": rows with drop_memory attend to it alone, so
        # the same decoder is also an unconditional language model (trained by dropping the
        # memory of some rows; read to normalise a caption's likelihood).
        null = self.param("null_memory", EMBED_INIT, (self.width,), self.param_dtype)
        if drop_memory is not None:
            first = jnp.arange(memory.shape[1]) == 0                        # [S]
            memory = jnp.where(drop_memory[:, None, None], null.astype(self.dtype), memory)
            valid = jnp.ones(memory.shape[:2], bool) if memory_valid is None else memory_valid
            memory_valid = jnp.where(drop_memory[:, None], first[None], valid)
        memory_mask = None if memory_valid is None else memory_valid[:, None, None, :]
        for i in range(self.depth):
            x = DecoderBlock(self.num_heads, self.mlp_dim or 4 * self.width,
                             self.positions == "rope", self.decode, self.dropout,
                             name=f"block_{i}", **kw)(x, positions, memory, memory_mask, train)
        x = LayerNorm(name="ln_final", **kw)(x)
        if self.tie_embedding:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(self.vocab_size, name="head", kernel_init=KERNEL_INIT,
                              dot_general=dot_general_for(self.dtype), **kw)(x)
        return constrain(logits.astype(jnp.float32), "batch", "length", "vocab")


def init_cache(decoder: TransformerDecoder, params: Any, memory: jax.Array) -> Any:
    """An empty cache for ``decoder`` (``decode=True``) with ``memory``'s rows: every block's
    keys and values at ``max_len`` positions, ``index`` 0."""
    placeholder = jnp.zeros((memory.shape[0], decoder.max_len), jnp.int32)
    # Only the cache's shapes are read from the placeholder pass: nothing of it is computed.
    shapes = jax.eval_shape(lambda: decoder.apply({"params": params}, placeholder, memory,
                                                  mutable=["cache"])[1]["cache"])
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
