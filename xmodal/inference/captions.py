"""Using a trained captioner (``xmodal.nn.captioner``): decode captions, and score every caption
against every item by its teacher-forced likelihood (retrieval with the captioner itself).

Decoding runs :mod:`xmodal.decoding` over one of two step functions that give the same logits:

- :func:`cached_step`: the decoder with its key/value cache, one position's work per token;
- :func:`uncached_step`: the whole decoder over the token buffer at every step (no cache; the
  reference the cache is tested against, and the baseline of ``bench/decoding.py``).

:func:`pair_nll` is the N×M matrix ``-log p(caption_j | item_i)``, computed in blocks of items ×
captions with the block's pairs split over the mesh's batch axes, so no N×M×L×V logits are ever
held: a block of ``items_per_block × captions_per_block`` pairs at a time.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from xmodal import decoding
from xmodal.core import parallel
from xmodal.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from xmodal.losses.sequence import sequence_nll, shift
from xmodal.nn.decoder import init_cache

METHODS = ("greedy", "beam", "sample")


def cached_step(model, params: dict) -> tuple[Callable, Callable]:
    """``(start(memory) -> state, step)`` for :mod:`xmodal.decoding` with the key/value cache;
    the state carries the memory so beam search reorders it with the cache."""
    dec = model.decoder_module(decode=True)

    def start(memory):
        return init_cache(dec, params["dec"], memory), memory

    def step(ids, state):
        cache, memory = state
        logits, variables = dec.apply({"params": params["dec"], "cache": cache}, ids[:, None],
                                      memory, mutable=["cache"])
        return logits[:, 0], (variables["cache"], memory)
    return start, step


def uncached_step(model, params: dict) -> tuple[Callable, Callable]:
    """The same contract without a cache: the state is the token buffer, the next position
    and the memory; each step runs the decoder over the whole buffer (causal, so the unwritten
    positions do not matter) and reads the logits at the newest token."""
    dec = model.decoder_module(decode=False)

    def start(memory):
        return (jnp.zeros((memory.shape[0], model.max_len), jnp.int32), jnp.zeros((), jnp.int32),
                memory)

    def step(ids, state):
        buffer, pos, memory = state
        buffer = jax.lax.dynamic_update_slice_in_dim(buffer, ids[:, None].astype(jnp.int32),
                                                     pos, 1)
        logits = dec.apply({"params": params["dec"]}, buffer, memory)
        return jax.lax.dynamic_index_in_dim(logits, pos, 1, keepdims=False), (buffer, pos + 1,
                                                                              memory)
    return start, step


def generate(model, params: dict, memory: jax.Array, method: str = "beam", *, beams: int = 4,
             alpha: float = 0.0, rng: jax.Array | None = None, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, cached: bool = True,
             max_len: int | None = None) -> jax.Array:
    """Token ids ``[B, max_len]`` decoded from ``memory`` [B, S, D] (``decoding``'s layout:
    bos first, pad after eos). ``method``: "greedy", "beam" (the best of ``beams``, GNMT length
    penalty ``alpha``) or "sample" (``rng`` required; ``temperature``, ``top_k``, ``top_p``)."""
    if method not in METHODS:
        raise ValueError(f"decoding method {method!r} is not one of {', '.join(METHODS)}")
    max_len = max_len or model.max_len
    start, step = (cached_step if cached else uncached_step)(model, params)
    batch = memory.shape[0]
    tokens = dict(bos_id=BOS_ID, eos_id=EOS_ID, pad_id=PAD_ID)
    if method == "greedy":
        return decoding.greedy(step, start(memory), batch, max_len, **tokens)
    if method == "sample":
        if rng is None:
            raise ValueError("sampled decoding needs an rng")
        return decoding.sample(step, start(memory), batch, max_len, rng=rng,
                               temperature=temperature, top_k=top_k, top_p=top_p, **tokens)
    state = start(decoding.repeat_for_beams(memory, beams))
    ids, _ = decoding.beam_search(step, state, batch, max_len, beams=beams, alpha=alpha,
                                  **tokens)
    return ids[:, 0]


def caption_nll(model, params: dict, memory: jax.Array, ids: jax.Array,
                unconditional: bool = False) -> jax.Array:
    """``[B]``: ``-log p(ids_b | memory_b)`` summed over the caption's tokens and its eos
    (``unconditional``: under the decoder's null memory instead of ``memory``)."""
    inputs, targets, weights = shift(ids)
    drop = jnp.full((ids.shape[0],), unconditional) if unconditional else None
    logits = model.apply({"params": params}, memory, inputs, drop, method="logits")
    return sequence_nll(logits, targets, weights)


_BLOCKS: dict = {}


def _pair_block(model, mesh: Mesh, a: int, c: int) -> Callable:
    """The jitted block of ``a`` items × ``c`` captions, one per (model, mesh, a, c), so an
    evaluation run again during training reuses its compiled program."""
    key = (id(model), id(mesh), a, c)
    if key not in _BLOCKS:
        pairs = NamedSharding(mesh, P(tuple(x for x in parallel.BATCH_AXES if x in mesh.shape)))

        @jax.jit
        def block(params, mem, caps):
            mem = jnp.repeat(mem, c, axis=0)                  # pair (i, j) at row i * c + j
            caps = jnp.tile(caps, (a, 1))
            mem = jax.lax.with_sharding_constraint(mem, pairs)
            caps = jax.lax.with_sharding_constraint(caps, pairs)
            return caption_nll(model, params, mem, caps).reshape(a, c)
        _BLOCKS[key] = block
    return _BLOCKS[key]


def pair_nll(model, params: dict, memory: np.ndarray, ids: np.ndarray, mesh: Mesh,
             items_per_block: int = 16, captions_per_block: int = 32) -> np.ndarray:
    """``[N, M]`` float32: ``-log p(caption_j | item_i)`` for every item's memory
    (``memory`` [N, S, D], from ``encode``) and every caption (``ids`` [M, L]); see the
    module docstring for the blocks."""
    n, m = len(memory), len(ids)
    a, c = min(items_per_block, n), min(captions_per_block, m)
    shards = parallel.batch_size_per_device(mesh)
    if (a * c) % shards:
        c = -(-c // shards) * shards  # a block's pairs split evenly over the batch axes
    block = _pair_block(model, mesh, a, c)

    def padded(x, start, size):
        rows = np.asarray(x[start:start + size])
        return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), 0)])

    out = np.zeros((n, m), np.float32)
    for i in range(0, n, a):
        mem = padded(memory, i, a)
        for j in range(0, m, c):
            scores = np.asarray(jax.device_get(block(params, mem, padded(ids, j, c))))
            out[i:i + a, j:j + c] = scores[:min(a, n - i), :min(c, m - j)]
    return out
