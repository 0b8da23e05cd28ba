"""CLIP and SigLIP objectives over a two-tower model (image tower, text tower)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
from jax.sharding import Mesh

from xmodal.nn.two_tower import paired_inputs
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss, siglip_loss
from xmodal.losses.ring import ring_clip_loss, ring_siglip_loss
from xmodal.core.parallel import BATCH_AXES


@dataclasses.dataclass(frozen=True)
class TwoTowerObjective:
    model: Any
    mesh: Mesh
    kind: str          # "clip" | "siglip"
    ring: bool         # chunked loss over the batch axes (memory B·B/n instead of B²)
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, *paired_inputs(self.model, batch))
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        zimg, ztxt, extra = self.model.apply(
            {"params": params["model"]}, *paired_inputs(self.model, batch), train=True,
            rngs={"dropout": rng})
        scale = extra["logit_scale"]
        axes = tuple(a for a in BATCH_AXES if a in self.mesh.shape)
        if self.kind == "clip":
            if self.ring:
                loss, aux = ring_clip_loss(zimg, ztxt, scale, mesh=self.mesh, axis=axes)
            else:
                loss, aux = clip_loss(zimg, ztxt, scale)
        else:
            bias = extra["logit_bias"]
            if bias is None:
                raise ValueError("siglip needs a model with a logit bias (set model.bias_init, "
                                 "e.g. -10.0)")
            if self.ring:
                loss, aux = ring_siglip_loss(zimg, ztxt, scale, bias, mesh=self.mesh, axis=axes)
            else:
                loss, aux = siglip_loss(zimg, ztxt, scale, bias)
            aux = dict(aux, logit_bias=bias)
        return loss, dict(aux, logit_scale=scale)


def _factory(kind: str) -> Callable[..., Callable[[Any, Mesh], TwoTowerObjective]]:
    def make(ring: bool = False):
        return lambda model, mesh: TwoTowerObjective(model, mesh, kind, ring)
    make.__name__ = kind
    return make


OBJECTIVES.register("clip")(_factory("clip"))
OBJECTIVES.register("siglip")(_factory("siglip"))
