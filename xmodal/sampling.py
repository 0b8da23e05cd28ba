"""ODE samplers for flow models: integrate dx/dt = v(x, t) from noise at t = 0 to data at t = 1.

A velocity function is ``velocity_fn(x, t) -> v`` with x of shape [B, ...] and t a scalar
(float32, float64 for a float64 state); ``model_velocity`` and ``cfg_velocity`` build one from a network
``apply_fn(params, x_t, t, cond)`` that takes per-example times [B] (the training signature of
``xmodal.losses.flow.flow_matching_loss``).

Every sampler returns ``(x, nfe)``: the final state and the number of velocity evaluations. With
classifier-free guidance one evaluation is one network call on a doubled batch.

Fixed-step solvers (``solve``) on a grid t_0 < t_1 < ... < t_K, step h = t_{k+1} - t_k, f = v:

    euler     x + h f(t, x)                                                 order 1, 1 eval
    midpoint  x + h f(t + h/2, x + h/2 f(t, x))                             order 2, 2 evals
    heun      k1 = f(t, x), k2 = f(t + h, x + h k1);  x + h/2 (k1 + k2)     order 2, 2 evals
    rk4       classical Runge-Kutta (Kutta 1901)                            order 4, 4 evals

The grid is uniform (``steps``) or given (``times``, e.g. ``flow.shift_time`` of a uniform grid
for SD3's shifted schedule). ``solve_adaptive`` uses diffrax's Dormand-Prince 5(4) with a PI
step-size controller (Dormand & Prince 1980; Hairer, Norsett & Wanner, "Solving Ordinary
Differential Equations I", sec. II.4).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
VelocityFn = Callable[[Array, Array], Array]


@runtime_checkable
class Sampler(Protocol):
    """An objective that generates: ``sample(params, noise, batch, steps) -> x``, a sample for
    each row of ``batch`` (its conditions) from ``noise`` shaped like the data, deterministic
    given the noise (a flow's ODE in ``steps`` steps; a one-step student ignores ``steps``).
    Evaluators and ``--mode=sample`` call this, never an objective's private methods."""

    def sample(self, params, noise, batch, steps: int) -> Array: ...


def euler_step(f: VelocityFn, x: Array, t: Array, h: Array) -> Array:
    return x + h * f(x, t)


def midpoint_step(f: VelocityFn, x: Array, t: Array, h: Array) -> Array:
    k1 = f(x, t)
    return x + h * f(x + 0.5 * h * k1, t + 0.5 * h)


def heun_step(f: VelocityFn, x: Array, t: Array, h: Array) -> Array:
    k1 = f(x, t)
    k2 = f(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def rk4_step(f: VelocityFn, x: Array, t: Array, h: Array) -> Array:
    k1 = f(x, t)
    k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = f(x + h * k3, t + h)
    return x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


# name -> (step function, velocity evaluations per step)
METHODS = {
    "euler": (euler_step, 1),
    "midpoint": (midpoint_step, 2),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}


def uniform_grid(steps: int, dtype=jnp.float32) -> Array:
    """``steps + 1`` equally spaced times from 0 to 1."""
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    return jnp.linspace(0.0, 1.0, steps + 1, dtype=dtype)


def check_grid(times, dtype=jnp.float32) -> Array:
    """``times`` as a vector of ``dtype``; raises unless it is 1-D, has >= 2 entries and increases."""
    times = jnp.asarray(times, dtype)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times must be a 1-D grid with at least 2 entries; got shape {tuple(times.shape)}.")
    # Values can only be checked when known at trace time; a traced grid is taken as given.
    if not isinstance(times, jax.core.Tracer) and not np.all(np.diff(np.asarray(times)) > 0):
        raise ValueError(f"times must be strictly increasing; got {np.asarray(times)}.")
    return times


def solve(velocity_fn: VelocityFn, x0: Array, *, method: str = "euler",
          steps: int | None = None, times=None) -> tuple[Array, int]:
    """Integrates from ``times[0]`` to ``times[-1]`` (default: a uniform grid from 0 to 1 with
    ``steps`` steps) with a fixed-step ``method`` in {euler, midpoint, heun, rk4}.

    Returns (x, nfe) with nfe = evaluations per step * number of steps, a Python int. The loop
    is a ``lax.scan``, so the velocity function is traced once per stage whatever the steps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid methods: {', '.join(METHODS)}.")
    if (steps is None) == (times is None):
        raise ValueError("give exactly one of steps (uniform grid on [0, 1]) or times (a grid).")
    # Times in at least float32, and in float64 for a float64 state (bf16 steps are too coarse).
    dtype = jnp.result_type(x0.dtype, jnp.float32)
    times = uniform_grid(steps, dtype) if times is None else check_grid(times, dtype)
    step_fn, evals = METHODS[method]

    def body(x, interval):
        t, t_next = interval
        h = t_next - t
        return step_fn(velocity_fn, x, t, h).astype(x.dtype), None

    x, _ = jax.lax.scan(body, x0, (times[:-1], times[1:]))
    return x, evals * (times.shape[0] - 1)


def solve_adaptive(velocity_fn: VelocityFn, x0: Array, *, rtol: float = 1e-5, atol: float = 1e-5,
                   t0: float = 0.0, t1: float = 1.0, dt0: float = 0.01,
                   max_steps: int = 4096) -> tuple[Array, Array]:
    """Dormand-Prince 5(4) with error control (diffrax ``Dopri5`` + ``PIDController``).

    A step is accepted when the RMS over elements of err_i / (atol + rtol max(|x_i|, |x_new_i|))
    is <= 1, err being the difference of the embedded 5th- and 4th-order solutions. ``dt0`` is
    the first trial step; the controller grows or shrinks it from there.

    Returns (x, nfe), nfe an int32 array: Dopri5 is first-same-as-last, so the first stage is
    evaluated once at the start and every step, accepted or rejected, costs 6 more:
    nfe = 1 + 6 * steps. Raises (from diffrax) if ``max_steps`` is exceeded.
    """
    import diffrax  # Imported here: diffrax (with equinox) is needed only by this solver.

    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0; got rtol={rtol}, atol={atol}.")
    if not 0 < dt0 <= t1 - t0:
        raise ValueError(f"dt0 must be in (0, t1 - t0] = (0, {t1 - t0}]; got {dt0}.")
    term = diffrax.ODETerm(lambda t, x, args: velocity_fn(x, t))
    sol = diffrax.diffeqsolve(
        term, diffrax.Dopri5(), t0, t1, dt0, x0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps)
    nfe = 1 + 6 * sol.stats["num_steps"]
    return sol.ys[0], jnp.asarray(nfe, jnp.int32)


def model_velocity(apply_fn: Callable[[Any, Array, Array, Any], Array], params: Any,
                   cond: Any) -> VelocityFn:
    """``velocity_fn(x, t)`` that calls ``apply_fn(params, x, t * ones([B]), cond)``."""
    def velocity_fn(x, t):
        return apply_fn(params, x, jnp.full((x.shape[0],), t, jnp.float32), cond)
    return velocity_fn


def check_null(cond: Any, null_cond: Any) -> None:
    """Guidance's null condition must be shaped as a tree like the condition."""
    if jax.tree.structure(null_cond) != jax.tree.structure(cond):
        raise ValueError(
            f"null_cond must have the same structure as cond; got {jax.tree.structure(null_cond)} "
            f"and {jax.tree.structure(cond)}.")


def guided(velocity: Callable[[Array, Array, Any], Array], x: Array, t: Array, cond: Any,
           null_cond: Any, guidance: float) -> Array:
    """Classifier-free guidance (Ho & Salimans 2021) on velocities, the one implementation:

        v = v(x, t, null) + w (v(x, t, cond) - v(x, t, null))

    w = 1 is the conditional velocity (one call, ``null_cond`` unused), w = 0 the unconditional
    one, w > 1 extrapolates. Otherwise both evaluations run as one ``velocity(x, t, cond)`` call
    on the batch [x; x] with times [t; t] and conditions [cond; null]. ``t`` is [B]; ``cond`` is
    an array or pytree with leading axis [B]; each ``null_cond`` leaf is broadcast to its cond
    leaf (one example's shape, or the whole batch).
    """
    if guidance == 1.0:
        return velocity(x, t, cond)
    check_null(cond, null_cond)
    both = jax.tree.map(
        lambda c, n: jnp.concatenate([c, jnp.broadcast_to(jnp.asarray(n, c.dtype), c.shape)]),
        cond, null_cond)
    v = velocity(jnp.concatenate([x, x]), jnp.concatenate([t, t]), both)
    v_cond, v_null = jnp.split(v, 2)
    return v_null + guidance * (v_cond - v_null)


def cfg_velocity(apply_fn: Callable[[Any, Array, Array, Any], Array], params: Any, cond: Any,
                 null_cond: Any, guidance: float) -> VelocityFn:
    """The ODE's ``velocity_fn(x, t)`` (scalar t) of ``guided`` guidance over
    ``apply_fn(params, x, t [B], cond)``."""
    check_null(cond, null_cond)

    def velocity_fn(x, t):
        tb = jnp.full((x.shape[0],), t, jnp.float32)
        return guided(lambda x_, t_, c_: apply_fn(params, x_, t_, c_), x, tb, cond, null_cond,
                      guidance)
    return velocity_fn
