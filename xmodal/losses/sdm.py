"""Similarity distribution matching (SDM) of IRRA (Jiang & Ye 2023, "Cross-Modal Implicit
Relation Reasoning and Aligning for Text-to-Image Person Retrieval").

Row i of ``zimg`` and ``ztxt`` is a pair with identity ``ids[i]``; several pairs may share an
identity (several captions and images of one person in one batch), and all of them are
positives of each other. With cosine similarities and a temperature tau,

    p_ij = softmax_j( cos(zimg_i, ztxt_j) / tau )            (image-to-text, row i)
    y_ij = 1 if ids[i] == ids[j] else 0
    q_ij = y_ij / sum_k y_ik                                  (true matching distribution)
    L_i2t = 1/B sum_i KL(p_i || q_i) = 1/B sum_i sum_j p_ij (log p_ij - log(q_ij + eps))

L_t2i is the same with the roles of the towers swapped, and ``loss = L_i2t + L_t2i`` (summed,
not averaged, as in the paper and its code). The eps keeps log q finite where q_ij = 0; it is
what makes the loss finite at all, and it sets how hard non-matching mass is punished
(-log eps per unit of mass). The embeddings are normalised here, as in IRRA's code, with a
small floor so an all-zero embedding gives zero similarities instead of NaN.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar, check_pair

Array = jax.Array


def l2_normalize(x: Array, floor: float = 1e-12) -> Array:
    """x / max(||x||, floor) along the last axis; the floor keeps zero vectors at zero.

    Written with the squared norm because the gradient of ||x|| at x = 0 is NaN (0/0), which
    would leak through ``maximum`` into the backward pass.
    """
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq, floor * floor))


def check_ids(ids, batch: int) -> Array:
    ids = jnp.asarray(ids)
    if ids.shape != (batch,):
        raise ValueError(
            f"ids must have shape [B] = ({batch},), one identity label per pair; got "
            f"{tuple(ids.shape)}.")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"ids must be integer identity labels; got dtype {ids.dtype}.")
    return ids


def kl_rows(logits: Array, log_q: Array) -> Array:
    """Per-row KL(softmax(logits) || q) from logits and log q; p log p comes from log_softmax."""
    log_p = jax.nn.log_softmax(logits, axis=1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=1)


def sdm_loss(zimg, ztxt, ids, tau=0.02, eps: float = 1e-8) -> tuple[Array, dict[str, Array]]:
    """SDM loss; see the module docstring. ``zimg``, ``ztxt`` [B, D]; ``ids`` [B] integers.

    ``tau`` is a scalar temperature (IRRA fixes 0.02, i.e. a logit scale of 50). Returns
    ``(loss, aux)`` with float32 scalars ``i2t_loss`` and ``t2i_loss``.
    """
    check_pair(zimg, ztxt)
    ids = check_ids(ids, zimg.shape[0])
    tau = as_scalar(tau, "tau")
    if not isinstance(tau, jax.core.Tracer) and not float(tau) > 0:
        raise ValueError(f"tau must be a positive temperature; got {float(tau)}.")
    if not eps > 0:
        raise ValueError(f"eps must be positive (it keeps log q finite); got {eps}.")
    x = l2_normalize(jnp.asarray(zimg, jnp.float32))
    y = l2_normalize(jnp.asarray(ztxt, jnp.float32))
    logits = (x @ y.T) / tau
    same = (ids[:, None] == ids[None, :]).astype(jnp.float32)
    # Symmetric labels with a positive diagonal: every row sum is >= 1, and q is the same
    # matrix for both directions.
    log_q = jnp.log(same / jnp.sum(same, axis=1, keepdims=True) + eps)
    i2t = jnp.mean(kl_rows(logits, log_q))
    t2i = jnp.mean(kl_rows(logits.T, log_q))
    aux = {"i2t_loss": jax.lax.stop_gradient(i2t), "t2i_loss": jax.lax.stop_gradient(t2i)}
    return i2t + t2i, aux
