"""clip_loss / siglip_loss against float64 numpy formulas, including gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_expit, softmax

from xmodal.losses.contrastive import clip_loss, siglip_loss


def unit_rows(rng, b, d):
    x = rng.normal(size=(b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def np_clip(x, y, scale):
    logits = scale * x.astype(np.float64) @ y.astype(np.float64).T
    i = np.arange(len(x))
    i2t = -np.log(softmax(logits, axis=1)[i, i])
    t2i = -np.log(softmax(logits, axis=0)[i, i])
    return 0.5 * (i2t.mean() + t2i.mean())


def np_siglip(x, y, scale, bias):
    logits = scale * x.astype(np.float64) @ y.astype(np.float64).T + bias
    z = 2 * np.eye(len(x)) - 1
    return -log_expit(z * logits).sum() / len(x)


@pytest.mark.parametrize("b,scale", [(7, 1.0), (16, 10.0), (32, 100.0)])
def test_clip_matches_numpy(b, scale):
    rng = np.random.default_rng(b)
    x, y = unit_rows(rng, b, 12), unit_rows(rng, b, 12)
    loss, _ = jax.jit(clip_loss)(x, y, scale)
    np.testing.assert_allclose(loss, np_clip(x, y, scale), rtol=1e-5)


@pytest.mark.parametrize("b,scale,bias", [(7, 1.0, 0.0), (16, 10.0, -10.0), (32, 100.0, -5.0)])
def test_siglip_matches_numpy(b, scale, bias):
    rng = np.random.default_rng(b)
    x, y = unit_rows(rng, b, 12), unit_rows(rng, b, 12)
    loss, _ = jax.jit(siglip_loss)(x, y, scale, bias)
    np.testing.assert_allclose(loss, np_siglip(x, y, scale, bias), rtol=1e-5)


def test_clip_gradients_match_closed_form():
    # d loss / d logits = (softmax_rows(L) - I + softmax_cols(L) - I) / (2B).
    rng = np.random.default_rng(0)
    b, scale = 9, 5.0
    x, y = unit_rows(rng, b, 6), unit_rows(rng, b, 6)
    sims = x.astype(np.float64) @ y.astype(np.float64).T
    logits = scale * sims
    g = (softmax(logits, axis=1) + softmax(logits, axis=0) - 2 * np.eye(b)) / (2 * b)
    gx, gy, gs = jax.grad(lambda *a: clip_loss(*a)[0], argnums=(0, 1, 2))(x, y, scale)
    np.testing.assert_allclose(gx, scale * g @ y, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gy, scale * g.T @ x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gs, np.sum(g * sims), rtol=1e-4)


def test_siglip_gradients_match_closed_form():
    # d/dl log_sigmoid(z l) = z * sigmoid(-z l), so d loss / d logits = -z sigmoid(-z L) / B.
    rng = np.random.default_rng(1)
    b, scale, bias = 9, 10.0, -3.0
    x, y = unit_rows(rng, b, 6), unit_rows(rng, b, 6)
    sims = x.astype(np.float64) @ y.astype(np.float64).T
    z = 2 * np.eye(b) - 1
    g = -z * np.exp(log_expit(-z * (scale * sims + bias))) / b
    grads = jax.grad(lambda *a: siglip_loss(*a)[0], argnums=(0, 1, 2, 3))(x, y, scale, bias)
    np.testing.assert_allclose(grads[0], scale * g @ y, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], scale * g.T @ x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[2], np.sum(g * sims), rtol=1e-4)
    np.testing.assert_allclose(grads[3], np.sum(g), rtol=1e-4)


def test_accuracy_counts_strict_wins():
    # Image i matches text i for i in {0, 1, 2}; image 3 is closest to text 0 instead.
    x = np.eye(4, dtype=np.float32)
    x[3] = np.array([1, 0, 0, 1]) / np.sqrt(2)
    y = np.eye(4, dtype=np.float32)
    y[3] = np.array([0, 0, 0.6, -0.8])
    for fn in (lambda a, b: clip_loss(a, b, 3.0), lambda a, b: siglip_loss(a, b, 3.0, -1.0)):
        _, aux = fn(x, y)
        # i2t: image 3 scores text 0 (0.707) above its own text (-0.566) -> 3/4.
        np.testing.assert_allclose(aux["i2t_acc"], 0.75)
        # t2i: text 0 scores image 3 (0.707) below image 0 (1.0), text 3 prefers image 2 (0.6)
        # over image 3 (-0.566) -> texts 0, 1, 2 correct -> 3/4.
        np.testing.assert_allclose(aux["t2i_acc"], 0.75)
        assert aux["i2t_acc"].dtype == jnp.float32


def test_batch_of_one_is_finite_and_exact():
    x = unit_rows(np.random.default_rng(2), 1, 8)
    loss, aux = clip_loss(x, x, 10.0)
    # A single pair is its own softmax: loss 0, and it trivially wins.
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)
    np.testing.assert_allclose(aux["i2t_acc"], 1.0)
    loss, _ = siglip_loss(x, x, 10.0, -10.0)
    np.testing.assert_allclose(loss, -log_expit(0.0), rtol=1e-5)


def test_identical_embeddings_give_finite_loss():
    b = 8
    x = np.tile(unit_rows(np.random.default_rng(3), 1, 16), (b, 1))
    loss, aux = clip_loss(x, x, 100.0)
    # All logits equal: each softmax is uniform, loss = log(B).
    np.testing.assert_allclose(loss, np.log(b), rtol=1e-5)
    np.testing.assert_allclose(aux["i2t_acc"], 0.0)
    loss, _ = siglip_loss(x, x, 100.0, -10.0)
    expected = -(log_expit(90.0) + (b - 1) * log_expit(-90.0))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    grads = jax.grad(lambda a: clip_loss(a, x, 100.0)[0])(x)
    assert np.all(np.isfinite(grads))


def test_bfloat16_inputs_are_computed_in_float32():
    rng = np.random.default_rng(4)
    x = jnp.asarray(unit_rows(rng, 16, 8), jnp.bfloat16)
    y = jnp.asarray(unit_rows(rng, 16, 8), jnp.bfloat16)
    loss, aux = clip_loss(x, y, 50.0)
    assert loss.dtype == jnp.float32
    expected = np_clip(np.asarray(x, np.float32), np.asarray(y, np.float32), 50.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    loss, _ = siglip_loss(x, y, 50.0, -5.0)
    assert loss.dtype == jnp.float32


def test_mismatched_shapes_name_both():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(5, 8\)"):
        clip_loss(x, np.zeros((5, 8), np.float32), 1.0)
    with pytest.raises(ValueError, match=r"\(4, 8\).*\(4, 6\)"):
        siglip_loss(x, np.zeros((4, 6), np.float32), 1.0, 0.0)
    with pytest.raises(ValueError, match="2-D"):
        clip_loss(x[None], x[None], 1.0)
    with pytest.raises(ValueError, match="logit_scale must be a scalar"):
        clip_loss(x, x, np.ones(3))


def test_scale_of_shape_one_is_accepted():
    rng = np.random.default_rng(5)
    x, y = unit_rows(rng, 6, 4), unit_rows(rng, 6, 4)
    np.testing.assert_allclose(clip_loss(x, y, np.array([3.0]))[0], np_clip(x, y, 3.0), rtol=1e-5)
