"""Flow matching loss, condition dropout, time samplers and minibatch OT coupling."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from xmodal.losses.flow import (
    T_MAX, TIME_SAMPLERS, LogitNormalTime, ShiftedTime, UniformTime, drop_condition,
    flow_matching_loss, ot_couple, shift_time)
from xmodal.losses.flow_paths import CondOTPath, CosinePath

KEY = jax.random.key(0)


# ---- time samplers -------------------------------------------------------------------------

def test_uniform_time():
    t = np.asarray(UniformTime()(KEY, 20000))
    assert t.shape == (20000,) and t.dtype == np.float32
    assert t.min() >= 0 and t.max() < 1
    assert abs(t.mean() - 0.5) < 0.01


def test_logit_normal_time_has_given_logit_moments():
    t = np.asarray(LogitNormalTime(mean=0.5, std=0.8)(KEY, 20000), np.float64)
    logit = np.log(t / (1 - t))
    assert abs(logit.mean() - 0.5) < 0.03 and abs(logit.std() - 0.8) < 0.03
    assert t.max() < 1


def test_logit_normal_clamps_below_one():
    t = LogitNormalTime(mean=30.0, std=1.0)(KEY, 100)
    assert np.all(np.asarray(t) == T_MAX) and T_MAX < 1


def test_shift_time_is_sd3_shift_with_time_reversed():
    t = np.linspace(0, 1, 101)
    for shift in [0.5, 1.0, 3.0]:
        got = np.asarray(shift_time(jnp.asarray(t), shift))
        tau = 1 - t  # SD3 time: data at 0.
        sd3 = shift * tau / (1 + (shift - 1) * tau)
        np.testing.assert_allclose(got, 1 - sd3, atol=1e-6)
        assert got[0] == 0 and abs(got[-1] - 1) < 1e-7
        assert np.all(np.diff(got) > 0)
    interior = np.asarray(shift_time(jnp.asarray(t[1:-1]), 3.0))
    assert np.all(interior < t[1:-1])  # towards the noise at t = 0
    np.testing.assert_allclose(shift_time(jnp.asarray(t), 1.0), t, atol=1e-7)
    # Literal value: shift 3 maps t = 0.5 to 0.5 / (3 - 2 * 0.5) = 0.25.
    np.testing.assert_allclose(shift_time(jnp.float32(0.5), 3.0), 0.25)


def test_shifted_time_sampler():
    t = np.asarray(ShiftedTime(shift=3.0)(KEY, 20000))
    assert t.min() >= 0 and t.max() < 1
    assert abs(np.median(t) - 0.25) < 0.01  # the median of U[0, 1) is 0.5, shifted to 0.25
    lognorm = ShiftedTime(shift=3.0, base=LogitNormalTime())(KEY, 20000)
    np.testing.assert_allclose(np.median(np.asarray(lognorm)), 0.25, atol=0.01)
    with pytest.raises(ValueError, match="shift"):
        ShiftedTime(shift=0.0)
    with pytest.raises(ValueError, match="base must be a time sampler"):
        ShiftedTime(base="uniform")


def test_time_sampler_registry():
    assert set(TIME_SAMPLERS.names()) == {"uniform", "logit_normal", "shifted"}
    assert TIME_SAMPLERS.build("logit_normal", mean=0.0, std=2.0) == LogitNormalTime(0.0, 2.0)


# ---- condition dropout ---------------------------------------------------------------------

def test_drop_condition_replaces_whole_examples():
    b = 4000
    cond = {"emb": jnp.ones((b, 3)), "label": jnp.arange(b, dtype=jnp.int32) + 1}
    null = {"emb": jnp.full((3,), -1.0), "label": 0}
    out, dropped = drop_condition(KEY, cond, null, 0.3)
    dropped = np.asarray(dropped).astype(bool)
    assert abs(dropped.mean() - 0.3) < 0.03
    np.testing.assert_array_equal(np.asarray(out["emb"])[dropped], -1.0)
    np.testing.assert_array_equal(np.asarray(out["emb"])[~dropped], 1.0)
    np.testing.assert_array_equal(np.asarray(out["label"])[dropped], 0)
    np.testing.assert_array_equal(np.asarray(out["label"])[~dropped], np.arange(b)[~dropped] + 1)


def test_drop_condition_errors():
    with pytest.raises(ValueError, match="explicit null_cond"):
        drop_condition(KEY, jnp.arange(4), None, 0.1)
    with pytest.raises(ValueError, match="same structure"):
        drop_condition(KEY, {"a": jnp.ones((4, 2))}, jnp.zeros(2), 0.1)
    with pytest.raises(ValueError, match="leading axis"):
        drop_condition(KEY, {"a": jnp.ones((4, 2)), "b": jnp.ones((3,))}, None, 0.1)
    zeros, _ = drop_condition(KEY, jnp.ones((50, 2)), None, 1.0)
    np.testing.assert_array_equal(zeros, 0.0)


# ---- loss ----------------------------------------------------------------------------------

def zero_net(params, x_t, t, cond):
    return jnp.zeros_like(x_t)


def test_zero_network_loss_is_mean_square_target():
    """For CondOT (sigma_min = 0) dx_t = x1 - x0 with x0 ~ N(0, I) independent of x1 = 2:
    E (x1 - x0)^2 = 4 + 1 = 5."""
    x1 = jnp.full((4096, 4), 2.0)
    loss, aux = flow_matching_loss(zero_net, {}, x1, None, KEY, path=CondOTPath(),
                                   time_sampler=UniformTime())
    assert abs(float(loss) - 5.0) < 0.1
    assert float(aux["mse"]) == float(loss) and float(aux["cond_dropped"]) == 0.0
    assert abs(float(aux["t_mean"]) - 0.5) < 0.02


def test_exact_marginal_velocity_gives_zero_loss():
    """With all data at one point c the marginal velocity of CondOT is known in closed form:
    x_t = t c + (1 - t) x0  =>  dx_t = c - x0 = (c - x_t) / (1 - t)."""
    c = jnp.array([1.5, -0.5, 3.0])
    x1 = jnp.broadcast_to(c, (512, 3))

    def exact(params, x_t, t, cond):
        return (c - x_t) / (1 - t)[:, None]

    loss, _ = flow_matching_loss(exact, {}, x1, None, KEY, path=CondOTPath(),
                                 time_sampler=UniformTime())
    assert float(loss) < 1e-6
    other, _ = flow_matching_loss(exact, {}, x1 + 1.0, None, KEY, path=CondOTPath(),
                                  time_sampler=UniformTime())
    assert float(other) > 0.1


def test_loss_applies_condition_dropout_per_example():
    b = 2000

    def net(params, x_t, t, cond):
        # velocity = cond broadcast, so the loss depends on which conditions were nulled.
        return jnp.broadcast_to(cond, x_t.shape) * params

    x1 = jnp.zeros((b, 2))
    cond = jnp.ones((b, 1))
    loss_fn = functools.partial(flow_matching_loss, net, path=CondOTPath(), time_sampler=UniformTime(),
                                cfg_drop=0.25, null_cond=jnp.zeros((1,)))
    loss, aux = jax.jit(loss_fn)(1.0, x1, cond, KEY)
    assert abs(float(aux["cond_dropped"]) - 0.25) < 0.03
    # dx_t = -x0; v = 1 on kept rows, 0 on dropped rows: E = 0.75 * E(1 + x0)^2 + 0.25 * E x0^2 = 0.75 * 2 + 0.25.
    assert abs(float(loss) - 1.75) < 0.08
    grad = jax.grad(lambda p: loss_fn(p, x1, cond, KEY)[0])(1.0)
    assert np.isfinite(grad) and abs(float(grad) - 1.5) < 0.1  # d/dp 0.75 E (p + x0)^2 = 1.5 p


def test_loss_errors():
    x1 = jnp.zeros((8, 2))
    kw = dict(path=CosinePath(), time_sampler=UniformTime())
    with pytest.raises(ValueError, match="cfg_drop"):
        flow_matching_loss(zero_net, {}, x1, None, KEY, cfg_drop=1.5, **kw)
    with pytest.raises(ValueError, match="shaped like x1"):
        flow_matching_loss(lambda p, x, t, c: x[:, :1], {}, x1, None, KEY, **kw)
    with pytest.raises(ValueError, match="explicit null_cond"):
        flow_matching_loss(zero_net, {}, x1, jnp.arange(8), KEY, **kw)
    with pytest.raises(ValueError, match="batch"):
        flow_matching_loss(zero_net, {}, jnp.zeros((8,)), None, KEY, **kw)


# ---- minibatch OT --------------------------------------------------------------------------

def test_ot_couple_recovers_a_hidden_permutation():
    x0 = jax.random.normal(KEY, (64, 2))
    perm = np.random.default_rng(0).permutation(64)
    x1 = x0[perm] + 1e-3
    couple = jax.jit(functools.partial(ot_couple, epsilon=1e-3))
    paired = couple(jax.random.key(1), x0, x1)
    assert np.mean(np.all(np.abs(np.asarray(paired) - np.asarray(x0)[perm]) < 1e-6, axis=1)) > 0.95


def test_ot_couple_cost_near_exact_assignment():
    k0, k1 = jax.random.split(KEY)
    x0 = jax.random.normal(k0, (128, 3, 2))
    x1 = jax.random.normal(k1, (128, 3, 2)) + 1.0
    paired = jax.jit(ot_couple)(jax.random.key(2), x0, x1)
    a, b = np.asarray(x0).reshape(128, -1), np.asarray(x1).reshape(128, -1)
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].mean()
    independent = np.diag(cost).mean()
    coupled = ((np.asarray(paired).reshape(128, -1) - b) ** 2).sum(-1).mean()
    assert coupled < 1.1 * exact
    assert coupled < 0.7 * independent


def test_loss_with_ot_lowers_target_norm():
    """Coupling shortens the noise-to-data segments, so a zero network sees a smaller target."""
    x1 = jax.random.normal(jax.random.key(5), (256, 2)) * 3.0
    loss = functools.partial(flow_matching_loss, zero_net, {}, path=CondOTPath(),
                             time_sampler=UniformTime())
    plain, _ = loss(x1, None, KEY)
    coupled, _ = jax.jit(functools.partial(loss, ot=True))(x1, None, KEY)
    assert float(coupled) < 0.5 * float(plain)
