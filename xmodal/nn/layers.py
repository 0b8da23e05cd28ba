"""Transformer building blocks with mixed precision and plainly named parameters.

Every matrix product goes through :func:`xmodal.nn.precision.dot_general_for` (bf16 operands,
f32 accumulation when the compute dtype is bf16); LayerNorm and softmax run in f32. Parameter
paths are stable so a sharding rule table of ``(regex, PartitionSpec)`` can address them::

    .../attn/{query,key,value}/kernel   [embed, heads, head_dim]
    .../attn/out/kernel                 [heads, head_dim, embed]
    .../mlp/fc1/kernel                  [embed, mlp]
    .../mlp/fc2/kernel                  [mlp, embed]

Optional fields whose defaults are xmodal's own choices, so that pretrained models trained with
other choices (open_clip's CLIP: QuickGELU, LayerNorm epsilon 1e-5) run as they were trained:
``activation`` (:data:`ACTIVATIONS`) and ``ln_epsilon``. Neither adds or renames a parameter.

Activations carry logical axis names ("batch", "length", "embed", "heads", "kv", "mlp") through
``flax.linen.with_logical_constraint``, which does nothing unless logical axis rules are active.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from xmodal.nn.precision import dot_general_for

Dtype = Any

# Xavier-uniform kernels and zero biases, as in big_vision's ViT.
KERNEL_INIT = nn.initializers.xavier_uniform()
# Position and token embeddings: N(0, 0.02^2), as in CLIP and BERT.
EMBED_INIT = nn.initializers.normal(stddev=0.02)


def quick_gelu(x: jax.Array) -> jax.Array:
    """``x * sigmoid(1.702 x)``, the GELU approximation of OpenAI's CLIP (Hendrycks & Gimpel,
    "Gaussian Error Linear Units", 2016)."""
    return x * jax.nn.sigmoid(1.702 * x)


# "gelu" is flax's default, the tanh approximation (xmodal's towers were trained with it);
# "gelu_exact" is the erf form (torch's nn.GELU, open_clip's non-QuickGELU models).
ACTIVATIONS = {
    "gelu": nn.gelu,
    "gelu_exact": lambda x: nn.gelu(x, approximate=False),
    "quick_gelu": quick_gelu,
}


def activation_fn(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def constrain(x: jax.Array, *axes: str | None) -> jax.Array:
    return nn.with_logical_constraint(x, axes)


class LayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis (Ba et al., "Layer
    Normalization", 2016), computed in f32 because mean and variance of bf16 values lose too
    many bits, and cast back to the compute dtype. Parameters: ``scale``, ``bias``."""
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (width,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (width,), self.param_dtype)
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
        return y.astype(self.dtype)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                          dtype: Dtype) -> jax.Array:
    """``softmax(q k^T / sqrt(head_dim) + mask) v`` per head: q ``[B, q, heads, head_dim]``,
    k and v ``[B, k, heads, head_dim]``, ``mask`` boolean broadcastable to ``[B, heads, q, k]``
    (True = attend) -> ``[B, q, heads, head_dim]``. Logits and softmax in f32."""
    dot = dot_general_for(dtype)
    # einsum "bqhd,bkhd->bhqk", accumulated and returned in f32 for the softmax.
    logits = dot(q, k, (((3,), (3,)), ((0, 2), (0, 2))), preferred_element_type=jnp.float32)
    logits = logits * (q.shape[-1] ** -0.5)
    if mask is not None:
        # The f32 minimum, not -inf: a fully masked row then gives a uniform softmax, not NaN.
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(dtype)
    # einsum "bhqk,bkhd->bhqd", then back to [batch, q, heads, head_dim].
    y = dot(weights, v, (((3,), (1,)), ((0, 1), (0, 2))))
    return constrain(jnp.transpose(y, (0, 2, 1, 3)), "batch", "length", "heads", "kv")


