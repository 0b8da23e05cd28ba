"""bow_text, ngram_text and seq_text: shapes, hashing by hand, padding/order invariances,
empty captions, and use as the text tower of two_tower."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import MODELS
from xmodal.nn.text_towers import BowText, NgramText, SeqText, ngram_hashes, word_hashes

TOK = ByteTokenizer(24)
TOWERS = {
    "bow": lambda: BowText(buckets=64, width=8, mlp_dim=16),
    "ngram": lambda: NgramText(ngrams=(1, 2, 3), buckets=64, width=8, mlp_dim=16),
    "gru": lambda: SeqText(width=8, embed_dim=8, encoder="gru"),
    "gru_last": lambda: SeqText(width=8, embed_dim=8, encoder="gru", pool="last"),
    "conv": lambda: SeqText(width=8, embed_dim=8, encoder="conv", depth=2),
}


def ids(*texts, max_len=24):
    return jnp.asarray(ByteTokenizer(max_len).encode_batch(list(texts)))


def apply(module, tokens, seed=0):
    params = module.init(jax.random.key(seed), tokens)
    return module.apply(params, tokens), params


def test_registered():
    for name in ("bow_text", "ngram_text", "seq_text"):
        assert name in MODELS.names()


def test_word_hashes_by_hand():
    bucket, present = word_hashes(ids("A crow, red-ish."), 1 << 20)
    bucket, present = np.asarray(bucket[0]), np.asarray(present[0])
    # bos + words "a", "crow", "red", "ish": the last byte of each word carries it.
    text = "A crow, red-ish."
    ends = [0] + [1 + i for i, ch in enumerate(text)
                  if ch.isalnum() and (i + 1 == len(text) or not text[i + 1].isalnum())]
    assert np.flatnonzero(present).tolist() == ends
    # Lower-casing: "A" and "a" hash alike; different words hash apart.
    other, _ = word_hashes(ids("a crow red ish"), 1 << 20)
    assert sorted(bucket[present].tolist()) == sorted(
        np.asarray(other[0])[np.asarray(_[0])].tolist())
    assert len(set(bucket[ends[1:]].tolist())) == 4


def test_ngram_counts():
    tokens = ids("abcd")  # bos a b c d eos: 6 non-pad tokens
    for n in (1, 2, 3):
        _, present = ngram_hashes(tokens, n, 97)
        assert int(present.sum()) == 6 - n + 1
    with pytest.raises(ValueError, match="n-gram order"):
        ngram_hashes(tokens, 0, 97)
    # Different orders of the same bytes land in different buckets (almost surely).
    b1, _ = ngram_hashes(ids("ab"), 2, 1 << 20)
    b2, _ = ngram_hashes(ids("ba"), 2, 1 << 20)
    assert int(b1[0, 1]) != int(b2[0, 1])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOWERS))
def test_shape_padding_and_empty(name):
    module = TOWERS[name]()
    tokens = ids("A crow.", "a police officer", "", max_len=20)
    out, params = apply(module, tokens)
    assert out.shape == (3, 8) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    # Padding after the text changes nothing.
    longer = ids("A crow.", "a police officer", "", max_len=28)
    np.testing.assert_allclose(module.apply(params, longer), out, rtol=1e-5, atol=1e-5)
    # An empty caption has a non-zero embedding (its bag holds <s>; the sequence bos/eos).
    assert float(jnp.linalg.norm(out[2])) > 0


def test_bag_of_words_ignores_order_and_case():
    module = TOWERS["bow"]()
    out, _ = apply(module, ids("red fox jumps", "Jumps RED fox"))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-6, atol=1e-6)
    out2, _ = apply(TOWERS["gru"](), ids("red fox jumps", "jumps red fox"))
    assert not np.allclose(out2[0], out2[1])


def test_bad_input():
    with pytest.raises(ValueError, match="integer token ids"):
        BowText(width=4).init(jax.random.key(0), jnp.zeros((2, 4), jnp.float32))
    with pytest.raises(ValueError, match="encoder"):
        SeqText(encoder="lstm").init(jax.random.key(0), ids("x"))
    with pytest.raises(ValueError, match="positive"):
        NgramText(buckets=0).init(jax.random.key(0), ids("x"))


@pytest.mark.slow
@pytest.mark.parametrize("text", ["bow_text", "ngram_text", "seq_text"])
def test_two_tower_text_tower_gradients_finite_on_empty(text):
    model = MODELS.get("two_tower")(
        towers=dict(image=dict(name="cnn", channels=(4, 8), width=8),
                    text=dict(name=text, width=8)), embed_dim=8)
    images = jnp.zeros((2, 8, 8, 3), jnp.uint8)
    tokens = ids("", "", max_len=8)
    params = model.init(jax.random.key(0), images, tokens)

    def loss(p):
        zi, zt, _ = model.apply(p, images, tokens)
        return jnp.sum(zi * zt)
    grads = jax.grad(loss)(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
