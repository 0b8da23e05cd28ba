"""Intra-modal contrastive loss with weighted intra-modal negatives, and global-to-local
matching, the two matching levels of M3EL (Hu et al. 2024, "Multi-level Matching Network for
Multimodal Entity Linking").

``intra_modal_loss``: two views of the same modality (e.g. a mention's text and its entity's
text), ``za`` and ``zb`` [B, D], L2-normalised, row i a positive pair. InfoNCE treats only the
other view's rows as negatives; here an anchor's own-view neighbours are negatives too, with a
weight w:

    den_i = e^{s<a_i,b_i>} + sum_{j != i} e^{s<a_i,b_j>} + w sum_{j != i} e^{s<a_i,a_j>}
    L_a   = 1/B sum_i [ log den_i - s<a_i,b_i> ]

L_b swaps the views, and ``loss = (L_a + L_b) / 2``. w = 0 is ``clip_loss``; w = 1 counts
intra-view negatives like cross-view ones (the 2B - 2 negatives of SimCLR, Chen et al. 2020,
"A Simple Framework for Contrastive Learning of Visual Representations"). Intra-view
negatives stop an encoder from collapsing all anchors of one view together while still
matching the other view.

``global_local_loss``: a global embedding g_i [B, D] is matched to the local tokens l_j [B, L, D]
(with a mask for padding) of every item j by attending over the tokens:

    c_ijk   = cos(g_i, l_jk)
    att_ijk = softmax_k( c_ijk / t )      over the real tokens of item j
    score_ij = sum_k att_ijk c_ijk

so each global picks the local tokens that support it (t -> 0 gives the best-matching token,
t -> inf the mean). The loss is the symmetric InfoNCE of ``clip_loss`` over
``logit_scale * score``. An item without any real token scores 0 against every global.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar, check_pair, strict_top1
from xmodal.losses.sdm import l2_normalize

Array = jax.Array


def anchor_loss(cross: Array, same: Array, log_weight: Array) -> Array:
    """Per-anchor -log of the positive's share of den_i, anchors along rows."""
    eye = jnp.eye(cross.shape[0], dtype=bool)
    intra = jnp.where(eye, -jnp.inf, same + log_weight)
    # The cross-view row always holds the finite positive, so the logsumexp stays finite.
    lse = jax.nn.logsumexp(jnp.concatenate([cross, intra], axis=1), axis=1)
    return lse - jnp.diagonal(cross)


