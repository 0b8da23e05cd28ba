"""Retrieval and zero-shot metrics against brute-force numpy on the full score matrix.

Random embeddings are multiples of 1/8 in [-1/2, 1/2], so every dot product is exact in float32
and float64 alike: the chunked float32 kernel and the numpy reference see identical scores, and
ties (which the rank rule must resolve) occur often.
"""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.evaluate.retrieval import ranks_i2t, ranks_t2i, retrieval_metrics
from xmodal.evaluate.zeroshot import PROMPT_TEMPLATES, zeroshot_accuracy, zeroshot_classifier


def grid_embeddings(rng, n, d):
    return (rng.integers(-4, 5, size=(n, d)) / 8).astype(np.float32)


def brute_rank(scores, is_pos):
    """Every equally likely rank of the first positive when tied items are ordered at random,
    by enumerating where the positives at the best positive score fall among the tied items:
    a list of (rank, probability)."""
    best = scores[is_pos].max()
    greater = int(np.sum((scores > best) & ~is_pos))
    tied = scores == best
    m, p = int(tied.sum()), int((tied & is_pos).sum())
    combos = list(itertools.combinations(range(m), p))
    return [(greater + 1 + min(c), 1.0 / len(combos)) for c in combos]


def brute_t2i(img, txt, txt_to_img, queries):
    scores = txt[queries].astype(np.float64) @ img.astype(np.float64).T
    return [brute_rank(s, np.arange(len(img)) == txt_to_img[q]) for s, q in zip(scores, queries)]


def brute_i2t(img, txt, txt_to_img, queries):
    scores = img[queries].astype(np.float64) @ txt.astype(np.float64).T
    return [brute_rank(s, txt_to_img == q) for s, q in zip(scores, queries)]


def expectation(dists, f):
    return np.array([sum(prob * f(r) for r, prob in d) for d in dists])


def summary(dists, ks, prefix):
    out = {f"{prefix}_R@{k}": 100.0 * np.mean(expectation(dists, lambda r: r <= k)) for k in ks}
    rank = expectation(dists, float)
    out.update({f"{prefix}_medr": np.median(rank), f"{prefix}_meanr": np.mean(rank),
                f"{prefix}_mrr": np.mean(expectation(dists, lambda r: 1.0 / r))})
    return out


def assert_same_ranks(got, dists):
    """A ``TiedRanks`` against enumerated rank distributions: expected rank and 1/rank, R@k."""
    np.testing.assert_allclose(got.expected_rank(), expectation(dists, float), rtol=1e-12)
    np.testing.assert_allclose(got.reciprocal_rank(), expectation(dists, lambda r: 1.0 / r),
                               rtol=1e-9)
    for k in (1, 2, 5):
        np.testing.assert_allclose(got.hit_at(k), expectation(dists, lambda r: r <= k),
                                   rtol=1e-9, atol=1e-12)


def test_matches_brute_force_with_several_texts_per_image():
    rng = np.random.default_rng(0)
    n_img, n_txt, ks = 300, 700, (1, 5, 10)
    img, txt = grid_embeddings(rng, n_img, 8), grid_embeddings(rng, n_txt, 8)
    txt_to_img = rng.integers(0, n_img, size=n_txt)
    assert len(np.unique(txt_to_img)) < n_img  # some images have no text and must be skipped
    got = retrieval_metrics(img, txt, txt_to_img, ks=ks, chunk_size=64)

    t2i = brute_t2i(img, txt, txt_to_img, np.arange(n_txt))
    with_text = np.unique(txt_to_img)
    i2t = brute_i2t(img, txt, txt_to_img, with_text)
    want = {**summary(t2i, ks, "t2i"), **summary(i2t, ks, "i2t")}
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
        assert isinstance(got[key], float)
    # The grid makes ties common, including several of an image's texts at its best score.
    assert sum(len(d) > 1 for d in t2i) > 50 and sum(len(d) > 1 for d in i2t) > 50

    assert_same_ranks(ranks_t2i(img, txt, txt_to_img, chunk_size=64), t2i)
    ids, ranks = ranks_i2t(img, txt, txt_to_img, chunk_size=64)
    np.testing.assert_array_equal(ids, with_text)
    assert_same_ranks(ranks, i2t)


