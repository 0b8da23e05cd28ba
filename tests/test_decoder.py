"""The Transformer decoder, its key/value cache, the captioner around it, the sequence NLL and
the N×M pair scorer: cached decoding against the uncached reference, known-answer losses, the
blocked pair matrix against one pair at a time."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.core import parallel
from xmodal.core.registry import SpecError
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.inference import captions
from xmodal.losses.sequence import caption_loss, sequence_nll, shift, token_nll
from xmodal.nn.captioner import Captioner
from xmodal.nn.decoder import TransformerDecoder, rotate

ENCODER = dict(name="audio_encoder", sample_rate=16000, n_fft=256, hop=128, n_mels=16,
               channels=(4, 8), width=12, pool="none")


def captioner(**decoder):
    decoder = dict(dict(vocab_size=259, max_len=12, width=16, depth=2, num_heads=2), **decoder)
    return Captioner(encoder=ENCODER, decoder=decoder)


@pytest.fixture(scope="module", params=["learned", "rope"])
def trained_free(request):
    """A randomly initialised captioner (positions learned or rotary, untied head for rope),
    its params and the memory of three random clips."""
    model = captioner(positions=request.param, tie_embedding=request.param == "learned")
    audio = jax.random.normal(jax.random.PRNGKey(0), (3, 4000)) * 0.1
    ids = jnp.asarray(ByteTokenizer(12).encode_batch(["a dog", "rain", "x"]))
    params = model.init(jax.random.PRNGKey(1), audio, ids[:, :-1])["params"]
    # Sharpen the output so decoding paths differ clearly between tokens (random init gives
    # near-uniform logits where ties could hide a wrong cache).
    params = jax.tree.map(lambda x: x * 3.0, params)
    memory = model.apply({"params": params}, audio, method="encode")
    return model, params, memory


def test_memory_is_a_sequence_and_a_pooled_encoder_is_refused():
    model = captioner()
    audio = jnp.zeros((2, 4000))
    ids = jnp.ones((2, 5), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), audio, ids)["params"]
    memory = model.apply({"params": params}, audio, method="encode")
    assert memory.shape == (2, 8, 12)  # 4000 samples / hop 128 = 32 frames, / 2 / 2
    pooled = Captioner(encoder=dict(ENCODER, pool="meanmax"), decoder=dict(max_len=8, width=8))
    with pytest.raises(SpecError, match="pool='none'"):
        pooled.init(jax.random.PRNGKey(0), audio, ids)
    with pytest.raises(SpecError, match="valid keys"):
        Captioner(encoder=ENCODER, decoder=dict(widht=8)).init(jax.random.PRNGKey(0), audio, ids)


def test_the_decoder_is_causal_and_reads_the_memory(trained_free):
    model, params, memory = trained_free
    ids = jnp.asarray(ByteTokenizer(12).encode_batch(["a dog barks", "rain", "x"]))
    logits = model.apply({"params": params}, memory, ids, method="logits")
    changed = ids.at[:, 4:].set(7)  # every later token different
    later = model.apply({"params": params}, memory, changed, method="logits")
    np.testing.assert_allclose(logits[:, :4], later[:, :4], atol=1e-5)
    assert np.abs(np.asarray(logits[:, 4:] - later[:, 4:])).max() > 1e-2
    other = model.apply({"params": params}, memory[::-1], ids, method="logits")
    assert np.abs(np.asarray(logits - other)).max() > 1e-2
    # With the memory dropped, the clip no longer matters: the unconditional pass.
    drop = jnp.ones((3,), bool)
    a = model.apply({"params": params}, memory, ids, drop, method="logits")
    b = model.apply({"params": params}, memory[::-1] * 5, ids, drop, method="logits")
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("method", ["greedy", "beam", "sample"])
def test_cached_decoding_gives_the_uncached_tokens(trained_free, method):
    model, params, memory = trained_free
    kw = dict(beams=3, alpha=0.6, rng=jax.random.PRNGKey(2), top_k=20)
    cached = captions.generate(model, params, memory, method, cached=True, **kw)
    plain = captions.generate(model, params, memory, method, cached=False, **kw)
    np.testing.assert_array_equal(cached, plain)
    body = np.asarray(cached)[:, 1:]
    assert len({tuple(r) for r in body}) == 3  # different clips, different captions
    assert np.all(np.asarray(cached)[:, 0] == 1)


def test_each_cached_step_gives_the_full_pass_logits(trained_free):
    model, params, memory = trained_free
    ids = jnp.asarray(ByteTokenizer(12).encode_batch(["a dog", "rain", "cat"]))
    full = model.apply({"params": params}, memory, ids, method="logits")
    start, step = captions.cached_step(model, params)
    state = start(memory)
    for pos in range(ids.shape[1]):
        logits, state = step(ids[:, pos], state)
        np.testing.assert_allclose(logits, full[:, pos], atol=2e-4)


def test_rotary_scores_depend_on_the_offset_only():
    q = jax.random.normal(jax.random.PRNGKey(0), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.PRNGKey(1), (1, 1, 1, 8))
    score = lambda p, s: float(jnp.sum(rotate(q, jnp.array([[p]])) *  # noqa: E731
                                       rotate(k, jnp.array([[s]]))))
    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)


def test_token_nll_known_values_and_smoothing():
    logits = jnp.log(jnp.array([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    targets = jnp.array([[0, 2]])
    w = jnp.array([[1.0, 0.0]])
    nll = token_nll(logits, targets, w)
    np.testing.assert_allclose(nll, [[np.log(2), 0.0]], rtol=1e-6)
    smooth = token_nll(logits, targets, w, label_smoothing=0.1)
    expect = 0.9 * np.log(2) + 0.1 * np.mean(-np.log([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(smooth[0, 0], expect, rtol=1e-6)
    np.testing.assert_allclose(sequence_nll(logits, targets, jnp.ones((1, 2))),
                               [np.log(2) - np.log(0.8)], rtol=1e-6)
    loss, aux = caption_loss(logits, targets, jnp.ones((1, 2)))
    np.testing.assert_allclose(loss, (np.log(2) - np.log(0.8)) / 2, rtol=1e-6)
    assert float(aux["token_acc"]) == 1.0
    ids = jnp.array([[1, 70, 71, 2, 0, 0]])
    inputs, targets, weights = shift(ids)
    assert inputs.tolist() == [[1, 70, 71, 2, 0]] and targets.tolist() == [[70, 71, 2, 0, 0]]
    assert weights.tolist() == [[1, 1, 1, 0, 0]]  # eos counts, padding does not


def test_pair_nll_blocks_over_the_mesh_equal_each_pair_alone(trained_free):
    model, params, memory = trained_free
    memory = jnp.concatenate([memory, memory[:2] * -1.0])               # 5 items
    texts = ["a dog", "rain", "x", "a violin", "", "birds sing", "a car horn"]
    ids = ByteTokenizer(12).encode_batch(texts)                          # 7 captions
    mesh = parallel.make_mesh({"data": -1})
    matrix = captions.pair_nll(model, params, np.asarray(memory), ids, mesh, items_per_block=2,
                               captions_per_block=3)
    one = lambda i, j: float(captions.caption_nll(  # noqa: E731
        model, params, memory[i:i + 1], jnp.asarray(ids[j:j + 1]))[0])
    expect = np.array([[one(i, j) for j in range(7)] for i in range(5)])
    np.testing.assert_allclose(matrix, expect, rtol=1e-4)
    assert np.ptp(matrix, axis=0).min() > 1e-3  # items differ for each caption


def test_a_caption_longer_than_the_context_is_one_line():
    model = captioner()
    with pytest.raises(ValueError, match="max_len=12"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4000)), jnp.ones((1, 13), jnp.int32))
    with pytest.raises(ValueError, match="positions"):
        TransformerDecoder(positions="alibi", width=8, num_heads=2).init(
            jax.random.PRNGKey(0), jnp.ones((1, 3), jnp.int32), jnp.zeros((1, 2, 8)))
