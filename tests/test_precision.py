"""Mixed-precision matmul: values and gradients against f64 numpy, dtypes, and the HLO it emits."""
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from xmodal.core.precision import Policy
from xmodal.nn.precision import dot_general_for, mixed_dot_general

# bf16 keeps 8 significand bits: relative rounding 2^-8 per operand; sums of products of
# rounded values stay within a few of those relative to the largest entry.
BF16_TOL = 3e-2


def close(actual, expected, tol=BF16_TOL):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    err = np.max(np.abs(actual - expected)) / np.max(np.abs(expected))
    assert err < tol, f"relative error {err:.3g} >= {tol}"


def randn(rng, shape, dtype=jnp.float32):
    return jnp.asarray(rng.standard_normal(shape), dtype)


def value_and_grads(dot, lhs, rhs, dims, cot, jit):
    """out = dot(lhs, rhs) and the gradients of sum(out * cot) w.r.t. lhs and rhs."""
    def f(a, b):
        out = dot(a, b, dims)
        return jnp.sum(out.astype(jnp.float32) * cot), out
    fn = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)
    (_, out), grads = (jax.jit(fn) if jit else fn)(lhs, rhs)
    return out, grads


@pytest.mark.parametrize("jit", [False, True])
def test_dense_shaped_matches_f64_reference(jit):
    rng = np.random.default_rng(0)
    x, w = randn(rng, (3, 5, 24)), randn(rng, (24, 16))
    cot = randn(rng, (3, 5, 16))
    out, (dx, dw) = value_and_grads(mixed_dot_general, x, w, (((2,), (0,)), ((), ())), cot, jit)
    xn, wn, cn = (np.asarray(a, np.float64) for a in (x, w, cot))
    close(out, xn @ wn)
    close(dx, cn @ wn.T)                                  # d/dx sum(c * xw) = c w^T
    close(dw, np.einsum("bmk,bmn->kn", xn, cn))           # d/dw sum(c * xw) = x^T c
    assert out.dtype == jnp.float32 and dx.dtype == jnp.float32 and dw.dtype == jnp.float32


@pytest.mark.parametrize("jit", [False, True])
def test_attention_shaped_matches_f64_reference(jit):
    rng = np.random.default_rng(1)
    b, q_len, k_len, h, d = 2, 6, 7, 3, 8
    q, k = randn(rng, (b, q_len, h, d), jnp.bfloat16), randn(rng, (b, k_len, h, d), jnp.bfloat16)
    v = randn(rng, (b, k_len, h, d), jnp.bfloat16)
    qn, kn, vn = (np.asarray(a, np.float64) for a in (q, k, v))

    # "bqhd,bkhd->bhqk"
    cot = randn(rng, (b, h, q_len, k_len))
    logits, (dq, dk) = value_and_grads(mixed_dot_general, q, k,
                                       (((3,), (3,)), ((0, 2), (0, 2))), cot, jit)
    cn = np.asarray(cot, np.float64)
    close(logits, np.einsum("bqhd,bkhd->bhqk", qn, kn))
    close(dq, np.einsum("bhqk,bkhd->bqhd", cn, kn))
    close(dk, np.einsum("bhqk,bqhd->bkhd", cn, qn))

    # "bhqk,bkhd->bhqd"
    p = randn(rng, (b, h, q_len, k_len), jnp.bfloat16)
    cot = randn(rng, (b, h, q_len, d))
    out, (dp, dv) = value_and_grads(mixed_dot_general, p, v,
                                    (((3,), (1,)), ((0, 1), (0, 2))), cot, jit)
    pn, cn = np.asarray(p, np.float64), np.asarray(cot, np.float64)
    close(out, np.einsum("bhqk,bkhd->bhqd", pn, vn))
    close(dp, np.einsum("bhqd,bkhd->bhqk", cn, vn))
    close(dv, np.einsum("bhqd,bhqk->bkhd", cn, pn))
    # bf16 operands in, bf16 results and gradients out.
    assert {logits.dtype, dq.dtype, dk.dtype, out.dtype, dp.dtype, dv.dtype} == {
        jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize("lhs_shape, rhs_shape, dims", [
    ((5, 3, 4), (3, 4, 7), (((1, 2), (0, 1)), ((), ()))),      # two contracted axes
    ((4, 3, 5), (6, 4, 5), (((2, 0), (2, 1)), ((), ()))),      # contracted axes out of order
    ((3, 4, 5), (5, 3, 6), (((2,), (0,)), ((0,), (1,)))),      # batch axis not leading on rhs
    ((2, 16, 3, 8), (3, 8, 32), (((2, 3), (0, 1)), ((), ()))),  # attention output projection
])
def test_general_dimension_numbers_match_f32_autodiff(lhs_shape, rhs_shape, dims):
    rng = np.random.default_rng(2)
    lhs, rhs = randn(rng, lhs_shape), randn(rng, rhs_shape)
    ref_out = lax.dot_general(lhs, rhs, dims, precision=lax.Precision.HIGHEST)
    cot = randn(rng, ref_out.shape)
    ref_grads = jax.grad(lambda a, b: jnp.sum(
        lax.dot_general(a, b, dims, precision=lax.Precision.HIGHEST) * cot), (0, 1))(lhs, rhs)
    out, grads = value_and_grads(mixed_dot_general, lhs, rhs, dims, cot, jit=True)
    close(out, ref_out)
    for g, ref in zip(grads, ref_grads):
        close(g, ref)


def test_output_and_gradient_dtypes():
    x = jnp.ones((4, 8), jnp.bfloat16)
    w = jnp.ones((8, 2), jnp.float32)
    dims = (((1,), (0,)), ((), ()))
    assert mixed_dot_general(x, x.T, dims).dtype == jnp.bfloat16
    assert mixed_dot_general(x, w, dims).dtype == jnp.float32  # result_type(bf16, f32)
    assert mixed_dot_general(x, x.T, dims, preferred_element_type=jnp.float32).dtype == jnp.float32
    # An f32 parameter used by bf16 activations gets an f32 gradient; the activation a bf16 one.
    dx, dw = jax.grad(lambda a, b: jnp.sum(mixed_dot_general(a, b.astype(jnp.bfloat16), dims)
                                           .astype(jnp.float32)), (0, 1))(x, w)
    assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dw), np.full((8, 2), 4.0))  # column sums of ones(4, 8)


