"""The IRRA objective (SDM / InfoNCE + cross-modal MLM) and the emoji_styles transform that
feeds it identities."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import TRANSFORMS
from xmodal.data.transforms.emoji_styles_text import identity_id, strip_skin_tone
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.sdm import sdm_loss
from xmodal.core.registry import SpecError

TOK = ByteTokenizer(12)


def bound(**kw):
    m = MODELS.build(
        "fusion_two_tower", embed_dim=8, fusion="encoder", fusion_depth=1, fusion_heads=2,
        image=dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2),
        text=dict(name="text_transformer", vocab_size=260, max_len=12, width=8, depth=1,
                  num_heads=2))
    return OBJECTIVES.build("irra", **kw)(m, None)


def batch(captions=("man", "man", "woman", "cat"), ids=(7, 7, 3, 9), seed=0):
    rng = np.random.default_rng(seed)
    return {"image": jnp.asarray(rng.integers(0, 256, (len(ids), 8, 8, 3), np.uint8)),
            "text": jnp.asarray(TOK.encode_batch(list(captions))),
            "identity": jnp.asarray(ids, jnp.int32)}


@pytest.mark.parametrize("kind", ["sdm", "infonce"])
def test_alignment_without_irr_is_the_pure_loss(kind):
    obj = bound(loss_kind=kind, irr_weight=0.0)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1))
    out = obj.model.apply({"params": params["model"]}, b["image"], b["text"])
    if kind == "sdm":
        ref, _ = sdm_loss(out["zimg"], out["ztxt"], b["identity"], tau=0.02)
    else:
        ref, _ = clip_loss(out["zimg"], out["ztxt"], 50.0)
    np.testing.assert_allclose(loss, ref, rtol=1e-5)
    assert "irr_loss" not in aux


def test_irr_adds_the_weighted_mlm_loss():
    obj = bound(irr_weight=0.5, mask_rate=0.5)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1))
    np.testing.assert_allclose(loss, aux["align_loss"] + 0.5 * aux["irr_loss"], rtol=1e-5)
    assert aux["irr_loss"] > 0 and 0 < aux["mlm_frac"] < 1


def test_sdm_counts_same_identity_pairs_as_positives_infonce_does_not():
    # Two pairs of one identity with identical embeddings: SDM is near its minimum, InfoNCE is
    # not (it must tell the two apart and cannot).
    z = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids = jnp.array([5, 5, 6])
    sdm, _ = sdm_loss(z, z, ids, tau=0.02)
    nce, _ = clip_loss(z, z, 50.0)
    assert float(sdm) < 1e-3 and float(nce) > 0.4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sdm", "infonce"])
def test_degenerate_batches_are_finite(kind):
    obj = bound(loss_kind=kind, mask_rate=1.0)
    b = batch(captions=("", "", "", ""), ids=(1, 1, 1, 1))   # one identity, empty captions
    b["image"] = jnp.zeros_like(b["image"])
    params = obj.init(jax.random.key(0), b)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: obj.loss(p, b, jax.random.key(1)), has_aux=True)(params)
    assert np.isfinite(float(loss)) and float(aux["mlm_frac"]) == 0.0
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_missing_identity_and_bad_arguments_raise():
    obj = bound()
    b = batch()
    params = obj.init(jax.random.key(0), b)
    with pytest.raises(ValueError, match="identity"):
        obj.loss(params, {"image": b["image"], "text": b["text"]}, jax.random.key(1))
    with pytest.raises(SpecError, match="loss_kind"):
        OBJECTIVES.build("irra", loss_kind="triplet")
    with pytest.raises(SpecError, match="tau"):
        OBJECTIVES.build("irra", tau=0.0)


# ---------------------------------------------------------------- the transform

def test_strip_skin_tone():
    assert strip_skin_tone("man running: dark skin tone") == "man running"
    assert strip_skin_tone("thumbs up: medium-light skin tone") == "thumbs up"
    assert strip_skin_tone("kiss: woman, man, light skin tone, dark skin tone") == \
        "kiss: woman, man"
    assert strip_skin_tone("family: man, woman, boy") == "family: man, woman, boy"
    assert strip_skin_tone("") == ""


def test_identity_id_is_stable_and_int32():
    a = identity_id("1F3C3-200D-2642-FE0F")
    assert a == identity_id("1F3C3-200D-2642-FE0F") and a.dtype == np.int32 and a >= 0
    assert a != identity_id("1F3C3")


def record(name=b"man running: dark skin tone", base=b"1F3C3"):
    img = {f"image_{s}": np.full((8, 8, 3), i * 40, np.uint8)
           for i, s in enumerate(("noto", "twemoji", "openmoji", "fluent"))}
    return {**img, "name": name, "group": 1, "subgroup": b"person-activity", "base": base,
            "codepoints": b"1F3C3-1F3FF", "cldr": b"{}"}


def test_transform_fields_and_style_choice():
    t = TRANSFORMS.build("emoji_styles", image_size=8, max_text_len=20, strip_skin_tone=True,
                         eval_style="openmoji")
    out = t.map(record())
    assert out["style_images"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(out["image"], out["style_images"][2])   # openmoji
    assert TOK.decode(out["text"]) == "man running"
    assert TOK.decode(out["subgroup"]) == "person-activity"
    assert out["identity"] == identity_id("1F3C3") and out["label"] == 1
    picked = {int(t.augment.random_map(out, np.random.default_rng(s))["image"][0, 0, 0])
              for s in range(40)}
    assert picked == {0, 40, 80, 120}   # training sees every style
    fixed = TRANSFORMS.build("emoji_styles", image_size=8, random_style=False)
    assert fixed.augment is None


def test_transform_rejects_unknown_styles_and_wrong_records():
    with pytest.raises(ValueError, match="eval_style"):
        TRANSFORMS.build("emoji_styles", styles=("noto",), eval_style="fluent")
    with pytest.raises(ValueError, match="one of"):
        TRANSFORMS.build("emoji_styles", styles=("sketch",), eval_style="sketch")
    t = TRANSFORMS.build("emoji_styles", image_size=8)
    bad = record()
    del bad["image_fluent"]
    with pytest.raises(KeyError, match="image_fluent"):
        t.map(bad)
