"""DiT and U-Net velocity networks: shapes, conditioning paths, text padding invariance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.data.tokenizer import ByteTokenizer
from xmodal.core.registry import MODELS
from xmodal.nn.dit import timestep_embedding

TOK = ByteTokenizer(16)
NETS = {"dit": dict(patch=2, width=32, depth=1, num_heads=2, text_width=16, text_depth=1,
                    text_max_len=16),
        "unet": dict(widths=(8, 16), num_heads=2, text_width=16, text_depth=1, text_max_len=16)}


def _inputs(seed=0):
    r = np.random.default_rng(seed)
    x = jnp.asarray(r.normal(size=(2, 8, 4, 3)).astype(np.float32))
    cond = jnp.asarray(r.normal(size=(2, 8, 4, 3)).astype(np.float32))
    text = jnp.asarray(TOK.encode_batch(["separate the violin", "separate the oboe"]))
    return x, jnp.array([0.1, 0.9]), cond, text


def _perturbed(params, seed=1):
    # Zero-initialised output layers make an untrained net ignore its inputs; perturb them.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape)
                                     for p, k in zip(leaves, keys)])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_shapes_and_every_condition_matters(name):
    net = MODELS.build(name, **NETS[name])
    x, t, cond, text = _inputs()
    params = net.init(jax.random.key(0), x, t, cond, text)
    v = net.apply(params, x, t, cond, text)
    assert v.shape == x.shape and v.dtype == jnp.float32
    # The output layer starts at zero: an untrained velocity is 0 everywhere.
    assert np.allclose(v, 0.0)
    p = _perturbed(params)
    base = net.apply(p, x, t, cond, text)
    assert not np.allclose(base, net.apply(p, x, t + 0.3, cond, text))
    assert not np.allclose(base, net.apply(p, x, t, cond + 1.0, text))
    assert not np.allclose(base, net.apply(p, x, t, cond, text[::-1]))


@pytest.mark.parametrize("name", sorted(NETS))
def test_text_padding_does_not_change_the_output(name):
    net = MODELS.build(name, **NETS[name])
    x, t, cond, text = _inputs()
    # Jitted: one program each (read back from the compilation cache), not hundreds of ops.
    params = _perturbed(jax.jit(net.init)(jax.random.key(0), x, t, cond, text))
    short = jnp.asarray(ByteTokenizer(12).encode_batch(["separate the violin", "the oboe"]))
    longer = jnp.pad(short, ((0, 0), (0, 4)))
    apply = jax.jit(net.apply)
    np.testing.assert_allclose(apply(params, x, t, cond, short),
                               apply(params, x, t, cond, longer), atol=1e-5)


@pytest.mark.parametrize("name", sorted(NETS))
def test_bad_latent_shapes_raise(name):
    net = MODELS.build(name, **NETS[name])
    x, t, cond, text = _inputs()
    with pytest.raises(ValueError, match="latent"):
        net.init(jax.random.key(0), x[:, :7], t, cond[:, :7], text)
    with pytest.raises(ValueError, match="condition latent"):
        net.init(jax.random.key(0), x, t, cond[:, :4], text)


def test_timestep_embedding_hand_computed():
    e = timestep_embedding(jnp.array([0.0, 0.001]), 4)
    # freqs = [1, 10000^-0.5 = 0.01]; args = 1000 t freqs
    expected = np.array([[1, 1, 0, 0],
                         [np.cos(1.0), np.cos(0.01), np.sin(1.0), np.sin(0.01)]])
    np.testing.assert_allclose(e, expected, rtol=1e-5, atol=1e-6)