def test_flax_dense_params_stay_f32_with_f32_gradients():
    layer = nn.Dense(16, dtype=jnp.bfloat16, param_dtype=jnp.float32,
                     dot_general=mixed_dot_general)
    x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 32)), jnp.float32)
    params = layer.init(jax.random.key(0), x)["params"]
    y = layer.apply({"params": params}, x)
    assert y.dtype == jnp.bfloat16 and params["kernel"].dtype == jnp.float32
    grads = jax.jit(jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x).astype(
        jnp.float32) ** 2)))(params)
    assert grads["kernel"].dtype == jnp.float32 and grads["bias"].dtype == jnp.float32
    ref = np.asarray(x, np.float64) @ np.asarray(params["kernel"], np.float64)
    close(y, ref + np.asarray(params["bias"]))


DOT_RE = re.compile(r"stablehlo\.dot_general.*?:\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)\s*->"
                    r"\s*(tensor<[^>]*>)")


def dot_types(fn, *args):
    """(lhs, rhs, result) element types of every dot_general in fn's lowered StableHLO."""
    text = jax.jit(fn).lower(*args).as_text()
    return [tuple(t.rsplit("x", 1)[-1].rstrip(">") for t in m.groups())
            for m in DOT_RE.finditer(text)]


def test_jitted_grad_hlo_has_only_bf16_operand_dots():
    x = jnp.ones((8, 32), jnp.float32)
    w = jnp.ones((32, 16), jnp.float32)
    dims = (((1,), (0,)), ((), ()))

    def loss(dot):
        return jax.grad(lambda a, b: jnp.sum(jnp.sin(dot(a, b, dims))), (0, 1))

    mixed = dot_types(loss(mixed_dot_general), x, w)
    assert len(mixed) == 3, mixed  # forward, d/dlhs, d/drhs
    assert all(t == ("bf16", "bf16", "f32") for t in mixed), mixed

    # The regression the custom VJP exists for: plain autodiff of a bf16 x bf16 -> f32 product
    # transposes it with the f32 cotangent, giving f32 x bf16 backward products.
    def plain(a, b, dims):
        return lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), dims,
                               preferred_element_type=jnp.float32)
    plain_types = dot_types(loss(plain), x, w)
    assert any("f32" in t[:2] for t in plain_types), plain_types


def test_bad_input_errors_name_the_fix():
    x = jnp.ones((2, 3))
    dims = (((1,), (0,)), ((), ()))
    with pytest.raises(TypeError, match="floating point"):
        mixed_dot_general(x.astype(jnp.int32), x.T.astype(jnp.int32), dims)
    with pytest.raises(NotImplementedError, match="with_sharding_constraint"):
        mixed_dot_general(x, x.T, dims, out_sharding=object())
    with pytest.raises(ValueError, match="dimension_numbers"):
        mixed_dot_general(x, x.T, (1, 0))


def test_policy():
    assert Policy() == Policy(param_dtype=jnp.float32, compute_dtype=jnp.bfloat16)
    assert Policy.from_name("bf16") == Policy()
    assert Policy.from_name("f32").compute_dtype == jnp.float32
    pol = Policy.from_spec({"compute_dtype": "bfloat16", "param_dtype": "float32"})
    assert pol == Policy()
    assert Policy.from_spec(pol) is pol
    assert dot_general_for(pol.compute_dtype) is mixed_dot_general
    assert dot_general_for(jnp.float32) is lax.dot_general
    with pytest.raises(ValueError, match="bf16, f32"):
        Policy.from_name("fp8")
    with pytest.raises(ValueError, match="valid keys: param_dtype, compute_dtype"):
        Policy.from_mapping({"compute": "bfloat16"})
    with pytest.raises(ValueError, match="not a dtype name"):
        Policy.from_mapping({"compute_dtype": "bfloat"})
    with pytest.raises(ValueError, match="floating"):
        Policy.from_mapping({"param_dtype": np.int32})


def test_auto_compute_dtype_follows_the_hardware():
    from xmodal.core.precision import Policy, fast_compute_dtype
    want = fast_compute_dtype()
    flags = open("/proc/cpuinfo").read()
    assert want == ("bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32")
    assert Policy.from_mapping({"compute_dtype": "auto"}).compute_dtype == jnp.dtype(want).type
