"""Sinkhorn patch-word matching against a probability-domain numpy Sinkhorn and the Hungarian
assignment of scipy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from xmodal.losses.token_matching import (sinkhorn_log_plan, token_match_scores,
                                              token_matching_loss)

# Compiled once per shape: eager calls would retrace the Sinkhorn loop every time.
scores_fn = jax.jit(token_match_scores, static_argnames="num_iters")
loss_fn = jax.jit(token_matching_loss, static_argnames="num_iters")
plan_fn = jax.jit(sinkhorn_log_plan, static_argnames="num_iters")


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_plan(sims, mask, tau, iters):
    """Sinkhorn scaling u = a / (K v), v = b / (K^T u) in float64, v starting at the mask."""
    kernel = np.exp(sims / tau)
    a = np.full(sims.shape[0], 1.0 / sims.shape[0])
    b = mask / mask.sum()
    v = mask.astype(np.float64)
    for _ in range(iters):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


def np_scores(patches, words, mask, tau, iters):
    out = np.zeros((len(patches), len(words)))
    for i, p in enumerate(patches):
        for j, w in enumerate(words):
            if mask[j].any():
                sims = unit(p.astype(np.float64)) @ unit(w.astype(np.float64)).T
                out[i, j] = np.sum(np_plan(sims, mask[j], tau, iters) * sims)
    return out


def tokens(seed, b=3, p=5, w=4, d=6):
    rng = np.random.default_rng(seed)
    mask = np.ones((b, w), bool)
    mask[0, 3:] = False
    mask[1, 2:] = False
    return (rng.normal(size=(b, p, d)).astype(np.float32),
            rng.normal(size=(b, w, d)).astype(np.float32), mask)


@pytest.mark.parametrize("iters", [1, 7, 60])
def test_scores_match_numpy_sinkhorn(iters):
    patches, words, mask = tokens(0)
    got = scores_fn(patches, words, mask, 0.3, num_iters=iters)
    np.testing.assert_allclose(got, np_scores(patches, words, mask, 0.3, iters),
                               rtol=1e-4, atol=1e-6)


def test_plan_marginals_respect_masks():
    rng = np.random.default_rng(1)
    sims = rng.uniform(-1, 1, size=(6, 5)).astype(np.float32)
    mask = np.array([True, False, True, True, False])
    plan = np.exp(np.asarray(plan_fn(jnp.asarray(sims), jnp.asarray(mask), 0.1, 200)))
    np.testing.assert_allclose(plan.sum(0), [1 / 3, 0, 1 / 3, 1 / 3, 0], atol=1e-5)
    np.testing.assert_allclose(plan.sum(1), np.full(6, 1 / 6), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_small_temperature_plan_is_hungarian(seed):
    rng = np.random.default_rng(seed)
    n = 6
    sims = rng.uniform(-1, 1, size=(n, n)).astype(np.float32)
    rows, cols = linear_sum_assignment(-sims.astype(np.float64))
    log_plan = plan_fn(jnp.asarray(sims), jnp.ones(n, bool), 0.005, 500)
    np.testing.assert_array_equal(np.argmax(np.asarray(log_plan), axis=1)[rows], cols)
    # The score approaches the optimal assignment's mean similarity.
    score = np.sum(np.exp(np.asarray(log_plan)) * sims)
    np.testing.assert_allclose(score, sims[rows, cols].mean(), atol=2e-2)


def test_padding_has_no_effect_and_no_gradient():
    patches, words, mask = tokens(2)
    changed = words.copy()
    changed[~mask] = 123.0
    a = scores_fn(patches, words, mask)
    b = scores_fn(patches, changed, mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    grad = jax.jit(jax.grad(lambda w: loss_fn(patches, w, mask, 10.0, num_iters=10)[0]))(words)
    np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
    assert np.abs(np.asarray(grad)[mask]).sum() > 0


def test_empty_caption_scores_zero_and_stays_finite():
    patches, words, mask = tokens(3)
    mask[1] = False
    scores = scores_fn(patches, words, mask)
    np.testing.assert_array_equal(np.asarray(scores)[:, 1], 0.0)
    loss_grads = jax.jit(jax.value_and_grad(
        lambda p, w: loss_fn(p, w, mask, 10.0, num_iters=10)[0], argnums=(0, 1)))(
            patches, words)
    loss, (gp, gw) = loss_grads
    assert np.isfinite(loss) and np.all(np.isfinite(gp)) and np.all(np.isfinite(gw))
    np.testing.assert_array_equal(np.asarray(gw)[1], 0.0)
    # Every caption empty: all logits 0, the loss is log B.
    loss, _ = loss_fn(patches, words, np.zeros_like(mask), 10.0)
    np.testing.assert_allclose(loss, np.log(3), rtol=1e-6)


def test_identical_tokens_give_log_b():
    patches = np.ones((4, 3, 5), np.float32)
    words = np.ones((4, 2, 5), np.float32)
    loss, aux = loss_fn(patches, words, np.ones((4, 2), bool), 10.0)
    np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)
    assert aux["i2t_acc"] == 0.0
    zeros = np.zeros((4, 3, 5), np.float32)
    grad = jax.jit(jax.grad(lambda p: loss_fn(
        p, p[:, :2], np.ones((4, 2), bool), 10.0, num_iters=10)[0]))(zeros)
    assert np.all(np.isfinite(grad))


def test_bad_inputs_raise():
    patches, words, mask = tokens(4)
    with pytest.raises(ValueError, match="same, non-zero number of pairs"):
        token_matching_loss(patches[:2], words, mask, 1.0)
    with pytest.raises(ValueError, match="token dims"):
        token_match_scores(patches[..., :3], words, mask)
    with pytest.raises(ValueError, match="boolean"):
        token_match_scores(patches, words, mask.astype(np.int32))
    with pytest.raises(ValueError, match="word_mask must be"):
        token_match_scores(patches, words, mask[:, :2])
    with pytest.raises(ValueError, match="tau"):
        token_match_scores(patches, words, mask, tau=-1.0)
    with pytest.raises(ValueError, match="num_iters"):
        token_match_scores(patches, words, mask, num_iters=0)
