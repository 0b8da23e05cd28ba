"""A bidirectional LSTM over padded token sequences (Hochreiter & Schmidhuber, 1997; the text
and context encoders of TVQA-style question answering, Lei et al., 2018).

``BiLSTM(hidden)(x [..., L, D], lengths [...])`` -> [..., L, 2 * hidden]: the forward and
backward states concatenated; each sequence runs over its first ``lengths`` steps only (the
backward direction starts at the last real step, not at the padding), and outputs past the
length are zeros. Any leading batch dimensions are flattened for the scan and restored.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class BiLSTM(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array) -> jax.Array:
        lead, (steps, dim) = x.shape[:-2], x.shape[-2:]
        flat = x.reshape((-1, steps, dim)).astype(jnp.float32)
        n = jnp.reshape(lengths, (-1,)).astype(jnp.int32)
        rnn = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(self.hidden), name="forward"),
                               nn.RNN(nn.OptimizedLSTMCell(self.hidden), name="backward"),
                               name="bidirectional")
        out = rnn(flat, seq_lengths=n)
        real = jnp.arange(steps)[None, :] < n[:, None]
        out = jnp.where(real[..., None], out, 0.0)
        return out.reshape(lead + (steps, 2 * self.hidden))
