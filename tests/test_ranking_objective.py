"""The `ranking` objective: equals hinge_ranking_loss on the model's embeddings, direction
weights, identity masks, degenerate batches, bad arguments; the vse_ranking spec validates."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.core import spec as spec_lib
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.ranking import hinge_ranking_loss


def model():
    return MODELS.get("two_tower")(towers=dict(
        image=dict(name="cnn", channels=(4, 8), width=8),
        text=dict(name="ngram_text", width=8, buckets=32, mlp_dim=8)), embed_dim=8)


def batch(n=4, seed=0, same=False, empty=False):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (1 if same else n, 8, 8, 3)).astype(np.uint8)
    img = np.repeat(img, n, axis=0) if same else img
    txt = np.zeros((n, 8), np.int32)
    txt[:, 0], txt[:, 1] = 1, 2
    if not empty:
        txt[:, 1:4] = rng.integers(3, 259, (n, 3))
        txt[:, 4] = 2
    if same:
        txt[:] = txt[:1]
    return {"image": jnp.asarray(img), "text": jnp.asarray(txt),
            "label": jnp.arange(n, dtype=jnp.int32)}


def bound(**kw):
    return OBJECTIVES.build("ranking", **kw)(model(), None)


@pytest.mark.parametrize("negatives", ["in_batch", "hardest", "semi_hard"])
def test_equals_pure_loss(negatives):
    obj = bound(negatives=negatives, margin=0.3, i2t_weight=0.7, t2i_weight=0.2)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1))
    zi, zt, _ = obj.model.apply({"params": params["model"]}, b["image"], b["text"])
    want, want_aux = hinge_ranking_loss(zi, zt, margin=0.3, negatives=negatives,
                                        i2t_weight=0.7, t2i_weight=0.2)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    # Both directions are reported whatever the weights: the specialisation is measurable.
    np.testing.assert_allclose(
        loss, 0.7 * aux["i2t_loss"] + 0.2 * aux["t2i_loss"], rtol=1e-5)
    assert set(want_aux) == set(aux)


def test_one_direction_gets_no_gradient_from_the_other():
    b = batch()
    obj = bound(i2t_weight=1.0, t2i_weight=0.0)
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1))
    np.testing.assert_allclose(loss, aux["i2t_loss"], rtol=1e-6)
    assert float(aux["t2i_loss"]) > 0


@pytest.mark.parametrize("kind", ["same", "empty"])
@pytest.mark.parametrize("negatives", ["in_batch", "hardest", "semi_hard"])
def test_degenerate_batches_finite(kind, negatives):
    b = batch(same=kind == "same", empty=kind == "empty")
    obj = bound(negatives=negatives)
    params = obj.init(jax.random.key(0), b)
    (loss, _), grads = jax.value_and_grad(
        lambda p: obj.loss(p, b, jax.random.key(1)), has_aux=True)(params)
    assert np.isfinite(float(loss))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    if kind == "same":  # identical embeddings: every hinge is exactly the margin
        if negatives == "semi_hard":
            assert float(loss) == 0.0  # no negative scores strictly below the positive
        else:
            per_query = 0.2 * (3 if negatives == "in_batch" else 1)
            np.testing.assert_allclose(loss, 2 * per_query, rtol=1e-4)


def test_single_identity_costs_nothing():
    b = batch()
    b["label"] = jnp.zeros(4, jnp.int32)
    obj = bound(ids_key="label")
    loss, aux = obj.loss(obj.init(jax.random.key(0), b), b, jax.random.key(1))
    assert float(loss) == 0.0 and float(aux["i2t_with_negative"]) == 0.0
    with pytest.raises(KeyError, match="ids_key"):
        bound(ids_key="person").loss(obj.init(jax.random.key(0), b), b, jax.random.key(1))


def test_bad_arguments():
    with pytest.raises(ValueError, match="negatives"):
        OBJECTIVES.build("ranking", negatives="hard")
    with pytest.raises(ValueError, match="margin"):
        OBJECTIVES.build("ranking", margin=-1.0)
    with pytest.raises(ValueError, match="not both 0"):
        OBJECTIVES.build("ranking", i2t_weight=0.0, t2i_weight=0.0)


@pytest.mark.parametrize("arg", ["runlocal", "runlocal,text=bow,negatives=hardest",
                                 "runlocal,text=seq,data=emoji,direction=t2i", ""])
def test_spec_validates(arg):
    spec = spec_lib.validate(spec_lib.load(f"specs/vse_ranking.py:{arg}"))
    assert spec.objective.name == "ranking"
    with pytest.raises(Exception, match="text"):
        spec_lib.load("specs/vse_ranking.py:text=lstm")
