"""Contrastive losses on paired, L2-normalised image/text embeddings.

Both losses take ``zimg`` and ``ztxt`` of shape [B, D] where row i of each is a matching pair,
cast them to float32 (the towers may run in bfloat16, and the softmax / log-sigmoid sums lose
too much in bf16), and return ``(loss, aux)``. ``aux`` holds float32 scalars for logging:

- ``i2t_acc``: fraction of images whose own text scores strictly higher than every other text.
- ``t2i_acc``: the same for texts against images.

Ties count as misses, so all-identical embeddings give an accuracy of 0 (with B > 1) rather than
an accuracy that depends on argmax's tie-breaking. The accuracies carry no gradient.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def check_pair(zimg, ztxt) -> None:
    """Raises ValueError unless both towers give [B, D] embeddings of the same shape."""
    if zimg.ndim != 2 or ztxt.ndim != 2:
        raise ValueError(
            f"embeddings must be 2-D [batch, dim]; got zimg {tuple(zimg.shape)} and ztxt "
            f"{tuple(ztxt.shape)}. Flatten extra dimensions before the loss.")
    if zimg.shape != ztxt.shape:
        raise ValueError(
            f"image and text embeddings must have the same [batch, dim]; got zimg "
            f"{tuple(zimg.shape)} and ztxt {tuple(ztxt.shape)}. Both towers must project to "
            f"the same dimension and see the same number of pairs.")
    if zimg.shape[0] == 0:
        raise ValueError("embeddings have batch size 0; the loss needs at least one pair.")


def as_scalar(value, name: str) -> Array:
    """float32 scalar from a scalar or one-element array (models often store shape [1] params)."""
    value = jnp.asarray(value, jnp.float32)
    if value.size != 1:
        raise ValueError(f"{name} must be a scalar; got shape {tuple(value.shape)}.")
    return value.reshape(())


def strict_top1(pos: Array, neg_max: Array) -> Array:
    """Fraction of queries whose positive logit beats the best negative logit strictly."""
    return jax.lax.stop_gradient(jnp.mean((pos > neg_max).astype(jnp.float32)))


def clip_loss(zimg, ztxt, logit_scale) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE loss of CLIP (Radford et al. 2021, "Learning Transferable Visual Models
    From Natural Language Supervision").

        logits_ij = logit_scale * <zimg_i, ztxt_j>
        loss = ( CE(logits, diag) + CE(logits^T, diag) ) / 2
             = 1/(2B) * sum_i [ (lse_j logits_ij - logits_ii) + (lse_j logits_ji - logits_ii) ]

    ``logit_scale`` is the multiplier itself (the model already applied exp), a scalar.
    """
    check_pair(zimg, ztxt)
    scale = as_scalar(logit_scale, "logit_scale")
    x = jnp.asarray(zimg, jnp.float32)
    y = jnp.asarray(ztxt, jnp.float32)
    logits = scale * (x @ y.T)
    pos = jnp.diagonal(logits)
    i2t = jax.nn.logsumexp(logits, axis=1) - pos
    t2i = jax.nn.logsumexp(logits, axis=0) - pos
    loss = 0.5 * (jnp.mean(i2t) + jnp.mean(t2i))
    negatives = jnp.where(jnp.eye(x.shape[0], dtype=bool), -jnp.inf, logits)
    aux = {
        "i2t_acc": strict_top1(pos, jnp.max(negatives, axis=1)),
        "t2i_acc": strict_top1(pos, jnp.max(negatives, axis=0)),
    }
    return loss, aux


def siglip_loss(zimg, ztxt, logit_scale, logit_bias) -> tuple[Array, dict[str, Array]]:
    """Pairwise sigmoid loss of SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image
    Pre-Training").

        logits_ij = logit_scale * <zimg_i, ztxt_j> + logit_bias
        z_ij = +1 if i == j else -1
        loss = -(1/B) * sum_i sum_j log_sigmoid(z_ij * logits_ij)

    The sum over j and mean over i follow the paper and big_vision, so the loss grows with B.
    """
    check_pair(zimg, ztxt)
    scale = as_scalar(logit_scale, "logit_scale")
    bias = as_scalar(logit_bias, "logit_bias")
    x = jnp.asarray(zimg, jnp.float32)
    y = jnp.asarray(ztxt, jnp.float32)
    logits = scale * (x @ y.T) + bias
    eye = jnp.eye(x.shape[0], dtype=bool)
    signs = jnp.where(eye, 1.0, -1.0)
    loss = -jnp.sum(jax.nn.log_sigmoid(signs * logits)) / x.shape[0]
    pos = jnp.diagonal(logits)
    negatives = jnp.where(eye, -jnp.inf, logits)
    aux = {
        "i2t_acc": strict_top1(pos, jnp.max(negatives, axis=1)),
        "t2i_acc": strict_top1(pos, jnp.max(negatives, axis=0)),
    }
    return loss, aux
