"""What every distillation objective shares: the frozen teacher, the student network, the
one-step generator and sampling.

Parameters the losses read (``params`` of ``Objective.loss``): the trained groups
(``generator``, ``fake_score`` or ``model``) and the frozen ``teacher`` network with the
teacher's own frozen networks (a VAE...), all placed in the sharded train state.

**Multi-step students** (DMD2, sec. 4.4; ``generator_steps`` K > 1). The generator is the
student network's clean-point prediction G(x_t, t) at K times t_k = k / K (t_0 = 0: pure
noise). It samples as a chain: x̂_0 = G(z, 0); x_{t_k} = the path's noising of x̂_{k-1} to t_k
with fresh noise; x̂_k = G(x_{t_k}, t_k); the sample is x̂_{K-1}. **Backward simulation**
trains each step on the inputs it sees when sampling, not on noised data: per example a step k
is drawn uniformly, its input x_{t_k} is produced by the generator's own chain from z with no
gradient (k network calls), and only the last call G(x_{t_k}, t_k) carries the gradient the
losses give. Sampling's fresh noise comes from a key folded from the bits of the starting
noise, so a sample stays a deterministic function of its noise (``xmodal.sampling.Sampler``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.core import objective as objective_lib
from xmodal.core.registry import SpecError
from xmodal.distill import teacher as teacher_lib
from xmodal.losses.flow_paths import sample_any

STUDENT_INITS = ("teacher", "scratch")


@runtime_checkable
class Distilled(Protocol):
    """A student evaluators and ``--mode=sample`` can ask about its teacher: the teacher's own
    sampler from the same noise, and the shape of the teacher's data (what noise looks like)."""

    def teacher_sample(self, params, noise, batch, steps: int, solver: str = "euler"): ...

    def data_shape(self, params, batch) -> tuple: ...


