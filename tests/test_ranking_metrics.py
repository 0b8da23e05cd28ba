"""Chunked ranking metrics against brute-force numpy on the full score matrix.

Embeddings are multiples of 1/8, so every dot product is exact in float32 and float64 and ties
(which must never favour the truth) are frequent.
"""
import numpy as np
import pytest

from tests.test_retrieval_metrics import brute_rank, expectation
from xmodal.evaluate.ranking import (entity_linking_metrics, person_retrieval_metrics,
                                             tagging_metrics)


def grid_embeddings(rng, n, d):
    return (rng.integers(-4, 5, size=(n, d)) / 8).astype(np.float32)


def brute_person(q, qid, g, gid, ks, seed=0):
    """Rank-K at its expectation over random orders of the ties (enumerated); AP and INP of the
    gallery sorted by score, ties in the evaluator's seeded random order."""
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    tie_order = np.random.default_rng(seed).permutation(len(g))
    firsts, aps, inps = [], [], []
    for s, i in zip(scores, qid):
        is_pos = gid == i
        if not is_pos.any():
            continue
        firsts.append(brute_rank(s, is_pos))
        matches = is_pos[np.lexsort((tie_order, -s))]
        positions = np.flatnonzero(matches) + 1
        aps.append(np.mean(np.arange(1, len(positions) + 1) / positions))
        inps.append(len(positions) / positions[-1])
    out = {f"R@{k}": 100 * np.mean(expectation(firsts, lambda r: r <= k)) for k in ks}
    out.update(mAP=100 * np.mean(aps), mINP=100 * np.mean(inps), num_queries=len(firsts))
    return out


def test_person_hand_computed():
    # Gallery scores for the one query: .9 (pos), .8 (neg), .7 (pos), .1 (neg), .7 tie (neg).
    # Ranked: pos, neg, then the tied pos and neg in random order: positives at 1 and 3 or 4.
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.1, 0.0], [0.7, 0.0]], np.float32)
    ids = [5, 1, 5, 2, 3]
    out = person_retrieval_metrics(q, [5], g, ids, ks=(1, 2))
    assert out["R@1"] == 100.0 and out["R@2"] == 100.0
    tie_order = np.random.default_rng(0).permutation(5)
    second = 3 if tie_order[2] < tie_order[4] else 4
    np.testing.assert_allclose(out["mAP"], 100 * (1 / 1 + 2 / second) / 2)
    np.testing.assert_allclose(out["mINP"], 100 * 2 / second, rtol=1e-6)
    # Across seeds the tie falls both ways.
    seen = {person_retrieval_metrics(q, [5], g, ids, ks=(1,), seed=s)["mINP"] for s in range(8)}
    assert len(seen) == 2


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_person_matches_brute_force(chunk_size):
    rng = np.random.default_rng(chunk_size)
    g, gid = grid_embeddings(rng, 40, 3), rng.integers(0, 10, size=40)
    q, qid = grid_embeddings(rng, 23, 3), rng.integers(0, 12, size=23)
    ks = (1, 5, 10)
    got = person_retrieval_metrics(q, qid, g, gid, ks, chunk_size)
    want = brute_person(q, qid, g, gid, ks)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_person_large_ids():
    rng = np.random.default_rng(9)
    g, gid = grid_embeddings(rng, 12, 3), rng.integers(0, 4, size=12)
    q, qid = grid_embeddings(rng, 5, 3), rng.integers(0, 4, size=5)
    big = np.int64(2**40)
    got = person_retrieval_metrics(q, qid + big, g, gid + big, ks=(1, 3))
    want = brute_person(q, qid, g, gid, (1, 3))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


def test_person_single_identity_and_identical_embeddings():
    g = np.ones((6, 4), np.float32)
    out = person_retrieval_metrics(g[:3], [0, 0, 0], g, np.zeros(6, np.int64), ks=(1,))
    assert out == {"R@1": 100.0, "mAP": 100.0, "mINP": 100.0, "num_queries": 3.0}


def test_person_collapsed_model_scores_chance():
    # 60 identities with 5 images each and every embedding alike: Rank-1 is exactly the chance
    # of a random order (5/300), mAP and mINP those of one random order, near their expectation.
    gid = np.repeat(np.arange(60), 5)
    g, q = np.ones((300, 4), np.float32), np.ones((60, 4), np.float32)
    out = person_retrieval_metrics(q, np.arange(60), g, gid, ks=(1, 10))
    assert out["R@1"] == pytest.approx(100 * 5 / 300)
    assert out["R@10"] == pytest.approx(100 * (1 - np.prod([(295 - i) / (300 - i) for i in range(10)])))
    # E[AP] of 5 positives among 300 in random order is about 2.3 %; far from 100.
    assert 1.0 < out["mAP"] < 4.0 and out["mINP"] < 3.0


