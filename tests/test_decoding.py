"""Greedy, sampled and beam decoding (xmodal.decoding) against known answers: hand-made
next-token tables whose best sequences are found by enumerating every sequence."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal import decoding

PAD, BOS, EOS, A, B = 0, 1, 2, 3, 4
V = 5


def table_step(logp: np.ndarray):
    """A second-order model: the next token's log-probabilities depend on the last two tokens,
    read from the state (the tokens fed so far, [N, L], with a position counter), so a beam
    search that reorders the state wrongly reads the wrong history."""
    table = jnp.asarray(logp, jnp.float32)  # [V, V, V]: (token before last, last) -> next

    def step(ids, state):
        history, pos = state
        history = jax.lax.dynamic_update_slice_in_dim(history, ids[:, None], pos, 1)
        before = jnp.where(pos > 0, history[:, jnp.maximum(pos - 1, 0)], BOS)
        return table[before, ids], (history, pos + 1)
    return step


def random_table(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(V, V, V)) * 2.0
    logits[..., EOS] -= 2.0  # long sequences compete, so the history (the state) matters
    logits[..., PAD] = -1e9  # the model never emits pad or bos itself
    logits[..., BOS] = -1e9
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def best_by_enumeration(logp, max_len, alpha):
    """The highest ``log p / length_penalty`` over every sequence a decoder can produce in a
    buffer of ``max_len``: ends at eos, or fills the buffer."""
    return ranked_by_enumeration(logp, max_len, alpha)[0]


def ranked_by_enumeration(logp, max_len, alpha):
    """Every such sequence as (score, ids), best first."""
    ranked = []
    for n in range(1, max_len):
        for body in itertools.product([EOS, A, B], repeat=n):
            if EOS in body[:-1]:
                continue
            if body[-1] != EOS and n < max_len - 1:
                continue
            seq, total, prev2, prev = [BOS, *body], 0.0, BOS, BOS
            for tok in body:
                total += logp[prev2, prev, tok]
                prev2, prev = prev, tok
            score = total / float(decoding.length_penalty(jnp.asarray(n), alpha))
            ranked.append((score, seq + [PAD] * (max_len - 1 - n)))
    return sorted(ranked, key=lambda r: -r[0])


def start(n, max_len):
    return jnp.zeros((n, max_len), jnp.int32), jnp.zeros((), jnp.int32)


@pytest.mark.parametrize("alpha", [0.0, 1.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exhaustive_beam_search_finds_the_enumerated_best(seed, alpha):
    # 5 tokens long, 3 choices per step: 9 beams keep every live prefix but the last step's,
    # so the search is exhaustive and must match enumeration (sequence and score).
    logp, max_len, beams = random_table(seed), 5, 27
    ids, scores = decoding.beam_search(table_step(logp), start(beams, max_len), 1, max_len,
                                       beams=beams, bos_id=BOS, eos_id=EOS, alpha=alpha)
    ranked = ranked_by_enumeration(logp, max_len, alpha)
    # The whole returned beam is the enumeration's top, in order (a search that read a wrong
    # history, e.g. the state not reordered with the beams, scores them differently).
    for k in range(8):
        assert ids[0, k].tolist() == ranked[k][1]
        np.testing.assert_allclose(float(scores[0, k]), ranked[k][0], rtol=1e-5)
    assert sum(1 for _, seq in ranked[:8] if EOS not in seq or seq.index(EOS) > 2) >= 3


def test_beam_finds_what_greedy_misses_and_the_length_penalty_turns_it():
    # After bos: A 0.6, B 0.4. After A: eos 0.3, A 0.36, B 0.34. After B: eos 0.99.
    p = np.full((V, V, V), 1e-9)
    p[:, BOS, [A, B]] = [0.6, 0.4]
    p[:, A, [EOS, A, B]] = [0.3, 0.36, 0.34]
    p[:, B, [EOS, A, B]] = [0.99, 0.005, 0.005]
    logp = np.log(p / p.sum(-1, keepdims=True))
    step, max_len = table_step(logp), 4
    greedy = decoding.greedy(step, start(2, max_len), 2, max_len, bos_id=BOS, eos_id=EOS)
    assert greedy[0].tolist() == [BOS, A, A, A]  # greedy never ends: 0.6 * .36 * .36
    ids, _ = decoding.beam_search(step, start(6, max_len), 2, max_len, beams=3, bos_id=BOS,
                                  eos_id=EOS)
    assert ids[0, 0].tolist() == ids[1, 0].tolist() == [BOS, B, EOS, PAD]  # p = 0.396
    # A strong length penalty prefers a longer hypothesis: A B eos (p = 0.202, 3 tokens,
    # log p / (8/6)^8 = -0.16) over B eos (-0.93 / (7/6)^8 = -0.27).
    best, best_seq = best_by_enumeration(logp, max_len, 8.0)
    ids, _ = decoding.beam_search(step, start(9, max_len), 1, max_len, beams=9, bos_id=BOS,
                                  eos_id=EOS, alpha=8.0)
    assert ids[0, 0].tolist() == best_seq == [BOS, A, B, EOS]


def test_greedy_follows_the_argmax_and_pads_after_eos():
    logp = random_table(3)
    max_len = 6
    ids = np.asarray(decoding.greedy(table_step(logp), start(1, max_len), 1, max_len,
                                     bos_id=BOS, eos_id=EOS))[0]
    expect, prev2, prev, done = [BOS], BOS, BOS, False
    for _ in range(max_len - 1):
        tok = PAD if done else int(np.argmax(logp[prev2, prev]))
        expect.append(tok)
        done = done or tok == EOS
        prev2, prev = prev, tok
    assert ids.tolist() == expect


def test_filter_logits_keeps_the_nucleus_and_the_top_k():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = lambda x: (np.asarray(x) > -1e29).astype(int).tolist()[0]  # noqa: E731
    assert kept(decoding.filter_logits(logits, top_p=0.8)) == [1, 1, 0, 0]
    assert kept(decoding.filter_logits(logits, top_p=0.81)) == [1, 1, 1, 0]
    assert kept(decoding.filter_logits(logits, top_p=0.1)) == [1, 0, 0, 0]
    assert kept(decoding.filter_logits(logits, top_k=3)) == [1, 1, 1, 0]
    # Unsorted input: the nucleus is found by probability, not by position.
    shuffled = logits[:, ::-1]
    assert kept(decoding.filter_logits(shuffled, top_p=0.8)) == [0, 0, 1, 1]
    np.testing.assert_allclose(decoding.filter_logits(logits, temperature=2.0), logits / 2.0)
    with pytest.raises(ValueError, match="temperature"):
        decoding.filter_logits(logits, temperature=0.0)


def test_sampling_draws_from_the_tempered_distribution_and_top_k_1_is_greedy():
    logits = jnp.log(jnp.array([0.0, 0.0, 0.2, 0.5, 0.3]) + 1e-12)
    step = lambda ids, state: (jnp.broadcast_to(logits, (ids.shape[0], V)), state)  # noqa
    n, temperature = 20000, 2.0
    ids = decoding.sample(step, jnp.zeros((n,)), n, 2, rng=jax.random.PRNGKey(0), bos_id=BOS,
                          eos_id=EOS, temperature=temperature)
    freq = np.bincount(np.asarray(ids[:, 1]), minlength=V) / n
    tempered = np.asarray(jax.nn.softmax(logits / temperature))
    np.testing.assert_allclose(freq, tempered, atol=0.015)
    assert abs(freq[A] - 0.5) > 0.05  # the temperature changed it
    one = decoding.sample(table_step(random_table(4)), start(3, 6), 3, 6,
                          rng=jax.random.PRNGKey(1), bos_id=BOS, eos_id=EOS, top_k=1)
    greedy = decoding.greedy(table_step(random_table(4)), start(3, 6), 3, 6, bos_id=BOS,
                             eos_id=EOS)
    np.testing.assert_array_equal(one, greedy)
