"""Score-distillation losses: one-step generators trained against a frozen flow teacher.

Time convention t = 0 noise, t = 1 data. All three compare data predictions at a noised
generator sample: the generator's output x (shape [B, ...]) is noised along the teacher's path,
x_t = alpha(t) x + sigma(t) eps, and the teacher ("real") and a fake-score network trained on
the generator's own samples each predict the clean point, x_real and x_fake (their velocities
turned into x1-predictions by ``flow_paths.AffinePath.velocity_to_x1``).

- **DMD** (Yin et al. 2024, "One-step Diffusion with Distribution Matching Distillation", eq. 7-8;
  DMD2, Yin et al. 2024, "Improved Distribution Matching Distillation"). The KL gradient
  between the generator's and the data distribution is approximated by the score difference,
  which in x1-predictions and with DMD's per-example normaliser reads

      g = (x_fake - x_real) / mean_elements |x - x_real|
      L = 1/2 || x - sg(x - g) ||^2 / N      so that  dL/dx = g / N,

  N the number of elements: descending L moves x along x_real - x_fake, towards where the
  teacher thinks the data is and away from where the generator already puts mass.
- **SiD** (Zhou et al. 2024, "Score identity Distillation", eq. 18 with its implementation's
  normaliser): with d = x_real - x_fake,

      L = mean_elements [ d (x_real - x) - alpha d^2 ] / sg(mean_elements |x - x_real|)

  differentiated through x *and* through both networks' predictions (their parameters fixed);
  alpha = 1.2 (SiD), 1.0 (SiDA). Equal to the paper's (1 - alpha)||d||^2 + d^T (x_fake - x).
- **Regression** (DMD's paired loss, InstaFlow's distillation): the generator's output for a
  noise z against the teacher's ODE solution from the same z.
- **GAN** (DMD2, sec. 4.3): a classifier D on the fake score's features of noised samples;
  L_D = softplus(-D(real_t)) + softplus(D(fake_t)), L_G = softplus(-D(fake_t)) (means).

The normalisers are clamped below by ``eps`` (1e-5, SiD's value), so a generator sample that the
teacher reproduces exactly (x = x̂_real) gives a finite gradient, not a division by zero. It is
not a small one: with x̂_fake ≠ x̂_real DMD's g is (x̂_fake − x̂_real) / eps, up to 1e5 times
their difference (the paper's normaliser has no better answer for that case; DMD2 divides
unclamped and zeroes the non-finite entries, which only catches an exact 0 / 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
EPS = 1e-5


def per_example_mean(x: Array) -> Array:
    """Mean over every axis but the first, kept for broadcasting: [B, 1, ..., 1]."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim)), keepdims=True)


def dmd_gradient(x: Array, x_real: Array, x_fake: Array, eps: float = EPS) -> tuple[Array, Array]:
    """DMD's normalised distribution-matching gradient g (see the module docstring) and the
    fraction of its entries that were non-finite (set to 0, as DMD2's ``nan_to_num``)."""
    x, x_real, x_fake = (jax.lax.stop_gradient(v.astype(jnp.float32)) for v in (x, x_real, x_fake))
    scale = jnp.maximum(per_example_mean(jnp.abs(x - x_real)), eps)
    g = (x_fake - x_real) / scale
    finite = jnp.isfinite(g)
    return jnp.where(finite, g, 0.0), 1.0 - jnp.mean(finite.astype(jnp.float32))


def dmd_loss(x: Array, grad: Array) -> Array:
    """1/2 ||x - sg(x - grad)||^2 averaged over elements: its gradient w.r.t. x is grad / N."""
    x = x.astype(jnp.float32)
    target = jax.lax.stop_gradient(x - grad)
    return 0.5 * jnp.mean(jnp.square(x - target))


def sid_loss(x: Array, x_real: Array, x_fake: Array, alpha: float = 1.2,
             eps: float = EPS) -> Array:
    """SiD's generator loss (module docstring); x, x_real and x_fake all carry gradients."""
    x, x_real, x_fake = (v.astype(jnp.float32) for v in (x, x_real, x_fake))
    scale = jax.lax.stop_gradient(jnp.maximum(per_example_mean(jnp.abs(x - x_real)), eps))
    d = x_real - x_fake
    return jnp.mean((d * (x_real - x) - alpha * jnp.square(d)) / scale)


def regression_loss(x: Array, target: Array) -> Array:
    """Mean squared error of the generator's output against sg(target) (the teacher's ODE
    solution from the same noise)."""
    return jnp.mean(jnp.square(x.astype(jnp.float32)
                               - jax.lax.stop_gradient(target.astype(jnp.float32))))


def gan_discriminator_loss(real_logits: Array, fake_logits: Array) -> Array:
    """DMD2's classifier loss on the fake score's features (non-saturating GAN, softplus form):
    L_D = mean softplus(-D(x_real,t)) + mean softplus(D(x_fake,t)), i.e. the cross-entropy of
    "real" for noised data and "fake" for noised generator samples."""
    return (jnp.mean(jax.nn.softplus(-real_logits.astype(jnp.float32)))
            + jnp.mean(jax.nn.softplus(fake_logits.astype(jnp.float32))))


def gan_generator_loss(fake_logits: Array) -> Array:
    """The generator's non-saturating GAN loss, L_G = mean softplus(-D(G(z)_t)): it pushes the
    classifier's "real" logit of its noised samples up."""
    return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))
