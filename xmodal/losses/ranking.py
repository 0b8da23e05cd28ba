"""Bidirectional hinge ranking loss on paired, L2-normalised image/text embeddings.

With cosine similarities s_ij = <zimg_i, ztxt_j> (row i of each tower is a matching pair) and a
margin m, every negative j of image i costs

    c_i2t(i, j) = [m - s_ii + s_ij]_+          (image i should rank its text above text j)
    c_t2i(j, i) = [m - s_ii + s_ji]_+          (text i should rank its image above image j)

and ``negatives`` chooses which negatives a query pays for:

- ``"in_batch"``: the sum over all negatives, the triplet ranking loss of the visual-semantic
  embedding family (Kiros et al. 2014, "Unifying Visual-Semantic Embeddings with Multimodal
  Neural Language Models"; Wang et al. 2016, "Learning Deep Structure-Preserving Image-Text
  Embeddings").
- ``"hardest"``: the largest cost only, i.e. the negative with the highest similarity (VSE++,
  Faghri et al. 2018, "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives").
- ``"semi_hard"``: the cost of the hardest negative whose similarity is still strictly below the
  positive's (the semi-hard negative of FaceNet, Schroff et al. 2015). A query whose negatives
  all score at or above its positive has no semi-hard negative and costs nothing; ``aux``
  reports how many queries had one.

    loss = i2t_weight * mean_i cost_i2t(i) + t2i_weight * mean_i cost_t2i(i)

Each direction is averaged over its queries (VSE++ sums; the mean keeps the loss independent of
the batch size). The per-direction weights let one train a single direction, or tilt the
balance, so that direction specialisation can be measured: train with (1, 0), (0, 1) and
(1, 1) and compare image-to-text against text-to-image retrieval. ``aux`` always reports both
directions' unweighted costs.

Optional identity ``ids`` [B]: rows that share an id are not each other's negatives (several
captions of one image, or several images of one person, in one batch). A query without any
negative costs nothing, so a batch of a single identity gives a loss of 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar, check_pair, strict_top1

Array = jax.Array

NEGATIVES = ("in_batch", "hardest", "semi_hard")


def negative_mask(batch: int, ids) -> Array:
    """[B, B] bool, True where column j is a negative for row i."""
    if ids is None:
        return ~jnp.eye(batch, dtype=bool)
    ids = jnp.asarray(ids)
    if ids.shape != (batch,):
        raise ValueError(
            f"ids must have shape [B] = ({batch},), one identity per pair; got "
            f"{tuple(ids.shape)}.")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"ids must be integer identity labels; got dtype {ids.dtype}.")
    return ids[:, None] != ids[None, :]


def direction_cost(sims: Array, pos: Array, is_neg: Array, margin: Array,
                   negatives: str) -> tuple[Array, Array]:
    """Per-query cost with queries along rows, and whether each query had a usable negative."""
    violation = jnp.maximum(margin - pos[:, None] + sims, 0.0)
    if negatives == "in_batch":
        return jnp.sum(jnp.where(is_neg, violation, 0.0), axis=1), jnp.any(is_neg, axis=1)
    if negatives == "semi_hard":
        is_neg = is_neg & (sims < pos[:, None])
    # The cost is monotone in s_ij, so the hardest negative has the largest cost; a query with
    # no allowed negative gets 0 from the `initial`, not -inf.
    cost = jnp.max(jnp.where(is_neg, violation, 0.0), axis=1, initial=0.0)
    return cost, jnp.any(is_neg, axis=1)


def hinge_ranking_loss(zimg, ztxt, margin=0.2, negatives: str = "in_batch",
                       i2t_weight=1.0, t2i_weight=1.0,
                       ids=None) -> tuple[Array, dict[str, Array]]:
    """Bidirectional hinge (triplet) ranking loss; see the module docstring for the formula.

    ``zimg``, ``ztxt``: [B, D], L2-normalised. ``margin``, ``i2t_weight``, ``t2i_weight``:
    scalars (may be traced). Returns ``(loss, aux)`` with float32 scalars ``i2t_loss``,
    ``t2i_loss`` (unweighted per-direction means), ``i2t_acc``, ``t2i_acc`` (strict top-1 over
    the allowed negatives), ``i2t_with_negative`` and ``t2i_with_negative`` (fraction of queries
    that had a negative to pay for; < 1 under ``semi_hard`` or with repeated ids).
    """
    check_pair(zimg, ztxt)
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}; got {negatives!r}.")
    m = as_scalar(margin, "margin")
    w_i2t = as_scalar(i2t_weight, "i2t_weight")
    w_t2i = as_scalar(t2i_weight, "t2i_weight")
    x = jnp.asarray(zimg, jnp.float32)
    y = jnp.asarray(ztxt, jnp.float32)
    sims = x @ y.T
    pos = jnp.diagonal(sims)
    is_neg = negative_mask(x.shape[0], ids)
    # The mask is symmetric, so the transposed matrix has texts along rows with the same mask.
    i2t, i2t_has = direction_cost(sims, pos, is_neg, m, negatives)
    t2i, t2i_has = direction_cost(sims.T, pos, is_neg, m, negatives)
    i2t_loss, t2i_loss = jnp.mean(i2t), jnp.mean(t2i)
    loss = w_i2t * i2t_loss + w_t2i * t2i_loss
    masked = jnp.where(is_neg, sims, -jnp.inf)
    aux = {
        "i2t_loss": jax.lax.stop_gradient(i2t_loss),
        "t2i_loss": jax.lax.stop_gradient(t2i_loss),
        "i2t_acc": strict_top1(pos, jnp.max(masked, axis=1)),
        "t2i_acc": strict_top1(pos, jnp.max(masked, axis=0)),
        "i2t_with_negative": jnp.mean(i2t_has.astype(jnp.float32)),
        "t2i_with_negative": jnp.mean(t2i_has.astype(jnp.float32)),
    }
    return loss, aux
