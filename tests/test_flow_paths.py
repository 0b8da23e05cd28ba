"""Affine flow paths: formulas against plain numpy, dx_t against finite differences, converters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.losses.flow import T_MAX
from xmodal.losses.flow_paths import (
    FLOW_PATHS, CondOTPath, CosinePath, PathSample, VPPath)
from xmodal.core.registry import SpecError

PATHS = [CondOTPath(), CondOTPath(sigma_min=0.1), CosinePath(), VPPath(), VPPath(0.5, 10.0)]


def numpy_coeffs(path, t):
    """alpha, sigma written out independently of the module."""
    if isinstance(path, CondOTPath):
        return t, 1 - (1 - path.sigma_min) * t
    if isinstance(path, CosinePath):
        return np.sin(np.pi * t / 2), np.cos(np.pi * t / 2)
    u = 1 - t
    big_t = path.beta_min * u + 0.5 * (path.beta_max - path.beta_min) * u ** 2
    alpha = np.exp(-0.5 * big_t)
    return alpha, np.sqrt(1 - alpha ** 2)


def draw(shape=(6, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=shape)
    x1 = rng.normal(size=shape) * 2 + 1
    t = rng.uniform(0.05, 0.95, size=shape[0])
    return x0, x1, t


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_sample_matches_numpy_formula(path):
    x0, x1, t = draw()
    got = path.sample(jnp.asarray(x0, jnp.float32), jnp.asarray(x1, jnp.float32), jnp.asarray(t))
    a, s = numpy_coeffs(path, t)
    expect = a[:, None, None] * x1 + s[:, None, None] * x0
    np.testing.assert_allclose(got.x_t, expect, rtol=1e-5, atol=1e-5)
    assert isinstance(got, PathSample)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_velocity_is_time_derivative(path):
    x0, x1, t = draw()
    eps = 1e-6
    with jax.enable_x64(True):
        x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
        dx = path.sample(x0, x1, jnp.asarray(t)).dx_t
        plus = path.sample(x0, x1, jnp.asarray(t + eps)).x_t
        minus = path.sample(x0, x1, jnp.asarray(t - eps)).x_t
        assert dx.dtype == jnp.float64
        np.testing.assert_allclose(dx, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_converters_recover_noise_data_and_velocity(path):
    x0, x1, t = draw(seed=1)
    x0, x1, t = (jnp.asarray(v, jnp.float32) for v in (x0, x1, t))
    s = path.sample(x0, x1, t)
    tol = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(path.velocity_to_x1(s.x_t, s.dx_t, t), x1, **tol)
    np.testing.assert_allclose(path.velocity_to_x0(s.x_t, s.dx_t, t), x0, **tol)
    np.testing.assert_allclose(path.x1_to_velocity(s.x_t, x1, t), s.dx_t, **tol)
    np.testing.assert_allclose(path.x0_to_velocity(s.x_t, x0, t), s.dx_t, **tol)
    # An arbitrary prediction (not the true velocity) round-trips as well.
    v = jax.random.normal(jax.random.key(3), x1.shape)
    np.testing.assert_allclose(path.x1_to_velocity(s.x_t, path.velocity_to_x1(s.x_t, v, t), t), v, **tol)
    np.testing.assert_allclose(path.x0_to_velocity(s.x_t, path.velocity_to_x0(s.x_t, v, t), t), v, **tol)


def test_endpoints():
    t = jnp.array([0.0, 1.0])
    for path, sigma1 in [(CondOTPath(), 0.0), (CondOTPath(0.1), 0.1), (CosinePath(), 0.0)]:
        np.testing.assert_allclose(path.alpha(t), [0.0, 1.0], atol=1e-7)
        np.testing.assert_allclose(path.sigma(t), [1.0, sigma1], atol=1e-7)
    vp = VPPath()
    # alpha(0) = exp(-(0.1 + 19.9 / 2) / 2) for beta in [0.1, 20].
    np.testing.assert_allclose(vp.alpha(t), [np.exp(-0.5 * 10.05), 1.0], rtol=1e-6)
    np.testing.assert_allclose(vp.sigma(t), [np.sqrt(1 - np.exp(-10.05)), 0.0], rtol=1e-6)


@pytest.mark.parametrize("path", [CosinePath(), VPPath()], ids=repr)
def test_variance_preserving(path):
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(path.alpha(t) ** 2 + path.sigma(t) ** 2, 1.0, rtol=1e-6)


def test_vp_is_finite_at_largest_sampled_time():
    """Samplers clamp t to T_MAX < 1; there VP's sigma must not round to 0 (sigma' = -a a'/sigma)."""
    x = jnp.ones((2, 3))
    s = VPPath().sample(x, x, jnp.full((2,), T_MAX))
    assert np.all(np.isfinite(s.dx_t))
    # sigma^2 = 1 - exp(-T(1 - t)) ~ beta_min (1 - t) for t near 1.
    np.testing.assert_allclose(VPPath().sigma(jnp.float32(T_MAX)) ** 2, 0.1 * (1 - T_MAX), rtol=1e-3)


