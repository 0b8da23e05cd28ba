"""Small text towers over byte tokens for the 2015 image-text matching system ("Deep Learning
Applied to Image and Text Matching", 2015): bag of words + MLP, n-grams + MLP, and a sequence
encoder. Each maps ByteTokenizer ids ``[B, L]`` (0 = pad, 1 = bos, 2 = eos, byte b = b + 3) to
``[B, width]`` and has ``__call__(tokens, train=False)`` like ``TextTransformer``, so a
``two_tower`` model can use it as its ``text`` tower.

- ``bow_text``: words are maximal runs of ASCII letters/digits (lower-cased; any other byte,
  including multi-byte UTF-8, also counts as a word character so non-Latin text still forms
  words); each word is hashed into ``buckets`` (the hashing trick, Weinberger et al. 2009,
  "Feature Hashing for Large Scale Multitask Learning") and the text is the mean of its words'
  embeddings (an EmbeddingBag: the same as a linear layer on the normalised bag-of-words
  vector), followed by an MLP.
- ``ngram_text``: the same bag over hashed byte n-grams for every n in ``ngrams`` (letter
  n-gram hashing as in DSSM, Huang et al. 2013, "Learning Deep Structured Semantic Models for
  Web Search using Clickthrough Data"); bos/eos take part, so prefixes and suffixes are grams.
- ``seq_text``: byte embeddings, then a GRU (Cho et al. 2014) or a stack of 1-D convolutions
  (Kim 2014, "Convolutional Neural Networks for Sentence Classification"), pooled by the mean
  over non-pad positions or the last non-pad position.

Every bag contains a constant ``<s>`` entry (the bos token, hashed like any other), so an
empty caption still has a non-zero, learned embedding: no zero vector reaches the L2
normalisation of the two-tower head, whose gradient is NaN at zero.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS
from xmodal.nn.layers import EMBED_INIT, KERNEL_INIT
from xmodal.nn.precision import dot_general_for

PAD_ID, BOS_ID, EOS_ID, BYTE_OFFSET = 0, 1, 2, 3
# Multipliers of the polynomial hashes (odd 32-bit constants; uint32 arithmetic wraps).
_HASH_MUL = 0x01000193   # FNV-1 32-bit prime
_GRAM_MULS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def check_ids(ids: jax.Array, kind: str) -> None:
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{kind} expects integer token ids [batch, length], got {ids.dtype} "
                         f"array of shape {ids.shape}")


def check_width(kind: str, **sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"{kind}: {', '.join(f'{k}={v!r}' for k, v in bad.items())} must be "
                         "positive ints")


def _mix(h: jax.Array) -> jax.Array:
    """A 32-bit finaliser (murmur3 fmix32), so nearby polynomial hashes land in far buckets."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def word_hashes(ids: jax.Array, buckets: int) -> tuple[jax.Array, jax.Array]:
    """Hashed bag of words: ``(bucket [B, L] int32, present [B, L] bool)``.

    Position i carries a word when it is the last byte of a word; its bucket is a hash of the
    whole (lower-cased) word. Position 0 (bos) always carries the ``<s>`` entry.
    """
    ids = ids.astype(jnp.int32)
    byte = ids - BYTE_OFFSET
    is_upper = (byte >= ord("A")) & (byte <= ord("Z"))
    byte = jnp.where(is_upper, byte + 32, byte)
    is_alnum = (((byte >= ord("a")) & (byte <= ord("z"))) | ((byte >= ord("0")) & (byte <= ord("9"))))
    is_word = (ids >= BYTE_OFFSET) & (is_alnum | (byte >= 128))

    def step(h, xs):
        b, w = xs
        h = jnp.where(w, h * jnp.uint32(_HASH_MUL) + b.astype(jnp.uint32) + jnp.uint32(1),
                      jnp.uint32(0))
        return h, h

    _, prefix = jax.lax.scan(step, jnp.zeros(ids.shape[0], jnp.uint32),
                             (byte.T, is_word.T))
    prefix = prefix.T                                           # [B, L] hash of word so far
    nxt = jnp.concatenate([is_word[:, 1:], jnp.zeros_like(is_word[:, :1])], axis=1)
    ends = is_word & ~nxt
    bucket = (_mix(prefix) % jnp.uint32(buckets)).astype(jnp.int32)
    bos = ids == BOS_ID
    bucket = jnp.where(bos, 0, bucket)  # <s> is bucket 0 (shared with some words; harmless)
    return bucket, ends | bos


def ngram_hashes(ids: jax.Array, n: int, buckets: int) -> tuple[jax.Array, jax.Array]:
    """Hashed byte n-grams starting at each position: ``(bucket [B, L], present [B, L])``.

    A gram is present when its n tokens are all non-pad; grams of different n hash apart.
    """
    if n < 1 or n > len(_GRAM_MULS):
        raise ValueError(f"n-gram order must be in 1..{len(_GRAM_MULS)}, got {n}")
    ids = ids.astype(jnp.int32)
    length = ids.shape[1]
    h = jnp.full(ids.shape, jnp.uint32(n), jnp.uint32)
    present = jnp.ones(ids.shape, bool)
    for k in range(n):
        # Token k places to the right of each start; beyond the end counts as pad.
        shifted = jnp.pad(ids[:, k:], ((0, 0), (0, k)), constant_values=PAD_ID)[:, :length]
        h = h + shifted.astype(jnp.uint32) * jnp.uint32(_GRAM_MULS[k]) + jnp.uint32(k)
        present = present & (shifted != PAD_ID)
    return (_mix(h) % jnp.uint32(buckets)).astype(jnp.int32), present


