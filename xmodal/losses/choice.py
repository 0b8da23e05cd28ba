"""Multiple-choice losses: one score per candidate answer, one right candidate per question.

``smoothed_ranking_loss``: the hinge ranking loss over the candidates, max_j [m - s_y + s_j]_+
(the right answer y should beat every wrong j by a margin m), smoothed by a log-sum-exp at
temperature 1/gamma so every wrong candidate that comes close gets a gradient, not only the
hardest one:

    loss = (1 / gamma) * log(1 + sum_{j != y} exp(gamma * (m - s_y + s_j)))

As gamma grows it tends to the hinge on the hardest candidate; at m = 0 and gamma = 1 it is the
softmax cross-entropy over the candidates. Questions marked invalid (padding of a clip's fixed
question slots) cost nothing; the mean is over the valid ones.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def smoothed_ranking_loss(scores: jax.Array, answer: jax.Array, valid: jax.Array,
                          margin: float = 1.0, gamma: float = 1.0) -> tuple[jax.Array, dict]:
    """``scores`` [..., K], ``answer`` [...] ints in [0, K), ``valid`` [...] (bool or 0/1).
    Returns (loss, {"accuracy": the share of valid questions whose right answer scores
    strictly highest})."""
    if scores.shape[:-1] != answer.shape or answer.shape != valid.shape:
        raise ValueError(f"smoothed_ranking_loss: scores {scores.shape} need answer and valid "
                         f"of shape {scores.shape[:-1]}, got {answer.shape} and {valid.shape}")
    if gamma <= 0:
        raise ValueError(f"smoothed_ranking_loss gamma must be > 0, got {gamma}")
    scores = scores.astype(jnp.float32)
    k = scores.shape[-1]
    onehot = jax.nn.one_hot(answer, k, dtype=jnp.float32)
    right = jnp.sum(scores * onehot, axis=-1, keepdims=True)
    # exp(0) = 1 stands for the "no violation" term; the right answer itself is left out.
    violation = jnp.where(onehot > 0, -jnp.inf, gamma * (margin - right + scores))
    per_question = jax.nn.logsumexp(jnp.concatenate(
        [jnp.zeros(violation.shape[:-1] + (1,)), violation], axis=-1), axis=-1) / gamma
    weight = valid.astype(jnp.float32)
    count = jnp.maximum(weight.sum(), 1.0)
    loss = jnp.sum(per_question * weight) / count
    best_wrong = jnp.max(jnp.where(onehot > 0, -jnp.inf, scores), axis=-1)
    hit = (right[..., 0] > best_wrong).astype(jnp.float32)   # ties are misses, never hits
    return loss, {"accuracy": jnp.sum(hit * weight) / count}
