"""Decoding a sequence from an autoregressive model, one token per step, at fixed shapes (jit
compiles one step for every position): greedy, temperature / top-k / top-p sampling, and beam
search with a length penalty.

A model is a step function ``step(ids [N], state) -> (logits [N, V], state)``: the next-token
logits after the tokens fed so far, ``state`` being whatever it carries between steps (a
``TransformerDecoder``'s key/value cache, or, uncached, the whole token buffer: see
:func:`xmodal.nn.decoder.init_cache` and the captioner's step functions). Beam search reorders
rows of ``state``: every array in it with a leading axis of N is gathered along that axis.

Every decoder returns ``ids [B, max_len]``: ``bos`` first, then the decoded tokens, ``eos``
where a sequence ended and ``pad`` after it; a sequence that never emits ``eos`` fills the
buffer (the caller's ``max_len`` is the model's context).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
StepFn = Callable[[Array, Any], tuple[Array, Any]]
NEG_INF = -1e30


def filter_logits(logits: Array, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> Array:
    """``logits / temperature`` with everything outside the ``top_k`` largest (0 = all) and
    outside the smallest set whose probability reaches ``top_p`` (nucleus sampling, Holtzman et
    al., "The Curious Case of Neural Text Degeneration", 2020) set to -inf. The most likely
    token always survives."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for 0), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    logits = logits.astype(jnp.float32) / temperature
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # Keep a token when the mass before it is below top_p (so the first always stays).
        before = jnp.cumsum(probs, axis=-1) - probs
        keep_sorted = before < top_p
        keep = jnp.zeros_like(keep_sorted).at[
            jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, NEG_INF)
    return logits


def _emit(ids: Array, done: Array, pos: int | Array, token: Array, pad_id: int, eos_id: int):
    token = jnp.where(done, pad_id, token)
    ids = jax.lax.dynamic_update_slice_in_dim(ids, token[:, None].astype(ids.dtype), pos, 1)
    return ids, done | (token == eos_id)


