"""Token-level negative log-likelihood of a sequence under teacher forcing, with padding masks
and label smoothing (Szegedy et al., "Rethinking the Inception Architecture", 2016).

A caption's ids ``[bos, t_1, ..., t_k, eos, pad, ...]`` give the decoder the inputs
``ids[:, :-1]`` and the targets ``ids[:, 1:]`` (:func:`shift`); a target counts when it is not
pad, so eos is predicted and padding is not. Per token, with ``eps`` the smoothing,

    nll_t = -(1 - eps) log p(target_t) - eps * mean_v log p(v)

(``eps = 0``: the plain NLL, what retrieval scores and perplexity use).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.data.tokenizer import PAD_ID

Array = jax.Array


def shift(ids: Array, pad_id: int = PAD_ID) -> tuple[Array, Array, Array]:
    """``(inputs, targets, weights)`` for teacher forcing: ``ids[:, :-1]``, ``ids[:, 1:]`` and
    1.0 where the target is not pad."""
    targets = ids[:, 1:]
    return ids[:, :-1], targets, (targets != pad_id).astype(jnp.float32)


def token_nll(logits: Array, targets: Array, weights: Array,
              label_smoothing: float = 0.0) -> Array:
    """``[B, L]`` per-token NLL (module docstring), 0 where ``weights`` is 0."""
    if logits.shape[:-1] != targets.shape or weights.shape != targets.shape:
        raise ValueError(f"token_nll: logits {logits.shape} must be [B, L, V] over targets "
                         f"{targets.shape} and weights {weights.shape}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(logp, axis=-1)
    return nll * weights


def sequence_nll(logits: Array, targets: Array, weights: Array) -> Array:
    """``[B]``: each sequence's summed NLL, ``-log p(caption)`` (no smoothing)."""
    return jnp.sum(token_nll(logits, targets, weights), axis=-1)


def caption_loss(logits: Array, targets: Array, weights: Array, label_smoothing: float = 0.0
                 ) -> tuple[Array, dict[str, Array]]:
    """Mean smoothed NLL over the batch's counted tokens, and
    ``{"token_acc", "nll", "tokens"}``: top-1 accuracy of the next token, the unsmoothed mean
    NLL per token (its exp is the perplexity) and the counted tokens per sequence."""
    count = jnp.maximum(jnp.sum(weights), 1.0)
    loss = jnp.sum(token_nll(logits, targets, weights, label_smoothing)) / count
    plain = jnp.sum(token_nll(logits, targets, weights)) / count
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    aux = {"token_acc": jnp.sum(correct * weights) / count, "nll": plain,
           "tokens": jnp.sum(weights) / weights.shape[0]}
    return loss, jax.tree.map(jax.lax.stop_gradient, aux)
