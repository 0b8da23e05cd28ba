"""person_retrieval and field_zeroshot evaluators on a real (random-init) fusion_two_tower,
checked against numpy oracles built from the same embeddings."""
import dataclasses

import jax
import numpy as np
import pytest

from xmodal.core import parallel
from xmodal.core.registry import TRANSFORMS
from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import Applier, EvalContext
from xmodal.evaluate.field_zeroshot import field_classes
from xmodal.projects.irra.evaluator import unique_queries
from xmodal.core.registry import MODELS

CLASSES = ["Smileys", "People & Body", "Animals"]


def context(n=12, seed=0):
    rng = np.random.default_rng(seed)
    transform = TRANSFORMS.build("emoji_styles", image_size=8, max_text_len=16)
    tok = transform.tokenizer
    names = ["man", "woman", "cat", "dog", "man", "sun"] * (n // 6)
    groups = np.array([1, 1, 2, 2, 1, 0] * (n // 6), np.int32)
    subgroups = ["person", "person", "animal-mammal", "animal-mammal", "person", "sky"]
    ids = np.array([1, 2, 3, 4, 1, 5] * (n // 6), np.int32)
    arrays = {
        "image": rng.integers(0, 256, (n, 8, 8, 3), np.uint8),
        "style_images": rng.integers(0, 256, (n, 2, 8, 8, 3), np.uint8),
        "text": tok.encode_batch(names),
        "subgroup": tok.encode_batch(subgroups * (n // 6)),
        "label": groups, "identity": ids,
    }
    model = MODELS.build("fusion_two_tower", embed_dim=8,
                         image=dict(name="vit", patch_size=4, width=8, depth=1, num_heads=2),
                         text=dict(name="text_transformer", vocab_size=260, max_len=16, width=8,
                                   depth=1, num_heads=2))
    params = model.init(jax.random.key(0), arrays["image"][:2], arrays["text"][:2])["params"]
    mesh = parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1})
    return EvalContext(arrays=arrays, class_names=CLASSES, params={"model": params},
                       model=model, transform=transform, applier=Applier(mesh, 8))


def changed(ctx, **fields):
    """The context with some eval fields replaced (None: removed)."""
    arrays = {**ctx.split.arrays, **fields}
    return dataclasses.replace(ctx, arrays={k: v for k, v in arrays.items() if v is not None})


def oracle(ctx, keep):
    """Brute force: rank of every gallery image for every distinct query, then the metrics."""
    a = ctx.arrays
    q_text, q_ids = unique_queries(a["text"][keep], a["identity"][keep])
    q = ctx.encode_text(q_text)
    views = a["style_images"][keep]
    g = ctx.encode_image(views.reshape((-1,) + views.shape[2:]))
    g_ids = np.repeat(a["identity"][keep], views.shape[1])
    r1, aps, inps = [], [], []
    for qi in range(len(q)):
        s = g @ q[qi]
        pos = g_ids == q_ids[qi]
        order = np.lexsort((~pos, -s))            # score desc, positives first on ties
        hits = pos[order]
        ranks = np.flatnonzero(hits) + 1
        r1.append(ranks[0] <= 1)
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
    return 100 * np.mean(r1), 100 * np.mean(aps), 100 * np.mean(inps), len(q), len(g)


@pytest.mark.parametrize("group", ["", "People & Body"])
def test_person_retrieval_matches_a_brute_force_oracle(group):
    ctx = context()
    out = EVALUATORS.build("person_retrieval", group=group, prefix="p_")(ctx)
    keep = (np.arange(12) if not group else np.flatnonzero(ctx.arrays["label"] == 1))
    r1, m_ap, m_inp, nq, ng = oracle(ctx, keep)
    np.testing.assert_allclose(out["p_R@1"], r1, atol=1e-3)
    np.testing.assert_allclose(out["p_mAP"], m_ap, atol=1e-3)
    np.testing.assert_allclose(out["p_mINP"], m_inp, atol=1e-3)
    assert out["p_num_queries"] == nq and out["p_gallery_size"] == ng
    assert nq == (5 if not group else 2)   # duplicate (caption, identity) rows scored once


def test_person_retrieval_with_a_single_identity_is_perfect_and_finite():
    ctx = changed(context(), identity=np.zeros(12, np.int32))
    out = EVALUATORS.build("person_retrieval")(ctx)
    assert out["R@1"] == 100.0 and out["mAP"] == 100.0 and out["mINP"] == 100.0


def test_person_retrieval_errors():
    ctx = context()
    with pytest.raises(ValueError, match="not a class name"):
        EVALUATORS.build("person_retrieval", group="Plants")(ctx)
    ctx = changed(ctx, label=np.zeros_like(ctx.arrays["label"]))
    with pytest.raises(ValueError, match="no record in group"):
        EVALUATORS.build("person_retrieval", group="Animals")(ctx)
    ctx = changed(ctx, identity=None)
    with pytest.raises(ValueError, match="identity"):
        EVALUATORS.build("person_retrieval")(ctx)


def test_unique_queries_keeps_first_seen_order():
    text = np.array([[1, 5], [1, 6], [1, 5], [1, 5]])
    ids = np.array([3, 4, 3, 9])
    t, i = unique_queries(text, ids)
    np.testing.assert_array_equal(t, [[1, 5], [1, 6], [1, 5]])
    np.testing.assert_array_equal(i, [3, 4, 9])


def test_field_classes_and_field_zeroshot_oracle():
    classes, labels = field_classes(np.array([[1, 7], [1, 5], [1, 7]]))
    np.testing.assert_array_equal(classes, [[1, 5], [1, 7]])
    np.testing.assert_array_equal(labels, [1, 0, 1])
    ctx = context()
    out = EVALUATORS.build("field_zeroshot", field="subgroup", templates=("{}",))(ctx)
    assert out["subgroup_classes"] == 3.0
    # Oracle: one template "{}" -> the class embedding is the (normalised) text embedding of
    # the subgroup name with '-' as ' '.
    names = ["animal mammal", "person", "sky"]      # sorted token rows = sorted bytes
    ztxt = ctx.encode_text(ctx.tokenize(names))
    zimg = ctx.encode_image(ctx.arrays["image"])
    _, labels = field_classes(ctx.arrays["subgroup"])
    scores = zimg @ ztxt.T
    true = scores[np.arange(len(labels)), labels]
    top1 = 100 * np.mean((scores > true[:, None]).sum(1) < 1)
    np.testing.assert_allclose(out["subgroup_zeroshot_top1"], top1, atol=1e-3)
    with pytest.raises(ValueError, match="no eval array"):
        EVALUATORS.build("field_zeroshot", field="cldr")(ctx)
