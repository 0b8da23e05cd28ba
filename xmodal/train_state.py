"""The train state: everything a resumed run needs, as one pytree.

Parameters live in named *groups* (``{"model": ...}`` for a two-tower model; a score-distillation
run has ``generator`` and ``fake_score``), each with its own optimizer state. Frozen parameters (a
teacher, a VAE from an earlier stage) are not part of the state: they are loaded from their own
checkpoint at start and never saved again.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    step: jax.Array                 # int32 scalar: number of updates applied
    params: dict[str, Any]          # group → parameter pytree
    opt_state: dict[str, Any]       # group → optax state
    ema: dict[str, Any]             # group → EMA parameters ({} when EMA is off)
    rng: jax.Array                  # raw uint32 key data; per-step keys are fold_in(rng, step)

    def step_rng(self) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def create(params: dict[str, Any], txs: dict[str, Any], rng: jax.Array, ema: bool) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={g: txs[g].init(p) for g, p in params.items()},
        ema=jax.tree.map(jnp.copy, params) if ema else {},
        rng=jax.random.key_data(rng),
    )