@dataclasses.dataclass(frozen=True, eq=False)
class Distillation:
    teacher: Any            # the teacher's flow objective (FlowTeacher)
    teacher_params: Any     # its network's parameters (host numpy), frozen["teacher"]
    teacher_frozen: dict    # its own frozen networks (host numpy)
    student: Any            # the same flow objective with the stage's model as network
    student_init: str       # "teacher" (copy its parameters, as DMD/SiD do) or "scratch"
    guidance: float         # teacher CFG scale ("real guidance"); 1 = none
    t_min: float
    t_max: float
    student_group: str = "generator"
    generator_steps: int = 1    # K > 1: a multi-step student (module docstring)

    def load_frozen(self) -> dict:
        return {"teacher": self.teacher_params, **self.teacher_frozen}

    # ------------------------------------------------------------------ shapes and init
    def condition(self, params, batch):
        return self.teacher.flow_condition(params, batch)

    def null(self, params, cond):
        return self.teacher.null_condition(params, cond)

    def data_shape(self, params, batch) -> tuple:
        return jax.eval_shape(lambda: self.teacher.flow_data(params, batch)).shape

    def init_student(self, rng, batch, frozen) -> Any:
        """The student network's first parameters: the teacher's (DMD and SiD start the
        generator and the fake score there) or a fresh initialisation (``scratch``).

        From the teacher, every parameter the teacher has is copied by name; a student with
        more (a ControlNet-style branch, ``control_*`` in ``nn.unet``) keeps its own
        initialisation for those only. A teacher parameter the student lacks, or of another
        shape, is a spec error: the student is not the teacher's architecture."""
        fresh = lambda: objective_lib.init(self.student, rng, batch, frozen)["model"]  # noqa: E731
        if self.student_init == "scratch":
            return fresh()
        flat_shapes = lambda tree: {  # noqa: E731
            jax.tree_util.keystr(k): tuple(v.shape)
            for k, v in jax.tree_util.tree_leaves_with_path(tree)}
        student, teacher = flat_shapes(jax.eval_shape(fresh)), flat_shapes(frozen["teacher"])
        bad = sorted(k for k, shape in teacher.items() if student.get(k) != shape)
        if bad:
            raise SpecError("student_init='teacher' needs the stage's model to hold the "
                            f"teacher's architecture, and {len(bad)} teacher parameter(s) are "
                            f"missing or of another shape (first: {bad[0]}): give the teacher's "
                            "model spec or set student_init='scratch'")
        teacher_params = jax.tree.map(jnp.asarray, frozen["teacher"])
        if student.keys() == teacher.keys():
            return teacher_params
        by_path = dict(jax.tree_util.tree_leaves_with_path(teacher_params))
        by_name = {jax.tree_util.keystr(k): v for k, v in by_path.items()}
        return jax.tree_util.tree_map_with_path(
            lambda k, v: by_name.get(jax.tree_util.keystr(k), v), fresh())

    def check_output(self, params, batch) -> None:
        """The student's sample must have the teacher's data shape."""
        shape = self.data_shape(params, batch)
        z = jax.ShapeDtypeStruct(shape, jnp.float32)
        cond = self.condition(params, batch)
        out = jax.eval_shape(lambda p, z: self.generate(p, z, cond), params[self.student_group], z)
        if out.shape != shape:
            raise SpecError(f"the student's output {out.shape} differs from the teacher's data "
                            f"shape {shape}")

    def noise(self, rng, params, batch) -> jax.Array:
        return jax.random.normal(rng, self.data_shape(params, batch), jnp.float32)

    def noised(self, rng, x, t_min=None) -> tuple[jax.Array, jax.Array]:
        """(x_t, t): x noised along the teacher's path at t ~ U[t_min, t_max] (``t_min`` may
        be a traced scalar: DMD's noise control moves it)."""
        k_t, k_eps, k_path = jax.random.split(rng, 3)
        lo = self.t_min if t_min is None else t_min
        t = jax.random.uniform(k_t, (x.shape[0],), jnp.float32, lo, self.t_max)
        eps = jax.random.normal(k_eps, x.shape, jnp.float32)
        return sample_any(self.teacher.path, eps, x, t, k_path).x_t, t

    def real_x1(self, params, x_t, t, cond):
        """The teacher's (guided) x1-prediction; ``params["teacher"]`` never trains."""
        null = self.null(params, cond) if self.guidance != 1.0 else None
        return teacher_lib.x1_prediction(self.teacher, params["teacher"], x_t, t, cond, null,
                                         self.guidance)

    def teacher_sample(self, params, noise, batch, steps: int, solver: str = "euler"):
        cond = self.condition(params, batch)
        null = self.null(params, cond) if self.guidance != 1.0 else None
        return teacher_lib.ode_sample(self.teacher, params["teacher"], noise, cond, steps=steps,
                                      solver=solver, null=null, scale=self.guidance)

    # ------------------------------------------------------------------ the student
    def generate(self, student_params, z, cond):
        return teacher_lib.one_step(self.student, student_params, z, cond)

    def generate_at(self, student_params, x_t, t, cond):
        """G(x_t, t): the student network's clean-point prediction at per-example times t [B]."""
        v = self.student.velocity(student_params, x_t, t, cond)
        return self.student.path.velocity_to_x1(x_t, v, t)

    def renoise(self, rng, x1, t):
        """x1 noised along the path to per-example times t [B] with fresh noise."""
        k_eps, k_path = jax.random.split(rng)
        eps = jax.random.normal(k_eps, x1.shape, jnp.float32)
        return sample_any(self.teacher.path, eps, x1, t, k_path).x_t

    def times(self) -> jax.Array:
        return jnp.arange(self.generator_steps, dtype=jnp.float32) / self.generator_steps

    def backward_simulate(self, student_params, z, cond, rng):
        """The generator's output to train (module docstring): one step, G(z, 0), for K = 1;
        for K > 1, G(x_{t_k}, t_k) at a per-example step k whose input x_{t_k} the generator's
        own chain made from z without gradient."""
        if self.generator_steps == 1:
            return self.generate(student_params, z, cond)
        b, times = z.shape[0], self.times()
        k_pick, k_chain = jax.random.split(rng)
        k = jax.random.randint(k_pick, (b,), 0, self.generator_steps)
        frozen = jax.lax.stop_gradient(student_params)
        mask = lambda j: (k >= j).reshape((b,) + (1,) * (z.ndim - 1))  # noqa: E731
        x_in = z
        x_hat = self.generate(frozen, z, cond)
        for j in range(1, self.generator_steps):
            x_j = self.renoise(jax.random.fold_in(k_chain, j), x_hat, jnp.full((b,), times[j]))
            x_in = jnp.where(mask(j), x_j, x_in)
            if j < self.generator_steps - 1:
                x_hat = self.generate_at(frozen, x_j, jnp.full((b,), times[j]), cond)
        return self.generate_at(student_params, jax.lax.stop_gradient(x_in), times[k], cond)

    def sample(self, params, noise, batch, steps: int = 1):
        """The student's sample from ``noise`` (``xmodal.sampling.Sampler``): its
        ``generator_steps`` steps (module docstring); ``steps`` does not apply."""
        del steps  # the student's own number of steps
        net, cond = params[self.student_group], self.condition(params, batch)
        x = self.generate(net, noise, cond)
        if self.generator_steps == 1:
            return x
        # Fresh noise between steps, from the starting noise's own bits: deterministic in it.
        bits = jax.lax.bitcast_convert_type(noise.reshape(-1)[0].astype(jnp.float32), jnp.uint32)
        key = jax.random.fold_in(jax.random.key(0), bits)
        b, times = noise.shape[0], self.times()
        for j in range(1, self.generator_steps):
            tb = jnp.full((b,), times[j])
            x = self.generate_at(net, self.renoise(jax.random.fold_in(key, j), x, tb), tb, cond)
        return x

    def render_samples(self, params, x, batch):
        """Samples as files' contents for ``--mode=sample``: the teacher's way (audio for
        FlowSep), or None when the teacher has none (images and points need none)."""
        render = getattr(self.teacher, "render_samples", None)
        return render(params, x, batch) if render is not None else None


def bind_parts(teacher_from: str, student_init: str, model, mesh):
    """(teacher, student objective) for a stage whose network is ``model``."""
    if student_init not in STUDENT_INITS:
        raise SpecError(f"student_init={student_init!r}: one of {', '.join(STUDENT_INITS)}")
    teacher = teacher_lib.load_teacher(teacher_from, mesh)
    student = teacher.objective.with_model(model)
    return teacher, student


def check_generator_steps(generator_steps) -> int:
    if not (isinstance(generator_steps, int) and generator_steps >= 1):
        raise SpecError(f"generator_steps must be an integer >= 1; got {generator_steps!r}")
    return generator_steps


def check_range(t_min: float, t_max: float) -> None:
    if not 0.0 <= t_min < t_max <= 1.0:
        raise SpecError(f"distillation needs 0 <= t_min < t_max <= 1; got t_min={t_min}, "
                        f"t_max={t_max}")


def host(tree):
    return jax.tree.map(np.asarray, tree)
