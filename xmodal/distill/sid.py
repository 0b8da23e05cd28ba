"""SiD: score identity distillation (Zhou et al. 2024), data-free, one step.

Groups, in update order: ``fake_score`` (the flow loss on the generator's detached samples, as
in DMD) then ``generator``, both every step (SiD alternates them 1:1). The generator's loss,
``losses.distillation.sid_loss`` with ``alpha`` (1.2; 1.0 is SiDA's), is differentiated through
the generator's sample *and* through the teacher's and the fake score's predictions at the
noised sample (their parameters do not change in this group): unlike DMD, SiD's gradient is not
a stop-gradient target. ``generator_steps`` > 1 makes it a multi-step student, trained by
backward simulation as DMD2's (``xmodal.distill.student``).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from xmodal.core.registry import OBJECTIVES
from xmodal.distill import student as student_lib
from xmodal.distill.teacher import x1_prediction
from xmodal.losses import distillation as dl
from xmodal.losses.flow import UniformTime, flow_matching_loss


@dataclasses.dataclass(frozen=True, eq=False)
class SiDObjective(student_lib.Distillation):
    alpha: float = 1.2
    groups: tuple = ("fake_score", "generator")

    def init(self, rng, batch, frozen):
        params = {"fake_score": jax.tree.map(jnp.asarray, frozen["teacher"]),
                  "generator": self.init_student(rng, batch, frozen)}
        self.check_output(dict(frozen, **params), batch)
        return params

    def loss(self, params, batch, rng, group):
        k_z, k_noise, k_fake = jax.random.split(rng, 3)
        cond = self.condition(params, batch)
        x = self.backward_simulate(params["generator"], self.noise(k_z, params, batch), cond,
                                   jax.random.fold_in(rng, 7))
        if group == "fake_score":
            return flow_matching_loss(self.teacher.velocity, params["fake_score"],
                                      jax.lax.stop_gradient(x), cond, k_fake,
                                      path=self.teacher.path, time_sampler=UniformTime(),
                                      cfg_drop=0.0)
        x_t, t = self.noised(k_noise, x)
        x_real = self.real_x1(params, x_t, t, cond)
        x_fake = x1_prediction(self.teacher, params["fake_score"], x_t, t, cond)
        loss = dl.sid_loss(x, x_real, x_fake, self.alpha)
        return loss, {"sid_loss": loss,
                      "real_fake_gap": jnp.mean(jnp.abs(jax.lax.stop_gradient(x_real - x_fake)))}


@OBJECTIVES.register("sid")
def sid(teacher_from: str = "", alpha: float = 1.2, guidance: float = 1.0, t_min: float = 0.02,
        t_max: float = 0.98, student_init: str = "teacher", generator_steps: int = 1):
    """``alpha``: SiD's 1.2 (1.0 = SiDA); the other keys as ``dmd``'s (``generator_steps``:
    a multi-step student by backward simulation, ``xmodal.distill.student``)."""
    student_lib.check_range(t_min, t_max)
    student_lib.check_generator_steps(generator_steps)

    def bind(model, mesh):
        teacher, student = student_lib.bind_parts(teacher_from, student_init, model, mesh)
        return SiDObjective(teacher.objective, teacher.params, teacher.frozen, student,
                            student_init, float(guidance), float(t_min), float(t_max),
                            generator_steps=generator_steps, alpha=float(alpha))
    return bind
