"""ODE samplers: convergence order, exactness, NFE counts, adaptive control, guidance."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback

from xmodal.losses.flow import shift_time
from xmodal.sampling import (
    cfg_velocity, model_velocity, solve, solve_adaptive, uniform_grid)


def decay(x, t):
    """dx/dt = -t x, so x(1) = x(0) exp(-1/2)."""
    return -t * x


@pytest.mark.parametrize("method,order,steps", [
    ("euler", 1, [8, 16, 32, 64]),
    ("midpoint", 2, [8, 16, 32, 64]),
    ("heun", 2, [8, 16, 32, 64]),
    ("rk4", 4, [2, 4, 8, 16]),
])
def test_order_of_convergence(method, order, steps):
    with jax.enable_x64(True):
        x0 = jnp.array([1.0, -2.0], jnp.float64)
        exact = np.array([1.0, -2.0]) * math.exp(-0.5)
        errors = [float(np.max(np.abs(solve(decay, x0, method=method, steps=n)[0] - exact)))
                  for n in steps]
    slope = np.polyfit(np.log(1.0 / np.array(steps)), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.3, (errors, slope)


def test_exact_on_polynomials_within_order():
    """Euler is exact for constant velocity; RK4 for dx/dt = t^3 (x(1) = 1/4)."""
    x0 = jnp.zeros((3,))
    x, _ = solve(lambda x, t: jnp.full_like(x, 2.0), x0, method="euler", steps=3)
    np.testing.assert_allclose(x, 2.0, rtol=1e-6)
    x, _ = solve(lambda x, t: jnp.full_like(x, t ** 3), x0, method="rk4", steps=2)
    np.testing.assert_allclose(x, 0.25, rtol=1e-6)
    x, _ = solve(lambda x, t: jnp.full_like(x, t ** 3), x0, method="heun", steps=2)
    assert abs(float(x[0]) - 0.25) > 1e-3  # second order is not exact on a cubic


def counting(f, counter):
    """f that bumps ``counter`` at run time on every evaluation (also inside scan / while)."""
    def bump():
        counter[0] += 1
        return np.int32(0)

    def wrapped(x, t):
        io_callback(bump, jax.ShapeDtypeStruct((), jnp.int32), ordered=True)
        return f(x, t)
    return wrapped


@pytest.mark.parametrize("method,per_step", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_fixed_step_nfe_is_counted_evaluations(method, per_step):
    counter = [0]
    x, nfe = solve(counting(decay, counter), jnp.ones((2,)), method=method, steps=5)
    jax.block_until_ready(x)
    assert nfe == per_step * 5 == counter[0]


def test_given_grid_and_jit():
    grid = shift_time(uniform_grid(64), 3.0)  # SD3's shifted schedule, finer near t = 0
    x, nfe = solve(decay, jnp.ones((2,)), method="heun", times=grid)
    np.testing.assert_allclose(x, math.exp(-0.5), rtol=1e-4)
    assert nfe == 128
    jitted = jax.jit(lambda x: solve(decay, x, method="rk4", steps=8)[0])
    np.testing.assert_allclose(jitted(jnp.ones((2,))), math.exp(-0.5), rtol=1e-6)


def test_bad_arguments():
    x = jnp.ones((2,))
    with pytest.raises(ValueError, match="valid methods: euler"):
        solve(decay, x, method="rk45", steps=4)
    with pytest.raises(ValueError, match="exactly one of steps"):
        solve(decay, x, method="euler", steps=4, times=uniform_grid(4))
    with pytest.raises(ValueError, match="exactly one of steps"):
        solve(decay, x, method="euler")
    with pytest.raises(ValueError, match="strictly increasing"):
        solve(decay, x, times=jnp.array([0.0, 0.6, 0.5, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        solve(decay, x, times=jnp.array([0.0]))
    with pytest.raises(ValueError, match="positive integer"):
        solve(decay, x, steps=0)
    with pytest.raises(ValueError, match="dt0"):
        solve_adaptive(decay, x, dt0=0.0)


K, C = 30.0, 0.7


def bump(x, t):
    """dx/dt = K sech^2(K (t - C)) x: quiet except near t = C, x(1) = x(0) exp(tanh(K(1-C)) + tanh(K C))."""
    return K / jnp.cosh(K * (t - C)) ** 2 * x


def test_adaptive_beats_rk4_at_equal_error():
    x0 = jnp.ones((4, 2))
    exact = math.exp(math.tanh(K * (1 - C)) + math.tanh(K * C))
    counter = [0]
    x, nfe = solve_adaptive(counting(bump, counter), x0, rtol=1e-5, atol=1e-5)
    err = float(jnp.max(jnp.abs(x - exact))) / exact
    assert int(nfe) == counter[0]
    assert err < 1e-4
    # RK4 with the same budget (nfe / 4 steps) misses the bump by far more.
    x_rk4, nfe_rk4 = solve(bump, x0, method="rk4", steps=int(nfe) // 4)
    assert nfe_rk4 <= int(nfe)
    assert float(jnp.max(jnp.abs(x_rk4 - exact))) / exact > 10 * err
    # A looser tolerance costs fewer evaluations.
    _, nfe_loose = solve_adaptive(bump, x0, rtol=1e-3, atol=1e-3)
    assert int(nfe_loose) < int(nfe)


def test_adaptive_smooth_problem():
    x, nfe = solve_adaptive(decay, jnp.array([1.0, -2.0]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x, np.array([1.0, -2.0]) * math.exp(-0.5), rtol=1e-5)
    assert int(nfe) < 100


def affine_net(params, x, t, cond):
    """A toy conditional velocity whose output depends on x, t and the condition."""
    return params * x * t[:, None] + cond


def test_cfg_matches_two_separate_evaluations_in_one_call():
    b = 3
    x = jax.random.normal(jax.random.key(0), (b, 2))
    cond = jnp.arange(b * 2, dtype=jnp.float32).reshape(b, 2)
    null = jnp.full((2,), -5.0)
    t = jnp.float32(0.3)
    v_cond = model_velocity(affine_net, 2.0, cond)(x, t)
    v_null = model_velocity(affine_net, 2.0, jnp.broadcast_to(null, (b, 2)))(x, t)
    np.testing.assert_allclose(cfg_velocity(affine_net, 2.0, cond, null, 1.0)(x, t), v_cond, rtol=1e-6)
    np.testing.assert_allclose(cfg_velocity(affine_net, 2.0, cond, null, 0.0)(x, t), v_null, rtol=1e-6)
    np.testing.assert_allclose(cfg_velocity(affine_net, 2.0, cond, null, 3.0)(x, t),
                               v_null + 3.0 * (v_cond - v_null), rtol=1e-5)

    calls = []

    def recording_net(params, x, t, cond):
        calls.append(x.shape[0])
        return affine_net(params, x, t, cond)

    guided = cfg_velocity(recording_net, 2.0, cond, null, 2.0)
    _, nfe = solve(guided, x, method="heun", steps=1)
    assert calls == [2 * b, 2 * b] and nfe == 2  # one doubled-batch call per evaluation


def test_cfg_structure_mismatch():
    with pytest.raises(ValueError, match="same structure"):
        cfg_velocity(affine_net, 1.0, {"a": jnp.ones((2, 1))}, jnp.zeros((1,)), 2.0)
