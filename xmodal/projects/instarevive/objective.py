"""InstaRevive's teacher and its supervised baseline: image restoration as a flow in pixel space.

Images are scaled to [-1, 1]: x1 = image / 127.5 - 1 (the clean image), y = lq / 127.5 - 1 (its
degradation, bicubic-upsampled to the same size), q = the caption's byte tokens.

``restoration_flow``, the teacher: rectified flow from noise to the clean image, conditioned on
the degraded image (extra input channels of the U-Net) and the caption (cross-attention),

    x_t = (1 - t) x0 + t x1,   L = E || v(x_t, t, y, q) - (x1 - x0) ||^2

with the caption replaced by the empty one with probability ``cfg_drop`` (the degraded image is
always given). It is a flow teacher (``xmodal.distill.teacher.FlowTeacher``) and a sampler: its
ODE in ``steps`` Euler steps. A ``dmd`` / ``sid`` / ``reflow`` stage distils it to one step.

``restoration_l2``, the supervised one-step baseline of the same network: G(y, q) = x1-prediction
of the network at t = 0 from x_t = 0 (no noise), trained with || G(y, q) - x1 ||^2. It is what a
student would be with paired data and no teacher: the regression to the mean that the
distribution-matching students are meant to beat on sharpness (Fréchet distance).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from xmodal import sampling
from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.data.tokenizer import ByteTokenizer
from xmodal.distill.teacher import ode_sample, one_step
from xmodal.losses.flow import TIME_SAMPLERS, flow_matching_loss
from xmodal.losses.flow_paths import FLOW_PATHS


def to_unit(image) -> jax.Array:
    """uint8 [..., 3] → float32 in [-1, 1]."""
    return jnp.asarray(image, jnp.float32) / 127.5 - 1.0


def to_uint8(x) -> jax.Array:
    return jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


@dataclasses.dataclass(frozen=True, eq=False)
class RestorationFlow:
    model: Any              # U-Net: (x_t, t, lq, text) -> v
    path: Any
    time_sampler: Any
    cfg_drop: float
    empty_text: Any         # the empty caption's tokens [L] (the CFG null)
    solver: str = "euler"
    groups: tuple = ("model",)

    # ------------------------------------------------------------------ FlowTeacher
    def flow_data(self, params, batch):
        return to_unit(batch["image"])

    def flow_condition(self, params, batch):
        return {"lq": to_unit(batch["lq"]), "text": batch["text"]}

    def null_condition(self, params, cond):
        text = jnp.broadcast_to(jnp.asarray(self.empty_text, cond["text"].dtype),
                                cond["text"].shape)
        return {"lq": cond["lq"], "text": text}

    def velocity(self, net_params, x_t, t, cond):
        return self.model.apply({"params": net_params}, x_t, t, cond["lq"], cond["text"])

    def with_model(self, model) -> "RestorationFlow":
        return dataclasses.replace(self, model=model)

    # ------------------------------------------------------------------ training
    def init(self, rng, batch):
        x = to_unit(batch["image"][:1])
        return {"model": self.model.init({"params": rng}, x, jnp.zeros((1,)),
                                         to_unit(batch["lq"][:1]), batch["text"][:1])["params"]}

    def loss(self, params, batch, rng, group="model"):
        cond = self.flow_condition(params, batch)
        return flow_matching_loss(self.velocity, params["model"], self.flow_data(params, batch),
                                  cond, rng, path=self.path, time_sampler=self.time_sampler,
                                  cfg_drop=self.cfg_drop,
                                  null_cond=self.null_condition(params, cond))

    # ------------------------------------------------------------------ Sampler
    def sample(self, params, noise, batch, steps: int = 10):
        return ode_sample(self, params["model"], noise, self.flow_condition(params, batch),
                          steps=steps, solver=self.solver)


@dataclasses.dataclass(frozen=True, eq=False)
class RestorationRegression(RestorationFlow):
    def restore(self, net_params, batch):
        cond = self.flow_condition(None, batch)
        return one_step(self, net_params, jnp.zeros_like(cond["lq"]), cond)

    def loss(self, params, batch, rng, group="model"):
        err = self.restore(params["model"], batch) - self.flow_data(params, batch)
        mse = jnp.mean(jnp.square(err))
        return mse, {"mse": mse}

    def sample(self, params, noise, batch, steps: int = 1):
        del noise, steps  # deterministic, one network call
        return self.restore(params["model"], batch)


def _build(cls, path, time_sampler, cfg_drop, solver, max_text_len):
    if not 0.0 <= cfg_drop <= 1.0:
        raise SpecError(f"{cls.__name__} cfg_drop must be in [0, 1]; got {cfg_drop}")
    if solver not in sampling.METHODS:
        raise SpecError(f"solver={solver!r}: one of {', '.join(sampling.METHODS)}")
    flow_path = FLOW_PATHS.get(path)()
    sampler = TIME_SAMPLERS.get(time_sampler)()
    empty = ByteTokenizer(max_text_len).encode("")

    def bind(model, mesh):
        return cls(model, flow_path, sampler, float(cfg_drop), empty, solver)
    return bind


@OBJECTIVES.register("restoration_flow")
def restoration_flow(path: str = "rectified", time_sampler: str = "uniform",
                     cfg_drop: float = 0.1, solver: str = "euler", max_text_len: int = 32):
    """The teacher (module docstring). ``max_text_len``: the transform's, for the empty caption."""
    return _build(RestorationFlow, path, time_sampler, cfg_drop, solver, max_text_len)


@OBJECTIVES.register("restoration_l2")
def restoration_l2(path: str = "rectified", max_text_len: int = 32):
    """The supervised one-step baseline (module docstring)."""
    return _build(RestorationRegression, path, "uniform", 0.0, "euler", max_text_len)
