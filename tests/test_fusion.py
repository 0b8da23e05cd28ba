"""Fusion encoder, injection, MLM head, token capture, and the fusion_two_tower model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import MODELS
from xmodal.nn.fusion import FusionEncoder, MLMHead, block_names
from xmodal.nn.matching_model import word_mask_of

TOK = ByteTokenizer(12)


def tiny_model(fusion="encoder", pool="gap", **kw):
    return MODELS.build(
        "fusion_two_tower", embed_dim=8, fusion=fusion, fusion_depth=1, fusion_heads=2,
        inject_layers=(0, 1),
        image=dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2, pool=pool),
        text=dict(name="text_transformer", vocab_size=260, max_len=12, width=8, depth=2,
                  num_heads=2), **kw)


def inputs(b=3, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (b, 8, 8, 3), dtype=np.uint8)
    text = TOK.encode_batch(["a cat", "two dogs", ""][:b] + ["x"] * max(0, b - 3))
    return jnp.asarray(images), jnp.asarray(text)


def test_fusion_encoder_shapes_and_text_sees_the_image():
    enc = FusionEncoder(width=8, depth=1, num_heads=2)
    text = jax.random.normal(jax.random.key(0), (2, 5, 6))
    mask = jnp.array([[True] * 5, [True, True, False, False, False]])
    img = jax.random.normal(jax.random.key(1), (2, 4, 10))
    params = enc.init(jax.random.key(2), text, mask, img)
    out = enc.apply(params, text, mask, img)
    assert out.shape == (2, 5, 8)
    other = enc.apply(params, text, mask, img + 1.0 * jax.random.normal(jax.random.key(3),
                                                                          img.shape))
    assert not np.allclose(out, other, atol=1e-4)   # cross-attention reads the image
    # depth 0: no block, the text never sees the image.
    enc0 = FusionEncoder(width=8, depth=0, num_heads=2)
    p0 = enc0.init(jax.random.key(2), text, mask, img)
    np.testing.assert_allclose(enc0.apply(p0, text, mask, img), enc0.apply(p0, text, mask,
                                                                             img * 3), atol=1e-6)


def test_fusion_encoder_pads_do_not_change_real_tokens():
    enc = FusionEncoder(width=8, depth=2, num_heads=2)
    text = jax.random.normal(jax.random.key(0), (1, 6, 8))
    mask = jnp.array([[True, True, True, False, False, False]])
    img = jax.random.normal(jax.random.key(1), (1, 3, 8))
    params = enc.init(jax.random.key(2), text, mask, img)
    a = enc.apply(params, text, mask, img)
    b = enc.apply(params, text.at[:, 3:].set(5.0), mask, img)
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)


def test_fusion_encoder_rejects_bad_shapes():
    enc = FusionEncoder(width=8, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="text_mask"):
        enc.init(jax.random.key(0), jnp.zeros((2, 5, 8)), jnp.ones((2, 4), bool),
                 jnp.zeros((2, 3, 8)))
    with pytest.raises(ValueError, match="same B"):
        enc.init(jax.random.key(0), jnp.zeros((2, 5, 8)), jnp.ones((2, 5), bool),
                 jnp.zeros((3, 3, 8)))


def test_mlm_head_gives_f32_logits_over_the_vocab():
    head = MLMHead(vocab_size=260)
    h = jnp.ones((2, 4, 8), jnp.bfloat16)
    params = head.init(jax.random.key(0), h)
    out = head.apply(params, h)
    assert out.shape == (2, 4, 260) and out.dtype == jnp.float32


def test_block_names_checks_the_depth():
    assert block_names((0, 2), 3) == ["block_0", "block_2"]
    with pytest.raises(ValueError, match="inject_layers"):
        block_names((3,), 3)


def test_word_mask_is_bytes_only():
    ids = jnp.asarray(TOK.encode_batch(["ab", ""]))
    np.testing.assert_array_equal(word_mask_of(ids)[:, :4],
                                  [[False, True, True, False], [False, False, False, False]])


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["encoder", "inject"])
def test_model_outputs_match_the_inference_encoders(fusion):
    model = tiny_model(fusion)
    images, text = inputs()
    params = model.init(jax.random.key(0), images, text, text)
    out = model.apply(params, images, text, text)
    np.testing.assert_allclose(out["zimg"], model.apply(params, images,
                                                        method="encode_image"), atol=1e-6)
    np.testing.assert_allclose(out["ztxt"], model.apply(params, text,
                                                        method="encode_text"), atol=1e-6)
    assert out["patches"].shape == (3, 4, 8)      # (8 / 4)^2 patches, embed_dim
    assert out["words"].shape == (3, 12, 8)
    assert out["mlm_logits"].shape == (3, 12, 260)
    assert model.apply(params, images, text)["mlm_logits"] is None
    # gap pooling: the pooled image is the mean of the captured tokens, so the patch tokens
    # through the (linear, bias-free) head average to the unnormalised global embedding.
    unnorm = out["patches"].mean(axis=1)
    np.testing.assert_allclose(unnorm / np.linalg.norm(unnorm, axis=-1, keepdims=True),
                               out["zimg"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["encoder", "inject"])
def test_mlm_logits_depend_on_the_image_and_gradients_reach_the_fusion(fusion):
    model = tiny_model(fusion)
    images, text = inputs()
    params = model.init(jax.random.key(0), images, text, text)
    a = model.apply(params, images, text, text)["mlm_logits"]
    b = model.apply(params, 255 - images, text, text)["mlm_logits"]
    assert not np.allclose(a, b, atol=1e-4)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, images, text, text)["mlm_logits"] ** 2))(
        params)["params"]
    fused = [k for k in grads if k.startswith("inject_") or k == "fusion"]
    assert fused
    for k in fused:
        assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[k])) > 0


def test_cls_pool_drops_the_cls_token_from_the_patches():
    model = tiny_model(pool="cls")
    images, text = inputs()
    params = model.init(jax.random.key(0), images, text, text)
    assert model.apply(params, images, text)["patches"].shape == (3, 4, 8)


def test_bad_fusion_and_inject_layers_raise():
    images, text = inputs()
    with pytest.raises(ValueError, match="fusion"):
        tiny_model("both").init(jax.random.key(0), images, text)
    with pytest.raises(ValueError, match="inject_layers"):
        MODELS.build("fusion_two_tower", fusion="inject", inject_layers=(5,), embed_dim=8,
                     image=dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2),
                     text=dict(name="text_transformer", vocab_size=260, max_len=12, width=8,
                               depth=2, num_heads=2)).init(jax.random.key(0), images, text)
