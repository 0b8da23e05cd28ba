"""Relaxed bipartite matching of image patches to words (LightCLIP, Nie et al. 2023,
"LightCLIP: Learning Multi-Level Interaction for Lightweight Vision-Language Models").

A hard one-to-one patch-word matching (the Hungarian algorithm) is not differentiable. Its
entropic relaxation is: with token similarities S_pw = cos(patch_p, word_w), find the
transport plan T >= 0 with row sums a_p = 1/P (each patch) and column sums b_w = 1/W' (each of
the W' real words; padded words get b_w = 0) that maximises

    <T, S> + tau * H(T),        H(T) = -sum_pw T_pw (log T_pw - 1)

(Cuturi 2013, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport"). Its solution
is T = diag(e^f) exp(S / tau) diag(e^g), found by Sinkhorn's alternating updates, here in the
log domain so a small tau does not underflow:

    f_p = log a_p - logsumexp_w (S_pw / tau + g_w)
    g_w = log b_w - logsumexp_p (S_pw / tau + f_p)

for a fixed number of iterations (a fixed trip count keeps it jit- and grad-friendly). As
tau -> 0 the plan concentrates on the optimal assignment; for P = W it tends to the Hungarian
permutation scaled by 1/P. The pair's score aggregates the token similarities under the plan,

    score = sum_pw T_pw S_pw         (in [-1, 1], since T sums to 1)

A caption with no real word (all padding) has no words to match: its score is 0 and it gets no
gradient, instead of the NaN that an empty marginal would give.

``token_match_scores`` scores every image against every text, so it holds a
[Bi, Bt, P, W] array: call it on chunks of the batch when that does not fit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar, strict_top1
from xmodal.losses.sdm import l2_normalize

Array = jax.Array


def sinkhorn_log_plan(sims: Array, word_mask: Array, tau, num_iters: int) -> Array:
    """log T of the entropic plan (module docstring) for sims [..., P, W], word_mask [..., W].

    Every row of ``word_mask`` must hold at least one True; masked words get log T = -inf.
    """
    p = sims.shape[-2]
    n_words = jnp.sum(word_mask, axis=-1, keepdims=True).astype(jnp.float32)
    log_a = -jnp.log(float(p))
    log_b = jnp.where(word_mask, -jnp.log(jnp.maximum(n_words, 1.0)), -jnp.inf)
    kernel = sims / tau

    def update(_, fg):
        f, g = fg
        f = log_a - jax.nn.logsumexp(kernel + g[..., None, :], axis=-1)
        g = log_b - jax.nn.logsumexp(kernel + f[..., :, None], axis=-2)
        return f, g

    f0 = jnp.zeros(sims.shape[:-1], jnp.float32)
    # Padded words start at -inf too: a zero start would let them shape the first f update,
    # and through it the plan and its gradient.
    g0 = jnp.where(word_mask, 0.0, -jnp.inf).astype(jnp.float32)
    f, g = jax.lax.fori_loop(0, num_iters, update, (f0, g0))
    return kernel + f[..., :, None] + g[..., None, :]


def check_tokens(patches, words, word_mask) -> tuple[Array, Array, Array]:
    patches = jnp.asarray(patches, jnp.float32)
    words = jnp.asarray(words, jnp.float32)
    word_mask = jnp.asarray(word_mask)
    if patches.ndim != 3 or words.ndim != 3:
        raise ValueError(
            f"patches and words must be [batch, tokens, dim]; got patches "
            f"{tuple(patches.shape)} and words {tuple(words.shape)}.")
    if patches.shape[-1] != words.shape[-1]:
        raise ValueError(
            f"patches {tuple(patches.shape)} and words {tuple(words.shape)} have different "
            f"token dims; project both towers' tokens to the same dimension.")
    if patches.shape[1] == 0:
        raise ValueError(f"patches has no tokens: shape {tuple(patches.shape)}.")
    if word_mask.shape != words.shape[:2]:
        raise ValueError(
            f"word_mask must be [batch, words] = {tuple(words.shape[:2])}, True for real "
            f"words; got {tuple(word_mask.shape)}.")
    if word_mask.dtype != jnp.bool_:
        raise ValueError(f"word_mask must be boolean (True = real word); got {word_mask.dtype}.")
    return patches, words, word_mask


def check_sinkhorn_args(tau, num_iters: int) -> Array:
    tau = as_scalar(tau, "tau")
    if not isinstance(tau, jax.core.Tracer) and not float(tau) > 0:
        raise ValueError(f"tau must be a positive temperature; got {float(tau)}.")
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int; got {num_iters!r}.")
    return tau


def token_match_scores(patches, words, word_mask, tau=0.05, num_iters: int = 50) -> Array:
    """[Bi, Bt] scores sum_pw T_pw S_pw of every image against every text.

    ``patches`` [Bi, P, D], ``words`` [Bt, W, D] (normalised here), ``word_mask`` [Bt, W] bool.
    """
    patches, words, word_mask = check_tokens(patches, words, word_mask)
    tau = check_sinkhorn_args(tau, num_iters)
    sims = jnp.einsum("ipd,twd->itpw", l2_normalize(patches), l2_normalize(words))
    has_words = jnp.any(word_mask, axis=1)
    # An empty caption is run with every position unmasked, so Sinkhorn stays finite, and its
    # score is zeroed below.
    safe_mask = word_mask | ~has_words[:, None]
    mask = jnp.broadcast_to(safe_mask[None], sims.shape[:2] + safe_mask.shape[1:])
    plan = jnp.exp(sinkhorn_log_plan(sims, mask, tau, num_iters))
    scores = jnp.sum(plan * sims, axis=(-2, -1))
    return jnp.where(has_words[None, :], scores, 0.0)


def token_matching_loss(patches, words, word_mask, logit_scale, tau=0.05,
                        num_iters: int = 50) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE (as ``clip_loss``) over the token-matching scores of all pairs.

        L = logit_scale * token_match_scores(...)        [B, B], pairs on the diagonal
        loss = ( CE(L, diag) + CE(L^T, diag) ) / 2
    """
    patches, words, word_mask = check_tokens(patches, words, word_mask)
    if patches.shape[0] != words.shape[0] or patches.shape[0] == 0:
        raise ValueError(
            f"patches and words must hold the same, non-zero number of pairs; got "
            f"{patches.shape[0]} images and {words.shape[0]} texts.")
    scale = as_scalar(logit_scale, "logit_scale")
    logits = scale * token_match_scores(patches, words, word_mask, tau, num_iters)
    pos = jnp.diagonal(logits)
    i2t = jax.nn.logsumexp(logits, axis=1) - pos
    t2i = jax.nn.logsumexp(logits, axis=0) - pos
    negatives = jnp.where(jnp.eye(logits.shape[0], dtype=bool), -jnp.inf, logits)
    aux = {
        "i2t_acc": strict_top1(pos, jnp.max(negatives, axis=1)),
        "t2i_acc": strict_top1(pos, jnp.max(negatives, axis=0)),
    }
    return 0.5 * (jnp.mean(i2t) + jnp.mean(t2i)), aux
