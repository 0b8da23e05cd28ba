"""Encoder-decoder captioner: any registered tower that returns a token sequence (an audio CNN
with ``pool="none"``, a ViT without pooling) feeds a :class:`TransformerDecoder` by
cross-attention (the AAC systems of the DCASE challenge; the captioner of Labbé et al.,
"Killing two birds with one stone: Can an audio captioning system also be used for audio-text
retrieval?", 2023).

    model.apply(v, x, ids[:, :-1])             -> logits [B, L-1, V]  (teacher forcing)
    model.apply(v, x, method="encode")         -> memory [B, S, D]
    model.apply(v, memory, ids, method="logits", drop_memory=...)   the decoder alone

Parameters: ``enc/...`` (the tower's own tree) and ``dec/...`` (``xmodal.nn.decoder``).
Decoding with the key/value cache or without it: :mod:`xmodal.inference.captions`.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.core.registry import MODELS, SpecError
from xmodal.nn.decoder import TransformerDecoder
from xmodal.nn.two_tower import build_tower


def decoder_fields() -> tuple[str, ...]:
    """The ``decoder`` keys a spec may set (dtype and decode are the model's to set)."""
    return tuple(f for f in TransformerDecoder.__dataclass_fields__
                 if f not in ("parent", "name", "dtype", "param_dtype", "decode"))


@MODELS.register("captioner")
class Captioner(nn.Module):
    """``encoder``: a tower spec ``{"name": ..., **kwargs}`` returning ``[B, S, D]``;
    ``decoder``: :class:`TransformerDecoder` arguments (``vocab_size``, ``max_len``, ``width``,
    ``depth``, ``num_heads``, ``positions``, ``tie_embedding``, ``dropout``...)."""
    encoder: Mapping[str, Any]
    decoder: Mapping[str, Any]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self):
        unknown = sorted(set(self.decoder) - set(decoder_fields()))
        if unknown:
            raise SpecError(f"model.decoder: unknown keys {unknown}; valid keys: "
                            f"{', '.join(decoder_fields())}")
        self.enc = build_tower(dict(self.encoder), "model.encoder", self.dtype,
                               self.param_dtype, name=None)
        self.dec = TransformerDecoder(**dict(self.decoder), dtype=self.dtype,
                                      param_dtype=self.param_dtype)

    def decoder_module(self, decode: bool) -> TransformerDecoder:
        """The decoder as a module of its own (``decode=True``: with the cache), applied with
        ``params["dec"]``."""
        return TransformerDecoder(**dict(self.decoder), decode=decode, dtype=self.dtype,
                                  param_dtype=self.param_dtype, parent=None)

    @property
    def max_len(self) -> int:
        return self.decoder.get("max_len", TransformerDecoder.max_len)

    def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
        memory = self.enc(x, train=train)
        if memory.ndim != 3:
            raise SpecError(f"captioner: the encoder {self.encoder.get('name')!r} returns shape "
                            f"{memory.shape}; the decoder needs a token sequence [B, S, D] "
                            "(an audio_encoder wants pool='none')")
        return memory

    def logits(self, memory: jax.Array, ids: jax.Array, drop_memory: jax.Array | None = None,
               train: bool = False) -> jax.Array:
        return self.dec(ids, memory, None, train, drop_memory)

    def __call__(self, x: jax.Array, ids: jax.Array, train: bool = False,
                 drop_memory: jax.Array | None = None) -> jax.Array:
        return self.logits(self.encode(x, train), ids, drop_memory, train)
