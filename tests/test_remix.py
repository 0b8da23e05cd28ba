"""Dynamic mixing inside a batch (xmodal.audio.remix)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.audio.remix import remix


def _batch(b=64, t=32, seed=0):
    r = np.random.default_rng(seed)
    target = jnp.asarray(r.normal(size=(b, t)), jnp.float32)
    mixture = target + jnp.asarray(r.normal(size=(b, t)), jnp.float32)
    return target, mixture


def test_remix_swaps_in_the_neighbours_interference_at_the_asked_rate():
    target, mixture = _batch()
    out = remix(jax.random.key(0), target, mixture, prob=0.5)
    residual = np.asarray(out - target)
    own = np.all(np.isclose(residual, mixture - target, atol=1e-6), axis=1)
    theirs = np.all(np.isclose(residual, np.roll(mixture - target, 1, axis=0), atol=1e-6), axis=1)
    assert np.all(own ^ theirs)              # each example: its own or its neighbour's
    assert 20 <= theirs.sum() <= 44          # ~half of 64
    # prob 0 changes nothing; prob 1 swaps every example; same key, same draw.
    np.testing.assert_array_equal(remix(jax.random.key(0), target, mixture, 0.0), mixture)
    all_swapped = remix(jax.random.key(1), target, mixture, 1.0)
    np.testing.assert_allclose(all_swapped - target, np.roll(mixture - target, 1, axis=0),
                               atol=1e-6)
    np.testing.assert_array_equal(remix(jax.random.key(0), target, mixture, 0.5), out)


def test_remix_gain_stays_in_range():
    target, mixture = _batch()
    out = remix(jax.random.key(2), target, mixture, prob=1.0, gain_db=6.0)
    other = np.roll(np.asarray(mixture - target), 1, axis=0)
    gain = np.asarray(out - target)[:, 0] / other[:, 0]
    db = 20 * np.log10(gain)
    assert np.all(np.abs(db) <= 6.0 + 1e-4) and db.std() > 1.0
    with pytest.raises(ValueError, match="prob"):
        remix(jax.random.key(0), target, mixture, prob=1.5)