def test_hand_made_ranks():
    img = np.array([[1, 0], [0, 1], [0.6, 0.8], [1, 0]], np.float32)
    txt = np.array([[1, 0], [0, 1], [0.6, 0.8], [0.8, 0.6]], np.float32)
    txt_to_img = np.array([0, 0, 1, 2])
    # Text scores against images 0..3:
    #   t0 -> [1, 0, .6, 1]     own image 0; image 3 ties with it     -> rank 1 or 2
    #   t1 -> [0, 1, .8, 0]     own image 0; images 1, 2 beat it, 3 ties -> rank 3 or 4
    #   t2 -> [.6, .8, 1, .6]   own image 1; image 2 beats it         -> rank 2
    #   t3 -> [.8, .6, .96, .8] own image 2                            -> rank 1
    t2i = ranks_t2i(img, txt, txt_to_img, chunk_size=3)
    np.testing.assert_array_equal(t2i.greater, [0, 2, 1, 0])
    np.testing.assert_array_equal(t2i.tied, [1, 1, 0, 0])
    np.testing.assert_allclose(t2i.expected_rank(), [1.5, 3.5, 2, 1])
    # Image scores against texts 0..3 (image 3 has no text and is skipped):
    #   i0 -> [1, 0, .6, .8]    own texts 0, 1; best is 1              -> rank 1
    #   i1 -> [0, 1, .8, .6]    own text 2; text 1 beats it            -> rank 2
    #   i2 -> [.6, .8, 1, .96]  own text 3; text 2 beats it            -> rank 2
    ids, ranks = ranks_i2t(img, txt, txt_to_img, chunk_size=2)
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_allclose(ranks.expected_rank(), [1, 2, 2])

    m = retrieval_metrics(img, txt, txt_to_img, ks=(1, 2), chunk_size=2)
    assert m["t2i_R@1"] == pytest.approx((0.5 + 1) / 4 * 100)
    assert m["t2i_R@2"] == pytest.approx((1 + 1) / 4 * 100 + 25)
    assert m["t2i_medr"] == pytest.approx(1.75)
    assert m["t2i_meanr"] == pytest.approx((1.5 + 3.5 + 2 + 1) / 4)
    assert m["t2i_mrr"] == pytest.approx(((1 + 1 / 2) / 2 + (1 / 3 + 1 / 4) / 2 + 1 / 2 + 1) / 4)
    assert m["i2t_R@1"] == pytest.approx(100 / 3)
    assert m["i2t_R@2"] == pytest.approx(100.0)
    assert m["i2t_medr"] == pytest.approx(2.0)
    assert m["i2t_meanr"] == pytest.approx(5 / 3)
    assert m["i2t_mrr"] == pytest.approx(2 / 3)


def test_a_collapsed_model_scores_chance():
    # Every image and every text the same vector: every score ties, so every metric must be
    # what a random ranking scores (the chance column), never a perfect score.
    from xmodal.evaluate.embedding_evals import retrieval_chance
    n, ks = 41, (1, 5, 10)
    emb = np.full((n, 4), 0.5, np.float32)
    got = retrieval_metrics(emb, emb, np.arange(n), ks=ks)
    assert got == pytest.approx(retrieval_chance(n, ks), rel=1e-9)
    assert got["t2i_R@1"] == pytest.approx(100 / n)


@pytest.mark.slow
def test_twenty_thousand_squared_in_chunks():
    rng = np.random.default_rng(1)
    n, d = 20_000, 32
    img, txt = grid_embeddings(rng, n, d), grid_embeddings(rng, n, d)
    txt_to_img = rng.integers(0, n, size=n)
    # The full 20k × 20k score matrix is never built: queries go in chunks of 1024.
    t2i = ranks_t2i(img, txt, txt_to_img, chunk_size=1024)
    ids, i2t = ranks_i2t(img, txt, txt_to_img, chunk_size=1024)

    queries = rng.choice(n, size=100, replace=False)
    assert_same_ranks(t2i.select(queries), brute_t2i(img, txt, txt_to_img, queries))
    picked = rng.choice(len(ids), size=100, replace=False)
    assert_same_ranks(i2t.select(picked), brute_i2t(img, txt, txt_to_img, ids[picked]))