def test_entity_linking_matches_brute_force():
    rng = np.random.default_rng(0)
    ents, ments = grid_embeddings(rng, 30, 3), grid_embeddings(rng, 17, 3)
    gold = rng.integers(0, 30, size=17)
    scores = ments.astype(np.float64) @ ents.astype(np.float64).T
    dists = [brute_rank(s, np.arange(30) == t) for s, t in zip(scores, gold)]
    assert any(len(d) > 1 for d in dists)
    got = entity_linking_metrics(ments, ents, gold, ks=(1, 3, 5), chunk_size=4)
    for k in (1, 3, 5):
        np.testing.assert_allclose(got[f"H@{k}"],
                                   100 * np.mean(expectation(dists, lambda r: r <= k)))
    np.testing.assert_allclose(got["MRR"], np.mean(expectation(dists, lambda r: 1 / r)))


def brute_tagging(items, tags, labels, ks):
    scores = items.astype(np.float64) @ tags.astype(np.float64).T
    keep = labels.any(axis=1)
    out = {}
    for k in ks:
        p, r = [], []
        for s, lab in zip(scores[keep], labels[keep]):
            top = np.argsort(-s, kind="stable")[:k]
            hits = lab[top].sum()
            p.append(hits / k)
            r.append(hits / lab.sum())
        p, r = np.mean(p), np.mean(r)
        out.update({f"P@{k}": 100 * p, f"R@{k}": 100 * r,
                    f"F1@{k}": 100 * (2 * p * r / (p + r) if p + r else 0.0)})
    out["num_items"] = keep.sum()
    return out


@pytest.mark.parametrize("chunk_size", [1, 5, 100])
def test_tagging_matches_brute_force(chunk_size):
    rng = np.random.default_rng(chunk_size)
    items, tags = rng.normal(size=(13, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(
        np.float32)
    labels = rng.random((13, 8)) < 0.3
    labels[0] = False
    got = tagging_metrics(items, tags, labels, (1, 3, 5), chunk_size)
    want = brute_tagging(items, tags, labels, (1, 3, 5))
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


def test_tagging_hand_computed():
    # Scores 3, 2, 1, 0 for tags 0..3; positives {1, 3}: P@1 = 0, P@2 = 1/2, R@2 = 1/2.
    items = np.array([[1.0]], np.float32)
    tags = np.array([[3.0], [2.0], [1.0], [0.0]], np.float32)
    out = tagging_metrics(items, tags, np.array([[False, True, False, True]]), ks=(1, 2, 4))
    assert out["P@1"] == 0.0 and out["F1@1"] == 0.0
    np.testing.assert_allclose([out["P@2"], out["R@2"], out["F1@2"]], [50, 50, 50])
    np.testing.assert_allclose([out["P@4"], out["R@4"], out["F1@4"]], [50, 100, 200 / 3])


def test_tagging_ties_are_drawn_at_random():
    # Tags 0..3 score 2, 1, 1, 1; positives {0, 3}. Top-1 is tag 0 (a hit). Top-2 takes one of
    # the three tied tags at random: 1 + 1/3 expected hits. A collapsed model (all tags equal)
    # gets the positives' share at every K, whatever their position.
    items = np.array([[1.0]], np.float32)
    tags = np.array([[2.0], [1.0], [1.0], [1.0]], np.float32)
    labels = np.array([[True, False, False, True]])
    out = tagging_metrics(items, tags, labels, ks=(1, 2, 3))
    np.testing.assert_allclose([out["P@1"], out["P@2"], out["P@3"]],
                               [100, 100 * (1 + 1 / 3) / 2, 100 * (1 + 2 / 3) / 3])
    collapsed = tagging_metrics(np.ones((5, 2), np.float32), np.ones((10, 2), np.float32),
                                np.tile(np.arange(10) < 3, (5, 1)), ks=(1, 3))
    np.testing.assert_allclose([collapsed["P@1"], collapsed["R@3"]], [30.0, 30.0])


def test_bad_inputs_raise():
    rng = np.random.default_rng(0)
    a = grid_embeddings(rng, 5, 3)
    with pytest.raises(ValueError, match="embedding dims"):
        person_retrieval_metrics(a, np.arange(5), a[:, :2], np.arange(5))
    with pytest.raises(ValueError, match="gallery_ids must have shape"):
        person_retrieval_metrics(a, np.arange(5), a, np.arange(4))
    with pytest.raises(ValueError, match="no query has a positive"):
        person_retrieval_metrics(a, np.arange(5), a, np.arange(5) + 10)
    with pytest.raises(ValueError, match="gold must hold integer entity indices"):
        entity_linking_metrics(a, a, np.array([0, 1, 2, 3, 9]))
    with pytest.raises(ValueError, match="at most the number of tags"):
        tagging_metrics(a, a, np.eye(5, dtype=bool), ks=(6,))
    with pytest.raises(ValueError, match="no item has a positive tag"):
        tagging_metrics(a, a, np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="boolean"):
        tagging_metrics(a, a, np.eye(5))
