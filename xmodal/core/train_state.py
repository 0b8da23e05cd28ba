"""The train state: everything a resumed run needs, as one pytree.

Parameters live in named *groups* (``{"model": ...}`` for a two-tower model; a score-distillation
run has ``generator`` and ``fake_score``), each with its own optimizer state.

Frozen networks (a teacher, a VAE or a query encoder from an earlier stage) are the ``frozen``
part: ``{name: params}``, loaded once through the stage API (``xmodal.core.stages``), placed on
the mesh by the same sharding rules as the trained parameters (their paths read
``frozen/<name>/...``), passed to the step as an argument — never a closure constant, so never a
full copy on every device — and never seen by an optimizer. They are saved with the state, so a
resumed run uses exactly the networks it started with.

An objective may keep running statistics that its loss reads and the step updates, never
differentiated (InstaRevive's EMA of the student's gap to the clean images): the
``objective_state`` part, ``{}`` for most objectives, saved with the rest so a resumed run
continues them exactly (``xmodal.core.step``).
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
    frozen: dict[str, Any]          # name → frozen parameters, never updated ({} when none)
    rng: jax.Array                  # raw uint32 key data; per-step keys are fold_in(rng, step)
    objective_state: dict[str, Any] = flax.struct.field(default_factory=dict)

    def step_rng(self) -> jax.Array:
        return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def create(params: dict[str, Any], txs: dict[str, Any], rng: jax.Array, ema: bool,
           frozen: dict[str, Any] | None = None,
           objective_state: dict[str, Any] | None = None) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state={g: txs[g].init(p) for g, p in params.items()},
        ema=jax.tree.map(jnp.copy, params) if ema else {},
        frozen=dict(frozen or {}),
        rng=jax.random.key_data(rng),
        objective_state=dict(objective_state or {}),
    )


def with_frozen(params: dict[str, Any], frozen: dict[str, Any]) -> dict[str, Any]:
    """The parameters an objective's loss and evaluators read: trained groups and frozen
    networks in one mapping (their names never overlap: ``objective.check_frozen``)."""
    return {**frozen, **params} if frozen else params