def test_bfloat16_and_jax_inputs():
    rng = np.random.default_rng(2)
    img, txt = grid_embeddings(rng, 50, 4), grid_embeddings(rng, 80, 4)
    txt_to_img = rng.integers(0, 50, size=80)
    # Multiples of 1/8 in [-1/2, 1/2] are exact in bfloat16, so the ranks must not change.
    got = ranks_t2i(jnp.asarray(img, jnp.bfloat16), jnp.asarray(txt, jnp.bfloat16), txt_to_img)
    assert_same_ranks(got, brute_t2i(img, txt, txt_to_img, np.arange(80)))


def test_bad_input_is_named():
    img, txt = np.zeros((5, 4), np.float32), np.zeros((6, 4), np.float32)
    good = np.zeros(6, np.int64)
    with pytest.raises(ValueError, match="different embedding dims"):
        retrieval_metrics(img, np.zeros((6, 3)), good)
    with pytest.raises(ValueError, match=r"txt_to_img must have shape \[Nt\] = \(6,\)"):
        retrieval_metrics(img, txt, good[:5])
    with pytest.raises(ValueError, match=r"must lie in \[0, 5\)"):
        retrieval_metrics(img, txt, good + 5)
    with pytest.raises(ValueError, match="integer image indices"):
        retrieval_metrics(img, txt, good.astype(np.float32))
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(img, txt, good, chunk_size=0)
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(img, txt, good, ks=(0,))


def test_zeroshot_classifier_is_normalised_template_mean():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(5, 3, 8))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    mean = emb.mean(axis=1)
    want = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
    np.testing.assert_allclose(zeroshot_classifier(emb), want, rtol=1e-5, atol=1e-6)
    # Two opposite templates cancel: the class embedding is zero, not NaN.
    opposite = np.stack([emb[:, 0], -emb[:, 0]], axis=1)
    np.testing.assert_array_equal(zeroshot_classifier(opposite), 0.0)
    with pytest.raises(ValueError, match=r"emb\[:, None, :\]"):
        zeroshot_classifier(emb[:, 0])


def test_zeroshot_accuracy_matches_numpy_topk():
    rng = np.random.default_rng(4)
    n, c = 400, 20
    img, classifier = grid_embeddings(rng, n, 6), grid_embeddings(rng, c, 6)
    labels = rng.integers(0, c, size=n)
    got = zeroshot_accuracy(img, classifier, labels, ks=(1, 5), chunk_size=128)
    scores = img.astype(np.float64) @ classifier.astype(np.float64).T
    dists = [brute_rank(s, np.arange(c) == y) for s, y in zip(scores, labels)]
    assert got == pytest.approx(
        {f"top{k}": 100 * np.mean(expectation(dists, lambda r: r <= k)) for k in (1, 5)},
        rel=1e-9)
    assert 0 < got["top1"] < got["top5"] < 100


def test_zeroshot_hand_made_and_k_above_classes():
    classifier = np.eye(3, dtype=np.float32)
    img = np.array([[1, 0.5, 0], [0.2, 0.1, 0.9], [0.5, 0.8, 0.1], [0, 0, 1]], np.float32)
    # True class ranks: 1; 3; 1; 2 or 3 (class 2 beats class 0, class 1 ties with it).
    labels = np.array([0, 1, 1, 0])
    got = zeroshot_accuracy(img, classifier, labels, ks=(1, 2, 5))
    assert got == pytest.approx({"top1": 50.0, "top2": 62.5, "top5": 100.0})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        zeroshot_accuracy(img, classifier, labels + 2)


def test_prompt_templates_have_one_slot():
    assert len(PROMPT_TEMPLATES) >= 3
    for template in PROMPT_TEMPLATES:
        assert template.count("{}") == 1
        assert "dog" in template.format("dog")


def test_chance_levels_are_the_metrics_of_a_uniform_rank():
    # A random ranking puts the pair at each rank 1..n equally often: the metrics of exactly
    # one query per rank are the chance levels the final table prints.
    from xmodal.evaluate.embedding_evals import retrieval_chance
    from xmodal.evaluate.retrieval import rank_summary
    n, ks = 37, (1, 5, 10, 50)
    chance = retrieval_chance(n, ks)
    uniform = rank_summary(np.arange(1, n + 1), ks, "t2i")
    for k, v in uniform.items():
        assert chance[k] == pytest.approx(v), k
    assert chance["t2i_R@50"] == 100.0 and chance["i2t_R@1"] == pytest.approx(100 / 37)
