"""The evaluators' Applier: any function of the parameters over arrays, chunked and sharded."""
import jax.numpy as jnp
import numpy as np
import pytest

from xmodal.core import parallel
from xmodal.core.eval_context import Applier, EvalContext


def _mesh():
    return parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1})


def test_applier_matches_unchunked_over_several_arrays_and_pytree_outputs():
    applier = Applier(_mesh(), batch_size=16)   # 8 devices: chunks of 16
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(37, 3)).astype(np.float32), rng.normal(size=(37,)).astype(np.float32)
    params = {"w": jnp.asarray([1.0, 2.0, 3.0])}

    def fn(p, a, b):
        return {"dot": a @ p["w"] + b, "sq": a ** 2}

    out = applier(fn, params, x, y)   # 37 rows: two full chunks and one padded
    np.testing.assert_allclose(out["dot"], x @ np.array([1.0, 2.0, 3.0]) + y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["sq"], x ** 2, rtol=1e-6)
    assert len(applier._jitted) == 1
    applier(fn, params, x[:5], y[:5])      # the same function is not compiled again
    assert len(applier._jitted) == 1


def test_applier_rejects_mismatched_lengths():
    applier = Applier(_mesh(), batch_size=8)
    with pytest.raises(ValueError, match="differ in length"):
        applier(lambda p, a, b: a, {}, np.zeros((4, 1)), np.zeros((5, 1)))


def test_context_apply_model_uses_the_named_group():
    import flax.linen as nn

    class Scale(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("s", nn.initializers.constant(2.0), ())

        def double(self, x):
            return self(x) * 2

    model = Scale()
    ctx = EvalContext(arrays={}, class_names=[], model=model, applier=Applier(_mesh(), 8),
                      params={"model": {"s": jnp.asarray(3.0)}, "other": {"s": jnp.asarray(5.0)}})
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_allclose(ctx.apply_model("double", x), x * 6)
    np.testing.assert_allclose(ctx.apply_model("double", x, group="other"), x * 10)
    with pytest.raises(ValueError, match="no tokenizer"):
        ctx.tokenize(["a"])
