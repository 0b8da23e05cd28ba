"""m3el: the emoji_entities transform, the entity model's token outputs, the multi-level loss
and its ranking scores (against float64 numpy), and degenerate inputs."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.data_helpers import skip_unless_installed
from xmodal.data.sets.emoji_styles import STYLES
from xmodal.projects.m3el.transform import EmojiEntities, RandomStylePair, entity_id
from xmodal.data.transforms.emoji_keywords import own_keywords, record_keywords
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import MODELS
from xmodal.projects.m3el.model import tower_with_tokens
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.intra_modal import global_local_loss, intra_modal_loss
from tests.test_intra_modal import np_global_local

S = 16  # image size of the hand-made records


def record(name, codepoints, base, keywords, shade=0):
    cldr = {"en": {"name": name, "keywords": keywords}} if keywords is not None else {}
    images = {f"image_{s}": np.full((S, S, 3), 40 * i + shade, np.uint8)
              for i, s in enumerate(STYLES)}
    return {"name": name.encode(), "codepoints": codepoints.encode(), "base": base.encode(),
            "cldr": json.dumps(cldr).encode(), **images}


GRIN = record("grinning face", "1F600", "1F600", ["face", "grin", "Grinning face"])
THUMB = record("thumbs up", "1F44D", "1F44D", ["+1", "hand", "thumb", "up"])
THUMB_DARK = record("thumbs up: dark skin tone", "1F44D-1F3FF", "1F44D", None, shade=1)
BY_BASE = {"1F600": ("face", "grin"), "1F44D": ("+1", "hand", "thumb", "up")}


def transform(**kw):
    args = dict(image_size=S, max_text_len=32, mention_style="twemoji",
                entity_style="openmoji", styles=STYLES, by_base=BY_BASE)
    args.update(kw)
    return EmojiEntities(**args)


# ------------------------------------------------------------------------------- transform

def test_keywords_drop_own_name_and_fall_back_to_base():
    assert own_keywords(GRIN) == ["face", "grin"]          # "Grinning face" is the name
    assert own_keywords(THUMB_DARK) == []
    assert record_keywords(THUMB_DARK, BY_BASE) == ["+1", "hand", "thumb", "up"]
    assert record_keywords(record("x", "9", "9", None), BY_BASE) == []
    with pytest.raises(KeyError, match="cldr"):
        own_keywords({"name": b"x"})


def test_transform_fields_and_fixed_eval_styles():
    t = transform()
    e = t.map(GRIN)
    tok = ByteTokenizer(32)
    assert tok.decode(e["mention_text"]) == "face, grin"
    assert tok.decode(e["entity_text"]) == "grinning face"
    np.testing.assert_array_equal(e["mention_image"], GRIN["image_twemoji"])
    np.testing.assert_array_equal(e["entity_image"], GRIN["image_openmoji"])
    assert e["images"].shape == (len(STYLES), S, S, 3)
    assert e["entity_id"] == entity_id("1F600") and e["entity_id"] >= 0
    # The skin-tone variant shares its base's mention text, so only the image tells them apart.
    dark = t.map(THUMB_DARK)
    np.testing.assert_array_equal(dark["mention_text"], t.map(THUMB)["mention_text"])
    assert dark["entity_id"] != t.map(THUMB)["entity_id"]


def test_random_style_pair_is_distinct_seeded_and_keeps_keys():
    e = transform().map(GRIN)
    aug = RandomStylePair(len(STYLES))
    pairs = set()
    for seed in range(40):
        out = aug.random_map(e, np.random.default_rng(seed))
        assert set(out) == set(e)
        a = int(out["mention_image"][0, 0, 0]) // 40
        b = int(out["entity_image"][0, 0, 0]) // 40
        assert a != b
        pairs.add((a, b))
        again = aug.random_map(e, np.random.default_rng(seed))
        np.testing.assert_array_equal(again["mention_image"], out["mention_image"])
    assert len(pairs) > 6   # 12 ordered pairs exist


def test_transform_rejects_bad_styles():
    with pytest.raises(ValueError, match="must differ"):
        transform(mention_style="noto", entity_style="noto")
    with pytest.raises(ValueError, match="unknown emoji style"):
        transform(entity_style="comic")
    with pytest.raises(ValueError, match="two distinct"):
        transform(styles=("noto", "noto"))


# ------------------------------------------------------------------------------- model

TOWERS = dict(image=dict(name="vit", patch_size=8, width=16, depth=1, num_heads=2, pool="gap"),
              text=dict(name="text_transformer", max_len=12, width=16, depth=1, num_heads=2))


def tiny_model(**kw):
    return MODELS.build("entity_model", embed_dim=8, num_heads=2, **TOWERS, **kw)


def batch(b=4, seed=0, empty_text=False):
    rng = np.random.default_rng(seed)
    text = rng.integers(3, 200, (b, 12)).astype(np.int32)
    text[:, 0], text[:, 7], text[:, 8:] = 1, 2, 0
    if empty_text:
        text[:, 1], text[:, 2:] = 2, 0        # bos, eos: an empty caption
    img = rng.integers(0, 255, (b, S, S, 3)).astype(np.uint8)
    return {"mention_image": img, "mention_text": text,
            "entity_image": img[::-1].copy(), "entity_text": text[::-1].copy(),
            "entity_id": np.arange(b, dtype=np.int32)}


def test_tokens_are_the_encoder_output_of_each_tower():
    import flax.linen as nn

    class Probe(nn.Module):
        @nn.compact
        def __call__(self, img):
            tower = MODELS.get("vit")(**{k: v for k, v in TOWERS["image"].items()
                                         if k != "name"}, name="img")
            return tower_with_tokens(tower, img, False)

    img = batch()["mention_image"]
    v = Probe().init(jax.random.key(0), img)
    pooled, tokens = Probe().apply(v, img)
    assert tokens.shape == (4, (S // 8) ** 2, 16)
    np.testing.assert_allclose(pooled, tokens.mean(axis=1), rtol=1e-5, atol=1e-6)  # gap pool


def test_encode_shapes_unit_norm_and_pad_invariance():
    m = tiny_model()
    b = batch()
    v = m.init(jax.random.key(0), *(b[k] for k in ("mention_image", "mention_text",
                                                   "entity_image", "entity_text")))
    out = m.apply(v, b["mention_image"], b["mention_text"], method="encode")
    for k in ("txt", "img", "txt_g", "img_g", "t2v", "v2t"):
        assert out[k].shape == (4, 8)
        np.testing.assert_allclose(np.linalg.norm(out[k], axis=1), 1.0, rtol=1e-5)
    assert out["txt_l"].shape == (4, 12, 8) and out["img_l"].shape == (4, 4, 8)
    assert out["txt_mask"][:, :8].all() and not out["txt_mask"][:, 8:].any()
    # Pad tokens are masked everywhere, so changing them changes nothing that is used.
    moved = b["mention_text"].copy()
    moved[:, 8:] = 0
    again = m.apply(v, b["mention_image"], moved, method="encode")
    for k in ("txt", "t2v", "v2t"):
        np.testing.assert_allclose(again[k], out[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- objective

def objective(**kw):
    return OBJECTIVES.build("m3el", **kw)(tiny_model(), None)


def test_loss_is_the_weighted_sum_of_its_levels():
    w = dict(intra_weight=0.3, g2g_weight=0.7, g2l_weight=1.1, cross_weight=1.3,
             intra_negative_weight=0.5, attn_temperature=0.2)
    obj = objective(**w)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = jax.jit(obj.loss)(params, b, jax.random.key(1))
    m, e, s = obj.model.apply({"params": params["model"]}, b["mention_image"], b["mention_text"],
                              b["entity_image"], b["entity_text"])
    pair = lambda f, x, y, *a: 0.5 * (f(m[x], e[x], *a)[0] + f(m[y], e[y], *a)[0])
    want = (0.3 * pair(intra_modal_loss, "txt", "img", s["intra"], 0.5)
            + 0.7 * pair(clip_loss, "txt_g", "img_g", s["g2g"])
            + 1.1 * 0.5 * (global_local_loss(m["txt_g"], e["txt_l"], e["txt_mask"], s["g2l"], 0.2)[0]
                           + global_local_loss(m["img_g"], e["img_l"], e["img_mask"], s["g2l"],
                                               0.2)[0])
            + 1.3 * pair(clip_loss, "t2v", "v2t", s["cross"]))
    np.testing.assert_allclose(loss, want, rtol=1e-4)
    assert {"intra_loss", "g2g_loss", "g2l_loss", "cross_loss", "t2v_acc"} <= set(aux)


@pytest.mark.slow
def test_zero_weight_turns_a_level_off():
    b = batch()
    obj = objective(intra_weight=0.0, cross_weight=0.0)
    params = obj.init(jax.random.key(0), b)
    _, aux = jax.jit(obj.loss)(params, b, jax.random.key(1))
    assert "intra_loss" not in aux and "cross_loss" not in aux and "g2g_loss" in aux
    assert obj.ranking_levels() == ("g2g", "g2l")
    assert objective(g2g_weight=0.0, g2l_weight=0.0, cross_weight=0.0).ranking_levels() == ("intra",)
    # Gradients reach no parameter of a switched-off level.
    grads = jax.grad(lambda p: obj.loss(p, b, jax.random.key(1))[0])(params)["model"]
    assert float(jnp.abs(grads["t2v_head"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(grads["g2g_txt"]["kernel"]).max()) > 0.0


@pytest.mark.parametrize("kw,match", [
    (dict(intra_weight=-1.0), "intra_weight"),
    (dict(intra_weight=0.0, g2g_weight=0.0, g2l_weight=0.0, cross_weight=0.0), "every level"),
    (dict(intra_negative_weight=-0.1), "intra_negative_weight"),
    (dict(attn_temperature=0.0), "attn_temperature"),
])
def test_bad_objective_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        OBJECTIVES.build("m3el", **kw)


@pytest.mark.slow
def test_degenerate_batches_give_finite_loss_and_grads():
    obj = objective()
    loss_and_grad = jax.jit(jax.value_and_grad(lambda p, b: obj.loss(p, b, jax.random.key(1))[0]))
    params = obj.init(jax.random.key(0), batch())
    same = batch()
    for k in ("mention_image", "mention_text", "entity_image", "entity_text"):
        same[k] = np.repeat(same[k][:1], 4, axis=0)   # one identity repeated: identical rows
    for b in (batch(empty_text=True), same, {k: v[:1] for k, v in batch().items()}):
        loss, grads = loss_and_grad(params, b)
        assert np.isfinite(loss)
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_score_matrix_matches_numpy():
    rng = np.random.default_rng(0)

    def side(n):
        unit = lambda *shape: (lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True))(
            rng.normal(size=shape)).astype(np.float32)
        mask = np.ones((n, 5), bool)
        mask[0, 3:] = False
        return {"txt": unit(n, 6), "img": unit(n, 6), "txt_g": unit(n, 6), "img_g": unit(n, 6),
                "txt_l": unit(n, 5, 6), "img_l": unit(n, 4, 6), "txt_mask": mask,
                "img_mask": np.ones((n, 4), bool), "t2v": unit(n, 6), "v2t": unit(n, 6)}

    m, e = side(5), side(7)
    obj = objective(attn_temperature=0.3)
    got = obj.score_matrix(m, e, chunk_size=2)          # 3 chunks, the last one short
    g2g = 0.5 * (m["txt_g"] @ e["txt_g"].T + m["img_g"] @ e["img_g"].T)
    g2l = 0.5 * (np_global_local(m["txt_g"], e["txt_l"], e["txt_mask"], 0.3)
                 + np_global_local(m["img_g"], e["img_l"], e["img_mask"], 0.3))
    cross = 0.5 * (m["t2v"] @ e["t2v"].T + m["v2t"] @ e["v2t"].T)
    np.testing.assert_allclose(got, g2g + g2l + cross, rtol=1e-4, atol=1e-5)
    only_intra = obj.score_matrix(m, e, ("intra",))
    np.testing.assert_allclose(only_intra, 0.5 * (m["txt"] @ e["txt"].T + m["img"] @ e["img"].T),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown m3el level"):
        obj.score_matrix(m, e, ("g2x",))


@skip_unless_installed("emoji_styles/tiny")
def test_keywords_need_an_emoji_styles_dataset():
    from xmodal.data.transforms.emoji_keywords import keywords_by_base
    by_base = keywords_by_base("emoji_styles/tiny")
    assert by_base and all(words and all(w == w.lower() for w in words)
                           for words in by_base.values())
    with pytest.raises(ValueError, match="emoji_styles config"):
        keywords_by_base("emoji/tiny")
