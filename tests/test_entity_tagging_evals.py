"""entity_linking and tagging evaluators: gold entities, scores → H@K/MRR against brute force,
unseen-tag counts, and both evaluators run through an EvalContext on 8 fake devices."""
import jax
import numpy as np
import pytest

from tests import test_m3el, test_m3pt
from xmodal.core import parallel
from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import Applier, EvalContext
from xmodal.projects.m3el.evaluator import gold_entities, metrics_from_scores
from xmodal.evaluate.ranking import tagging_metrics
from xmodal.projects.m3pt.evaluator import tag_counts


def test_gold_entities_keep_first_occurrences_in_order():
    rows, gold = gold_entities(np.array([7, 3, 7, 9, 3]))
    np.testing.assert_array_equal(rows, [0, 1, 3])
    np.testing.assert_array_equal(gold, [0, 1, 0, 2, 1])
    with pytest.raises(ValueError, match="non-empty"):
        gold_entities(np.array([], np.int32))


def brute_force(scores, gold, ks):
    # Rank of the gold entity, with the entities tied with it in random order: every rank from
    # 1 + (strictly greater) to 1 + (greater or equal, itself excluded) equally likely.
    ranks = [np.arange(1 + np.sum(s > s[g]), np.sum(s >= s[g]) + 1, dtype=np.float64)
             for s, g in zip(scores, gold)]
    out = {f"H@{k}": 100.0 * np.mean([np.mean(r <= k) for r in ranks]) for k in ks}
    out["MRR"] = np.mean([np.mean(1.0 / r) for r in ranks])
    return out


def test_metrics_from_scores_match_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(9, 6)).astype(np.float32)
    scores[2, :] = 0.5                                  # all tied: every rank equally likely
    gold = rng.integers(0, 6, 9)
    got = metrics_from_scores(scores, gold, (1, 3, 5), chunk_size=4)
    for k, v in brute_force(scores, gold, (1, 3, 5)).items():
        assert got[k] == pytest.approx(v, rel=1e-6), k
    # A hand case: gold ranked 1st, 2nd and 3rd -> H@1 = 1/3, MRR = (1 + 1/2 + 1/3) / 3.
    hand = np.array([[3, 2, 1], [3, 2, 1], [3, 2, 1]], np.float32)
    got = metrics_from_scores(hand, np.array([0, 1, 2]), (1, 3))
    assert got["H@1"] == pytest.approx(100 / 3) and got["H@3"] == 100.0
    assert got["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    # k larger than the entity list is left out rather than failing.
    assert "H@5" not in got
    with pytest.raises(ValueError, match="NaN"):
        metrics_from_scores(np.full((2, 2), np.nan), np.array([0, 1]))


def test_tag_counts():
    tags = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], bool)
    out = tag_counts(tags, np.array([1, 2, 0]))
    assert out == {"eval_tags": 3.0, "unseen_tags": 3.0, "unseen_tag_share": 50.0,
                   "untagged_items": 1.0}


def context(objective, arrays, transform=None):
    mesh = parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1})
    params = objective.init(jax.random.key(0), arrays)
    return EvalContext(arrays=arrays, class_names=[], params=params, model=objective.model,
                       objective=objective, transform=transform, applier=Applier(mesh, 8))


@pytest.mark.slow
def test_entity_linking_evaluator_matches_direct_scores():
    obj = test_m3el.objective(intra_weight=1.0)
    arrays = test_m3el.batch(b=11)                      # 11 rows: the Applier pads to 16
    ctx = context(obj, arrays)
    out = EVALUATORS.build("entity_linking", ks=(1, 3, 5))(ctx)
    assert out["num_entities"] == 11
    assert {"H@1", "H@3", "H@5", "MRR", "intra_H@1", "g2g_H@1", "g2l_MRR", "cross_H@1"} <= set(out)
    p = {"params": ctx.params["model"]}
    m = obj.model.apply(p, arrays["mention_image"], arrays["mention_text"], method="encode")
    e = obj.model.apply(p, arrays["entity_image"], arrays["entity_text"], method="encode")
    want = brute_force(obj.score_matrix(m, e), np.arange(11), (1, 3, 5))
    for k, v in want.items():
        assert out[k] == pytest.approx(v, rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_entity_linking_evaluator_needs_its_arrays():
    obj = test_m3el.objective()
    ctx = context(obj, test_m3el.batch())
    ctx.arrays = {k: v for k, v in ctx.arrays.items() if k != "entity_id"}
    with pytest.raises(ValueError, match="emoji_entities"):
        EVALUATORS.build("entity_linking")(ctx)


class VocabOnly:
    def __init__(self, vocab):
        self.vocab = vocab


def test_tagging_evaluator_matches_tagging_metrics():
    obj = test_m3pt.tiny_objective()
    arrays = test_m3pt.batch(b=10)
    arrays["unseen_tags"] = np.arange(10, dtype=np.int32)
    ctx = context(obj, arrays, VocabOnly(obj.vocab))
    out = EVALUATORS.build("tagging", ks=(1, 3, 5))(ctx)
    p = {"params": ctx.params["model"]}
    zitem = obj.model.apply(p, arrays["image"], arrays["text"], method="encode_item")
    ztag = obj.model.apply(p, obj.tag_tokens, method="encode_tags")
    want = tagging_metrics(zitem, ztag, arrays["tags"], ks=(1, 3, 5))
    for k, v in want.items():
        assert out[k] == pytest.approx(v, rel=1e-5, abs=1e-5), k
    assert out["unseen_tags"] == 45.0 and out["eval_tags"] == arrays["tags"].sum()


def test_tagging_evaluator_untagged_split_and_vocab_mismatch():
    obj = test_m3pt.tiny_objective()
    arrays = dict(test_m3pt.batch(), tags=np.zeros((4, len(test_m3pt.VOCAB)), bool))
    out = EVALUATORS.build("tagging")(context(obj, arrays, VocabOnly(obj.vocab)))
    assert out["num_items"] == 0.0 and out["untagged_items"] == 4.0 and "P@1" not in out
    with pytest.raises(ValueError, match="vocabulary"):
        EVALUATORS.build("tagging")(context(obj, test_m3pt.batch(), VocabOnly(("other",))))