def intra_modal_loss(za, zb, logit_scale, intra_weight=1.0) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE with intra-view negatives weighted by ``intra_weight`` (>= 0).

    See the module docstring for the formula. Returns ``(loss, aux)`` with ``a2b_acc`` and
    ``b2a_acc``: strict top-1 of the positive against all cross- and intra-view negatives.
    """
    check_pair(za, zb)
    scale = as_scalar(logit_scale, "logit_scale")
    weight = as_scalar(intra_weight, "intra_weight")
    if not isinstance(weight, jax.core.Tracer) and not float(weight) >= 0:
        raise ValueError(
            f"intra_weight must be >= 0 (0 gives plain InfoNCE); got {float(weight)}.")
    a = jnp.asarray(za, jnp.float32)
    b = jnp.asarray(zb, jnp.float32)
    ab = scale * (a @ b.T)
    aa = scale * (a @ a.T)
    bb = scale * (b @ b.T)
    # A weight of 0 becomes log 0 = -inf, which removes the intra-view terms exactly; the weight
    # is a hyperparameter, so its own gradient (infinite at 0) is never taken.
    log_w = jnp.log(jax.lax.stop_gradient(weight))
    loss_a = anchor_loss(ab, aa, log_w)
    loss_b = anchor_loss(ab.T, bb, log_w)
    eye = jnp.eye(a.shape[0], dtype=bool)
    pos = jnp.diagonal(ab)

    def best_negative(cross, same):
        # Intra-view negatives count for accuracy only when they are in the loss (w > 0).
        same = jnp.where(eye | (weight <= 0), -jnp.inf, same)
        return jnp.maximum(jnp.max(jnp.where(eye, -jnp.inf, cross), axis=1),
                           jnp.max(same, axis=1))

    aux = {"a2b_acc": strict_top1(pos, best_negative(ab, aa)),
           "b2a_acc": strict_top1(pos, best_negative(ab.T, bb))}
    return 0.5 * (jnp.mean(loss_a) + jnp.mean(loss_b)), aux


def check_global_local(zglobal, zlocal, local_mask) -> tuple[Array, Array, Array]:
    zglobal = jnp.asarray(zglobal, jnp.float32)
    zlocal = jnp.asarray(zlocal, jnp.float32)
    local_mask = jnp.asarray(local_mask)
    if zglobal.ndim != 2 or zlocal.ndim != 3:
        raise ValueError(
            f"zglobal must be [B, D] and zlocal [B, L, D]; got {tuple(zglobal.shape)} and "
            f"{tuple(zlocal.shape)}.")
    if zglobal.shape[1] != zlocal.shape[2]:
        raise ValueError(
            f"zglobal {tuple(zglobal.shape)} and zlocal {tuple(zlocal.shape)} have different "
            f"embedding dims; project both to the same dimension.")
    if zlocal.shape[1] == 0:
        raise ValueError(f"zlocal has no token axis entries: shape {tuple(zlocal.shape)}.")
    if local_mask.shape != zlocal.shape[:2]:
        raise ValueError(
            f"local_mask must be [B, L] = {tuple(zlocal.shape[:2])}, True for real tokens; got "
            f"{tuple(local_mask.shape)}.")
    if local_mask.dtype != jnp.bool_:
        raise ValueError(f"local_mask must be boolean (True = real token); got {local_mask.dtype}.")
    return zglobal, zlocal, local_mask


def global_local_scores(zglobal, zlocal, local_mask, attn_temperature=0.1) -> Array:
    """[Bg, Bl] attention-pooled scores of every global against every item's local tokens."""
    zglobal, zlocal, local_mask = check_global_local(zglobal, zlocal, local_mask)
    t = as_scalar(attn_temperature, "attn_temperature")
    if not isinstance(t, jax.core.Tracer) and not float(t) > 0:
        raise ValueError(f"attn_temperature must be positive; got {float(t)}.")
    cos = jnp.einsum("id,jkd->ijk", l2_normalize(zglobal), l2_normalize(zlocal))
    has_tokens = jnp.any(local_mask, axis=1)
    # An item with no real token attends over its padding (finite, no 0/0) and is zeroed below.
    mask = (local_mask | ~has_tokens[:, None])[None]
    att = jax.nn.softmax(jnp.where(mask, cos / t, -jnp.inf), axis=-1)
    scores = jnp.sum(att * cos, axis=-1)
    return jnp.where(has_tokens[None, :], scores, 0.0)


def global_local_loss(zglobal, zlocal, local_mask, logit_scale,
                      attn_temperature=0.1) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE over ``logit_scale * global_local_scores``, pairs on the diagonal."""
    zglobal, zlocal, local_mask = check_global_local(zglobal, zlocal, local_mask)
    if zglobal.shape[0] != zlocal.shape[0] or zglobal.shape[0] == 0:
        raise ValueError(
            f"zglobal and zlocal must hold the same, non-zero number of pairs; got "
            f"{zglobal.shape[0]} globals and {zlocal.shape[0]} local sets.")
    scale = as_scalar(logit_scale, "logit_scale")
    logits = scale * global_local_scores(zglobal, zlocal, local_mask, attn_temperature)
    pos = jnp.diagonal(logits)
    i2t = jax.nn.logsumexp(logits, axis=1) - pos
    t2i = jax.nn.logsumexp(logits, axis=0) - pos
    negatives = jnp.where(jnp.eye(logits.shape[0], dtype=bool), -jnp.inf, logits)
    aux = {"g2l_acc": strict_top1(pos, jnp.max(negatives, axis=1)),
           "l2g_acc": strict_top1(pos, jnp.max(negatives, axis=0))}
    return 0.5 * (jnp.mean(i2t) + jnp.mean(t2i)), aux
