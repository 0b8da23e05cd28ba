"""The distillation losses: DMD's gradient (sign, normaliser, guard), SiD's loss, regression."""
import jax
import jax.numpy as jnp
import numpy as np

from xmodal.losses import distillation as dl


def _draw(seed=0, shape=(4, 3, 2)):
    r = np.random.default_rng(seed)
    return [jnp.asarray(r.normal(size=shape), jnp.float32) for _ in range(3)]


def test_dmd_gradient_is_the_normalised_score_difference():
    x, x_real, x_fake = _draw()
    g, nonfinite = dl.dmd_gradient(x, x_real, x_fake)
    scale = np.abs(np.asarray(x - x_real)).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(g, (np.asarray(x_fake) - np.asarray(x_real)) / scale, rtol=1e-5)
    assert float(nonfinite) == 0.0


def test_dmd_loss_gradient_is_grad_over_elements():
    x, x_real, x_fake = _draw(1)
    g, _ = dl.dmd_gradient(x, x_real, x_fake)
    got = jax.grad(lambda x: dl.dmd_loss(x, dl.dmd_gradient(x, x_real, x_fake)[0]))(x)
    np.testing.assert_allclose(got, g / x.size, rtol=1e-5, atol=1e-8)


def test_dmd_descent_moves_the_sample_towards_the_teacher_and_away_from_the_fake():
    # The fake score sits where the generator is (x_fake = x): descending moves x to x_real.
    x, x_real, _ = _draw(2)
    step = jax.grad(lambda x: dl.dmd_loss(x, dl.dmd_gradient(x, x_real, x)[0]))
    x_new = x - 0.1 * x.size * step(x)
    assert float(jnp.mean(jnp.abs(x_new - x_real))) < float(jnp.mean(jnp.abs(x - x_real)))
    # With the teacher where the generator is, x moves away from the fake's x1.
    _, _, x_fake = _draw(3)
    step = jax.grad(lambda x: dl.dmd_loss(x, dl.dmd_gradient(x, x, x_fake)[0]))
    x_new = x - 0.01 * x.size * step(x)
    assert float(jnp.mean(jnp.abs(x_new - x_fake))) > float(jnp.mean(jnp.abs(x - x_fake)))


def test_dmd_gradient_is_guarded_against_a_zero_normaliser_and_non_finite_predictions():
    x, _, x_fake = _draw(4)
    g, nonfinite = dl.dmd_gradient(x, x, x_fake)          # x_real == x: normaliser 0
    assert np.all(np.isfinite(g)) and float(nonfinite) == 0.0
    np.testing.assert_allclose(g, (x_fake - x) / dl.EPS, rtol=1e-5)
    bad = x.at[0, 0, 0].set(jnp.inf)
    g, nonfinite = dl.dmd_gradient(x, bad, x_fake)
    assert np.all(np.isfinite(g))
    assert float(nonfinite) > 0 and np.all(g[0] == 0)      # example 0's normaliser is inf
    np.testing.assert_allclose(g[1:], dl.dmd_gradient(x[1:], bad[1:], x_fake[1:])[0], rtol=1e-6)


def test_sid_loss_is_the_papers_form():
    x, x_real, x_fake = _draw(5)
    alpha = 1.2
    d = np.asarray(x_real - x_fake)
    scale = np.abs(np.asarray(x - x_real)).mean(axis=(1, 2), keepdims=True)
    paper = ((1 - alpha) * d ** 2 + d * (np.asarray(x_fake) - np.asarray(x))) / scale
    np.testing.assert_allclose(dl.sid_loss(x, x_real, x_fake, alpha), paper.mean(), rtol=1e-5)


def test_sid_gradient_through_the_sample_points_to_the_teacher():
    # Holding both predictions fixed, dL/dx = -(x_real - x_fake) / (scale N): descending
    # moves x along x_real - x_fake, like DMD's.
    x, x_real, x_fake = _draw(6)
    got = jax.grad(lambda x: dl.sid_loss(x, x_real, x_fake))(x)
    scale = np.abs(np.asarray(x - x_real)).mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, -(np.asarray(x_real - x_fake)) / scale / x.size, rtol=1e-5)


def test_regression_loss_stops_the_target_gradient():
    x, y, _ = _draw(7)
    gx, gy = jax.grad(dl.regression_loss, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * (x - y) / x.size, rtol=1e-5)
    assert float(jnp.abs(gy).max()) == 0.0
