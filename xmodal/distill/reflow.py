"""Reflow and regression distillation (Liu et al. 2023, "Flow Straight and Fast"; InstaFlow,
Liu et al. 2024): the simplest honest baseline for DMD and SiD.

One group, ``model`` (the stage's network, started from the teacher's parameters by default).
Every step draws noise z for the batch's conditions and solves the teacher's ODE from it,
y = ODE_teacher(z) in ``teacher_steps`` steps of ``solver`` (no gradient). Then, by ``target``:

- ``"flow"`` (reflow, the 2-rectified flow; ``ReflowObjective``): the flow-matching loss on the
  coupling (z, y) along the teacher's path. The new flow's paths are straighter, so few Euler
  steps land near y. A reflowed stage is itself a flow teacher, so it can be distilled again;
- ``"one_step"`` (InstaFlow's distillation stage, after Luhman & Luhman 2021;
  ``RegressionObjective``): the one-step generator G(z) = x1(z, t=0) regressed on y
  (``losses.distillation.regression_loss``, MSE; InstaFlow uses LPIPS on images).

InstaFlow's recipe is ``flow`` from the teacher, then ``one_step`` with the reflowed stage as
the teacher. InstaFlow draws its couplings once into a dataset; here they are solved inside the
step, which costs ``teacher_steps`` teacher calls per example and stores nothing.
"""
from __future__ import annotations

import dataclasses

import jax

from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.distill import student as student_lib
from xmodal.distill.teacher import ode_sample
from xmodal.losses import distillation as dl
from xmodal.losses.flow import UniformTime, flow_matching_loss

TARGETS = ("flow", "one_step")


@dataclasses.dataclass(frozen=True, eq=False)
class _Couplings(student_lib.Distillation):
    teacher_steps: int = 25
    solver: str = "midpoint"
    groups: tuple = ("model",)
    student_group: str = "model"

    def init(self, rng, batch, frozen):
        params = {"model": self.init_student(rng, batch, frozen)}
        self.check_output(dict(frozen, **params), batch)
        return params

    def couplings(self, params, batch, rng):
        """(z, y = ODE_teacher(z), cond) for the batch's conditions; y carries no gradient."""
        z = self.noise(rng, params, batch)
        y = self.teacher_sample(params, z, batch, self.teacher_steps, self.solver)
        return z, jax.lax.stop_gradient(y), self.condition(params, batch)


@dataclasses.dataclass(frozen=True, eq=False)
class ReflowObjective(_Couplings):
    def loss(self, params, batch, rng, group="model"):
        k_z, k_flow = jax.random.split(rng)
        z, y, cond = self.couplings(params, batch, k_z)
        loss, aux = flow_matching_loss(self.student.velocity, params["model"], y, cond, k_flow,
                                       path=self.teacher.path, time_sampler=UniformTime(),
                                       cfg_drop=0.0, x0=z)
        return loss, {"reflow_mse": loss, "t_mean": aux["t_mean"]}

    def sample(self, params, noise, batch, steps: int = 1):
        """``steps`` Euler steps of the reflowed flow."""
        return ode_sample(self.student, params["model"], noise, self.condition(params, batch),
                          steps=steps)

    # ------------------------------------------------------------------ FlowTeacher
    @property
    def path(self):
        return self.teacher.path

    def flow_data(self, params, batch):
        return self.teacher.flow_data(params, batch)

    def flow_condition(self, params, batch):
        return self.teacher.flow_condition(params, batch)

    def null_condition(self, params, cond):
        return self.teacher.null_condition(params, cond)

    def velocity(self, net_params, x_t, t, cond):
        return self.student.velocity(net_params, x_t, t, cond)

    def with_model(self, model) -> "ReflowObjective":
        return dataclasses.replace(self, student=self.student.with_model(model))

    def flow_frozen(self) -> dict:
        """The networks the flow reads (the original teacher's VAE...), not its own teacher."""
        return dict(self.teacher_frozen)


@dataclasses.dataclass(frozen=True, eq=False)
class RegressionObjective(_Couplings):
    def loss(self, params, batch, rng, group="model"):
        z, y, cond = self.couplings(params, batch, rng)
        loss = dl.regression_loss(self.generate(params["model"], z, cond), y)
        return loss, {"regression_loss": loss}


@OBJECTIVES.register("reflow")
def reflow(teacher_from: str = "", target: str = "flow", teacher_steps: int = 25,
           solver: str = "midpoint", guidance: float = 1.0, student_init: str = "teacher"):
    """``target``: ``flow`` (2-rectified flow) or ``one_step`` (regression distillation);
    ``teacher_steps`` and ``solver``: the teacher ODE that makes each coupling."""
    if target not in TARGETS:
        raise SpecError(f"reflow target={target!r}: one of {', '.join(TARGETS)}")
    if teacher_steps < 1:
        raise SpecError(f"reflow teacher_steps must be >= 1; got {teacher_steps}")
    cls = ReflowObjective if target == "flow" else RegressionObjective

    def bind(model, mesh):
        teacher, student = student_lib.bind_parts(teacher_from, student_init, model, mesh)
        return cls(teacher.objective, teacher.params, teacher.frozen, student, student_init,
                   float(guidance), 0.0, 1.0, teacher_steps=teacher_steps, solver=solver)
    return bind
