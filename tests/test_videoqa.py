"""Two-stream video QA: the smoothed ranking loss, the transform's clips and questions, the
streams' ablations, the evaluator on a trained tiny run, and the spec end to end."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.core.writers import read_metrics
from xmodal.losses.choice import smoothed_ranking_loss

needs_data = skip_unless_installed("sprite_videos/tiny")


# ------------------------------------------------------------------------------------ loss

def brute_force(scores, answer, margin, gamma):
    out = []
    for s, y in zip(scores, answer):
        terms = [np.exp(gamma * (margin - s[y] + s[j])) for j in range(len(s)) if j != y]
        out.append(np.log1p(np.sum(terms)) / gamma)
    return np.array(out)


def test_smoothed_ranking_loss_matches_its_formula_and_skips_padding():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(6, 5)).astype(np.float32)
    answer = rng.integers(0, 5, 6)
    valid = np.array([1, 1, 0, 1, 1, 0], np.float32)
    loss, aux = smoothed_ranking_loss(jnp.asarray(scores), jnp.asarray(answer),
                                      jnp.asarray(valid), margin=0.5, gamma=2.0)
    want = brute_force(scores, answer, 0.5, 2.0)[valid > 0].mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    hits = (scores[np.arange(6), answer] > np.where(np.eye(5)[answer] > 0, -np.inf,
                                                   scores).max(1))[valid > 0]
    assert float(aux["accuracy"]) == pytest.approx(hits.mean())


def test_smoothed_ranking_loss_limits():
    rng = np.random.default_rng(1)
    scores = jnp.asarray(rng.normal(size=(8, 5)).astype(np.float32))
    answer = jnp.asarray(rng.integers(0, 5, 8))
    valid = jnp.ones(8)
    # margin 0, gamma 1: the softmax cross-entropy over the candidates.
    loss, _ = smoothed_ranking_loss(scores, answer, valid, margin=0.0, gamma=1.0)
    ce = -jax.nn.log_softmax(scores)[jnp.arange(8), answer].mean()
    np.testing.assert_allclose(float(loss), float(ce), rtol=1e-5)
    # Large gamma: the hinge on the hardest wrong candidate.
    loss, _ = smoothed_ranking_loss(scores, answer, valid, margin=1.0, gamma=200.0)
    right = scores[jnp.arange(8), answer]
    wrong = jnp.where(jax.nn.one_hot(answer, 5) > 0, -jnp.inf, scores).max(1)
    np.testing.assert_allclose(float(loss), float(jnp.maximum(0, 1 - right + wrong).mean()),
                               atol=0.02)
    # Equal scores: the truth is not a strict winner (a tie is no hit).
    _, aux = smoothed_ranking_loss(jnp.zeros((3, 5)), jnp.zeros(3, int), jnp.ones(3))
    assert float(aux["accuracy"]) == 0.0
    with pytest.raises(ValueError, match="need answer and valid of shape"):
        smoothed_ranking_loss(scores, answer[:4], valid)


# ------------------------------------------------------------------------------- transform

@pytest.fixture(scope="module")
def transform():
    from xmodal.core.registry import TRANSFORMS
    return TRANSFORMS.build("videoqa", vocabulary_from="sprite_videos/tiny", frames=8, stride=2,
                            max_questions=14)


@pytest.fixture(scope="module")
def record():
    from xmodal.core import datasets as sources
    return sources.data_source("sprite_videos/tiny", "train")[3]


@needs_data
def test_transform_keeps_every_question_and_the_clip(transform, record):
    out = transform.map(record)
    n = len(record["question"])
    assert out["valid"].tolist() == [1.0] * n + [0.0] * (14 - n)
    assert out["qtype"][:n].tolist() == [int(t) for t in record["qtype"]]
    assert (out["qtype"][n:] == -1).all()
    # Uniform eval clip: frames 1, 3, ..., 15 of the 16, flow of the same frames.
    np.testing.assert_array_equal(out["video"], record["video"][1::2])
    np.testing.assert_array_equal(out["flow"], record["flow"][[1, 3, 5, 7, 9, 11, 13, 14]])
    words = transform.tokenizer.decode(out["question"][0])
    assert words == record["question"][0].decode().lower().replace("?", " ?")
    right = out["candidates"][0, out["answer"][0]]
    assert transform.answers.decode(right) == record["candidates"][
        5 * 0 + int(record["answer"][0])].decode().lower()


@needs_data
def test_training_clips_are_drawn_per_record_and_reproducible(transform, record):
    starts = {int(np.flatnonzero((transform.random_map(record, np.random.default_rng(s))
                                  ["video"][0] == record["video"]).all(axis=(1, 2, 3)))[0])
              for s in range(20)}
    assert starts == {0, 1}           # 8 frames 2 apart of 16: start 0 or 1
    a = transform.random_map(record, np.random.default_rng(5))
    b = transform.random_map(record, np.random.default_rng(5))
    np.testing.assert_array_equal(a["video"], b["video"])
    # A random subset of train_questions questions, each with its own candidates and answer.
    n = len(record["question"])
    assert a["question"].shape[0] == transform.train_questions < n
    texts = [transform.tokenizer.decode(t) for t in transform.tokenizer.encode_batch(
        record["question"])]
    picked = []
    for row in range(transform.train_questions):
        i = texts.index(transform.tokenizer.decode(a["question"][row]))
        picked.append(i)
        right = record["candidates"][5 * i + int(record["answer"][i])].decode().lower()
        assert transform.answers.decode(a["candidates"][row, a["answer"][row]]) == right
        assert a["qtype"][row] == record["qtype"][i]
    assert picked == sorted(picked) and len(set(picked)) == len(picked)
    other = transform.random_map(record, np.random.default_rng(6))
    assert not np.array_equal(other["question"], a["question"])


@needs_data
def test_transform_bad_input_is_one_line(transform, record):
    broken = dict(record, candidates=list(record["candidates"])[:-1])
    with pytest.raises(ValueError, match=r"questions need \d+ candidates"):
        transform.map(broken)
    short = dict(record, video=record["video"][:6], masks=record["masks"][:6],
                 flow=record["flow"][:5])
    with pytest.raises(ValueError, match="video of 6 frames is shorter than the clip"):
        transform.random_map(short, np.random.default_rng(0))
    small = dict(record, video=record["video"][:, :80, :80], masks=record["masks"][:, :80, :80],
                 flow=record["flow"][:, :80, :80])
    with pytest.raises(ValueError, match="frames of 80 x 80, the transform's frame_size is 96"):
        transform.map(small)
    resized = dict(record, masks=record["masks"][:, :90])
    with pytest.raises(ValueError, match="'masks' of shape .* does not match"):
        transform.map(resized)


# ----------------------------------------------------------------------------------- model

def _inputs(rng, b=2, q=3):
    return (jnp.asarray(rng.integers(0, 255, (b, 4, 32, 32, 3)), jnp.uint8),
            jnp.asarray(rng.normal(size=(b, 4, 32, 32, 2)), jnp.float32),
            jnp.asarray(rng.integers(1, 20, (b, q, 6)), jnp.int32),
            jnp.asarray(rng.integers(1, 20, (b, q, 5, 4)), jnp.int32))


@pytest.mark.parametrize("streams,changed,unchanged", [
    (("text",), "question", "video"), (("rgb",), "video", "flow"), (("flow",), "flow", "video"),
    (("rgb", "flow"), "flow", None)])
def test_each_stream_reads_its_own_input(streams, changed, unchanged):
    from xmodal.projects.videoqa.model import VideoQA
    small = dict(channels=(4, 8), width=8, pool=2)
    model = VideoQA(vocab_size=32, streams=streams, embed_dim=8, hidden=8, rgb=small,
                    flow=small, dropout=0.0)
    rng = np.random.default_rng(0)
    video, flow, question, candidates = _inputs(rng)
    params = model.init(jax.random.key(0), video, flow, question, candidates)
    base = model.apply(params, video, flow, question, candidates)
    assert base.shape == (2, 3, 5)
    names = {"video": 0, "flow": 1, "question": 2}
    moved = [video, flow, question]
    if changed:
        alt = list(moved)
        alt[names[changed]] = jnp.asarray(_inputs(np.random.default_rng(9))[names[changed]])
        assert not np.allclose(model.apply(params, *alt, candidates), base)
    if unchanged:
        alt = list(moved)
        alt[names[unchanged]] = jnp.asarray(_inputs(np.random.default_rng(9))[names[unchanged]])
        np.testing.assert_array_equal(model.apply(params, *alt, candidates), base)
    # Padding words (id 0) past a question's end change nothing.
    padded = question.at[:, :, -1].set(0)
    again = model.apply(params, video, flow, padded.at[:, :, -1].set(0), candidates)
    np.testing.assert_allclose(again, model.apply(params, video, flow, padded, candidates))
    with pytest.raises(ValueError, match="each must be one of rgb, flow, text"):
        VideoQA(vocab_size=32, streams=("audio",)).init(jax.random.key(0), video, flow,
                                                        question, candidates)


# ------------------------------------------------------------------------------- end to end

@needs_data
def test_the_tiny_spec_trains_and_evaluates(tmp_path):
    import subprocess
    import sys
    wd = tmp_path / "vqa"
    r = subprocess.run([sys.executable, "-m", "xmodal.main", "--spec=specs/videoqa.py:tiny",
                        f"--workdir={wd}"], cwd=cli.ROOT, env=cli.env(), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [r for r in read_metrics(str(wd)) if "eval/acc" in r]
    assert rows and rows[-1]["step"] == 2
    last = rows[-1]
    # Every question of the dev split (16 clips) is scored, each type reported.
    from xmodal.core import datasets as sources
    dev = sources.data_source("sprite_videos/tiny", "dev")
    assert last["eval/questions"] == sum(len(dev[i]["question"]) for i in range(len(dev)))
    for key in ("eval/acc_count", "eval/acc_first_action", "eval/acc_direction"):
        assert 0.0 <= last[key] <= 100.0
