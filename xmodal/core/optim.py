"""Optimizer and learning-rate schedule from the spec's ``optim`` block.

Per-parameter learning-rate multipliers and freezing are expressed with
``optax.multi_transform`` over labels computed from regexes on the parameter paths, so a frozen
parameter carries no optimizer state at all.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import optax

from xmodal.core.parallel import path_str
from xmodal.core.registry import SpecError

FROZEN = "frozen"


def schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    lr, warmup = cfg["lr"], int(cfg["warmup_steps"])
    end = lr * cfg["end_lr_factor"]
    decay_steps = max(total_steps - warmup, 1)
    kind = cfg["schedule"]
    if kind == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=cfg["end_lr_factor"])
    elif kind == "linear":
        main = optax.linear_schedule(lr, end, decay_steps)
    elif kind == "constant":
        main = optax.constant_schedule(lr)
    else:
        raise SpecError(f"optim.schedule {kind!r}; valid: cosine, linear, constant")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def labels(cfg: Mapping[str, Any], params) -> Any:
    """Label per leaf: 'frozen', or 'lr×<mult>' from the first matching ``lr_mults`` rule."""
    freeze = [re.compile(r) for r in cfg["freeze"]]
    mults = [(re.compile(r), float(m)) for r, m in cfg["lr_mults"]]

    def one(path, _):
        name = path_str(path)
        if any(r.fullmatch(name) for r in freeze):
            return FROZEN
        for r, m in mults:
            if r.fullmatch(name):
                return FROZEN if m == 0.0 else f"lr×{m:g}"
        return "lr×1"

    return jax.tree_util.tree_map_with_path(one, params)


def _decay_mask(cfg, params):
    exclude = [re.compile(r) for r in cfg["decay_exclude"]]
    return jax.tree_util.tree_map_with_path(
        lambda p, _: not any(r.fullmatch(path_str(p)) for r in exclude), params)


def make(cfg: Mapping[str, Any], params, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The group's optimizer and its schedule (returned for logging the learning rate)."""
    sched = schedule(cfg, total_steps)

    def base(mult: float) -> optax.GradientTransformation:
        lr = lambda step: sched(step) * mult  # noqa: E731
        if cfg["name"] == "adamw":
            return optax.adamw(lr, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"],
                               weight_decay=cfg["weight_decay"], mask=lambda p: _decay_mask(cfg, p))
        if cfg["name"] == "sgd":
            return optax.chain(optax.add_decayed_weights(cfg["weight_decay"],
                                                         mask=lambda p: _decay_mask(cfg, p)),
                               optax.sgd(lr, momentum=cfg["momentum"]))
        raise SpecError(f"optim.name {cfg['name']!r}; valid: adamw, sgd")

    leaf_labels = labels(cfg, params)
    used = set(jax.tree.leaves(leaf_labels))
    transforms = {FROZEN: optax.set_to_zero()}
    for lab in used - {FROZEN}:
        transforms[lab] = base(float(lab.removeprefix("lr×")))
    tx = optax.multi_transform(transforms, leaf_labels)
    if cfg["grad_clip_norm"] > 0:
        # Frozen gradients are zeroed first so they do not count towards the clipped norm.
        frozen = jax.tree.map(lambda lab: lab == FROZEN, leaf_labels)
        tx = optax.chain(optax.masked(optax.set_to_zero(), frozen),
                         optax.clip_by_global_norm(cfg["grad_clip_norm"]), tx)
    return tx, sched
