"""End to end on a 2-D toy: train a small MLP with the flow matching loss, then sample.

Data: 8 Gaussians (std 0.1) on a circle of radius 2, class label = which Gaussian. The model is
conditional with classifier-free dropout, so one run checks the unconditional fit (null label)
and guided class-conditional sampling.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from xmodal.losses.flow import UniformTime, flow_matching_loss
from xmodal.losses.flow_paths import CondOTPath
from xmodal.sampling import cfg_velocity, model_velocity, solve

MODES = 8
NULL = MODES  # the extra "no class" label used for dropout and unconditional sampling
CENTRES = 2.0 * np.stack([np.cos(2 * np.pi * np.arange(MODES) / MODES),
                          np.sin(2 * np.pi * np.arange(MODES) / MODES)], axis=1)


def eight_gaussians(rng: np.random.Generator, n: int):
    label = rng.integers(0, MODES, n)
    return (CENTRES[label] + 0.1 * rng.normal(size=(n, 2))).astype(np.float32), label.astype(np.int32)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_proj: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011, "Wasserstein Barycenter and its
    Application to Texture Mixing") between equal-size point sets:

        SW_2(a, b)^2 = E_theta W_2^2(<a, theta>, <b, theta>),  theta uniform on the sphere,

    where the 1-D W_2^2 of two n-point sets is the mean squared difference of their sorted
    values. The expectation is a Monte Carlo mean over ``n_proj`` fixed random directions.
    """
    theta = np.random.default_rng(seed).normal(size=(a.shape[1], n_proj))
    theta /= np.linalg.norm(theta, axis=0, keepdims=True)
    pa, pb = np.sort(a @ theta, axis=0), np.sort(b @ theta, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)))


class VelocityMLP(nn.Module):
    """v(x, t, label): [x, sin/cos time features, label embedding] -> 64 -> 64 -> 2."""

    @nn.compact
    def __call__(self, x, t, label):
        freqs = jnp.arange(1, 5, dtype=jnp.float32) * jnp.pi
        tf = jnp.concatenate([jnp.sin(t[:, None] * freqs), jnp.cos(t[:, None] * freqs)], axis=1)
        h = jnp.concatenate([x, tf, nn.Embed(MODES + 1, 16)(label)], axis=1)
        h = nn.silu(nn.Dense(64)(h))
        h = nn.silu(nn.Dense(64)(h))
        return nn.Dense(2)(h)


def test_flow_matching_learns_eight_gaussians():
    data_rng = np.random.default_rng(0)
    model = VelocityMLP()
    apply_fn = model.apply
    params = model.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))
    opt = optax.adam(1e-2)
    loss_fn = functools.partial(flow_matching_loss, apply_fn, path=CondOTPath(),
                                time_sampler=UniformTime(), cfg_drop=0.2, null_cond=NULL)

    @jax.jit
    def train_step(params, opt_state, x1, label, rng):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x1, label, rng)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @functools.partial(jax.jit, static_argnames="guidance")
    def sample(params, x0, label, guidance=None):
        if guidance is None:
            v = model_velocity(apply_fn, params, label)
        else:
            v = cfg_velocity(apply_fn, params, label, NULL, guidance)
        return solve(v, x0, method="midpoint", steps=16)[0]

    opt_state = opt.init(params)
    snapshots, losses = {}, []
    for step in range(1, 301):
        x1, label = eight_gaussians(data_rng, 256)
        params, opt_state, loss = train_step(params, opt_state, x1, label, jax.random.key(step))
        losses.append(float(loss))
        if step in (50, 300):
            snapshots[step] = params

    n = 2000
    target, _ = eight_gaussians(np.random.default_rng(1), n)  # held out: never trained on
    x0 = jax.random.normal(jax.random.key(7), (n, 2))
    null = jnp.full((n,), NULL, jnp.int32)
    sw_noise = sliced_wasserstein(np.asarray(x0), target)
    sw = {k: sliced_wasserstein(np.asarray(sample(p, x0, null)), target) for k, p in snapshots.items()}
    assert np.mean(losses[-50:]) < np.mean(losses[:50])
    # Measured: noise 0.56, 50 steps 0.47, 300 steps 0.22 (null-label sampling).
    assert sw[300] < 0.5 * sw_noise, (sw, sw_noise)
    assert sw[300] < 0.7 * sw[50], (sw, sw_noise)

    # Guided class-conditional samples land on their own Gaussian.
    label = jnp.arange(n, dtype=jnp.int32) % MODES
    xs = np.asarray(sample(snapshots[300], x0, label, guidance=2.0))
    nearest = np.argmin(((xs[:, None] - CENTRES[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == np.asarray(label)) > 0.9
