"""Multi-label contrastive matching of items to tags (the POI-to-tag matching of M3PT, Yang et
al. 2023, "M3PT: A Multi-Modal Model for POI Tagging").

Item embeddings ``zitem`` [B, D] are matched against the embeddings of the whole tag vocabulary
``ztag`` [T, D]; ``labels`` [B, T] (bool) marks each item's positive tags, any number of them.
With logits L_it = logit_scale * <zitem_i, ztag_t> (+ logit_bias for the sigmoid form), two
losses are offered:

``multilabel_softmax_loss`` (ranking): each positive competes with the item's negatives only,

    loss_i = 1/|P_i| sum_{p in P_i} [ -L_ip + log( e^{L_ip} + sum_{n not in P_i} e^{L_in} ) ]
    loss   = mean over items with at least one positive tag

Leaving the other positives out of each denominator is deliberate: with the plain
softmax-over-all-tags form (-1/|P| sum_p log softmax(L)_p) the positives of an item compete with
each other, the minimum is log |P_i| rather than 0, and the gradient pushes one correct tag down
whenever another goes up. Here the loss is 0 exactly when every positive beats every negative
by a wide margin, whatever the number of tags.

``multilabel_sigmoid_loss`` (per-pair decision), the SigLIP form (Zhai et al. 2023):

    loss = -(1/B) sum_i sum_t log_sigmoid( z_it * L_it ),   z_it = +1 if t in P_i else -1

Each (item, tag) pair is an independent yes/no, so the learned bias gives a threshold for
predicting a tag set of any size, and items without any tag still teach negatives. The softmax
form only ranks tags within an item (it is invariant to adding a constant to an item's
logits), so it suits top-K tagging (P@K / R@K) and needs a K; the sigmoid form suits
thresholded tagging. Both are computed in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar

Array = jax.Array


def check_items_tags(zitem, ztag, labels) -> tuple[Array, Array, Array]:
    zitem = jnp.asarray(zitem, jnp.float32)
    ztag = jnp.asarray(ztag, jnp.float32)
    labels = jnp.asarray(labels)
    if zitem.ndim != 2 or ztag.ndim != 2:
        raise ValueError(
            f"zitem and ztag must be 2-D [items, dim] and [tags, dim]; got "
            f"{tuple(zitem.shape)} and {tuple(ztag.shape)}.")
    if zitem.shape[1] != ztag.shape[1]:
        raise ValueError(
            f"zitem {tuple(zitem.shape)} and ztag {tuple(ztag.shape)} have different embedding "
            f"dims; both towers must project to the same dimension.")
    if zitem.shape[0] == 0 or ztag.shape[0] == 0:
        raise ValueError(
            f"need at least one item and one tag; got zitem {tuple(zitem.shape)} and ztag "
            f"{tuple(ztag.shape)}.")
    if labels.shape != (zitem.shape[0], ztag.shape[0]):
        raise ValueError(
            f"labels must be [items, tags] = ({zitem.shape[0]}, {ztag.shape[0]}), True where "
            f"the tag applies to the item; got {tuple(labels.shape)}.")
    if labels.dtype != jnp.bool_:
        raise ValueError(f"labels must be boolean (True = positive tag); got {labels.dtype}.")
    return zitem, ztag, labels


def multilabel_softmax_loss(zitem, ztag, labels,
                            logit_scale) -> tuple[Array, dict[str, Array]]:
    """Multi-positive softmax loss; see the module docstring for the formula.

    Returns ``(loss, aux)`` with ``tagged_items`` (fraction of items with at least one positive
    tag; the others do not enter the loss, 0 when none has one) and ``top1_acc`` (fraction of
    tagged items whose best positive tag scores strictly above every negative tag).
    """
    zitem, ztag, labels = check_items_tags(zitem, ztag, labels)
    scale = as_scalar(logit_scale, "logit_scale")
    logits = scale * (zitem @ ztag.T)
    # log(e^L_ip + e^N_i) - L_ip = softplus(N_i - L_ip), N_i the logsumexp of the negatives.
    # An item whose tags are all positive has no N_i and costs 0; its row is filled with zeros
    # first because the gradient of a logsumexp over only -inf is NaN.
    has_neg = jnp.any(~labels, axis=1, keepdims=True)
    negatives = jnp.where(labels, -jnp.inf, logits)
    neg_lse = jax.nn.logsumexp(jnp.where(has_neg, negatives, 0.0), axis=1, keepdims=True)
    per_pair = jnp.where(has_neg, jax.nn.softplus(neg_lse - logits), 0.0)
    n_pos = jnp.sum(labels, axis=1)
    per_item = jnp.sum(jnp.where(labels, per_pair, 0.0), axis=1) / jnp.maximum(n_pos, 1)
    tagged = n_pos > 0
    n_tagged = jnp.sum(tagged)
    loss = jnp.sum(jnp.where(tagged, per_item, 0.0)) / jnp.maximum(n_tagged, 1)
    best_pos = jnp.max(jnp.where(labels, logits, -jnp.inf), axis=1)
    best_neg = jnp.max(negatives, axis=1)
    hit = tagged & (best_pos > best_neg)
    aux = {
        "tagged_items": jnp.mean(tagged.astype(jnp.float32)),
        "top1_acc": jax.lax.stop_gradient(
            jnp.sum(hit.astype(jnp.float32)) / jnp.maximum(n_tagged, 1)),
    }
    return loss, aux


def multilabel_sigmoid_loss(zitem, ztag, labels, logit_scale,
                            logit_bias) -> tuple[Array, dict[str, Array]]:
    """Per-pair sigmoid loss; see the module docstring for the formula.

    Returns ``(loss, aux)`` with ``pair_acc``: fraction of (item, tag) pairs on the right side
    of the decision boundary (logit > 0 for positives, < 0 for negatives).
    """
    zitem, ztag, labels = check_items_tags(zitem, ztag, labels)
    scale = as_scalar(logit_scale, "logit_scale")
    bias = as_scalar(logit_bias, "logit_bias")
    logits = scale * (zitem @ ztag.T) + bias
    signed = jnp.where(labels, logits, -logits)
    loss = -jnp.sum(jax.nn.log_sigmoid(signed)) / zitem.shape[0]
    aux = {"pair_acc": jax.lax.stop_gradient(jnp.mean((signed > 0).astype(jnp.float32)))}
    return loss, aux
