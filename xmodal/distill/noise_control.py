"""A hook that moves the noise levels of DMD's distribution-matching gradient during training.

DMD draws the generator's noise levels t ~ U[t_min, t_max] (t = 1 is data). A noise control,
named in the spec as ``objective.noise_control = {"name": ..., **its arguments}``, makes the
lower end t_lo a function of running statistics the objective keeps for it
(``TrainState.objective_state``: checkpointed, resumed exactly):

- ``observe(x, data)``: signals from the generator's detached samples x and the batch's data
  (the fake-score group computes them every step; they are logged as
  ``train/fake_score/<name>``);
- ``init_state()`` / ``update(state, signals)``: the running statistics, updated once per step
  after every group (``xmodal.core.objective``), logged as ``train/state/<name>``;
- ``t_low(state, t_min, t_max)``: the lower end of the generator's noise levels this step.

A control is a registered component (``NOISE_CONTROLS``): a project registers its rule and the
generic objective never names it (InstaRevive's dynamic control lives in
``xmodal/projects/instarevive/dynamic_control.py``).
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import jax

from xmodal.core.registry import Registry, SpecError

NOISE_CONTROLS = Registry("noise control", discovered=True)


class NoiseControl(Protocol):
    def observe(self, x: jax.Array, data: jax.Array) -> dict[str, jax.Array]: ...

    def init_state(self) -> dict[str, jax.Array]: ...

    def update(self, state: dict, signals: Mapping[str, jax.Array]) -> dict: ...

    def t_low(self, state: dict, t_min: float, t_max: float) -> jax.Array: ...


def build(node: Mapping[str, Any] | None) -> NoiseControl | None:
    """The control a spec node names (``{"name": ..., **kwargs}``), or None for an empty node."""
    if not node:
        return None
    kwargs = dict(node)
    name = kwargs.pop("name", None)
    if not name:
        raise SpecError("noise_control needs a name; valid noise control names: "
                        + ", ".join(NOISE_CONTROLS.names()))
    return NOISE_CONTROLS.build(name, **kwargs)   # a bad name or key: one SpecError naming them
