"""Ring (chunked) versions of the contrastive losses for batches sharded over a mesh axis.

The all-gather form of CLIP/SigLIP builds the full [B, B] logit matrix on every device. Here
each of the n devices along ``axis`` keeps its own [B/n, D] image chunk and passes its text
chunk around the ring with ``jax.lax.ppermute``; after n steps every image chunk has met every
text chunk, and no device ever holds more than one [B/n, B/n] logit block. This is the blockwise
scheme of ring attention (Liu et al. 2023, "Ring Attention with Blockwise Transformers") applied
to the contrastive loss; for SigLIP it is the chunked loss of Zhai et al. 2023, Sec. 3.3.

Per-image statistics (reductions over texts) stay on the device. Per-text statistics
(reductions over images) travel with their text chunk, so one block computation serves both
directions; one last rotation brings them home. For CLIP those statistics are a streaming
logsumexp (running max m and running sum s of exp(logit - m)), for SigLIP plain sums.

Each block is wrapped in ``jax.checkpoint``: otherwise reverse-mode autodiff keeps every
step's [B/n, B/n] block (B*B/n per device in total); with it, only the [B/n, D] text chunks are
kept and the blocks are recomputed in the backward pass.

The functions take GLOBAL arrays sharded (or to be sharded) along the batch over ``axis`` and
return the same ``(loss, aux)`` as ``clip_loss`` / ``siglip_loss`` on the gathered arrays, with
the same gradients, as replicated values.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from xmodal.losses.contrastive import as_scalar, check_pair, strict_top1

Array = jax.Array
AxisNames = str | Sequence[str]


def ring_axes(mesh: Mesh, axis: AxisNames) -> tuple[str, ...]:
    """``axis`` as a tuple of mesh axis names, each checked against the mesh."""
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    if not axes:
        raise ValueError("axis must name at least one mesh axis, e.g. 'data' or ('data', 'fsdp').")
    for name in axes:
        if name not in mesh.shape:
            raise ValueError(
                f"axis {name!r} is not a mesh axis; the mesh has axes {tuple(mesh.shape)}.")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis {axes} names a mesh axis twice.")
    return axes


def ring_loss(local_fn: Callable, zimg, ztxt, scalars: tuple, mesh: Mesh, axis: AxisNames):
    """Runs ``local_fn(x, y, *scalars, axes=..., n=..., batch=...)`` under shard_map."""
    check_pair(zimg, ztxt)
    axes = ring_axes(mesh, axis)
    n = math.prod(mesh.shape[name] for name in axes)
    batch = zimg.shape[0]
    if batch % n:
        raise ValueError(
            f"batch size {batch} is not divisible by the {n} devices along mesh axes {axes}; "
            f"use a global batch that is a multiple of {n}.")
    spec = P(axes)
    fn = jax.shard_map(
        lambda x, y, *s: local_fn(x, y, *s, axes=axes, n=n, batch=batch),
        mesh=mesh,
        in_specs=(spec, spec) + (P(),) * len(scalars),
        out_specs=P())
    return fn(zimg, ztxt, *scalars)


def rotate(tree, axes: tuple[str, ...], n: int):
    """Sends each device's value to the next device on the ring (i -> i + 1 mod n)."""
    return jax.lax.ppermute(tree, axes, [(i, (i + 1) % n) for i in range(n)])


def run_ring(block: Callable, x: Array, y: Array, rows, cols, axes: tuple[str, ...], n: int):
    """Meets the local image chunk ``x`` with every text chunk on the ring.

    ``block(x, y_chunk, own, rows, cols) -> (rows, cols)`` folds one [b, b] logit block into the
    per-image statistics ``rows`` and the per-text statistics ``cols`` of the visiting chunk;
    ``own`` is True on step 0, when the visiting chunk is the device's own (diagonal block).
    Returns the final ``rows`` and the ``cols`` of the device's own text chunk.
    """
    block = jax.checkpoint(block)
    # The loop carry must vary over the ring axes from the start, as it does after one step.
    rows, cols = jax.lax.pcast((rows, cols), axes, to="varying")

    def step(i, carry):
        y_chunk, rows, cols = carry
        rows, cols = block(x, y_chunk, i == 0, rows, cols)
        # The n-th rotation is what brings each text chunk's statistics back home.
        y_chunk, cols = rotate((y_chunk, cols), axes, n)
        return y_chunk, rows, cols

    _, rows, cols = jax.lax.fori_loop(0, n, step, (y, rows, cols))
    return rows, cols


def masked_negatives(logits: Array, own: Array) -> Array:
    """Logits with the positives (diagonal of the own block) replaced by -inf."""
    eye = jnp.eye(logits.shape[0], dtype=bool)
    return jnp.where(own & eye, -jnp.inf, logits)