def sample(step: StepFn, state: Any, batch: int, max_len: int, *, rng: Array, bos_id: int,
           eos_id: int, pad_id: int = 0, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> Array:
    """Ancestral sampling from :func:`filter_logits` at every step (``top_k=1`` is greedy).
    Returns ``ids [batch, max_len]`` (module docstring)."""
    ids = jnp.full((batch, max_len), pad_id, jnp.int32).at[:, 0].set(bos_id)

    def body(carry, pos):
        ids, done, state, rng = carry
        logits, state = step(ids[:, pos - 1], state)
        rng, key = jax.random.split(rng)
        token = jax.random.categorical(key, filter_logits(logits, temperature, top_k, top_p))
        ids, done = _emit(ids, done, pos, token, pad_id, eos_id)
        return (ids, done, state, rng), None

    carry = (ids, jnp.zeros((batch,), bool), state, rng)
    (ids, _, _, _), _ = jax.lax.scan(body, carry, jnp.arange(1, max_len))
    return ids


def greedy(step: StepFn, state: Any, batch: int, max_len: int, *, bos_id: int, eos_id: int,
           pad_id: int = 0) -> Array:
    """The most likely token at every step."""
    ids = jnp.full((batch, max_len), pad_id, jnp.int32).at[:, 0].set(bos_id)

    def body(carry, pos):
        ids, done, state = carry
        logits, state = step(ids[:, pos - 1], state)
        ids, done = _emit(ids, done, pos, jnp.argmax(logits, axis=-1), pad_id, eos_id)
        return (ids, done, state), None

    (ids, _, _), _ = jax.lax.scan(body, (ids, jnp.zeros((batch,), bool), state),
                                  jnp.arange(1, max_len))
    return ids


def length_penalty(length: Array, alpha: float) -> Array:
    """GNMT's ``((5 + length) / 6) ** alpha`` (Wu et al., "Google's Neural Machine Translation
    System", 2016): a finished hypothesis scores ``log p / length_penalty``; ``alpha = 0`` ranks
    by log-probability alone, larger alpha favours longer outputs."""
    return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def _gather_rows(tree: Any, rows: Array, n: int) -> Any:
    """Rows ``rows`` [N] of every array in ``tree`` whose leading axis is ``n``."""
    def pick(x):
        return jnp.take(x, rows, axis=0) if x.ndim and x.shape[0] == n else x
    return jax.tree.map(pick, tree)


def beam_search(step: StepFn, state: Any, batch: int, max_len: int, *, beams: int,
                bos_id: int, eos_id: int, pad_id: int = 0, alpha: float = 0.0
                ) -> tuple[Array, Array]:
    """Beam search (t5x's layout: the alive beams and a pool of finished ones, each of size
    ``beams``). ``state`` has ``batch * beams`` rows, beam-major within an example (row
    ``b * beams + k``: :func:`repeat_for_beams`). Each step extends every alive beam by every
    token, keeps the ``2 * beams`` best extensions by log-probability, moves those that emit
    ``eos`` into the finished pool (ranked by ``log p / length_penalty``, the length counting
    the tokens after bos up to and including eos) and keeps the best ``beams`` others alive. At
    the end, beams still alive compete in the pool at full length.

    Returns ``(ids [batch, beams, max_len], scores [batch, beams])``, best first."""
    k, n = beams, batch * beams
    vocab_rows = jnp.arange(batch)[:, None]
    alive = jnp.full((batch, k, max_len), pad_id, jnp.int32).at[:, :, 0].set(bos_id)
    # Only the first alive beam is real at the start: the others would duplicate it.
    alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (batch, 1))
    fin = jnp.full((batch, k, max_len), pad_id, jnp.int32)
    fin_score = jnp.full((batch, k), NEG_INF)

    def body(carry, pos):
        alive, alive_logp, fin, fin_score, state = carry
        logits, state = step(alive[:, :, pos - 1].reshape(n), state)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1).reshape(batch, k, -1)
        vocab = logp.shape[-1]
        cand = (alive_logp[..., None] + logp).reshape(batch, k * vocab)
        top_logp, top = jax.lax.top_k(cand, 2 * k)                      # [batch, 2k]
        src, token = top // vocab, top % vocab
        seqs = jnp.take_along_axis(alive, src[..., None], axis=1)       # [batch, 2k, L]
        seqs = jax.lax.dynamic_update_slice_in_dim(seqs, token[..., None], pos, 2)
        ends = token == eos_id
        # Finished: the candidates that emit eos join the pool if they beat its members.
        score = jnp.where(ends, top_logp / length_penalty(jnp.asarray(pos), alpha), NEG_INF)
        pool = jnp.concatenate([fin_score, score], 1)
        fin_score, keep = jax.lax.top_k(pool, k)
        fin = jnp.take_along_axis(jnp.concatenate([fin, seqs], 1), keep[..., None], axis=1)
        # Alive: the best k candidates that did not end.
        alive_logp, keep = jax.lax.top_k(jnp.where(ends, NEG_INF, top_logp), k)
        alive = jnp.take_along_axis(seqs, keep[..., None], axis=1)
        rows = (vocab_rows * k + jnp.take_along_axis(src, keep, 1)).reshape(n)
        state = _gather_rows(state, rows, n)
        return (alive, alive_logp, fin, fin_score, state), None

    carry = (alive, alive_logp, fin, fin_score, state)
    (alive, alive_logp, fin, fin_score, _), _ = jax.lax.scan(body, carry,
                                                             jnp.arange(1, max_len))
    # Alive beams at the end of the buffer are hypotheses of max_len - 1 tokens.
    alive_score = alive_logp / length_penalty(jnp.asarray(max_len - 1), alpha)
    alive_score = jnp.where(alive_logp <= NEG_INF / 2, NEG_INF, alive_score)
    pool = jnp.concatenate([fin_score, alive_score], 1)
    scores, keep = jax.lax.top_k(pool, k)
    ids = jnp.take_along_axis(jnp.concatenate([fin, alive], 1), keep[..., None], axis=1)
    return ids, scores


def repeat_for_beams(tree: Any, beams: int) -> Any:
    """Every array's rows repeated ``beams`` times, beam-major within an example (row b of
    ``batch`` becomes rows ``b * beams ... b * beams + beams - 1``): the layout of
    :func:`beam_search`'s state."""
    return jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0) if x.ndim else x, tree)
