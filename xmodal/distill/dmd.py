"""DMD / DMD2: a one-step generator trained by distribution matching against a flow teacher.

Groups, in update order (``xmodal.core.step``): ``fake_score`` then ``generator``.

- ``fake_score`` (the teacher's architecture, started from its parameters) learns the flow of
  the generator's current samples: the flow-matching loss on x = sg(G(z)), z ~ N(0, I), every
  step (the first group, so it sees the generator as it is at the start of the step).
- ``generator`` (the stage's model, started from the teacher by default) is updated every
  ``fake_updates`` steps (DMD2's update ratio, 5), after the fake score, against the fake score
  as just updated: x = G(z) is noised to x_t at t ~ U[t_min, t_max], the teacher (with
  ``guidance``, DMD's "real guidance") and the fake score predict the clean point, and
  ``losses.distillation.dmd_loss`` pulls x along x_real - x_fake.
- ``regression_weight`` > 0 adds DMD1's paired loss (0.25 in the paper): the generator's output
  for the first ``regression_rows`` noises of the batch against the teacher's
  ``regression_steps``-step ODE solution from the same noises. DMD1 precomputes a dataset of
  such pairs because its teacher takes 50 network calls; here they are solved inside the step,
  which costs ``regression_steps`` teacher calls on those rows and needs no stored pairs.
  ``regression_target="data"`` regresses on the batch's own data instead (x1 = the teacher's
  ``flow_data``): for paired conditional tasks (restoration: the clean image of the degraded
  one), at no teacher cost.
- ``noise_control``: a registered rule (``xmodal.distill.noise_control``) that moves the lower
  end of the generator's noise levels from running statistics of the student's samples
  (InstaRevive's dynamic control is one, in ``xmodal/projects/instarevive``); none: the fixed
  range [t_min, t_max].

- ``generator_steps`` K > 1: DMD2's multi-step student, trained by backward simulation
  (``xmodal.distill.student``); both groups see the generator's outputs at every step k.

- ``gan_weight`` > 0: DMD2's GAN head (``xmodal.distill.gan``). The fake score group's
  parameters become ``{"net": the fake score, "head": the classifier}``; its loss adds
  ``gan_fake_weight`` × L_D on noised data (the batch's, so DMD is then no longer data-free) and
  noised detached generator samples, trained through the head *and* the fake score's features
  as DMD2 does; the generator's adds ``gan_weight`` × L_G at the noised sample of its DM loss
  (``losses.distillation``). DMD2's ImageNet weights: 3e-3 (generator), 1e-2 (classifier).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.distill import gan as gan_lib
from xmodal.distill import noise_control as noise_control_lib
from xmodal.distill import student as student_lib
from xmodal.distill.teacher import x1_prediction
from xmodal.losses import distillation as dl
from xmodal.losses.flow import UniformTime, flow_matching_loss


@dataclasses.dataclass(frozen=True, eq=False)
class DMDObjective(student_lib.Distillation):
    fake_updates: int = 5
    regression_weight: float = 0.0
    regression_rows: int = 0
    regression_steps: int = 25
    regression_target: str = "teacher"
    noise_control: Any = None      # xmodal.distill.noise_control.NoiseControl or None
    gan_weight: float = 0.0
    gan_fake_weight: float = 0.01
    gan_layer: str = ""
    gan_width: int = 256
    groups: tuple = ("fake_score", "generator")

    @property
    def cadence(self) -> dict:
        # The generator on the last of every ``fake_updates`` steps, after that step's fake update.
        return {"generator": (self.fake_updates, self.fake_updates - 1)}

    def init(self, rng, batch, frozen):
        k_gen, k_head = jax.random.split(rng)
        fake = jax.tree.map(jnp.asarray, frozen["teacher"])
        params = {"fake_score": fake, "generator": self.init_student(k_gen, batch, frozen)}
        if self.gan_weight:
            cond = self.condition(frozen, batch)
            shape = self.data_shape(frozen, batch)
            feats = jax.eval_shape(lambda: self._features(fake, jnp.zeros(shape),
                                                          jnp.zeros(shape[:1]), cond))
            head = self.head.init(k_head, jnp.zeros(feats.shape, jnp.float32))["params"]
            params["fake_score"] = {"net": fake, "head": head}
        self.check_output(dict(frozen, **params), batch)
        return params

    # ------------------------------------------------------------------ fake score (+ GAN head)
    @property
    def head(self) -> gan_lib.FeatureHead:
        return gan_lib.FeatureHead(self.gan_width)

    def fake_net(self, params):
        """The fake score network's parameters (under "net" when there is a GAN head)."""
        return params["fake_score"]["net"] if self.gan_weight else params["fake_score"]

    def fake_x1(self, params, x_t, t, cond):
        return x1_prediction(self.teacher, self.fake_net(params), x_t, t, cond)

    def _features(self, net, x_t, t, cond):
        return gan_lib.features(lambda: self.teacher.velocity(net, x_t, t, cond),
                                self.gan_layer)[1]

    def real_fake_logits(self, params, x_t, t, cond) -> jax.Array:
        """The GAN head's logit ("real") for noised points x_t [B, ...] at times t [B]."""
        h = self._features(self.fake_net(params), x_t, t, cond)
        return self.head.apply({"params": params["fake_score"]["head"]}, h)

    # ------------------------------------------------------------------ noise control
    def init_state(self) -> dict:
        return {} if self.noise_control is None else self.noise_control.init_state()

    def update_state(self, state, metrics):
        if self.noise_control is None:
            return state
        prefix = "train/fake_score/"
        return self.noise_control.update(
            state, {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)})

    def t_low(self, state) -> jax.Array:
        """The lower end of the generator's noise levels this step."""
        if self.noise_control is None or not state:   # no state: a loss outside training
            return jnp.float32(self.t_min)
        return jnp.asarray(self.noise_control.t_low(state, self.t_min, self.t_max), jnp.float32)

    def loss(self, params, batch, rng, group, objective_state=None):
        k_z, k_noise, k_fake = jax.random.split(rng, 3)
        cond = self.condition(params, batch)
        z = self.noise(k_z, params, batch)
        # One step (K = 1): G(z); a multi-step student: DMD2's backward simulation (student.py).
        x = self.backward_simulate(params["generator"], z, cond, jax.random.fold_in(rng, 7))
        if group == "fake_score":
            # The flow of the generator's samples, detached: only the fake score learns here.
            loss, aux = flow_matching_loss(self.teacher.velocity, self.fake_net(params),
                                           jax.lax.stop_gradient(x), cond, k_fake,
                                           path=self.teacher.path, time_sampler=UniformTime(),
                                           cfg_drop=0.0)
            if self.gan_weight:
                # Noised data vs noised (detached) generator samples, the same noise levels.
                k_real, k_gen = jax.random.split(jax.random.fold_in(rng, 11))
                real_t, t_r = self.noised(k_real, self.teacher.flow_data(params, batch))
                fake_t, t_f = self.noised(k_gen, jax.lax.stop_gradient(x))
                real_logit = self.real_fake_logits(params, real_t, t_r, cond)
                fake_logit = self.real_fake_logits(params, fake_t, t_f, cond)
                d_loss = dl.gan_discriminator_loss(real_logit, fake_logit)
                loss = loss + self.gan_fake_weight * d_loss
                aux = dict(aux, gan_d_loss=d_loss,
                           gan_accuracy=0.5 * (jnp.mean(real_logit > 0) + jnp.mean(fake_logit < 0)))
            if self.noise_control is not None:
                aux = dict(aux, **self.noise_control.observe(
                    jax.lax.stop_gradient(x), self.teacher.flow_data(params, batch)))
            return loss, aux
        t_lo = self.t_low(objective_state)
        x_t, t = self.noised(k_noise, x, t_lo)
        x_real = self.real_x1(params, x_t, t, cond)
        x_fake = self.fake_x1(params, x_t, t, cond)
        grad, nonfinite = dl.dmd_gradient(x, x_real, x_fake)
        dm = dl.dmd_loss(x, grad)
        aux = {"dm_loss": dm, "dm_grad_rms": jnp.sqrt(jnp.mean(jnp.square(grad))),
               "dm_nonfinite": nonfinite,
               "real_fake_gap": jnp.mean(jnp.abs(jax.lax.stop_gradient(x_real - x_fake))),
               "t_low": t_lo}
        loss = dm
        if self.gan_weight:
            g_loss = dl.gan_generator_loss(self.real_fake_logits(params, x_t, t, cond))
            loss = loss + self.gan_weight * g_loss
            aux["gan_g_loss"] = g_loss
        if self.regression_weight:
            rows = self.regression_rows or x.shape[0]
            take = lambda tree: jax.tree.map(lambda a: a[:rows], tree)  # noqa: E731
            if self.regression_target == "data":
                target = self.teacher.flow_data(params, take(batch))
            else:
                target = self.teacher_sample(params, z[:rows], take(batch),
                                             self.regression_steps)
            reg = dl.regression_loss(x[:rows], target)
            loss = loss + self.regression_weight * reg
            aux["regression_loss"] = reg
        return loss, aux


