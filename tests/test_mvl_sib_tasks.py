"""MVL-SIB's multiple-choice tasks (xmodal/projects/mvl_sib/tasks.py) on embeddings whose answer
is known: topic-aligned ones score 100 %, random ones chance, and a model that only matches an
item to its own caption gains nothing (its own item is never a reference)."""
import numpy as np
import pytest

from xmodal.projects.mvl_sib import tasks

N_TOPICS, PER_TOPIC, DIM = 6, 40, 32


def topic_data(noise, seed=0):
    rng = np.random.default_rng(seed)
    topic = np.repeat(np.arange(N_TOPICS), PER_TOPIC)
    centres = np.eye(DIM)[:N_TOPICS]
    emb = centres[topic] + noise * rng.normal(size=(len(topic), DIM))
    return emb, topic, np.arange(len(topic))


@pytest.mark.parametrize("k", [1, 3])
def test_topic_aligned_embeddings_answer_every_question(k):
    emb, topic, item = topic_data(noise=0.05)
    text, _, _ = topic_data(noise=0.05, seed=1)
    for task in (tasks.one_to_sets, tasks.set_to_one):
        out = task(text, topic, item, emb, topic, item, k, tasks.rng_for(0, "x", "en"))
        assert tasks.accuracy(out) == (100.0, len(topic))


def test_random_embeddings_score_chance_of_four_options():
    rng = np.random.default_rng(3)
    topic = rng.integers(0, 8, size=3000)
    item = np.arange(3000)
    emb, text = rng.normal(size=(3000, DIM)), rng.normal(size=(3000, DIM))
    for task in (tasks.one_to_sets, tasks.set_to_one):
        acc, n = tasks.accuracy(task(text, topic, item, emb, topic, item, 2,
                                     tasks.rng_for(0, "x")))
        assert n == 3000 and 22.0 < acc < 28.0   # 25 % ± 3 sd of 3,000 draws


@pytest.mark.parametrize("shape", ["one_to_sets", "set_to_one"])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_a_collapsed_model_scores_chance(shape, modality):
    # Every embedding the same vector: every option ties, and every question is worth 1/4 (the
    # truth is listed first, so first-of-equal-maxima would have scored 100 %).
    rng = np.random.default_rng(5)
    topic = rng.integers(0, 8, size=400)
    item = np.arange(400)
    same = np.ones((400, DIM))
    # Cross-modal: references are "images" (another array); text-only: the sentences themselves.
    refs = same.copy() if modality == "image" else same
    outcomes = getattr(tasks, shape)(same, topic, item, refs, topic, item, 2,
                                     tasks.rng_for(0, shape, modality))
    assert tasks.accuracy(outcomes) == (pytest.approx(25.0), 400)


def test_ties_count_as_the_share_of_a_random_tie_break():
    # Two of four topics look exactly alike to the model: the truth ties with one distractor
    # and each such question is worth 1/2.
    topic = np.repeat(np.arange(4), 10)
    item = np.arange(40)
    centres = np.eye(DIM)[[0, 0, 1, 2]]          # topics 0 and 1 share a direction
    emb = centres[topic]
    out = tasks.one_to_sets(emb, topic, item, emb, topic, item, 1, tasks.rng_for(0))
    np.testing.assert_allclose(out, np.where(topic < 2, 0.5, 1.0))


def test_own_item_is_never_a_reference():
    # Each caption equals its own image and nothing encodes the topic: with k = 1 the query's
    # own image among the references would answer it every time; excluded, only chance is left.
    rng = np.random.default_rng(4)
    topic = rng.integers(0, 6, size=1200)
    item = np.arange(1200)
    emb = rng.normal(size=(1200, 256))
    for task in (tasks.one_to_sets, tasks.set_to_one):
        acc, _ = tasks.accuracy(task(emb, topic, item, emb, topic, item, 1,
                                     tasks.rng_for(0, "x")))
        assert 20.0 < acc < 30.0


def test_questions_are_fixed_by_seed_task_and_language():
    emb, topic, item = topic_data(noise=1.5)
    text, _, _ = topic_data(noise=1.5, seed=1)
    ask = lambda *names: tasks.one_to_sets(text, topic, item, emb, topic, item, 2,  # noqa: E731
                                           tasks.rng_for(0, *names))
    np.testing.assert_array_equal(ask("s2i", "fr"), ask("s2i", "fr"))
    assert (ask("s2i", "fr") != ask("s2i", "ja")).any()


def test_a_topic_without_other_references_is_not_asked():
    emb, topic, item = topic_data(noise=0.05)
    topic = topic.copy()
    topic[0] = N_TOPICS          # a topic of one item: no reference besides itself
    emb[0] = np.eye(DIM)[N_TOPICS]
    out = tasks.one_to_sets(emb, topic, item, emb, topic, item, 1, tasks.rng_for(0))
    assert out[0] == -1 and (out[1:] == 1).all()


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown language code\(s\) xx; valid: en, fr"):
        tasks.check_languages(["fr", "xx"], ["fr", "en"])
    emb, topic, item = topic_data(noise=0.05)
    with pytest.raises(ValueError, match="k .* positive int, got 0"):
        tasks.one_to_sets(emb, topic, item, emb, topic, item, 0, tasks.rng_for(0))
    with pytest.raises(ValueError, match="n_options must be an int of at least 2"):
        tasks.set_to_one(emb, topic, item, emb, topic, item, 1, tasks.rng_for(0), n_options=1)


def test_resource_trend_fits_points_per_decade():
    counts = {"en": 1000, "fr": 100, "ku": 10, "oc": 1}
    acc = {code: 20.0 + 10.0 * np.log10(n) for code, n in counts.items()}
    trend = tasks.resource_trend(acc, counts)
    assert trend["slope_per_decade"] == pytest.approx(10.0)
    assert trend["spearman"] == pytest.approx(1.0) and trend["languages"] == 4
    with pytest.raises(ValueError, match="at least 3 languages"):
        tasks.resource_trend({"en": 1.0}, counts)