class Attention(nn.Module):
    """Multi-head dot-product attention (Vaswani et al., "Attention Is All You Need", 2017).

    ``softmax(q k^T / sqrt(head_dim) + mask) v`` with the logits and softmax in f32.
    ``mask`` is boolean, broadcastable to ``[batch, heads, q_len, kv_len]``, True = attend.
    """
    num_heads: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x_q: jax.Array, x_kv: jax.Array, mask: jax.Array | None = None
                 ) -> jax.Array:
        width = x_q.shape[-1]
        if width % self.num_heads:
            raise ValueError(f"attention width {width} is not divisible by num_heads="
                             f"{self.num_heads}; choose num_heads dividing the width")
        head_dim = width // self.num_heads
        dot = dot_general_for(self.dtype)

        def proj(name: str, x: jax.Array) -> jax.Array:
            y = nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                param_dtype=self.param_dtype, kernel_init=KERNEL_INIT,
                                dot_general=dot, name=name)(x)
            return constrain(y, "batch", "length", "heads", "kv")

        q, k, v = proj("query", x_q), proj("key", x_kv), proj("value", x_kv)
        y = dot_product_attention(q, k, v, mask, self.dtype)
        y = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
                            kernel_init=KERNEL_INIT, dot_general=dot, name="out")(y)
        return constrain(y, "batch", "length", "embed")


class MLP(nn.Module):
    """``fc2(act(fc1(x)))``, the Transformer feed-forward block (``act``: see ACTIVATIONS)."""
    mlp_dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dot = dot_general_for(self.dtype)
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=KERNEL_INIT,
                     dot_general=dot)
        h = nn.Dense(self.mlp_dim, name="fc1", **dense)(x)
        h = constrain(activation_fn(self.activation)(h), "batch", "length", "mlp")
        y = nn.Dense(x.shape[-1], name="fc2", **dense)(h)
        return constrain(y, "batch", "length", "embed")


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block (Xiong et al., "On Layer Normalization in the Transformer
    Architecture", 2020): ``x += attn(ln1(x)); x += mlp(ln2(x))``, dropout on each branch."""
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    activation: str = "gelu"
    ln_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False
                 ) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(name="ln1", epsilon=self.ln_epsilon, **kw)(x)
        y = Attention(self.num_heads, name="attn", **kw)(y, y, mask)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        y = LayerNorm(name="ln2", epsilon=self.ln_epsilon, **kw)(x)
        y = MLP(self.mlp_dim, activation=self.activation, name="mlp", **kw)(y)
        x = x + nn.Dropout(self.dropout, deterministic=not train)(y)
        return constrain(x, "batch", "length", "embed")


class Encoder(nn.Module):
    """``depth`` pre-LN blocks (``block_0`` ...) followed by a final LayerNorm (``ln_final``)."""
    depth: int
    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    activation: str = "gelu"
    ln_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None, train: bool = False
                 ) -> jax.Array:
        x = constrain(x.astype(self.dtype), "batch", "length", "embed")
        for i in range(self.depth):
            x = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, dtype=self.dtype,
                             param_dtype=self.param_dtype, activation=self.activation,
                             ln_epsilon=self.ln_epsilon, name=f"block_{i}")(x, mask, train)
        return LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype,
                         epsilon=self.ln_epsilon, name="ln_final")(x)


def check_tower(kind: str, width: int, depth: int, num_heads: int, dropout: float) -> None:
    """Clear errors for tower hyper-parameters that would otherwise fail deep inside a trace."""
    if width <= 0 or depth < 0 or num_heads <= 0:
        raise ValueError(f"{kind}: width, depth and num_heads must be positive, got "
                         f"width={width}, depth={depth}, num_heads={num_heads}")
    if width % num_heads:
        raise ValueError(f"{kind}: width={width} is not divisible by num_heads={num_heads}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{kind}: dropout={dropout} must be in [0, 1)")
