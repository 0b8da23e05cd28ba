"""GQR: BM25, graded nDCG and the folder relevance against hand-computed values, ties broken at
random, the refinement's maths (it moves the primary's candidate distribution onto the target,
and leaves the query alone when the target is the primary's own), and the spec end to end
through the CLI."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from tests.data_helpers import missing
from xmodal.evaluate.lexical import BM25, words
from xmodal.evaluate.ranking import graded_chance, graded_metrics, ndcg_at_k
from xmodal.projects.gqr import refine as gqr
from xmodal.projects.gqr.benchmark import folder_relevance
from xmodal.projects.gqr.fusion import rrf
from xmodal.projects.gqr.transform import from_bytes, gqr_items, to_bytes


def test_words_and_bytes_round_trip():
    assert words("Red-eyed tree_frog, 2 café!") == ["red", "eyed", "tree", "frog", "2", "café"]
    assert from_bytes(to_bytes("café au lait", 4)) == "caf"   # cut at a character boundary
    assert from_bytes(to_bytes("owl", 8)) == "owl"


def test_the_tags_setting_trains_on_title_or_a_tag_and_guides_with_the_title():
    record = {"image": np.zeros((8, 8, 3), np.uint8), "title": b"Red apple",
              "keywords": b"fruit, food, fruit, , apple", "description": b"a snack",
              "folders": b"food/fruit"}
    paper = gqr_items(image_size=8, max_text_len=16, train_text="tags", guide="title",
                      max_tags=2)
    x = paper.map(record)
    tok = paper.tokenizer.encode
    assert from_bytes(x["corpus_bytes"]) == "Red apple"          # the guide reads the title
    np.testing.assert_array_equal(x["corpus"], paper.corpus_tokenizer.encode("Red apple"))
    np.testing.assert_array_equal(x["text"], tok("Red apple"))  # eval: the title
    # title + the first max_tags distinct tags; rows past n_texts stay empty
    assert int(x["n_texts"]) == 3
    for row, text in zip(x["texts"], ("Red apple", "fruit", "food")):
        np.testing.assert_array_equal(row, tok(text))
    drawn = {tuple(paper.augment.random_map(x, np.random.default_rng(s))["text"])
             for s in range(60)}
    assert drawn == {tuple(tok(t)) for t in ("Red apple", "fruit", "food")}
    # the first setting: title to train, keywords + description to guide, nothing drawn
    plain = gqr_items(image_size=8, max_text_len=16)
    y = plain.map(record)
    assert plain.augment is None and "texts" not in y
    assert from_bytes(y["corpus_bytes"]) == "fruit, food, fruit, , apple. a snack"
    with pytest.raises(ValueError, match="guide='caption'; valid: keywords, title"):
        gqr_items(guide="caption")


def test_bm25_matches_the_formula():
    docs = ["cat dog", "cat", "bird bird cat"]
    scores = BM25(docs, k1=1.2, b=0.75).scores(["bird", "cat", "fish"])
    n, avgdl = 3, 2.0
    idf_bird = math.log(1 + (n - 1 + 0.5) / (1 + 0.5))
    bird = idf_bird * 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avgdl))
    np.testing.assert_allclose(scores[0], [0, 0, bird], rtol=1e-6)
    idf_cat = math.log(1 + 0.5 / 3.5)   # in every document: small but positive
    expect = [idf_cat * 2.2 / (1 + 1.2 * (0.25 + 0.75 * dl / avgdl)) for dl in (2, 1, 3)]
    np.testing.assert_allclose(scores[1], expect, rtol=1e-6)
    np.testing.assert_array_equal(scores[2], 0.0)          # an unknown word scores nothing
    with pytest.raises(ValueError, match="at least one document"):
        BM25([])


def test_ndcg_and_r1_by_hand():
    rel = np.array([[1.0, 0.0, 2.0]])
    for gain in ("linear", "exponential"):
        assert ndcg_at_k(np.array([[2, 0, 1]]), rel, 2, gain)[0] == pytest.approx(1.0)
    # Grades 1 then 0 against the ideal 2 then 1: linear gain (trec_eval) 1 / (2 + 1/log2 3),
    # exponential 1 / (3 + 1/log2 3).
    ranked = np.array([[0, 1, 2]])
    assert ndcg_at_k(ranked, rel, 2)[0] == pytest.approx(1 / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(ranked, rel, 2, "exponential")[0] == pytest.approx(1 / (3 + 1 / math.log2(3)))
    with pytest.raises(ValueError, match="gain must be one of linear, exponential"):
        ndcg_at_k(ranked, rel, 2, "log")
    m = graded_metrics(np.array([[0, 2], [2, 0]]), np.array([[1.0, 0, 2], [1.0, 0, 2]]), (2,))
    assert m["R@1"] == pytest.approx(50.0)   # only the second list starts with the top grade
    with pytest.raises(ValueError, match="item indices"):
        ndcg_at_k(np.array([[5]]), rel, 1)


def test_relevance_comes_from_the_folders_a_drawing_is_filed_in():
    queries, rel = folder_relevance([
        ["food/fruit"], ["food/vegetables", "people"], ["food"], ["unsorted/duplicates"],
        ["recreation/games", "computer/games"], ["special/examples"]])
    # Every folder is a query by its own name; "unsorted" is not a subject.
    assert queries == ["computer", "examples", "food", "fruit", "games", "people",
                       "recreation", "special", "vegetables"]
    grade = dict(zip(queries, rel))
    np.testing.assert_array_equal(grade["fruit"], [2, 1, 1, 0, 0, 0])      # parent: food
    np.testing.assert_array_equal(grade["food"], [2, 2, 2, 0, 0, 0])       # and below it
    np.testing.assert_array_equal(grade["games"], [0, 0, 0, 0, 2, 0])      # two folders, one query
    np.testing.assert_array_equal(grade["people"], [0, 2, 0, 0, 0, 0])     # top level: no parent
    np.testing.assert_array_equal(grade["examples"], [0, 0, 0, 0, 0, 2])
    with pytest.raises(ValueError, match="no eval item is filed"):
        folder_relevance([["unsorted"], []])


def test_ties_are_broken_at_random_never_by_position():
    flat = np.zeros((2000, 6))
    first = gqr.top_k_indices(flat, 1)[:, 0]
    counts = np.bincount(first, minlength=6)
    assert counts.min() > 250, counts      # each item first about 1/6 of the time, not item 0
    np.testing.assert_array_equal(first, gqr.top_k_indices(flat, 1)[:, 0])   # seeded
    s = np.array([[0.1, 0.9, 0.5, 0.9]])
    assert set(gqr.top_k_indices(s, 2)[0]) == {1, 3}                # scores still rule
    assert gqr.rank(s)[0, 2:].tolist() == [2, 0]
    # Equal scores over U: the item first is not always the first slot.
    idx, valid = np.tile(np.arange(4), (500, 1)), np.ones((500, 4), bool)
    assert len(set(gqr.order_candidates(np.zeros((500, 4)), idx, valid)[:, 0])) == 4
    # RRF of two constant retrievers is a random order too (no item favoured on average).
    fused = rrf(np.zeros((3000, 3)), np.zeros((3000, 3)))
    assert np.abs(np.bincount(fused.argmax(1), minlength=3) / 3000 - 1 / 3).max() < 0.05


def test_graded_chance_is_what_random_orders_score():
    rng = np.random.default_rng(0)
    rel = rng.choice([0.0, 1.0, 2.0], p=[0.8, 0.15, 0.05], size=(40, 30))
    rel[:, 0] = 2.0
    orders = [np.stack([rng.permutation(30) for _ in range(40)]) for _ in range(400)]
    sampled = [graded_metrics(o, rel, (5,)) for o in orders]
    level = graded_chance(rel, (5,))
    for key in ("nDCG@5", "R@1"):
        assert np.mean([m[key] for m in sampled]) == pytest.approx(level[key], abs=0.4), key
    assert 0 < level["nDCG@5"] < 30


def test_candidates_union_masks_duplicates():
    s1 = np.array([[0.9, 0.8, 0.1, 0.0]])
    s2 = np.array([[0.0, 0.7, 0.9, 0.1]])
    idx, valid = gqr.candidates(s1, s2, 2)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 1]])
    np.testing.assert_array_equal(valid, [[True, True, True, False]])


def test_rrf_scores():
    s1, s2 = np.array([[3.0, 2.0, 1.0]]), np.array([[1.0, 3.0, 2.0]])
    np.testing.assert_allclose(rrf(s1, s2), [[1 / 61 + 1 / 63, 1 / 62 + 1 / 61,
                                              1 / 63 + 1 / 62]])


def _case(seed=0, n=6, d=8):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(1, n, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    q = rng.normal(size=(1, d)).astype(np.float32)
    return q, emb, np.ones((1, n), bool)


@pytest.mark.parametrize("kind", ["kl", "js"])
def test_refinement_moves_the_primary_onto_the_target(kind):
    q, emb, valid = _case()
    s1 = np.einsum("nud,nd->nu", emb, q / np.linalg.norm(q))
    # A target that prefers the primary's *last* candidate: refinement must bring it to the top.
    target = np.full((1, emb.shape[1]), 0.02, np.float32)
    target[0, np.argmin(s1[0])] = 1.0 - 0.02 * (emb.shape[1] - 1)
    refined, losses = gqr.refine(q, emb, valid, target, 0.05, 0.1, steps=200, kind=kind)
    losses = np.asarray(losses)[0]
    assert losses[-1] < 0.2 * losses[0]
    new = np.einsum("nud,nd->nu", emb, np.asarray(refined) / np.linalg.norm(refined))
    assert np.argmax(new[0]) == np.argmin(s1[0])


def test_refinement_with_the_primarys_own_target_keeps_the_query():
    q, emb, valid = _case(1)
    valid[0, -1] = False           # an invalid slot must not leak NaNs into the gradient
    s1 = jnp.einsum("nud,nd->nu", emb, q / np.linalg.norm(q))
    target = gqr.target_mixture(s1, s1 * 0, valid, 0.0, 0.1, 1.0)   # α = 0: the primary's
    refined, losses = gqr.refine(q, emb, valid, target, 1e-2, 0.1, steps=20)
    assert np.all(np.isfinite(np.asarray(refined)))
    losses = np.asarray(losses)[0]
    assert losses[0] == pytest.approx(0.0, abs=1e-6)
    # Adam normalises even round-off gradients to steps of about lr, so the query jitters
    # (the loss stays near 0) but the candidates' order, the method's output, is the primary's.
    assert losses.max() < 1e-2
    new = np.einsum("nud,nd->nu", emb, np.asarray(refined) / np.linalg.norm(refined))
    order = lambda s: np.argsort(-np.where(valid, s, -np.inf)[0])[:valid.sum()]
    np.testing.assert_array_equal(order(new), order(np.asarray(s1)))


def test_target_mixture_is_a_distribution_on_valid_slots():
    s = jnp.array([[1.0, 2.0, 3.0]])
    valid = jnp.array([[True, True, False]])
    p = np.asarray(gqr.target_mixture(s, -s, valid, 0.3, 0.5, 2.0))
    assert p[0, 2] == 0.0 and p.sum() == pytest.approx(1.0)
    a = np.exp(np.array([1, 2]) / 0.5); b = np.exp(-np.array([1, 2]) / 2.0)
    np.testing.assert_allclose(p[0, :2], 0.7 * a / a.sum() + 0.3 * b / b.sum(), rtol=1e-5)
    assert jax.numpy.isfinite(p).all()


@pytest.mark.slow
def test_gqr_spec_through_the_cli(tmp_path):
    """Two steps on tiny OpenClipart, evaluated on its training split (the tiny test split files
    too few folders for a dev and a test query set): every method's row is written."""
    if missing("openclipart/tiny"):
        pytest.skip(missing("openclipart/tiny"))
    wd = tmp_path / "run"
    cli.run("specs/gqr.py:runlocal", wd, "--spec.data.name=openclipart/tiny",
            "--spec.data.eval_split=train", "--spec.train.steps=2",
            "--spec.data.transform.image_size=16", "--spec.evals.gqr.lrs=(0.001,)",
            "--spec.evals.gqr.alphas=(0.3,0.7)")
    final = [json.loads(line) for line in open(wd / "metrics.jsonl")][-1]
    for comp in ("text", "bm25"):
        for method in ("primary", "complementary", "rrf", "minmax", "softmax", "mixture", "gqr",
                       "oracle_single", "oracle_U"):
            value = final[f"eval/{comp}/{method}/nDCG@5"]
            assert 0.0 <= value <= 100.0, (comp, method, value)
        # the oracle over U is a ceiling for every re-ranking of U, the per-query better
        # retriever for each retriever alone
        ndcg = {m: final[f"eval/{comp}/{m}/nDCG@5"] for m in (
            "primary", "complementary", "mixture", "gqr", "oracle_single", "oracle_U")}
        assert ndcg["oracle_U"] >= max(ndcg["mixture"], ndcg["gqr"]) - 1e-6, ndcg
        assert ndcg["oracle_single"] >= max(ndcg["primary"], ndcg["complementary"]) - 1e-6, ndcg
        assert final[f"eval/{comp}/gqr/alpha"] in (0.3, 0.7)
    assert final["eval/queries_dev"] > 0 and final["eval/queries_test"] > 0
    table = (wd / "gqr_table.md").read_text()
    assert "| gqr |" in table and "Complementary: bm25" in table


def test_the_spec_guide_argument_picks_both_sides_of_the_setting():
    from xmodal.core import spec as spec_lib
    paper = spec_lib.load("specs/gqr.py:runlocal,guide=title").data.transform
    assert (paper.train_text, paper.guide) == ("tags", "title")
    first = spec_lib.load("specs/gqr.py:runlocal,guide=keywords").data.transform
    assert (first.train_text, first.guide) == ("title", "keywords")
    with pytest.raises(spec_lib.SpecError, match="guide='ocr'; valid: keywords, title"):
        spec_lib.load("specs/gqr.py:guide=ocr")
