"""hinge_ranking_loss against hand-computed numbers and a float64 numpy loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.losses.ranking import hinge_ranking_loss


def unit_rows(rng, b, d):
    x = rng.normal(size=(b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def np_direction(sims, margin, negatives, ids):
    """Cost per query (rows) by explicit loops over negatives."""
    b = len(sims)
    out = []
    for i in range(b):
        negs = [j for j in range(b) if ids[j] != ids[i]]
        costs = [max(0.0, margin - sims[i, i] + sims[i, j]) for j in negs]
        if negatives == "in_batch":
            out.append(sum(costs))
        elif negatives == "hardest":
            out.append(max(costs, default=0.0))
        else:
            below = [c for j, c in zip(negs, costs) if sims[i, j] < sims[i, i]]
            out.append(max(below, default=0.0))
    return np.mean(out)


def np_loss(x, y, margin, negatives, w_i2t, w_t2i, ids):
    sims = x.astype(np.float64) @ y.astype(np.float64).T
    return (w_i2t * np_direction(sims, margin, negatives, ids)
            + w_t2i * np_direction(sims.T, margin, negatives, ids))


def test_hand_computed_two_pairs():
    # sims = [[1, .6], [0, .8]], margin .5: image 0 pays .5-1+.6 = .1, text 1 pays .5-.8+.6 = .3.
    x = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    y = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    loss, aux = hinge_ranking_loss(x, y, margin=0.5)
    np.testing.assert_allclose(aux["i2t_loss"], 0.05, atol=1e-6)
    np.testing.assert_allclose(aux["t2i_loss"], 0.15, atol=1e-6)
    np.testing.assert_allclose(loss, 0.2, atol=1e-6)
    loss, _ = hinge_ranking_loss(x, y, margin=0.5, i2t_weight=2.0, t2i_weight=0.0)
    np.testing.assert_allclose(loss, 0.1, atol=1e-6)


def test_semi_hard_picks_hardest_negative_below_positive():
    # Image 0: positive .5, negatives .9 (above: not semi-hard) and .4 (semi-hard, cost .2+.4-.5).
    x = np.eye(3, dtype=np.float32)
    y = np.array([[0.5, 0.9, 0.4], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32).T
    sims = x @ y.T
    assert sims[0, 0] == 0.5 and sims[0, 1] == 0.9 and sims[0, 2] == 0.4
    _, semi = hinge_ranking_loss(x, y, margin=0.2, negatives="semi_hard")
    _, hard = hinge_ranking_loss(x, y, margin=0.2, negatives="hardest")
    np.testing.assert_allclose(semi["i2t_loss"], 0.1 / 3, atol=1e-6)
    np.testing.assert_allclose(hard["i2t_loss"], 0.6 / 3, atol=1e-6)


@pytest.mark.parametrize("negatives", ["in_batch", "hardest", "semi_hard"])
@pytest.mark.parametrize("with_ids", [False, True])
def test_matches_numpy(negatives, with_ids):
    rng = np.random.default_rng(3)
    b = 9
    x, y = unit_rows(rng, b, 5), unit_rows(rng, b, 5)
    ids = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5]) if with_ids else np.arange(b)
    fn = jax.jit(lambda x, y, m: hinge_ranking_loss(
        x, y, m, negatives, 0.7, 1.3, jnp.asarray(ids) if with_ids else None))
    loss, _ = fn(x, y, 0.3)
    np.testing.assert_allclose(loss, np_loss(x, y, 0.3, negatives, 0.7, 1.3, ids), rtol=1e-5)


@pytest.mark.parametrize("negatives", ["in_batch", "hardest", "semi_hard"])
def test_gradient_matches_finite_difference(negatives):
    rng = np.random.default_rng(5)
    x, y = unit_rows(rng, 6, 4), unit_rows(rng, 6, 4)
    grad = jax.jit(jax.grad(lambda x: hinge_ranking_loss(x, y, 0.4, negatives)[0]))(x)
    assert np.all(np.isfinite(grad))
    step = np.zeros_like(x, dtype=np.float64)
    step[2, 1] = 1e-4
    fd = (np_loss(x + step, y, 0.4, negatives, 1, 1, np.arange(6))
          - np_loss(x - step, y, 0.4, negatives, 1, 1, np.arange(6))) / 2e-4
    np.testing.assert_allclose(grad[2, 1], fd, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("negatives,expected", [("in_batch", 2 * 4 * 0.2), ("hardest", 2 * 0.2),
                                                ("semi_hard", 0.0)])
def test_identical_embeddings(negatives, expected):
    # Every similarity equal: each negative violates by exactly the margin; none is below.
    x = np.tile(unit_rows(np.random.default_rng(0), 1, 8), (5, 1))
    fn = jax.jit(jax.value_and_grad(lambda x: hinge_ranking_loss(x, x, 0.2, negatives),
                                    has_aux=True))
    (loss, aux), grad = fn(x)
    np.testing.assert_allclose(loss, expected, atol=1e-5)
    assert np.all(np.isfinite(grad))
    assert aux["i2t_acc"] == 0.0


@pytest.mark.parametrize("negatives", ["in_batch", "hardest", "semi_hard"])
def test_single_identity_and_zero_embeddings(negatives):
    rng = np.random.default_rng(1)
    x, y = unit_rows(rng, 4, 3), unit_rows(rng, 4, 3)
    fn = jax.jit(jax.value_and_grad(
        lambda x: hinge_ranking_loss(x, y, 0.2, negatives, ids=np.zeros(4, np.int32)),
        has_aux=True))
    (loss, aux), grad = fn(x)
    assert loss == 0.0 and aux["i2t_with_negative"] == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    zeros = np.zeros((4, 3), np.float32)
    loss, grad = jax.jit(jax.value_and_grad(
        lambda z: hinge_ranking_loss(z, z, 0.2, negatives)[0]))(zeros)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # A single pair has no negative at all.
    loss, _ = hinge_ranking_loss(x[:1], y[:1], 0.2, negatives)
    assert loss == 0.0


def test_bad_inputs_raise():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="same"):
        hinge_ranking_loss(x, x[:3])
    with pytest.raises(ValueError, match="negatives must be one of"):
        hinge_ranking_loss(x, x, negatives="hard")
    with pytest.raises(ValueError, match="ids must have shape"):
        hinge_ranking_loss(x, x, ids=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="integer"):
        hinge_ranking_loss(x, x, ids=np.zeros(4, np.float32))
