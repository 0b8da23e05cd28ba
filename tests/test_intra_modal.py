"""intra_modal_loss and global_local_loss against float64 numpy loops."""
import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from xmodal.losses.contrastive import clip_loss
from xmodal.losses.intra_modal import global_local_loss, global_local_scores, intra_modal_loss

# Compiled once per shape and argument: eager dispatch is slow on a shared CPU.
intra_modal_loss_jit = jax.jit(intra_modal_loss)
global_local_loss_jit = jax.jit(global_local_loss)
global_local_scores_jit = jax.jit(global_local_scores)


def unit_rows(rng, b, d):
    x = rng.normal(size=(b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def np_intra(a, b, scale, w):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    n = len(a)

    def side(x, y):
        total = 0.0
        for i in range(n):
            den = sum(np.exp(scale * x[i] @ y[j]) for j in range(n))
            den += w * sum(np.exp(scale * x[i] @ x[j]) for j in range(n) if j != i)
            total += np.log(den) - scale * x[i] @ y[i]
        return total / n

    return 0.5 * (side(a, b) + side(b, a))


def np_global_local(g, local, mask, t):
    g = g.astype(np.float64)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = np.zeros((len(g), len(local)))
    for j, (tok, m) in enumerate(zip(local.astype(np.float64), mask)):
        if not m.any():
            continue
        tok = tok[m] / np.linalg.norm(tok[m], axis=1, keepdims=True)
        for i in range(len(g)):
            c = tok @ g[i]
            att = np.exp(c / t - logsumexp(c / t))
            out[i, j] = att @ c
    return out


def locals_case(seed, b=4, n=5, d=6):
    rng = np.random.default_rng(seed)
    mask = np.ones((b, n), bool)
    mask[0, 2:] = False
    mask[2, 4:] = False
    return unit_rows(rng, b, d), rng.normal(size=(b, n, d)).astype(np.float32), mask


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 3.0])
def test_intra_matches_numpy(w):
    rng = np.random.default_rng(0)
    a, b = unit_rows(rng, 6, 5), unit_rows(rng, 6, 5)
    loss, _ = intra_modal_loss_jit(a, b, 4.0, w)
    np.testing.assert_allclose(loss, np_intra(a, b, 4.0, w), rtol=1e-5)


def test_zero_weight_is_clip_and_weight_adds_loss():
    rng = np.random.default_rng(1)
    a, b = unit_rows(rng, 5, 4), unit_rows(rng, 5, 4)
    np.testing.assert_allclose(intra_modal_loss_jit(a, b, 10.0, 0.0)[0], clip_loss(a, b, 10.0)[0],
                               rtol=1e-6)
    assert intra_modal_loss_jit(a, b, 10.0, 1.0)[0] > clip_loss(a, b, 10.0)[0]


def test_intra_accuracy_counts_intra_view_negatives():
    # a_1 sits on a_0: with w > 0 it out-scores a_0's own positive b_0.
    a = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    b = np.array([[0.8, 0.6], [-1.0, 0.0]], np.float32)
    _, with_intra = intra_modal_loss_jit(a, b, 1.0, 1.0)
    _, without = intra_modal_loss_jit(a, b, 1.0, 0.0)
    assert with_intra["a2b_acc"] == 0.0 and without["a2b_acc"] == 0.5


def test_intra_degenerate_inputs():
    x = np.tile(unit_rows(np.random.default_rng(2), 1, 4), (5, 1))
    # All logits equal: den = B + w (B - 1) copies of e^s, so the loss is log(B + w (B - 1)).
    loss, _ = intra_modal_loss_jit(x, x, 10.0, 0.5)
    np.testing.assert_allclose(loss, np.log(5 + 0.5 * 4), rtol=1e-6)
    zeros = np.zeros((5, 4), np.float32)
    for w in (0.0, 1.0):
        grads = jax.jit(jax.grad(lambda p, q: intra_modal_loss(p, q, 10.0, w)[0],
                                 argnums=(0, 1)))(zeros, zeros)
        assert all(np.all(np.isfinite(g)) for g in grads)
    loss, _ = intra_modal_loss_jit(x[:1], x[:1], 10.0, 1.0)
    assert loss == 0.0


@pytest.mark.parametrize("t", [0.05, 0.5, 5.0])
def test_global_local_scores_match_numpy(t):
    g, local, mask = locals_case(3)
    got = global_local_scores_jit(g, local, mask, t)
    np.testing.assert_allclose(got, np_global_local(g, local, mask, t), rtol=1e-5, atol=1e-6)


def test_global_local_temperature_limits():
    g, local, mask = locals_case(4)
    unit = local / np.linalg.norm(local, axis=-1, keepdims=True)
    cos = np.einsum("id,jkd->ijk", g, unit)
    best = np.max(np.where(mask[None], cos, -np.inf), axis=-1)
    mean = np.sum(np.where(mask[None], cos, 0), axis=-1) / mask.sum(1)[None]
    np.testing.assert_allclose(global_local_scores_jit(g, local, mask, 1e-4), best, atol=1e-4)
    np.testing.assert_allclose(global_local_scores_jit(g, local, mask, 1e4), mean, atol=1e-4)


def test_global_local_gradient_matches_finite_difference():
    g, local, mask = locals_case(5)

    def np_loss(g):
        logits = 5.0 * np_global_local(g, local, mask, 0.2)
        d = np.diagonal(logits)
        return 0.5 * (np.mean(logsumexp(logits, axis=1) - d) + np.mean(logsumexp(logits, 0) - d))

    loss, _ = global_local_loss_jit(g, local, mask, 5.0, 0.2)
    np.testing.assert_allclose(loss, np_loss(g), rtol=1e-5)
    grad = jax.jit(jax.grad(lambda g: global_local_loss(g, local, mask, 5.0, 0.2)[0]))(g)
    step = np.zeros(g.shape)
    step[1, 3] = 1e-4
    np.testing.assert_allclose(grad[1, 3], (np_loss(g + step) - np_loss(g - step)) / 2e-4,
                               rtol=1e-2, atol=1e-5)


def test_global_local_empty_locals():
    g, local, mask = locals_case(6)
    mask[1] = False
    scores = global_local_scores_jit(g, local, mask)
    np.testing.assert_array_equal(np.asarray(scores)[:, 1], 0.0)
    grads = jax.jit(jax.grad(lambda g, l: global_local_loss(g, l, mask, 10.0)[0],
                             argnums=(0, 1)))(g, local)
    assert all(np.all(np.isfinite(x)) for x in grads)
    np.testing.assert_array_equal(np.asarray(grads[1])[~mask], 0.0)
    loss, _ = global_local_loss_jit(g, local, np.zeros_like(mask), 10.0)
    np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)


def test_bad_inputs_raise():
    rng = np.random.default_rng(7)
    a = unit_rows(rng, 4, 3)
    with pytest.raises(ValueError, match="same"):
        intra_modal_loss(a, a[:3], 1.0)
    with pytest.raises(ValueError, match="intra_weight"):
        intra_modal_loss(a, a, 1.0, -1.0)
    g, local, mask = locals_case(8)
    with pytest.raises(ValueError, match="same, non-zero number of pairs"):
        global_local_loss(g[:3], local, mask, 1.0)
    with pytest.raises(ValueError, match="embedding dims"):
        global_local_scores(g[:, :2], local, mask)
    with pytest.raises(ValueError, match="local_mask must be"):
        global_local_scores(g, local, mask[:, :2])
    with pytest.raises(ValueError, match="boolean"):
        global_local_scores(g, local, mask.astype(np.int8))
