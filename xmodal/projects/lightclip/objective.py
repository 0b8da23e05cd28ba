"""LightCLIP (Nie et al. 2023, "LightCLIP: Learning Multi-Level Interaction for Lightweight
Vision-Language Models"): three levels of image-text interaction on a ``fusion_two_tower``.

    L = L_global + token_weight * L_token + mlm_weight * L_mlm

- ``L_global``: CLIP's symmetric InfoNCE against progressively softened negative labels
  (``soft_labels.soft_label_clip_loss``): target 1 - alpha on the pair, alpha / (B - 1) on each
  negative, alpha(step) ramped from 0 to ``max_smoothing`` over ``ramp_steps`` (linear or
  cosine). ``max_smoothing = 0`` is plain CLIP.
- ``L_token``: relaxed bipartite patch-word matching (``token_matching.token_matching_loss``):
  an entropic optimal-transport plan (Sinkhorn, temperature ``token_tau``) between the image's
  patch tokens and the caption's byte tokens scores each pair, and the scores enter a symmetric
  InfoNCE at the model's logit scale. It holds a [b, b, P, L] array, so it runs on the first
  ``token_batch`` pairs of the batch (0: all).
- ``L_mlm``: masked-language modelling of the caption with the image injected into the text
  encoder's stages (the model's ``fusion="inject"``) or through a fusion encoder
  (``fusion="encoder"``); see ``xmodal/objectives/mlm.py``.

Each part is switched off by a zero: ``max_smoothing=0``, ``token_weight=0``, ``mlm_weight=0``
(a switched-off part is not computed), so the paper's ablation is three flags.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from xmodal.core.registry import OBJECTIVES
from xmodal.nn.matching_model import check_fusion_model
from xmodal.losses.mlm import fusion_forward, mlm_loss
from xmodal.losses.soft_labels import cosine_ramp, linear_ramp, soft_label_clip_loss
from xmodal.losses.token_matching import token_matching_loss
from xmodal.core.registry import SpecError

RAMPS = {"linear": linear_ramp, "cosine": cosine_ramp}


@dataclasses.dataclass(frozen=True)
class LightCLIPObjective:
    model: Any
    mesh: Mesh
    alpha: Callable[[jax.Array], jax.Array]
    token_weight: float
    token_tau: float
    sinkhorn_iters: int
    token_batch: int
    mlm_weight: float
    mask_rate: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        # The masked caption is passed so the fusion and MLM head get parameters too.
        variables = self.model.init({"params": rng}, batch["image"], batch["text"],
                                    batch["text"])
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model", step=0):
        out, selected = fusion_forward(self.model, params["model"], batch, rng, self.mask_rate,
                                       with_mlm=self.mlm_weight > 0)
        scale = out["logit_scale"]
        loss, aux = soft_label_clip_loss(out["zimg"], out["ztxt"], scale, self.alpha(step))
        aux = dict(aux, global_loss=jax.lax.stop_gradient(loss), logit_scale=scale)
        if self.token_weight > 0:
            b = self.token_batch or out["patches"].shape[0]
            token, token_aux = token_matching_loss(
                out["patches"][:b], out["words"][:b], out["word_mask"][:b], scale,
                tau=self.token_tau, num_iters=self.sinkhorn_iters)
            loss = loss + self.token_weight * token
            aux.update(token_loss=jax.lax.stop_gradient(token),
                       token_i2t_acc=token_aux["i2t_acc"])
        if self.mlm_weight > 0:
            mlm, mlm_aux = mlm_loss(out["mlm_logits"], batch["text"], selected)
            loss = loss + self.mlm_weight * mlm
            aux.update(mlm_loss=jax.lax.stop_gradient(mlm), **mlm_aux)
        return loss, aux


@OBJECTIVES.register("lightclip")
def lightclip(max_smoothing: float = 0.2, ramp_steps: int = 1000, ramp: str = "linear",
              ramp_start: int = 0, token_weight: float = 1.0, token_tau: float = 0.05,
              sinkhorn_iters: int = 20, token_batch: int = 0, mlm_weight: float = 1.0,
              mask_rate: float = 0.15):
    """See the module docstring; zeros switch parts off."""
    if ramp not in RAMPS:
        raise SpecError(f"lightclip ramp={ramp!r} is not one of {sorted(RAMPS)}")
    if token_weight < 0 or mlm_weight < 0:
        raise SpecError(f"lightclip weights must be >= 0; got token_weight={token_weight}, "
                        f"mlm_weight={mlm_weight}")
    if token_batch < 0:
        raise SpecError(f"lightclip token_batch must be >= 0 (0 = whole batch); got "
                        f"{token_batch}")
    if not 0.0 <= mask_rate <= 1.0:
        raise SpecError(f"lightclip mask_rate must lie in [0, 1]; got {mask_rate}")
    if max_smoothing > 0:
        alpha = RAMPS[ramp](max_smoothing, ramp_steps, ramp_start)
    else:
        if max_smoothing < 0:
            raise SpecError(f"lightclip max_smoothing must be >= 0; got {max_smoothing}")
        alpha = lambda step: jnp.float32(0.0)  # noqa: E731  plain CLIP targets

    def bind(model, mesh):
        check_fusion_model(model, "lightclip", mlm_weight > 0)
        return LightCLIPObjective(model, mesh, alpha, float(token_weight), float(token_tau),
                                  int(sinkhorn_iters), int(token_batch), float(mlm_weight),
                                  float(mask_rate))
    return bind
