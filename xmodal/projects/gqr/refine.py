"""Guided Query Refinement (GQR): test-time optimisation of a primary retriever's query embedding,
guided by a complementary retriever's scores over their joint candidates.

For one query with primary embedding q (scores s1(d) = <q / |q|, e_d> against the primary
index) and complementary scores s2(d):

1. candidates U = top-k(s1) ∪ top-k(s2) (at most 2k items; a duplicate is masked out);
2. target  p* = (1 - α) softmax_U(s1 / T1) + α softmax_U(s2 / T2);
3. refine q by Adam for ``steps`` steps on  KL(p* ‖ softmax_U(s1(q) / T1))  (or the
   Jensen–Shannon divergence), the primary index and p* fixed;
4. rank U by the refined s1(q); items outside U follow (they are never in a top-k list here).

The query is renormalised inside s1, so the refinement changes its direction only: the primary
model's cosine and temperature keep their meaning (the paper's retrievers score by dot product
of embeddings that are not renormalised; ours were trained as cosines). Every query is refined
in one vmapped, jitted program; α and the learning rate are arguments, so a grid over them
compiles once.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

DIVERGENCES = ("kl", "js")


def rank(scores: np.ndarray, seed: int = 0) -> np.ndarray:
    """[Nq, N] each row's item indices, best first; equal scores in a seeded random order.

    Never by position: a retriever that scores items alike (a collapsed model, a BM25 query
    whose words no item has) must not inherit whatever order the corpus was stored in, which
    may follow the labels. The same seed gives every method the same tie-break."""
    scores = np.asarray(scores)
    tie_break = np.random.default_rng(seed).random(scores.shape)
    return np.lexsort((tie_break, -scores), axis=1)


def top_k_indices(scores: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """[Nq, k] indices of each row's k highest scores, best first (ties as in ``rank``)."""
    return rank(scores, seed)[:, :min(k, scores.shape[1])]


def candidates(s1: np.ndarray, s2: np.ndarray, k: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """U per query: (indices [Nq, 2k], valid [Nq, 2k]); the primary's top-k first, then the
    complementary's, a complementary item already in the primary's list marked invalid."""
    if s1.shape != s2.shape:
        raise ValueError(f"primary and complementary scores differ in shape: {s1.shape} vs "
                         f"{s2.shape}")
    i1, i2 = top_k_indices(s1, k, seed), top_k_indices(s2, k, seed)
    duplicate = (i2[:, :, None] == i1[:, None, :]).any(axis=2)
    return (np.concatenate([i1, i2], axis=1),
            np.concatenate([np.ones_like(i1, bool), ~duplicate], axis=1))


def masked_softmax(scores, valid, temperature):
    return jax.nn.softmax(jnp.where(valid, scores / temperature, -jnp.inf), axis=-1)


def target_mixture(s1_u, s2_u, valid, alpha, t1, t2):
    """p* over U, [Nq, |U|] (0 on invalid slots)."""
    return ((1.0 - alpha) * masked_softmax(s1_u, valid, t1)
            + alpha * masked_softmax(s2_u, valid, t2))


def divergence(target, log_q, valid, kind: str):
    """KL(target ‖ q) or JS(target, q) over the valid slots of one query."""
    def kl(p, log_r):
        return jnp.sum(jnp.where(valid & (p > 0), p * (jnp.log(jnp.where(p > 0, p, 1.0))
                                                       - log_r), 0.0))
    if kind == "kl":
        return kl(target, log_q)
    q = jnp.exp(log_q)
    log_m = jnp.log(jnp.where(valid, 0.5 * (target + q), 1.0))
    return 0.5 * kl(target, log_m) + 0.5 * kl(q, log_m)


def primary_scores(q, candidate_emb):
    """s1 of one query against its candidates: cosine of the (renormalised) query."""
    return candidate_emb @ (q / jnp.linalg.norm(q))


@functools.partial(jax.jit, static_argnames=("steps", "kind"))
def refine(queries, candidate_emb, valid, target, lr, t1, steps: int = 50, kind: str = "kl"):
    """Refined query embeddings [Nq, D] and each query's loss per step [Nq, steps].

    ``queries`` [Nq, D] (the primary's query embeddings), ``candidate_emb`` [Nq, |U|, D] (the
    primary index rows of each query's candidates), ``valid`` [Nq, |U|], ``target`` p* [Nq, |U|].
    """
    optimizer = optax.adam(lr)

    def loss(q, emb, ok, p):
        log_q = jax.nn.log_softmax(jnp.where(ok, primary_scores(q, emb) / t1, -jnp.inf))
        return divergence(p, log_q, ok, kind)

    def one(q, emb, ok, p):
        def step(carry, _):
            q, state = carry
            value, grad = jax.value_and_grad(loss)(q, emb, ok, p)
            updates, state = optimizer.update(grad, state, q)
            return (optax.apply_updates(q, updates), state), value
        (q, _), losses = jax.lax.scan(step, (q, optimizer.init(q)), None, length=steps)
        return q, losses

    return jax.vmap(one)(queries, candidate_emb, valid, target)


def order_candidates(scores_u: np.ndarray, idx: np.ndarray, valid: np.ndarray,
                     seed: int = 0) -> np.ndarray:
    """U's item indices sorted by ``scores_u`` (best first, ties as in ``rank``), [Nq, |U|].
    Invalid slots (copies of valid ones) go last, so only the first ``valid.sum(1)`` (at least
    k) entries rank items."""
    s = np.where(valid, scores_u, -np.inf)
    return np.take_along_axis(idx, rank(s, seed), axis=1)
