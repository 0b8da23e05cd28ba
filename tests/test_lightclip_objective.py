"""MLM masking and loss, and the LightCLIP objective (soft labels + token matching + MLM)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.mlm import mask_tokens, mlm_loss
from xmodal.losses.soft_labels import soft_label_clip_loss
from xmodal.core.registry import SpecError

TOK = ByteTokenizer(12)
MASK = 259


def model(fusion="inject"):
    return MODELS.build(
        "fusion_two_tower", embed_dim=8, fusion=fusion, fusion_depth=1, fusion_heads=2,
        inject_layers=(0,),
        image=dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2),
        text=dict(name="text_transformer", vocab_size=260, max_len=12, width=8, depth=1,
                  num_heads=2))


def batch(captions=("a cat", "two dogs", "a red car", "sun"), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (len(captions), 8, 8, 3), np.uint8)),
            "text": jnp.asarray(TOK.encode_batch(list(captions)))}


# ---------------------------------------------------------------- masking and MLM loss

def test_mask_tokens_never_touches_pad_bos_eos():
    ids = jnp.asarray(TOK.encode_batch(["hello world", "", "a"]))
    masked, selected = mask_tokens(jax.random.key(0), ids, 1.0, MASK)
    byte = (ids > 2) & (ids < MASK)
    np.testing.assert_array_equal(selected, byte)            # rate 1: every byte, nothing else
    np.testing.assert_array_equal(masked, jnp.where(byte, MASK, ids))
    masked0, selected0 = mask_tokens(jax.random.key(0), ids, 0.0, MASK)
    assert not selected0.any() and (masked0 == ids).all()


def test_mask_rate_is_respected_on_average():
    ids = jnp.asarray(TOK.encode_batch(["x" * 10] * 400))
    _, selected = mask_tokens(jax.random.key(1), ids, 0.15, MASK)
    assert abs(float(selected.sum()) / 4000 - 0.15) < 0.02


def test_mask_tokens_rejects_a_mask_id_inside_the_bytes():
    with pytest.raises(ValueError, match="vocab_size >= 260"):
        mask_tokens(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), 0.15, 258)
    with pytest.raises(ValueError, match="rate"):
        mask_tokens(jax.random.key(0), jnp.zeros((1, 4), jnp.int32), 1.5, MASK)


def test_mlm_loss_hand_computed():
    # Two selected positions; logits uniform over 4 classes except one confident row.
    logits = jnp.zeros((1, 3, 4)).at[0, 1, 2].set(jnp.log(3.0))   # p(2) = 3/6 = 0.5
    ids = jnp.array([[0, 2, 1]])
    selected = jnp.array([[False, True, True]])
    loss, aux = mlm_loss(logits, ids, selected)
    np.testing.assert_allclose(loss, 0.5 * (-np.log(0.5) - np.log(1 / 4)), rtol=1e-5)
    # argmax of the uniform row is 0 != 1: one of two correct.
    np.testing.assert_allclose(aux["mlm_acc"], 0.5)
    np.testing.assert_allclose(aux["mlm_frac"], 2 / 3, rtol=1e-6)


def test_mlm_loss_with_nothing_selected_is_zero_with_finite_grads():
    logits = jnp.ones((2, 3, 5))
    ids = jnp.zeros((2, 3), jnp.int32)
    none = jnp.zeros((2, 3), bool)
    loss, aux = mlm_loss(logits, ids, none)
    assert float(loss) == 0.0 and float(aux["mlm_acc"]) == 0.0
    g = jax.grad(lambda x: mlm_loss(x, ids, none)[0])(logits)
    assert np.isfinite(g).all() and float(jnp.abs(g).sum()) == 0.0


# ---------------------------------------------------------------- the objective

def bound(**kw):
    m = model(kw.pop("fusion", "inject"))
    return OBJECTIVES.build("lightclip", **kw)(m, None)


def test_all_parts_off_is_clip_on_the_model_embeddings():
    obj = bound(max_smoothing=0.0, token_weight=0.0, mlm_weight=0.0)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1), step=jnp.int32(10))
    out = obj.model.apply({"params": params["model"]}, b["image"], b["text"])
    ref, _ = clip_loss(out["zimg"], out["ztxt"], out["logit_scale"])
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    assert "token_loss" not in aux and "mlm_loss" not in aux


def test_full_loss_is_the_weighted_sum_and_smoothing_follows_the_step():
    obj = bound(max_smoothing=0.2, ramp_steps=100, token_weight=0.5, mlm_weight=2.0,
                mask_rate=0.5, sinkhorn_iters=5)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1), step=jnp.int32(50))
    np.testing.assert_allclose(aux["smoothing"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(
        loss, aux["global_loss"] + 0.5 * aux["token_loss"] + 2.0 * aux["mlm_loss"], rtol=1e-5)
    out = obj.model.apply({"params": params["model"]}, b["image"], b["text"])
    ref, _ = soft_label_clip_loss(out["zimg"], out["ztxt"], out["logit_scale"], 0.1)
    np.testing.assert_allclose(aux["global_loss"], ref, rtol=1e-5)
    _, late = obj.loss(params, b, jax.random.key(1), step=jnp.int32(1000))
    np.testing.assert_allclose(late["smoothing"], 0.2, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("captions", [("", "", "", ""), ("same", "same", "same", "same")])
def test_degenerate_captions_give_finite_loss_and_grads(captions):
    obj = bound(sinkhorn_iters=5, mask_rate=1.0)
    b = batch(captions)
    b["image"] = jnp.broadcast_to(b["image"][:1], b["image"].shape)   # identical images too
    params = obj.init(jax.random.key(0), b)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: obj.loss(p, b, jax.random.key(1), step=jnp.int32(3)), has_aux=True)(params)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_single_pair_batch_is_finite():
    obj = bound(sinkhorn_iters=5)
    b = batch(("one",))
    params = obj.init(jax.random.key(0), b)
    loss, _ = obj.loss(params, b, jax.random.key(1), step=jnp.int32(0))
    assert np.isfinite(float(loss))


def test_token_batch_limits_the_matching_to_the_first_pairs():
    b = batch()
    full = bound(max_smoothing=0.0, mlm_weight=0.0, sinkhorn_iters=5)
    part = bound(max_smoothing=0.0, mlm_weight=0.0, sinkhorn_iters=5, token_batch=2)
    params = full.init(jax.random.key(0), b)
    _, a_full = full.loss(params, b, jax.random.key(1), step=jnp.int32(0))
    _, a_part = part.loss(params, b, jax.random.key(1), step=jnp.int32(0))
    b2 = {k: v[:2] for k, v in b.items()}
    _, a_two = full.loss(params, b2, jax.random.key(1), step=jnp.int32(0))
    np.testing.assert_allclose(a_part["token_loss"], a_two["token_loss"], rtol=1e-5)
    assert not np.isclose(float(a_full["token_loss"]), float(a_part["token_loss"]))


def test_bad_arguments_and_models_raise():
    with pytest.raises(SpecError, match="ramp"):
        OBJECTIVES.build("lightclip", ramp="step")
    with pytest.raises(SpecError, match="weights"):
        OBJECTIVES.build("lightclip", token_weight=-1.0)
    with pytest.raises(SpecError, match="max_smoothing"):
        OBJECTIVES.build("lightclip", max_smoothing=-0.1)
    plain = MODELS.build("two_tower", towers=dict(image=dict(name="vit"),
                                                  text=dict(name="text_transformer")))
    with pytest.raises(SpecError, match="fusion_two_tower"):
        OBJECTIVES.build("lightclip")(plain, None)
    small_vocab = MODELS.build("fusion_two_tower", image=dict(name="vit"),
                               text=dict(name="text_transformer"))
    with pytest.raises(SpecError, match="vocab_size >= 260"):
        OBJECTIVES.build("lightclip")(small_vocab, None)
    OBJECTIVES.build("lightclip", mlm_weight=0.0)(small_vocab, None)   # no MLM: no mask id
