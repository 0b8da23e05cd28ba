"""CLIP loss with progressively softened negative labels (LightCLIP, Nie et al. 2023,
"LightCLIP: Learning Multi-Level Interaction for Lightweight Vision-Language Models").

Web image-text pairs are not strictly one-to-one: a caption often fits other images of the
batch too. The one-hot InfoNCE target is therefore softened by moving a fraction alpha of the
target mass from the positive onto the B - 1 negatives,

    target_ij = 1 - alpha             if i == j
              = alpha / (B - 1)       otherwise
    loss = 1/(2B) sum_i [ -sum_j target_ij log softmax_j(L)_ij
                          -sum_j target_ij log softmax_j(L^T)_ij ],   L = scale * zimg ztxt^T

and alpha grows over training ("progressive"): early on the pairing is all the model has to go
on, later it tolerates near-duplicates. Unlike ordinary label smoothing no mass stays on the
positive beyond 1 - alpha, so alpha = 0 is exactly ``clip_loss``.

The schedule is the caller's: ``soft_label_clip_loss`` takes alpha itself, and
``linear_ramp`` / ``cosine_ramp`` build the usual ``step -> alpha`` functions, e.g.
``soft_label_clip_loss(zimg, ztxt, scale, linear_ramp(0.2, 10_000)(step))``.
With B = 1 there is no negative to move mass to, and the loss is the one-hot loss (0).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from xmodal.losses.contrastive import as_scalar, check_pair, strict_top1

Array = jax.Array


def check_ramp(max_smoothing: float, ramp_steps: int, start_step: int) -> None:
    if not 0.0 <= max_smoothing < 1.0:
        raise ValueError(
            f"max_smoothing must lie in [0, 1) (the positive keeps 1 - alpha of the target); "
            f"got {max_smoothing}.")
    if not isinstance(ramp_steps, int) or ramp_steps < 1:
        raise ValueError(f"ramp_steps must be a positive int; got {ramp_steps!r}.")
    if not isinstance(start_step, int) or start_step < 0:
        raise ValueError(f"start_step must be a non-negative int; got {start_step!r}.")


def ramp_fraction(step, ramp_steps: int, start_step: int) -> Array:
    """Progress through the ramp, clipped to [0, 1]."""
    t = (jnp.asarray(step, jnp.float32) - start_step) / ramp_steps
    return jnp.clip(t, 0.0, 1.0)


def linear_ramp(max_smoothing: float, ramp_steps: int,
                start_step: int = 0) -> Callable[[Array], Array]:
    """alpha(step) = max_smoothing * clip((step - start_step) / ramp_steps, 0, 1)."""
    check_ramp(max_smoothing, ramp_steps, start_step)
    return lambda step: max_smoothing * ramp_fraction(step, ramp_steps, start_step)


def cosine_ramp(max_smoothing: float, ramp_steps: int,
                start_step: int = 0) -> Callable[[Array], Array]:
    """alpha(step) = max_smoothing * (1 - cos(pi * t)) / 2, t = clipped ramp progress.

    Flat at both ends: alpha leaves 0 slowly and settles on ``max_smoothing`` slowly.
    """
    check_ramp(max_smoothing, ramp_steps, start_step)
    return lambda step: max_smoothing * 0.5 * (
        1.0 - jnp.cos(jnp.pi * ramp_fraction(step, ramp_steps, start_step)))


def soft_targets(batch: int, smoothing: Array) -> Array:
    """[B, B] targets: 1 - alpha on the diagonal, alpha / (B - 1) elsewhere; one-hot if B = 1."""
    eye = jnp.eye(batch, dtype=jnp.float32)
    if batch == 1:
        return eye
    return eye * (1.0 - smoothing) + (1.0 - eye) * (smoothing / (batch - 1))


def soft_label_clip_loss(zimg, ztxt, logit_scale, smoothing) -> tuple[Array, dict[str, Array]]:
    """Symmetric InfoNCE against softened targets; see the module docstring for the formula.

    ``zimg``, ``ztxt`` [B, D] L2-normalised; ``logit_scale`` the multiplier (after exp);
    ``smoothing`` alpha in [0, 1), a scalar that may be traced (e.g. a schedule of the step).
    Returns ``(loss, aux)`` with ``i2t_acc``, ``t2i_acc`` (strict top-1) and ``smoothing``.
    """
    check_pair(zimg, ztxt)
    scale = as_scalar(logit_scale, "logit_scale")
    alpha = as_scalar(smoothing, "smoothing")
    if not isinstance(alpha, jax.core.Tracer) and not 0.0 <= float(alpha) < 1.0:
        raise ValueError(
            f"smoothing must lie in [0, 1) (the positive keeps 1 - smoothing of the target); "
            f"got {float(alpha)}.")
    x = jnp.asarray(zimg, jnp.float32)
    y = jnp.asarray(ztxt, jnp.float32)
    logits = scale * (x @ y.T)
    target = soft_targets(x.shape[0], alpha)
    # The targets are symmetric, so the same matrix serves the text-to-image direction.
    i2t = -jnp.sum(target * jax.nn.log_softmax(logits, axis=1), axis=1)
    t2i = -jnp.sum(target * jax.nn.log_softmax(logits.T, axis=1), axis=1)
    loss = 0.5 * (jnp.mean(i2t) + jnp.mean(t2i))
    pos = jnp.diagonal(logits)
    negatives = jnp.where(jnp.eye(x.shape[0], dtype=bool), -jnp.inf, logits)
    aux = {
        "i2t_acc": strict_top1(pos, jnp.max(negatives, axis=1)),
        "t2i_acc": strict_top1(pos, jnp.max(negatives, axis=0)),
        "smoothing": jax.lax.stop_gradient(alpha),
    }
    return loss, aux
