"""sdm_loss against the KL formula of IRRA written out in float64 numpy."""
import jax
import numpy as np
import pytest

from xmodal.losses.sdm import sdm_loss

# Compiled once per shape and argument: eager dispatch is slow on a shared CPU.
sdm_loss_jit = jax.jit(sdm_loss)


def np_sdm(x, y, ids, tau, eps=1e-8):
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)
    b = len(ids)
    total = 0.0
    for sims in (x @ y.T, y @ x.T):
        for i in range(b):
            p = np.exp(sims[i] / tau - np.max(sims[i] / tau))
            p /= p.sum()
            positives = [j for j in range(b) if ids[j] == ids[i]]
            q = np.array([1.0 / len(positives) if j in positives else 0.0 for j in range(b)])
            total += np.sum(p * (np.log(p) - np.log(q + eps))) / b
    return total


@pytest.mark.parametrize("tau", [0.02, 0.1, 1.0])
def test_matches_numpy_multi_positive(tau):
    rng = np.random.default_rng(0)
    ids = np.array([3, 3, 7, 1, 1, 1, 9, 4])
    # Unnormalised inputs: the loss normalises them itself.
    x = rng.normal(size=(8, 6)).astype(np.float32)
    y = (x + 0.8 * rng.normal(size=(8, 6))).astype(np.float32)
    loss, aux = sdm_loss_jit(x, y, ids, tau)
    np.testing.assert_allclose(loss, np_sdm(x, y, ids, tau), rtol=2e-4)
    np.testing.assert_allclose(aux["i2t_loss"] + aux["t2i_loss"], loss, rtol=1e-6)


def test_identical_embeddings_closed_form():
    # p is uniform 1/B; q is one-hot (distinct ids): KL = 1/B log(1/B / (1 + eps))
    # + (B-1)/B log(1/B / eps), per row and per direction.
    b, eps = 5, 1e-8
    x = np.ones((b, 3), np.float32)
    loss, _ = sdm_loss_jit(x, x, np.arange(b))
    row = (np.log(1 / b) - np.log(1 + eps)) / b + (b - 1) / b * (np.log(1 / b) - np.log(eps))
    np.testing.assert_allclose(loss, 2 * row, rtol=1e-5)


def test_single_identity_identical_embeddings_is_zero():
    # One identity: q uniform; identical embeddings: p uniform; KL(p || q + eps) ~ 0.
    x = np.tile([[0.6, 0.8]], (4, 1)).astype(np.float32)
    loss, _ = sdm_loss_jit(x, x, np.zeros(4, np.int32))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)


def test_gradient_matches_finite_difference():
    rng = np.random.default_rng(2)
    ids = np.array([0, 0, 1, 2, 2])
    x, y = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    grad = jax.jit(jax.grad(lambda x: sdm_loss(x, y, ids, 0.5)[0]))(x)
    step = np.zeros((5, 4))
    step[1, 2] = 1e-4
    fd = (np_sdm(x + step, y, ids, 0.5) - np_sdm(x - step, y, ids, 0.5)) / 2e-4
    np.testing.assert_allclose(grad[1, 2], fd, rtol=1e-2, atol=1e-4)


def test_aligned_beats_misaligned():
    rng = np.random.default_rng(4)
    ids = np.array([0, 0, 1, 1, 2, 2])
    centres = rng.normal(size=(3, 8))
    x = centres[ids].astype(np.float32)
    good, _ = sdm_loss_jit(x, x, ids)
    bad, _ = sdm_loss_jit(x, x[::-1].copy(), ids)
    assert good < 1e-3 < bad


def test_degenerate_inputs_stay_finite():
    zeros = np.zeros((4, 3), np.float32)
    for ids in (np.arange(4), np.zeros(4, np.int32)):
        loss, _ = sdm_loss_jit(zeros, zeros, ids)
        grads = jax.jit(jax.grad(lambda a, b: sdm_loss(a, b, ids)[0], argnums=(0, 1)))(
            zeros, zeros)
        assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)
    one = np.ones((1, 3), np.float32)
    loss, _ = sdm_loss_jit(one, one, np.array([5]))
    np.testing.assert_allclose(loss, 0.0, atol=1e-6)


def test_bad_inputs_raise():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="same"):
        sdm_loss(x, x[:2], np.arange(4))
    with pytest.raises(ValueError, match="ids must have shape"):
        sdm_loss(x, x, np.arange(3))
    with pytest.raises(ValueError, match="integer"):
        sdm_loss(x, x, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="tau"):
        sdm_loss(x, x, np.arange(4), tau=0.0)
