"""Class-conditional flow matching on vectors: the teacher of the eight-Gaussians system.

    x1 = batch["x"] [B, D],   c = batch["label"] [B] (dropped to the null class w.p. cfg_drop)
    L = E || v_theta(x_t, t, c) - dx_t ||^2        (``losses.flow.flow_matching_loss``)

It is a flow teacher (``xmodal.distill.teacher.FlowTeacher``) and a sampler
(``xmodal.sampling.Sampler``): ``sample`` integrates its ODE in ``steps`` steps.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from xmodal import sampling
from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.distill.teacher import ode_sample
from xmodal.losses.flow import TIME_SAMPLERS, flow_matching_loss
from xmodal.losses.flow_paths import FLOW_PATHS


@dataclasses.dataclass(frozen=True, eq=False)
class ClassFlowObjective:
    model: Any              # velocity network (x_t, t, label) -> v, with a null class
    path: Any
    time_sampler: Any
    cfg_drop: float
    null_label: int
    solver: str = "euler"
    groups: tuple = ("model",)

    # ------------------------------------------------------------------ FlowTeacher
    def flow_data(self, params, batch):
        return batch["x"]

    def flow_condition(self, params, batch):
        return batch["label"]

    def null_condition(self, params, cond):
        return jnp.full_like(cond, self.null_label)

    def velocity(self, net_params, x_t, t, cond):
        return self.model.apply({"params": net_params}, x_t, t, cond)

    def with_model(self, model) -> "ClassFlowObjective":
        return dataclasses.replace(self, model=model)

    # ------------------------------------------------------------------ training
    def init(self, rng, batch):
        x = batch["x"][:1]
        return {"model": self.model.init({"params": rng}, x, jnp.zeros((1,)),
                                         batch["label"][:1])["params"]}

    def loss(self, params, batch, rng, group="model"):
        return flow_matching_loss(self.velocity, params["model"], batch["x"], batch["label"],
                                  rng, path=self.path, time_sampler=self.time_sampler,
                                  cfg_drop=self.cfg_drop, null_cond=self.null_label)

    # ------------------------------------------------------------------ Sampler
    def sample(self, params, noise, batch, steps: int = 10):
        return ode_sample(self, params["model"], noise, batch["label"], steps=steps,
                          solver=self.solver)


@OBJECTIVES.register("class_flow")
def class_flow(path: str = "rectified", path_kwargs: dict | None = None,
               time_sampler: str = "uniform", cfg_drop: float = 0.1, solver: str = "euler"):
    """``path``: a name in ``losses.flow_paths.FLOW_PATHS`` (``icfm`` with
    ``path_kwargs={"sigma": 0.1}`` is torchcfm's I-CFM); ``solver``: the sampler's ODE method."""
    if not 0.0 <= cfg_drop <= 1.0:
        raise SpecError(f"class_flow cfg_drop must be in [0, 1]; got {cfg_drop}")
    if solver not in sampling.METHODS:
        raise SpecError(f"class_flow solver={solver!r}: one of {', '.join(sampling.METHODS)}")
    flow_path = FLOW_PATHS.get(path)(**(path_kwargs or {}))
    sampler = TIME_SAMPLERS.get(time_sampler)()

    def bind(model, mesh):
        null = getattr(model, "null_label", None)
        if null is None:
            raise SpecError(f"class_flow needs a model with a null class (null_label); "
                            f"{type(model).__name__} has none")
        return ClassFlowObjective(model, flow_path, sampler, float(cfg_drop), int(null), solver)
    return bind
