"""soft_label_clip_loss and its schedules against numpy and literal numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

from xmodal.losses.contrastive import clip_loss
from xmodal.losses.soft_labels import cosine_ramp, linear_ramp, soft_label_clip_loss

# Compiled once per shape and argument: eager dispatch is slow on a shared CPU.
soft_label_clip_loss_jit = jax.jit(soft_label_clip_loss)


def unit_rows(rng, b, d):
    x = rng.normal(size=(b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def np_soft(x, y, scale, alpha):
    logits = scale * x.astype(np.float64) @ y.astype(np.float64).T
    b = len(x)
    target = np.full((b, b), alpha / (b - 1))
    np.fill_diagonal(target, 1 - alpha)
    i2t = -(target * log_softmax(logits, axis=1)).sum(1)
    t2i = -(target * log_softmax(logits.T, axis=1)).sum(1)
    return 0.5 * (i2t.mean() + t2i.mean())


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5])
def test_matches_numpy(alpha):
    rng = np.random.default_rng(0)
    x, y = unit_rows(rng, 7, 5), unit_rows(rng, 7, 5)
    loss, aux = soft_label_clip_loss_jit(x, y, 10.0, alpha)
    np.testing.assert_allclose(loss, np_soft(x, y, 10.0, alpha), rtol=1e-5)
    np.testing.assert_allclose(aux["smoothing"], alpha, rtol=1e-6)


def test_zero_smoothing_is_clip_and_smoothing_changes_gradient():
    rng = np.random.default_rng(1)
    x, y = unit_rows(rng, 6, 4), unit_rows(rng, 6, 4)
    np.testing.assert_allclose(soft_label_clip_loss_jit(x, y, 5.0, 0.0)[0], clip_loss(x, y, 5.0)[0],
                               rtol=1e-6)
    grad = jax.jit(jax.grad(lambda x, alpha: soft_label_clip_loss(x, y, 5.0, alpha)[0]))
    g0, g1 = grad(x, 0.0), grad(x, 0.3)
    assert np.all(np.isfinite(g1)) and not np.allclose(g0, g1)


def test_schedules_literal_values():
    lin = linear_ramp(0.2, 100)
    np.testing.assert_allclose([lin(s) for s in (0, 50, 100, 500)], [0, 0.1, 0.2, 0.2],
                               atol=1e-7)
    late = linear_ramp(0.2, 100, start_step=100)
    np.testing.assert_allclose([late(s) for s in (50, 150)], [0.0, 0.1], atol=1e-7)
    cos = cosine_ramp(0.2, 100)
    # 0.2 * (1 - cos(pi/4)) / 2 = 0.0292893...
    np.testing.assert_allclose([cos(s) for s in (0, 25, 50, 100, 300)],
                               [0, 0.029289322, 0.1, 0.2, 0.2], atol=1e-7)


def test_schedule_inside_jit():
    rng = np.random.default_rng(2)
    x, y = unit_rows(rng, 5, 4), unit_rows(rng, 5, 4)
    schedule = cosine_ramp(0.3, 10)
    fn = jax.jit(lambda x, y, step: soft_label_clip_loss(x, y, 8.0, schedule(step))[0])
    for step, alpha in ((0, 0.0), (5, 0.15), (10, 0.3)):
        np.testing.assert_allclose(fn(x, y, jnp.int32(step)), np_soft(x, y, 8.0, alpha),
                                   rtol=1e-5)


def test_degenerate_batches():
    # Identical embeddings: log softmax is -log B everywhere and targets sum to 1.
    x = np.tile(unit_rows(np.random.default_rng(3), 1, 4), (6, 1))
    loss, _ = soft_label_clip_loss_jit(x, x, 20.0, 0.2)
    np.testing.assert_allclose(loss, np.log(6), rtol=1e-6)
    loss, _ = soft_label_clip_loss_jit(x[:1], x[:1], 20.0, 0.2)
    assert loss == 0.0
    zeros = np.zeros((3, 4), np.float32)
    grad = jax.jit(jax.grad(lambda z: soft_label_clip_loss(z, z, 20.0, 0.2)[0]))(zeros)
    assert np.all(np.isfinite(grad))


def test_bad_inputs_raise():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="same"):
        soft_label_clip_loss(x, x[:3], 1.0, 0.1)
    with pytest.raises(ValueError, match="smoothing must lie"):
        soft_label_clip_loss(x, x, 1.0, 1.0)
    with pytest.raises(ValueError, match="max_smoothing"):
        linear_ramp(1.5, 10)
    with pytest.raises(ValueError, match="ramp_steps"):
        cosine_ramp(0.1, 0)