def test_scalar_time_and_jit():
    x0, x1, _ = draw()
    path = CondOTPath(0.1)
    out = jax.jit(path.sample)(jnp.asarray(x0), jnp.asarray(x1), 0.25)
    np.testing.assert_allclose(out.x_t, 0.25 * x1 + (1 - 0.9 * 0.25) * x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.dx_t, x1 - 0.9 * x0, rtol=1e-5, atol=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="sigma_min"):
        CondOTPath(sigma_min=1.0)
    with pytest.raises(ValueError, match="beta_min"):
        VPPath(beta_min=0.0)
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        CondOTPath().sample(x, x, jnp.zeros((3,)))
    with pytest.raises(ValueError, match="same shape"):
        CondOTPath().sample(x, jnp.zeros((4, 3)), 0.5)


def test_registry_builds_paths_and_rejects_bad_keys():
    assert FLOW_PATHS.build("cond_ot", sigma_min=0.1) == CondOTPath(0.1)
    assert set(FLOW_PATHS.names()) == {"cond_ot", "rectified", "lipman_fm", "cosine", "vp",
                                       "icfm"}
    t = jnp.asarray([0.0, 0.3, 1.0])
    x0, x1 = jnp.ones((3, 2)), 2 * jnp.ones((3, 2))
    rect = FLOW_PATHS.build("rectified")
    np.testing.assert_allclose(rect.sample(x0, x1, t).x_t[:, 0], [1.0, 1.3, 2.0], rtol=1e-6)
    lip = FLOW_PATHS.build("lipman_fm")
    assert lip.sigma_min == 1e-4 and float(lip.sigma(jnp.asarray(1.0))) == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="sigma_min = 0"):
        FLOW_PATHS.build("rectified", sigma_min=0.1)
    with pytest.raises(ValueError, match="0 < sigma_min"):
        FLOW_PATHS.build("lipman_fm", sigma_min=0.0)
    with pytest.raises(SpecError, match="sigma_min"):
        FLOW_PATHS.build("cond_ot", sigmamin=0.1)


def test_icfm_path_is_the_line_plus_sigma_noise_with_the_lines_velocity():
    path = FLOW_PATHS.build("icfm", sigma=0.1)
    n = 20_000
    x0 = jnp.zeros((n, 2))
    x1 = jnp.ones((n, 2))
    t = jnp.full((n,), 0.3)
    s = path.sample(x0, x1, t, rng=jax.random.key(0))
    np.testing.assert_allclose(s.dx_t, 1.0)                     # u_t = x1 - x0, eps ignored
    np.testing.assert_allclose(float(jnp.mean(s.x_t)), 0.3, atol=3e-3)
    np.testing.assert_allclose(float(jnp.std(s.x_t)), 0.1, rtol=0.03)
    line = FLOW_PATHS.build("icfm", sigma=0.0).sample(x0, x1, t)
    np.testing.assert_allclose(line.x_t, 0.3, rtol=1e-6)        # sigma = 0: rectified flow
    with pytest.raises(ValueError, match="needs rng"):
        path.sample(x0, x1, t)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        FLOW_PATHS.build("icfm", sigma=-1.0)
