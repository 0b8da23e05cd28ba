"""Same-style retrieval: cross-style ranks against a brute-force oracle, the unified model, the
same_style objective on degenerate batches, the style-pair transforms and the spec."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.data_helpers import skip_unless_installed
from xmodal.core import spec as spec_lib
from xmodal.core.registry import TRANSFORMS
from xmodal.projects.same_style.evaluator import cross_style_ranks
from xmodal.core.registry import MODELS
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.sdm import sdm_loss


def oracle_ranks(q, qid, qst, g, gid, gst):
    out = []
    for i in range(len(q)):
        scores = [float(np.dot(q[i], g[j])) for j in range(len(g))]
        rel = [j for j in range(len(g)) if gid[j] == qid[i] and gst[j] != qst[i]]
        if not rel:
            out.append(0)
            continue
        best = max(scores[j] for j in rel)
        out.append(1 + sum(1 for j in range(len(g)) if scores[j] > best and gid[j] != qid[i]))
    return np.asarray(out)


def test_cross_style_ranks_by_hand():
    g = np.eye(3, dtype=np.float32)
    # Query 0 (id 0, style 0) is gallery item 0 itself (removed); its relevant item is item 1
    # (id 0, style 1), which scores 0.5; item 2 (id 1) scores 0.9 above it: rank 2.
    q = np.asarray([[1.0, 0.5, 0.9]], np.float32)
    scored, ranks = cross_style_ranks(q, [0], [0], g, [0, 0, 1], [0, 1, 0])
    assert scored.tolist() == [True] and ranks.expected_rank().tolist() == [2]
    # Nothing relevant (the only same-id item is in the query's style): not scored.
    scored, ranks = cross_style_ranks(q, [1], [0], g, [0, 0, 1], [0, 1, 0])
    assert scored.tolist() == [False] and len(ranks) == 0
    # Item 2 ties with the relevant item: rank 1 or 2, 1.5 expected; the removed item (the
    # query itself, scoring highest) never counts.
    q = np.asarray([[1.0, 0.5, 0.5]], np.float32)
    _, ranks = cross_style_ranks(q, [0], [0], g, [0, 0, 1], [0, 1, 0])
    assert ranks.expected_rank().tolist() == [1.5] and ranks.hit_at(1).tolist() == [0.5]


def test_cross_style_ranks_match_oracle():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(30, 5)), rng.normal(size=(50, 5))
    qid, qst = rng.integers(0, 6, 30), rng.integers(0, 3, 30)
    gid, gst = rng.integers(0, 6, 50), rng.integers(0, 3, 50)
    scored, got = cross_style_ranks(q, qid, qst, g, gid, gst, chunk_size=7)
    want = oracle_ranks(q, qid, qst, g, gid, gst)   # continuous scores: no ties
    np.testing.assert_array_equal(scored, want > 0)
    np.testing.assert_array_equal(got.expected_rank(), want[want > 0])
    with pytest.raises(ValueError, match="query_ids"):
        cross_style_ranks(q, qid[:3], qst, g, gid, gst)


def unified(fusion="gated"):
    return MODELS.get("unified")(image=dict(name="cnn", channels=(4, 8), width=8),
                                 text=dict(name="ngram_text", width=8, buckets=32, mlp_dim=8),
                                 embed_dim=6, fusion=fusion)


def batch(n=4, same=False, empty=False, one_id=False, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)
    img2 = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.uint8)
    if same:
        img[:] = img[:1]
        img2[:] = img[:1]
    txt = np.zeros((n, 8), np.int32)
    txt[:, 0], txt[:, 1] = 1, 2
    if not empty:
        txt[:, 1:4] = rng.integers(3, 259, (n, 3))
        txt[:, 4] = 2
    ids = np.zeros(n, np.int32) if one_id else np.arange(n, dtype=np.int32)
    return {"image": jnp.asarray(img), "image2": jnp.asarray(img2), "text": jnp.asarray(txt),
            "label": jnp.asarray(ids)}


@pytest.mark.parametrize("fusion", ["gated", "mlp"])
def test_unified_methods_agree(fusion):
    model, b = unified(fusion), batch()
    params = model.init(jax.random.key(0), b["image"], b["text"])
    za, zb, zt, zf = model.apply(params, b["image"], b["image2"], b["text"],
                                 method="encode_pairs")
    np.testing.assert_allclose(za, model.apply(params, b["image"], method="encode_image"),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zb, model.apply(params, b["image2"], method="encode_image"),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(zt, model.apply(params, b["text"], method="encode_text"),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        zf, model.apply(params, b["image"], b["text"], method="encode_fused"),
        rtol=1e-5, atol=1e-6)
    for z in (za, zb, zt, zf):
        assert z.shape == (4, 6)
        np.testing.assert_allclose(jnp.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="fusion"):
        unified("concat").init(jax.random.key(0), b["image"], b["text"])


def test_objective_is_sum_of_sdm_terms():
    obj = OBJECTIVES.build("same_style", tau=0.1, image_weight=1.0, text_weight=0.5,
                           fused_weight=2.0)(unified(), None)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    loss, aux = obj.loss(params, b, jax.random.key(1))
    za, zb, zt, zf = obj.model.apply({"params": params["model"]}, b["image"], b["image2"],
                                     b["text"], method="encode_pairs")
    want = (sdm_loss(za, zb, b["label"], 0.1)[0] + 0.5 * sdm_loss(zt, zb, b["label"], 0.1)[0]
            + 2.0 * sdm_loss(zf, zb, b["label"], 0.1)[0])
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(aux["image_image_loss"], sdm_loss(za, zb, b["label"], 0.1)[0],
                               rtol=1e-5)


@pytest.mark.parametrize("kw", [dict(one_id=True), dict(same=True), dict(empty=True),
                                dict(same=True, empty=True, one_id=True)])
@pytest.mark.slow
def test_objective_degenerate_batches_finite(kw):
    obj = OBJECTIVES.build("same_style")(unified(), None)
    b = batch(**kw)
    params = obj.init(jax.random.key(0), b)
    (loss, aux), grads = jax.value_and_grad(
        lambda p: obj.loss(p, b, jax.random.key(1)), has_aux=True)(params)
    assert np.isfinite(float(loss)) and all(np.isfinite(float(v)) for v in aux.values())
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_objective_bad_arguments():
    with pytest.raises(ValueError, match="tau"):
        OBJECTIVES.build("same_style", tau=0.0)
    with pytest.raises(ValueError, match="weights"):
        OBJECTIVES.build("same_style", image_weight=0.0, text_weight=0.0, fused_weight=0.0)
    obj = OBJECTIVES.build("same_style")(unified(), None)
    b = batch()
    params = obj.init(jax.random.key(0), b)
    with pytest.raises(KeyError, match="image2"):
        obj.loss(params, {k: v for k, v in b.items() if k != "image2"}, jax.random.key(1))


def emoji_record(codepoints="1F600", size=8):
    rng = np.random.default_rng(len(codepoints))
    rec = {f"image_{s}": rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
           for s in ("noto", "twemoji", "openmoji", "fluent")}
    rec.update(name=b"grinning face", codepoints=codepoints.encode())
    return rec


def test_emoji_style_pairs():
    t = TRANSFORMS.build("emoji_style_pairs", image_size=8, max_text_len=16)
    rec = emoji_record()
    ex = t.map(rec)
    assert ex["views"].shape == (4, 8, 8, 3) and ex["text"].shape == (16,)
    assert ex["style"] != ex["style2"]
    np.testing.assert_array_equal(ex["image"], ex["views"][ex["style"]])
    np.testing.assert_array_equal(ex["image2"], ex["views"][ex["style2"]])
    again = t.map(rec)
    assert all(np.array_equal(ex[k], again[k]) for k in ex)  # deterministic
    assert t.map(emoji_record("1F601"))["label"] != ex["label"]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        aug = t.augment.random_map(dict(ex), rng)
        assert aug["style"] != aug["style2"]
        np.testing.assert_array_equal(aug["image"], ex["views"][aug["style"]])
        seen.add((int(aug["style"]), int(aug["style2"])))
    assert len(seen) > 6  # many of the 12 ordered pairs are drawn
    with pytest.raises(KeyError, match="image_fluent"):
        t.map({k: v for k, v in rec.items() if k != "image_fluent"})
    with pytest.raises(ValueError, match="two distinct"):
        TRANSFORMS.build("emoji_style_pairs", styles=("noto",))


@skip_unless_installed("cards/tiny")
def test_card_pairs_on_tiny_cards():
    from xmodal.core import datasets as sources
    t = TRANSFORMS.build("card_pairs", image_size=16, data_name="cards/tiny")
    train = sources.data_source("cards/tiny", "train")
    test = sources.data_source("cards/tiny", "test")
    for source, single_deck in ((train, False), (test, True)):
        for i in range(len(source)):
            ex = t.map(source[i])
            assert ex["image"].shape == ex["image2"].shape == (16, 16, 3)
            assert ex["label"] == source[i]["rank"] * 4 + source[i]["suit"]
            if single_deck:  # the test split has one deck: the card pairs with itself
                assert ex["style2"] == ex["style"]
                np.testing.assert_array_equal(ex["image2"], ex["image"])
            else:  # the partner is the same card in the other training deck
                assert ex["style2"] != ex["style"]
                assert t.decks[ex["style2"]] in ("anglo", "tango")
                j = t.row[(int(ex["style2"]), int(ex["label"]))]
                np.testing.assert_array_equal(ex["image2"], t.images[j])
    aug = t.augment.random_map(t.map(train[0]), np.random.default_rng(0))
    assert aug["style2"] != aug["style"]


@pytest.mark.parametrize("arg", ["runlocal", "runlocal,data=emoji_styles", ""])
def test_spec_validates(arg):
    spec = spec_lib.validate(spec_lib.load(f"specs/same_style.py:{arg}"))
    assert spec.objective.name == "same_style" and spec.model.name == "unified"