def update_lse(stats, logits: Array, axis: int):
    """Streaming logsumexp: folds ``logits`` reduced over ``axis`` into (max, sum_exp).

    The running max is a stop_gradient constant: lse = m + log(sum exp(x - m)) holds for any m,
    so the gradient flows only through the sum, and no derivative of max is ever needed.
    """
    m, s = stats
    m_new = jnp.maximum(m, jax.lax.stop_gradient(jnp.max(logits, axis=axis)))
    s_new = s * jnp.exp(m - m_new) + jnp.sum(
        jnp.exp(logits - jnp.expand_dims(m_new, axis)), axis=axis)
    return m_new, s_new


def lse(stats) -> Array:
    m, s = stats
    return m + jnp.log(s)


def update_max(current: Array, values: Array, axis: int) -> Array:
    return jnp.maximum(current, jax.lax.stop_gradient(jnp.max(values, axis=axis)))


def clip_local(x, y, scale, *, axes, n, batch):
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    b = x.shape[0]

    def block(x, y_chunk, own, rows, cols):
        logits = scale * (x @ y_chunk.T)
        negatives = masked_negatives(logits, own)
        (row_lse, row_neg), (col_lse, col_neg) = rows, cols
        rows = update_lse(row_lse, logits, 1), update_max(row_neg, negatives, 1)
        cols = update_lse(col_lse, logits, 0), update_max(col_neg, negatives, 0)
        return rows, cols

    def empty():
        return (jnp.full((b,), -jnp.inf), jnp.zeros((b,))), jnp.full((b,), -jnp.inf)

    (row_lse, row_neg), (col_lse, col_neg) = run_ring(block, x, y, empty(), empty(), axes, n)
    pos = scale * jnp.sum(x * y, axis=1)
    total = jnp.sum(lse(row_lse) - pos) + jnp.sum(lse(col_lse) - pos)
    loss = jax.lax.psum(total, axes) / (2 * batch)
    return loss, accuracies(pos, row_neg, col_neg, axes, batch)


def siglip_local(x, y, scale, bias, *, axes, n, batch):
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    b = x.shape[0]

    def block(x, y_chunk, own, rows, cols):
        logits = scale * (x @ y_chunk.T) + bias
        signs = jnp.where(own & jnp.eye(b, dtype=bool), 1.0, -1.0)
        terms = jax.nn.log_sigmoid(signs * logits)
        negatives = masked_negatives(logits, own)
        row_sum, row_neg = rows
        rows = row_sum + jnp.sum(terms, axis=1), update_max(row_neg, negatives, 1)
        cols = update_max(cols, negatives, 0)
        return rows, cols

    rows = jnp.zeros((b,)), jnp.full((b,), -jnp.inf)
    cols = jnp.full((b,), -jnp.inf)
    (row_sum, row_neg), col_neg = run_ring(block, x, y, rows, cols, axes, n)
    loss = -jax.lax.psum(jnp.sum(row_sum), axes) / batch
    pos = scale * jnp.sum(x * y, axis=1) + bias
    return loss, accuracies(pos, row_neg, col_neg, axes, batch)


def accuracies(pos, row_neg, col_neg, axes, batch) -> dict[str, Array]:
    """Global in-batch top-1 accuracies from local positives and best negatives."""
    b = pos.shape[0]
    return {
        "i2t_acc": jax.lax.psum(strict_top1(pos, row_neg) * b, axes) / batch,
        "t2i_acc": jax.lax.psum(strict_top1(pos, col_neg) * b, axes) / batch,
    }


def ring_clip_loss(zimg, ztxt, logit_scale, *, mesh: Mesh,
                   axis: AxisNames = "data") -> tuple[Array, dict[str, Array]]:
    """``clip_loss`` on batch-sharded global arrays without forming the [B, B] logits.

    Same value, gradients and aux as ``clip_loss(zimg, ztxt, logit_scale)``; per-device memory
    for logits is one [B/n, B/n] block, n = product of the mesh sizes of ``axis``.
    """
    scale = as_scalar(logit_scale, "logit_scale")
    return ring_loss(clip_local, zimg, ztxt, (scale,), mesh, axis)


def ring_siglip_loss(zimg, ztxt, logit_scale, logit_bias, *, mesh: Mesh,
                     axis: AxisNames = "data") -> tuple[Array, dict[str, Array]]:
    """``siglip_loss`` on batch-sharded global arrays without forming the [B, B] logits.

    Same value, gradients and aux as ``siglip_loss(zimg, ztxt, logit_scale, logit_bias)``.
    Positive pairs meet only in the diagonal block, which every device sees on step 0.
    """
    scale = as_scalar(logit_scale, "logit_scale")
    bias = as_scalar(logit_bias, "logit_bias")
    return ring_loss(siglip_local, zimg, ztxt, (scale, bias), mesh, axis)
