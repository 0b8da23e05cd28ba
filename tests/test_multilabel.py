"""Multi-label item-to-tag losses against explicit float64 numpy loops."""
import jax
import numpy as np
import pytest

from xmodal.losses.multilabel import multilabel_sigmoid_loss, multilabel_softmax_loss

# Compiled once per shape and argument: eager dispatch is slow on a shared CPU.
multilabel_softmax_loss_jit = jax.jit(multilabel_softmax_loss)
multilabel_sigmoid_loss_jit = jax.jit(multilabel_sigmoid_loss)


def unit_rows(rng, b, d):
    x = rng.normal(size=(b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def np_softmax_loss(items, tags, labels, scale):
    logits = scale * items.astype(np.float64) @ tags.astype(np.float64).T
    per_item = []
    for row, lab in zip(logits, labels):
        if not lab.any():
            continue
        neg = row[~lab]
        per_item.append(np.mean([np.log(np.exp(row[p]) + np.exp(neg).sum()) - row[p]
                                 for p in np.flatnonzero(lab)]))
    return np.mean(per_item) if per_item else 0.0


def np_sigmoid_loss(items, tags, labels, scale, bias):
    logits = scale * items.astype(np.float64) @ tags.astype(np.float64).T + bias
    z = np.where(labels, 1.0, -1.0)
    return np.sum(np.log1p(np.exp(-z * logits))) / len(items)


def random_case(seed, n=6, t=9):
    rng = np.random.default_rng(seed)
    labels = rng.random((n, t)) < 0.3
    labels[0] = False          # an untagged item
    labels[1] = True           # an item with every tag
    labels[2, :] = False
    labels[2, 4] = True        # a single tag
    return unit_rows(rng, n, 5), unit_rows(rng, t, 5), labels


def test_softmax_hand_computed():
    # One item, logits (2, 1, 0), tags 0 and 1 positive, tag 2 negative:
    # 1/2 [log(e^2 + 1) - 2 + log(e + 1) - 1].
    items = np.array([[1.0, 0.0]], np.float32)
    tags = np.array([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0]], np.float32)
    loss, aux = multilabel_softmax_loss_jit(items, tags, np.array([[True, True, False]]), 2.0)
    expected = 0.5 * (np.log(np.e ** 2 + 1) - 2 + np.log(np.e + 1) - 1)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert aux["top1_acc"] == 1.0


@pytest.mark.parametrize("scale", [1.0, 10.0, 50.0])
def test_softmax_matches_numpy(scale):
    items, tags, labels = random_case(0)
    loss, aux = multilabel_softmax_loss_jit(items, tags, labels, scale)
    np.testing.assert_allclose(loss, np_softmax_loss(items, tags, labels, scale), rtol=1e-5)
    np.testing.assert_allclose(aux["tagged_items"], labels.any(axis=1).mean(), rtol=1e-6)


@pytest.mark.parametrize("scale,bias", [(1.0, 0.0), (10.0, -5.0)])
def test_sigmoid_matches_numpy(scale, bias):
    items, tags, labels = random_case(1)
    loss, _ = multilabel_sigmoid_loss_jit(items, tags, labels, scale, bias)
    np.testing.assert_allclose(loss, np_sigmoid_loss(items, tags, labels, scale, bias), rtol=1e-5)


def test_positives_do_not_compete():
    # Two positives that both beat the negative by a wide margin cost ~0, whatever their count.
    items = np.array([[1.0, 0.0]], np.float32)
    tags = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], np.float32)
    loss, _ = multilabel_softmax_loss_jit(items, tags, np.array([[True, True, False]]), 20.0)
    # Each positive pays softplus(-20 - 20); a softmax over all tags would pay >= log 2.
    np.testing.assert_allclose(loss, np.log1p(np.exp(-40.0)), rtol=1e-3)


def test_gradients_finite_and_match_finite_difference():
    items, tags, labels = random_case(2)
    for fn, args, ref in ((multilabel_softmax_loss_jit, (5.0,), np_softmax_loss),
                          (multilabel_sigmoid_loss_jit, (5.0, -2.0), np_sigmoid_loss)):
        grad = jax.jit(jax.grad(lambda x: fn(x, tags, labels, *args)[0]))(items)
        assert np.all(np.isfinite(grad))
        step = np.zeros(items.shape)
        step[3, 1] = 1e-4
        up = ref(items + step, tags, labels, *args)
        down = ref(items - step, tags, labels, *args)
        fd = (up - down) / 2e-4
        np.testing.assert_allclose(grad[3, 1], fd, rtol=1e-2, atol=1e-5)


def test_degenerate_inputs():
    items, tags, _ = random_case(3)
    none = np.zeros((6, 9), bool)
    loss, aux = multilabel_softmax_loss_jit(items, tags, none, 10.0)
    assert loss == 0.0 and aux["tagged_items"] == 0.0
    every = np.ones((6, 9), bool)
    loss, _ = multilabel_softmax_loss_jit(items, tags, every, 10.0)
    assert loss == 0.0
    for labels in (none, every):
        grad = jax.jit(jax.grad(lambda x: multilabel_softmax_loss(x, tags, labels, 10.0)[0]))(
            items)
        np.testing.assert_array_equal(grad, 0.0)
    # Identical embeddings: every logit equal, so each positive costs log(1 + #negatives).
    same = np.ones((3, 4), np.float32)
    labels = np.array([[True, False, False], [True, True, False]])
    loss, _ = multilabel_softmax_loss_jit(same[:2], same, labels, 7.0)
    np.testing.assert_allclose(loss, 0.5 * (np.log(3) + np.log(2)), rtol=1e-6)
    zeros = np.zeros((3, 4), np.float32)
    loss, _ = multilabel_sigmoid_loss_jit(zeros[:2], zeros, labels, 10.0, 0.0)
    np.testing.assert_allclose(loss, 3 * np.log(2), rtol=1e-6)


def test_bad_inputs_raise():
    items, tags, labels = random_case(4)
    with pytest.raises(ValueError, match="embedding dims"):
        multilabel_softmax_loss(items[:, :3], tags, labels, 1.0)
    with pytest.raises(ValueError, match="labels must be"):
        multilabel_softmax_loss(items[:4], tags, labels, 1.0)
    with pytest.raises(ValueError, match="boolean"):
        multilabel_sigmoid_loss(items, tags, labels.astype(np.float32), 1.0, 0.0)
