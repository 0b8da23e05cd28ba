"""m3pt: tag vocabulary and multi-hot targets, the tagging model's modalities, the objective
as the sum of its terms, and degenerate inputs."""
import jax
import numpy as np
import pytest

from tests.data_helpers import skip_unless_installed
from tests.test_m3el import BY_BASE, GRIN, THUMB, THUMB_DARK, S, record
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.projects.m3pt.transform import EmojiTags, tag_vocabulary
from xmodal.core.registry import MODELS
from xmodal.losses.contrastive import clip_loss
from xmodal.projects.m3pt.objective import M3PTObjective
from xmodal.losses.multilabel import multilabel_sigmoid_loss, multilabel_softmax_loss

VOCAB = ("face", "hand", "thumb", "up", "smile")


def transform():
    return EmojiTags(S, 16, "noto", VOCAB, BY_BASE)


def test_multi_hot_targets_and_unseen_count():
    t = transform()
    e = t.map(GRIN)                       # keywords face, grin ("grinning face" is the name)
    assert e["tags"].dtype == bool and e["tags"].shape == (len(VOCAB),)
    assert [VOCAB[i] for i in np.flatnonzero(e["tags"])] == ["face"]
    assert e["unseen_tags"] == 1          # "grin" is not in the vocabulary
    dark = t.map(THUMB_DARK)              # no keywords of its own: the base's
    np.testing.assert_array_equal(dark["tags"], t.map(THUMB)["tags"])
    assert dark["unseen_tags"] == 1       # "+1"
    np.testing.assert_array_equal(e["image"], GRIN["image_noto"])
    assert ByteTokenizer(16).decode(e["text"]) == "grinning face"
    none = t.map(record("x", "9", "9", None))
    assert not none["tags"].any() and none["unseen_tags"] == 0


def test_transform_rejects_unknown_style():
    with pytest.raises(ValueError, match="unknown emoji style"):
        EmojiTags(S, 16, "comic", VOCAB, BY_BASE)


@skip_unless_installed("emoji_styles/tiny")
def test_vocabulary_is_deterministic_and_counts_bases():
    vocab = tag_vocabulary("emoji_styles/tiny", "train", 2)
    assert vocab == tag_vocabulary.__wrapped__("emoji_styles/tiny", "train", 2)
    assert len(vocab) == len(set(vocab)) > 0
    assert set(tag_vocabulary("emoji_styles/tiny", "train", 3)) <= set(vocab)
    assert len(tag_vocabulary("emoji_styles/tiny", "train", 1)) > len(vocab)
    with pytest.raises(ValueError, match="min_count"):
        tag_vocabulary("emoji_styles/tiny", "train", 0)
    with pytest.raises(ValueError, match="lower min_count"):
        tag_vocabulary("emoji_styles/tiny", "train", 10_000)
    with pytest.raises(ValueError, match="no split"):
        tag_vocabulary("emoji_styles/tiny", "validation", 2)


# ------------------------------------------------------------------------------- model

TOWERS = dict(image=dict(name="vit", patch_size=8, width=16, depth=1, num_heads=2),
              text=dict(name="text_transformer", max_len=16, width=16, depth=1, num_heads=2))


def tiny_objective(modalities="both", kind="softmax", die=0.5, align=0.5):
    model = MODELS.build("tagging_model", embed_dim=8, item_modalities=modalities, **TOWERS)
    tokens = ByteTokenizer(8).encode_batch(list(VOCAB))
    return M3PTObjective(model, None, VOCAB, tokens, kind, die, align)


def batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    text = np.zeros((b, 16), np.int32)
    text[:, 0], text[:, 1:6], text[:, 6] = 1, rng.integers(3, 200, (b, 5)), 2
    tags = rng.random((b, len(VOCAB))) < 0.4
    tags[0] = False                       # an item without any tag
    return {"image": rng.integers(0, 255, (b, S, S, 3)).astype(np.uint8), "text": text,
            "tags": tags, "unseen_tags": np.zeros(b, np.int32)}


@pytest.mark.parametrize("modalities", ["both", "text", "image"])
def test_modalities_build_only_the_towers_they_use(modalities):
    obj = tiny_objective(modalities)
    params = obj.init(jax.random.key(0), batch())["model"]
    assert "txt" in params                # the tags always go through the text tower
    assert ("img" in params) == (modalities != "text")
    zitem, ztag, extra = obj.model.apply({"params": params}, batch()["image"], batch()["text"],
                                         obj.tag_tokens)
    assert zitem.shape == (4, 8) and ztag.shape == (len(VOCAB), 8)
    np.testing.assert_allclose(np.linalg.norm(zitem, axis=1), 1.0, rtol=1e-5)
    assert (extra["zimg"] is None) == (modalities == "text")
    assert (extra["ztxt"] is None) == (modalities == "image")


def test_bad_modalities():
    with pytest.raises(ValueError, match="item_modalities"):
        tiny_objective("audio").init(jax.random.key(0), batch())


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_loss_is_the_sum_of_its_terms(kind):
    obj = tiny_objective(kind=kind, die=0.3, align=0.7)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = jax.jit(obj.loss)(params, b, jax.random.key(1))
    zitem, ztag, x = obj.model.apply({"params": params["model"]}, b["image"], b["text"],
                                     obj.tag_tokens)
    if kind == "softmax":
        ml = lambda z: multilabel_softmax_loss(z, ztag, b["tags"], x["logit_scale"])[0]
    else:
        ml = lambda z: multilabel_sigmoid_loss(z, ztag, b["tags"], x["logit_scale"],
                                               x["logit_bias"])[0]
    want = ml(zitem) + 0.3 * ml(x["zimg"]) + 0.7 * clip_loss(x["zimg"], x["ztxt"],
                                                              x["logit_scale"])[0]
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert {"item_loss", "die_loss", "align_loss"} <= set(aux)


def test_uni_modal_items_have_no_die_or_alignment_term():
    for modalities, present in (("text", set()), ("image", {"die_loss"})):
        obj = tiny_objective(modalities)
        params = obj.init(jax.random.key(0), batch())
        _, aux = obj.loss(params, batch(), jax.random.key(1))
        assert {"die_loss", "align_loss"} & set(aux) == present


def test_degenerate_batches_give_finite_loss_and_grads():
    obj = tiny_objective()
    params = obj.init(jax.random.key(0), batch())
    grad = jax.jit(jax.value_and_grad(lambda p, b: obj.loss(p, b, jax.random.key(1))[0]))
    untagged = dict(batch(), tags=np.zeros((4, len(VOCAB)), bool))
    all_tags = dict(batch(), tags=np.ones((4, len(VOCAB)), bool))
    same = {k: np.repeat(v[1:2], 4, axis=0) for k, v in batch().items()}
    empty = dict(batch(), text=np.tile(np.array([1, 2] + [0] * 14, np.int32), (4, 1)))
    for b in (untagged, all_tags, same, empty):
        loss, grads = grad(params, b)
        assert np.isfinite(loss)
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
