"""The teacher side of score distillation: what a flow objective must offer to be distilled,
and how a distillation stage reads one from an earlier stage.

A **flow teacher** is a flow objective (FlowSep's, the 2-D toy's, InstaRevive's...) that says,
for a batch of its own data:

- ``path``: its probability path (``xmodal.losses.flow_paths``), t = 0 noise, t = 1 data;
- ``flow_data(params, batch) -> x1``: the batch's data in the flow's space (a VAE latent for
  FlowSep; the points themselves for the toy); ``params`` is the mapping of frozen networks;
- ``flow_condition(params, batch) -> cond``: the condition, an array or pytree with leading
  axis [B] (labels, a mixture latent and query...);
- ``null_condition(params, cond) -> cond``: the condition classifier-free guidance drops to;
- ``velocity(net_params, x_t, t, cond) -> v``: its network's velocity, t of shape [B];
- ``with_model(model) -> FlowTeacher``: the same flow with another network (a student of
  another architecture; ``dataclasses.replace(self, model=model)`` for most).

Optional: ``flow_frozen() -> {name: params}``, the frozen networks the functions above read,
when that is less than the objective's ``load_frozen`` (a reflowed flow leaves out its own
teacher); by default all of ``load_frozen``.

Everything a distillation needs follows from these: the teacher's x1-prediction (through the
path's converters), its guided velocity, its ODE sample, and a one-step generator built from
the same network.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from xmodal import sampling
from xmodal.core import objective as objective_lib
from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.core.stages import load_stage

Array = jax.Array


@runtime_checkable
class FlowTeacher(Protocol):
    path: Any

    def flow_data(self, params, batch) -> Array: ...

    def flow_condition(self, params, batch) -> Any: ...

    def null_condition(self, params, cond) -> Any: ...

    def velocity(self, net_params, x_t, t, cond) -> Array: ...

    def with_model(self, model) -> "FlowTeacher": ...


@dataclasses.dataclass(frozen=True)
class Teacher:
    """A trained flow stage: its objective (rebuilt from its spec), its network's parameters
    and its own frozen networks (host numpy), and its model spec."""
    objective: Any
    params: Any
    frozen: dict
    model_spec: dict
    path: str


def load_teacher(teacher_from: str, mesh, what: str = "teacher_from") -> Teacher:
    """The flow stage in ``teacher_from`` (``"stage:<name>"`` in a spec), by the stage API's EMA
    policy; raises SpecError if it is missing or not a flow teacher."""
    if not teacher_from:
        raise SpecError(f"{what} is empty: name the flow stage to distil (\"stage:<name>\")")
    stage = load_stage(teacher_from)
    node = dict(stage.spec["objective"])
    name = node.pop("name")
    objective = OBJECTIVES.build(name, **node)(stage.model, mesh)
    if not isinstance(objective, FlowTeacher):
        raise SpecError(f"{what} {teacher_from!r} trained objective {name!r}, which is not a flow "
                        "teacher (xmodal.distill.teacher.FlowTeacher: path, flow_data, "
                        "flow_condition, null_condition, velocity, with_model)")
    groups = tuple(objective.groups)
    if len(groups) != 1:
        raise SpecError(f"{what} {teacher_from!r} has parameter groups {groups}; a flow "
                        "teacher trains one network")
    flow_frozen = getattr(objective, "flow_frozen", None)
    frozen = dict(flow_frozen()) if flow_frozen else objective_lib.load_frozen(objective)
    return Teacher(objective, stage.params[groups[0]], frozen, dict(stage.spec["model"]),
                   teacher_from)


def guided_velocity(flow: FlowTeacher, net_params, x_t, t, cond, null, scale: float) -> Array:
    """v(x_t, t, c) or, for ``scale != 1``, classifier-free guidance v_null + w (v_c - v_null)
    (``sampling.guided``: one network call on the doubled batch)."""
    return sampling.guided(lambda x, tt, c: flow.velocity(net_params, x, tt, c), x_t, t, cond,
                           null, scale)


def x1_prediction(flow: FlowTeacher, net_params, x_t, t, cond, null=None,
                  scale: float = 1.0) -> Array:
    """The network's estimate of the clean point, E[x1 | x_t], from its (guided) velocity."""
    v = guided_velocity(flow, net_params, x_t, t, cond, null, scale)
    return flow.path.velocity_to_x1(x_t, v, t)


def ode_sample(flow: FlowTeacher, net_params, x0, cond, *, steps: int, solver: str = "euler",
               null=None, scale: float = 1.0) -> Array:
    """x1 = ODE(x0): ``steps`` fixed steps of ``solver`` from noise x0 at t = 0 to t = 1."""
    def f(x, t):
        tb = jnp.full((x.shape[0],), t, jnp.float32)
        return guided_velocity(flow, net_params, x, tb, cond, null, scale)
    return sampling.solve(f, x0, method=solver, steps=steps)[0]


def one_step(flow: FlowTeacher, net_params, z, cond, t0: float = 0.0) -> Array:
    """A one-step generator from a velocity network: its x1-prediction at the noise end,
    G(z) = x1(z, t0) (for the straight path and t0 = 0, G(z) = z + v(z, 0): one Euler step of
    the whole interval). A generator that starts as the teacher starts as its 1-step sample."""
    t = jnp.full((z.shape[0],), t0, jnp.float32)
    return flow.path.velocity_to_x1(z, flow.velocity(net_params, z, t, cond), t)
