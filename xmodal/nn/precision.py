"""A bf16-input, f32-accumulate matrix product with a matching backward pass (the dtype policy
that chooses it is ``xmodal.core.precision.Policy``).

Why a custom VJP: ``lax.dot_general(bf16, bf16, preferred_element_type=f32)`` is the fast path on
CPUs with bf16 matrix units, on TPUs and on GPUs, but plain autodiff of it transposes the product
with the f32 cotangent, so both backward products become f32 x bf16 and fall off the fast path.
:func:`mixed_dot_general` casts the cotangent to bf16 first, so all three products of a layer
(forward, d/dlhs, d/drhs) take bf16 operands and accumulate in f32.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xmodal.core.precision import DotGeneral


def dot_general_for(compute_dtype: Any) -> DotGeneral:
    """The matrix product a layer computing in ``compute_dtype`` should use."""
    if jnp.dtype(compute_dtype) == jnp.bfloat16:
        return mixed_dot_general
    return lax.dot_general


DimensionNumbers = tuple[tuple[tuple[int, ...], tuple[int, ...]],
                         tuple[tuple[int, ...], tuple[int, ...]]]


def _canonical_dims(dimension_numbers: Any) -> DimensionNumbers:
    """Tuples of ints, so the dimension numbers are hashable (custom_vjp static argument)."""
    try:
        (lc, rc), (lb, rb) = dimension_numbers
        return ((tuple(int(i) for i in lc), tuple(int(i) for i in rc)),
                (tuple(int(i) for i in lb), tuple(int(i) for i in rb)))
    except (TypeError, ValueError) as e:
        raise ValueError("dimension_numbers must be ((lhs_contract, rhs_contract), "
                         f"(lhs_batch, rhs_batch)), got {dimension_numbers!r}") from e


def _kept(ndim: int, *removed: Sequence[int]) -> list[int]:
    drop = {i for r in removed for i in r}
    return [i for i in range(ndim) if i not in drop]


def _operand_grad(g: jax.Array, other: jax.Array, dims: DimensionNumbers, x_ndim: int,
                  x_is_lhs: bool, precision: Any) -> jax.Array:
    """``d out / d x`` for ``out = dot_general(x, other)`` (or ``(other, x)``), as a bf16 product.

    ``out`` is laid out ``[batch, lhs_kept, rhs_kept]``. The gradient contracts the cotangent's
    ``other_kept`` axes with ``other``'s kept axes, batched over the batch axes, giving x's
    batch, kept and contracted axes, which are then put back in x's order (the same derivation as
    ``jax.lax``'s transpose rule for ``dot_general``).

    Both operands are transposed to the plain ``[batch, m, k] x [batch, k, n]`` layout, with the
    product ordered so that its result is already in x's layout when x's layout allows (a Dense
    kernel ``[k, n]``: ``x^T g``; an activation ``[.., k]``: ``g w^T``). The optimisation
    barriers keep XLA from folding the transposes back into the dimension numbers: XLA:CPU runs
    bf16 x bf16 -> f32 only in that plain layout and otherwise fails at run time with
    "Unsupported element type for DotThunk".
    """
    (lc, rc), (lb, rb) = dims
    x_contract, o_contract, x_batch, o_batch = (lc, rc, lb, rb) if x_is_lhs else (rc, lc, rb, lb)
    x_kept = _kept(x_ndim, x_contract, x_batch)
    o_kept = _kept(other.ndim, o_contract, o_batch)
    nb = len(x_batch)
    lhs_kept_n = len(x_kept) if x_is_lhs else len(o_kept)
    out_batch = list(range(nb))
    out_lhs_kept = list(range(nb, nb + lhs_kept_n))
    out_rhs_kept = list(range(nb + lhs_kept_n, g.ndim))
    # Axes of g that become x's kept axes, and those contracted with other's kept axes.
    g_x, g_o = (out_lhs_kept, out_rhs_kept) if x_is_lhs else (out_rhs_kept, out_lhs_kept)
    x_axes_g_first = list(x_batch) + x_kept + list(x_contract)
    x_axes_o_first = list(x_batch) + list(x_contract) + x_kept
    o_first = (x_axes_o_first == sorted(x_axes_o_first)
               and x_axes_g_first != sorted(x_axes_g_first))
    if o_first:  # [batch, x_contract, o_kept] . [batch, o_kept, x_kept]
        a = jnp.transpose(other, list(o_batch) + list(o_contract) + o_kept)
        b = jnp.transpose(g, out_batch + g_o + g_x)
        n_free, n_sum, x_axes = len(o_contract), len(o_kept), x_axes_o_first
    else:  # [batch, x_kept, o_kept] . [batch, o_kept, x_contract]
        a = jnp.transpose(g, out_batch + g_x + g_o)
        b = jnp.transpose(other, list(o_batch) + o_kept + list(o_contract))
        n_free, n_sum, x_axes = len(g_x), len(g_o), x_axes_g_first
    a, b = lax.optimization_barrier((a, b))
    grad_dims = ((tuple(range(nb + n_free, nb + n_free + n_sum)), tuple(range(nb, nb + n_sum))),
                 (tuple(range(nb)), tuple(range(nb))))
    grad = lax.dot_general(a, b, grad_dims, precision=precision,
                           preferred_element_type=jnp.float32)
    perm = tuple(int(i) for i in np.argsort(x_axes))
    if perm == tuple(range(grad.ndim)):
        return grad
    return jnp.transpose(lax.optimization_barrier(grad), perm)


def _bf16(x: jax.Array) -> jax.Array:
    return x.astype(jnp.bfloat16)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _mixed_dot(lhs, rhs, dims, precision, lhs_dtype, rhs_dtype, out_dtype):
    out = lax.dot_general(_bf16(lhs), _bf16(rhs), dims, precision=precision,
                          preferred_element_type=jnp.float32)
    return out.astype(out_dtype)


def _mixed_dot_fwd(lhs, rhs, dims, precision, lhs_dtype, rhs_dtype, out_dtype):
    lhs, rhs = _bf16(lhs), _bf16(rhs)
    out = lax.dot_general(lhs, rhs, dims, precision=precision, preferred_element_type=jnp.float32)
    # The bf16 copies are the residuals: half the memory of f32 ones, and what backward needs.
    return out.astype(out_dtype), (lhs, rhs)


def _mixed_dot_bwd(dims, precision, lhs_dtype, rhs_dtype, out_dtype, residuals, g):
    lhs, rhs = residuals
    g = _bf16(g)
    d_lhs = _operand_grad(g, rhs, dims, lhs.ndim, x_is_lhs=True, precision=precision)
    d_rhs = _operand_grad(g, lhs, dims, rhs.ndim, x_is_lhs=False, precision=precision)
    return d_lhs.astype(lhs_dtype), d_rhs.astype(rhs_dtype)


_mixed_dot.defvjp(_mixed_dot_fwd, _mixed_dot_bwd)


def mixed_dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any,
                      precision: Any = None, preferred_element_type: Any = None,
                      out_sharding: Any = None) -> jax.Array:
    """``lax.dot_general`` with bf16 operands and f32 accumulation, forward and backward.

    Forward: ``out = dot_general(bf16(lhs), bf16(rhs), preferred_element_type=f32)``, cast to
    ``preferred_element_type`` if given, else to ``result_type(lhs, rhs)`` (the compute dtype).
    Backward, with ``g`` the cotangent cast to bf16: ``d_lhs = g . bf16(rhs)`` and
    ``d_rhs = g . bf16(lhs)``, each accumulated in f32 and cast to its operand's dtype, so an f32
    parameter gets an f32 gradient.

    Same signature as ``lax.dot_general``, so it can be passed as ``dot_general=`` to
    ``flax.linen.Dense``/``DenseGeneral``. ``out_sharding`` is not supported (the transposed
    products would need their own shardings); constrain the result with
    ``with_sharding_constraint`` instead.
    """
    if out_sharding is not None:
        raise NotImplementedError(
            "mixed_dot_general does not take out_sharding; apply "
            "jax.lax.with_sharding_constraint to its result instead")
    for name, x in (("lhs", lhs), ("rhs", rhs)):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"mixed_dot_general {name} must be floating point, got {x.dtype}; "
                            "use lax.dot_general for integer products")
    dims = _canonical_dims(dimension_numbers)
    out_dtype = (jnp.result_type(lhs.dtype, rhs.dtype) if preferred_element_type is None
                 else jnp.dtype(preferred_element_type))
    return _mixed_dot(lhs, rhs, dims, precision, jnp.dtype(lhs.dtype), jnp.dtype(rhs.dtype),
                      jnp.dtype(out_dtype))