class BagMLP(nn.Module):
    """Mean of the embeddings of the present bag entries, then ``Dense-relu-Dense``."""
    buckets: int
    width: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, buckets: jax.Array, present: jax.Array, train: bool) -> jax.Array:
        emb = nn.Embed(self.buckets, self.mlp_dim, embedding_init=EMBED_INIT, name="bag_embed",
                       dtype=jnp.float32, param_dtype=self.param_dtype)(buckets)
        w = present.astype(jnp.float32)[..., None]
        bag = jnp.sum(emb * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=KERNEL_INIT,
                     dot_general=dot_general_for(self.dtype))
        h = nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype, name="ln")(bag)
        h = nn.relu(nn.Dense(self.mlp_dim, name="fc1", **dense)(h.astype(self.dtype)))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.width, name="fc2", **dense)(h)


@MODELS.register("bow_text")
class BowText(nn.Module):
    """Bag of hashed words -> MLP: ids ``[B, L]`` -> ``[B, width]`` (see module docstring)."""
    buckets: int = 4096
    width: int = 256
    mlp_dim: int = 512
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        check_ids(ids, "bow_text")
        check_width("bow_text", buckets=self.buckets, width=self.width, mlp_dim=self.mlp_dim)
        bucket, present = word_hashes(ids, self.buckets)
        return BagMLP(self.buckets, self.width, self.mlp_dim, self.dropout, self.dtype,
                      self.param_dtype, name="bag")(bucket, present, train)


@MODELS.register("ngram_text")
class NgramText(nn.Module):
    """Bag of hashed byte n-grams (every n in ``ngrams``) -> MLP: ``[B, L]`` -> ``[B, width]``."""
    ngrams: Sequence[int] = (1, 2, 3)
    buckets: int = 8192
    width: int = 256
    mlp_dim: int = 512
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        check_ids(ids, "ngram_text")
        check_width("ngram_text", buckets=self.buckets, width=self.width, mlp_dim=self.mlp_dim)
        if not self.ngrams:
            raise ValueError("ngram_text needs at least one n-gram order, e.g. ngrams=(1, 2, 3)")
        grams = [ngram_hashes(ids, int(n), self.buckets) for n in self.ngrams]
        bucket = jnp.concatenate([g[0] for g in grams], axis=1)
        present = jnp.concatenate([g[1] for g in grams], axis=1)
        return BagMLP(self.buckets, self.width, self.mlp_dim, self.dropout, self.dtype,
                      self.param_dtype, name="bag")(bucket, present, train)


ENCODERS = ("gru", "conv")
SEQ_POOLS = ("mean", "last")


@MODELS.register("seq_text")
class SeqText(nn.Module):
    """Byte embeddings -> GRU or 1-D conv stack -> mean/last pool -> Dense: ``[B, L]`` ->
    ``[B, width]``.

    ``encoder="gru"``: one GRU layer of ``width`` units run over the non-pad prefix (padding
    after the text never changes the state read out). ``encoder="conv"``: ``depth`` blocks of
    ``x += relu(conv_k(LN(x)))`` with pad positions zeroed before every convolution.
    Pooling reads only non-pad positions (bos and eos included); an all-pad row gives the
    pooled vector of zeros followed by the output Dense's bias.
    """
    width: int = 256
    embed_dim: int = 64
    encoder: str = "gru"
    depth: int = 2
    kernel_size: int = 3
    pool: str = "mean"
    vocab_size: int = 259
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        check_ids(ids, "seq_text")
        check_width("seq_text", width=self.width, embed_dim=self.embed_dim, depth=self.depth,
                    kernel_size=self.kernel_size)
        if self.encoder not in ENCODERS:
            raise ValueError(f"seq_text encoder={self.encoder!r} is not one of {ENCODERS}")
        if self.pool not in SEQ_POOLS:
            raise ValueError(f"seq_text pool={self.pool!r} is not one of {SEQ_POOLS}")
        valid = ids != PAD_ID
        lengths = jnp.sum(valid, axis=1).astype(jnp.int32)
        x = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=EMBED_INIT,
                     name="token_embed", dtype=jnp.float32, param_dtype=self.param_dtype)(ids)
        if self.encoder == "gru":
            # Float32 recurrence: a bf16 state drifts over long sequences.
            cell = nn.GRUCell(self.width, dtype=jnp.float32, param_dtype=self.param_dtype,
                              name="gru")
            x = nn.RNN(cell, name="rnn")(x, seq_lengths=lengths)
        else:
            x = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="proj")(x.astype(self.dtype))
            for i in range(self.depth):
                h = nn.LayerNorm(dtype=jnp.float32, param_dtype=self.param_dtype,
                                 name=f"ln_{i}")(x)
                h = jnp.where(valid[..., None], h, 0.0).astype(self.dtype)
                h = nn.Conv(self.width, (self.kernel_size,), padding="SAME", dtype=self.dtype,
                            param_dtype=self.param_dtype, name=f"conv_{i}")(h)
                x = x + nn.relu(h)
        x = x.astype(jnp.float32)
        if self.pool == "last":
            last = jnp.maximum(lengths - 1, 0)
            # Pads are trailing for ByteTokenizer ids; the last valid index is lengths - 1.
            pooled = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
            pooled = jnp.where((lengths > 0)[:, None], pooled, 0.0)
        else:
            w = valid.astype(jnp.float32)[..., None]
            pooled = jnp.sum(x * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
        return nn.Dense(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=KERNEL_INIT, dot_general=dot_general_for(self.dtype),
                        name="out")(pooled.astype(self.dtype))
