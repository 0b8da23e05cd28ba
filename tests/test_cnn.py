"""CNN image tower: shapes, pixel normalisation like ViT, errors, two_tower use."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.core.registry import MODELS
from xmodal.nn.cnn import CNN


def images(batch=2, size=16, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3)),
                       jnp.uint8)


@pytest.mark.slow
def test_shape_and_uint8_equals_normalised_float():
    model = CNN(channels=(8, 16), width=12)
    x = images()
    params = model.init(jax.random.key(0), x)
    out = model.apply(params, x)
    assert out.shape == (2, 12) and bool(jnp.all(jnp.isfinite(out)))
    as_float = x.astype(jnp.float32) / 127.5 - 1.0
    np.testing.assert_allclose(model.apply(params, as_float), out, rtol=1e-5, atol=1e-5)
    # The global pool makes the output size independent of the image size.
    assert model.apply(params, images(size=24)).shape == (2, 12)


def test_constant_images_finite():
    model = CNN(channels=(8, 16), width=4)
    x = jnp.full((3, 8, 8, 3), 255, jnp.uint8)
    out = model.apply(model.init(jax.random.key(0), x), x)
    assert bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_allclose(out[0], out[1])


def test_errors():
    with pytest.raises(ValueError, match="batch, height, width"):
        CNN().init(jax.random.key(0), jnp.zeros((8, 8, 3), jnp.uint8))
    with pytest.raises(ValueError, match="too small"):
        CNN(channels=(4, 4, 4, 4, 4)).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3), jnp.uint8))
    with pytest.raises(TypeError, match="uint8"):
        CNN(channels=(4,)).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3), jnp.int32))


@pytest.mark.slow
def test_registered_and_in_two_tower():
    assert MODELS.get("cnn") is CNN
    model = MODELS.get("two_tower")(towers=dict(image=dict(name="cnn", channels=(4, 8), width=8),
                                                text=dict(name="bow_text", width=8, buckets=16)),
                                    embed_dim=6)
    tokens = jnp.asarray([[1, 70, 2, 0], [1, 2, 0, 0]], jnp.int32)
    params = model.init(jax.random.key(0), images(), tokens)
    zi, zt, _ = model.apply(params, images(), tokens)
    assert zi.shape == zt.shape == (2, 6)
    np.testing.assert_allclose(jnp.linalg.norm(zi, axis=1), 1.0, rtol=1e-5)


def test_squeeze_excite_scales_each_channel_by_one_gate_in_0_1():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from xmodal.nn.cnn import SqueezeExcite
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 8)) + 2.0
    se = SqueezeExcite(reduction=1)
    params = se.init(jax.random.key(1), x)
    y = se.apply(params, x)
    ratio = np.asarray(y / x)
    # One gate per (example, channel): the same at every pixel, strictly between 0 and 1.
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1, :1], ratio.shape), rtol=1e-5)
    assert (ratio > 0).all() and (ratio < 1).all() and ratio.std() > 0.01
    # The gate depends on the input's channel means: another input, other gates.
    y2 = se.apply(params, x * jnp.arange(1, 9.0))
    assert not np.allclose(np.asarray(y2 / (x * jnp.arange(1, 9.0)))[:, 0, 0], ratio[:, 0, 0])
