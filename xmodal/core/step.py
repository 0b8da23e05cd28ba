"""The training step: ``f(state, batch) -> (state, metrics)``, pure, one update per group.

An objective has parameter *groups*; each group is differentiated through the objective's loss
for that group, updated by its own optimizer, and optionally only every ``k`` steps (score
distillation updates its fake-score network more often than its generator). Gradient
accumulation runs inside the step as a scan over micro-batches.

Order: groups update one after another, in ``objective.groups`` order, inside one step; the loss
of group k reads the parameters that groups before k have already updated in this step (a
distillation step updates the fake score on the current generator, then the generator against
the updated fake score). Frozen networks (``state.frozen``) are read by every group's loss and
updated by none.
"""
from __future__ import annotations

import inspect
from typing import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from xmodal.core.run_io import FINITE
from xmodal.core.train_state import TrainState, with_frozen



def accumulated_grads(grad_fn: Callable, params, batch: dict, rng: jax.Array, accum: int):
    """Mean over ``accum`` micro-batches of ``grad_fn(params, micro_batch, rng_j)``.

    Micro-batch j takes rows j::accum, so with a batch split over devices every device
    contributes to every micro-batch (no resharding). For a loss that is a mean over examples
    this equals the full-batch gradient; contrastive losses see only a micro-batch's negatives.
    """
    if accum == 1:
        return grad_fn(params, batch, rng)
    for k, x in batch.items():
        if x.shape[0] % accum:
            raise ValueError(f"batch[{k!r}] has {x.shape[0]} rows, not divisible by "
                             f"grad_accum={accum}")
    micro = jax.tree.map(lambda x: x.reshape((-1, accum) + x.shape[1:]).swapaxes(0, 1), batch)

    def body(carry, inp):
        mb, j = inp
        out = grad_fn(params, mb, jax.random.fold_in(rng, j))
        return jax.tree.map(jnp.add, carry, out), None

    first = jax.tree.map(lambda x: x[0], micro)
    zero = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        jax.eval_shape(grad_fn, params, first, rng))
    total, _ = jax.lax.scan(body, zero, (micro, jnp.arange(accum)))
    return jax.tree.map(lambda x: x / accum, total)


def make_train_step(objective, txs: Mapping[str, optax.GradientTransformation],
                    schedules: Mapping[str, optax.Schedule], *, accum: int = 1,
                    ema_decay: float = 0.0, logical_axis_rules=()) -> Callable:
    """Builds the pure step for ``objective`` (see ``xmodal.objectives`` for its interface).

    ``objective.cadence`` (optional) maps a group to ``(every, offset)``: the group is updated
    only on steps where ``step % every == offset``; on other steps its parameters, optimizer
    state and EMA are carried over unchanged and its metrics read 0.
    """
    groups = tuple(objective.groups)
    cadence = dict(getattr(objective, "cadence", {}) or {})
    # A loss that changes over training (a schedule of soft labels) takes ``step=``.
    takes_step = "step" in inspect.signature(objective.loss).parameters
    # Running statistics (``TrainState.objective_state``) for a loss that reads them.
    takes_state = "objective_state" in inspect.signature(objective.loss).parameters
    update_state = getattr(objective, "update_state", None)

    def updates_before(g, step):
        every, offset = cadence.get(g, (1, 0))
        return (step - offset) // every

    def group_update(g, i, params, opt_state, ema, batch, rng, step, frozen, obj_state):
        def loss_fn(p, mb, r):
            # Frozen networks are read, never differentiated: the gradient is w.r.t. ``p`` only.
            merged = with_frozen(dict(params, **{g: p}), frozen)
            kw = dict(step=step) if takes_step else {}
            if takes_state:
                kw["objective_state"] = obj_state
            return objective.loss(merged, mb, r, g, **kw)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, aux), grads = accumulated_grads(grad_fn, params[g], batch,
                                               jax.random.fold_in(rng, i), accum)
        updates, new_opt = txs[g].update(grads, opt_state[g], params[g])
        new_params = optax.apply_updates(params[g], updates)
        new_ema = ema.get(g)
        if ema_decay:
            new_ema = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p,
                                   ema[g], new_params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads),
                   "update_norm": optax.tree.norm(updates),
                   "param_norm": optax.tree.norm(new_params),
                   # the group's schedule runs on its own update count (core.objective.updates_in)
                   "lr": schedules[g](updates_before(g, step))}
        metrics.update({k: v for k, v in aux.items() if v is not None})
        metrics = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32).reshape(()), metrics)
        return new_params, new_opt, new_ema, metrics

    def train_step(state: TrainState, batch: dict):
        with nn.logical_axis_rules(logical_axis_rules):
            rng = state.step_rng()
            params, opt_state, ema = dict(state.params), dict(state.opt_state), dict(state.ema)
            metrics = {}
            for i, g in enumerate(groups):
                args = (params, opt_state, ema, batch, rng, state.step, state.frozen,
                        state.objective_state)
                if g in cadence:
                    every, offset = cadence[g]
                    active = state.step % every == offset
                    names: list = []

                    def update(*a, g=g, i=i, names=names):
                        out = group_update(g, i, *a)
                        names[:] = sorted(out[3])
                        return out

                    def skip(params, opt_state, ema, *_, g=g, i=i, names=names):
                        # The metrics are float32 scalars (group_update makes them so): the
                        # skip needs only their names, which ``update`` recorded when
                        # lax.switch traced it (it traces its branches in order). Tracing the
                        # update again for them cost seconds per step compiled (a DMD
                        # generator's whole forward and backward); traced only if not recorded.
                        keys = names or sorted(jax.eval_shape(
                            lambda: group_update(g, i, *args)[3]))
                        zeros = {k: jnp.zeros((), jnp.float32) for k in keys}
                        return params[g], opt_state[g], ema.get(g), zeros

                    out = jax.lax.switch(jnp.where(active, 0, 1), (update, skip), *args)
                else:
                    out = group_update(g, i, *args)
                params[g], opt_state[g], new_ema, group_metrics = out
                if ema_decay:
                    ema[g] = new_ema
                prefix = "train/" if len(groups) == 1 else f"train/{g}/"
                metrics.update({prefix + k: v for k, v in group_metrics.items()})
            obj_state = state.objective_state
            if update_state is not None:
                obj_state = update_state(obj_state, metrics)
                metrics.update({f"train/state/{k}": jnp.asarray(v, jnp.float32).reshape(())
                                for k, v in obj_state.items()})
            # One flag the host reads every step (one scalar transfer, not every metric).
            metrics[FINITE] = jnp.all(jnp.stack([jnp.isfinite(v) for v in metrics.values()]))
            new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema=ema,
                                objective_state=obj_state)
            return new, metrics

    return train_step