@OBJECTIVES.register("dmd")
def dmd(teacher_from: str = "", guidance: float = 1.0, fake_updates: int = 5,
        t_min: float = 0.02, t_max: float = 0.98, regression_weight: float = 0.0,
        regression_rows: int = 0, regression_steps: int = 25, regression_target: str = "teacher",
        noise_control: dict | None = None, student_init: str = "teacher", generator_steps: int = 1, gan_weight: float = 0.0,
        gan_fake_weight: float = 0.01, gan_layer: str = "", gan_width: int = 256):
    """``teacher_from``: the flow stage ("stage:teacher"); ``guidance``: the teacher's CFG scale;
    ``fake_updates``: fake-score updates per generator update (DMD2: 5; 1 = DMD); ``t_min``,
    ``t_max``: the noise levels of the distribution-matching gradient (DMD2's 0.02-0.98 of its
    timesteps); ``regression_*``: DMD1's paired regression loss (weight 0.25 in the paper), on
    the teacher's ODE solution or (``regression_target="data"``) the batch's data;
    ``noise_control``: ``{"name": <a registered noise control>, **its arguments}`` (module
    docstring), or empty for the fixed range;
    ``generator_steps``: the student's steps (1 = one step; DMD2 uses 4 for its multi-step
    students, trained by backward simulation); ``gan_*``: DMD2's GAN head (module docstring;
    ``gan_layer`` as ``xmodal.distill.gan.features``)."""
    student_lib.check_range(t_min, t_max)
    student_lib.check_generator_steps(generator_steps)
    if gan_weight < 0 or gan_fake_weight < 0 or gan_width < 1:
        raise SpecError("dmd needs gan_weight >= 0, gan_fake_weight >= 0 and gan_width >= 1")
    if gan_weight and not gan_fake_weight:
        raise SpecError("dmd gan_weight > 0 with gan_fake_weight = 0 would train the generator "
                        "against a classifier that never learns: set gan_fake_weight > 0")
    if generator_steps > 1 and regression_weight and regression_target == "teacher":
        raise SpecError("dmd regression_target='teacher' pairs the noise z with the teacher's "
                        "ODE(z), which a multi-step student's later steps do not start from: "
                        "use regression_target='data' or generator_steps=1")
    if not (isinstance(fake_updates, int) and fake_updates >= 1):
        raise SpecError(f"dmd fake_updates must be an integer >= 1; got {fake_updates!r}")
    if regression_weight < 0 or regression_rows < 0 or regression_steps < 1:
        raise SpecError("dmd needs regression_weight >= 0, regression_rows >= 0 and "
                        "regression_steps >= 1")
    if regression_target not in ("teacher", "data"):
        raise SpecError(f"dmd regression_target={regression_target!r}: one of teacher, data")
    control = noise_control_lib.build(noise_control)   # a bad name or key fails here, at start

    def bind(model, mesh):
        teacher, student = student_lib.bind_parts(teacher_from, student_init, model, mesh)
        return DMDObjective(teacher.objective, teacher.params, teacher.frozen, student,
                            student_init, float(guidance), float(t_min), float(t_max),
                            generator_steps=generator_steps, fake_updates=fake_updates,
                            regression_weight=float(regression_weight),
                            regression_rows=regression_rows, regression_steps=regression_steps,
                            regression_target=regression_target,
                            noise_control=control, gan_weight=float(gan_weight),
                            gan_fake_weight=float(gan_fake_weight), gan_layer=gan_layer,
                            gan_width=int(gan_width))
    return bind
