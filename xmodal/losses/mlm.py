"""Masked language modelling over byte tokens (Devlin et al. 2019, BERT), as used cross-modally
by IRRA's implicit relation reasoning and LightCLIP's fused MLM.

Masking: every byte token (id > eos; never pad, bos or eos) is selected independently with
probability ``rate``; selected tokens are replaced by ``mask_id``. (BERT also keeps 10% and
randomises 10% of the selected tokens; IRRA follows that, we replace all of them: with byte
tokens a random byte is rarely a plausible word.) The loss is the mean cross-entropy over the
selected positions,

    L_mlm = - 1/|M| sum_{(b, l) in M} log softmax(logits_bl)[ids_bl]

and 0 (with zero gradient) when nothing was selected, e.g. an empty caption: no NaN from 0/0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xmodal.data.tokenizer import EOS_ID

Array = jax.Array


def maskable(ids: Array, mask_id: int) -> Array:
    """True at byte tokens, the only positions masking may select."""
    return (ids > EOS_ID) & (ids < mask_id)


def mask_tokens(rng: Array, ids: Array, rate: float, mask_id: int) -> tuple[Array, Array]:
    """``(masked_ids, selected)``: ``selected`` [B, L] bool, each byte token with prob ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mask rate must lie in [0, 1]; got {rate}")
    if mask_id <= EOS_ID + 256:
        raise ValueError(f"mask_id={mask_id} collides with a byte token (ids 3..258); give the "
                         "text tower vocab_size >= 260 so the mask id is vocab_size - 1 = 259")
    ids = jnp.asarray(ids)
    selected = maskable(ids, mask_id) & (jax.random.uniform(rng, ids.shape) < rate)
    return jnp.where(selected, mask_id, ids).astype(ids.dtype), selected


def mlm_loss(logits: Array, ids: Array, selected: Array) -> tuple[Array, dict[str, Array]]:
    """Mean CE of ``logits`` [B, L, V] against the original ``ids`` [B, L] at ``selected``.

    Returns ``(loss, {"mlm_acc", "mlm_frac"})``: top-1 accuracy over the selected tokens and the
    fraction of positions selected.
    """
    if logits.shape[:2] != ids.shape or selected.shape != ids.shape:
        raise ValueError(f"mlm_loss: logits {logits.shape} must be [B, L, V] over ids "
                         f"{ids.shape} and selected {selected.shape}")
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, ids[..., None].astype(jnp.int32), axis=-1)[..., 0]
    w = selected.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(w), 1.0)
    loss = jnp.sum(nll * w) / count
    correct = (jnp.argmax(logits, axis=-1) == ids).astype(jnp.float32)
    aux = {"mlm_acc": jax.lax.stop_gradient(jnp.sum(correct * w) / count),
           "mlm_frac": jax.lax.stop_gradient(jnp.mean(w))}
    return loss, aux


def fusion_forward(model, params: dict, batch: dict, rng: Array, mask_rate: float,
                   with_mlm: bool) -> tuple[dict, Array | None]:
    """One training forward of a ``fusion_two_tower`` model (IRRA, LightCLIP): masks the caption
    when the MLM term is on, runs the model with dropout; returns ``(outputs, selected)`` where
    ``selected`` marks the masked tokens (None without MLM)."""
    mask_rng, dropout_rng = jax.random.split(rng)
    masked = selected = None
    if with_mlm:
        masked, selected = mask_tokens(mask_rng, batch["text"], mask_rate, model.mask_id)
    out = model.apply({"params": params}, batch["image"], batch["text"], masked, train=True,
                      rngs={"dropout": dropout_rng})
    return out, selected
