"""IRRA (Jiang & Ye 2023, "Cross-Modal Implicit Relation Reasoning and Aligning for
Text-to-Image Person Retrieval") on a ``fusion_two_tower`` with ``fusion="encoder"``.

    L = L_align + irr_weight * L_irr

- ``L_align`` with ``loss_kind="sdm"``: similarity distribution matching (``sdm.sdm_loss``),
  KL(p || q) in both directions between the softmax of cosine similarities / tau (tau = 0.02
  in the paper) and the identity matching distribution q_ij = y_ij / sum_k y_ik, where
  y_ij = [id_i == id_j]: every pair of the same identity in the batch is a positive.
  ``loss_kind="infonce"``: CLIP's symmetric InfoNCE at the same fixed scale 1 / tau, which
  treats every other pair as a negative even when it shows the same identity (the paper's
  ITC baseline).
- ``L_irr``: implicit relation reasoning, cross-modal MLM: 15% of the caption's byte tokens
  are masked, the masked caption's tokens cross-attend to the image's patch tokens in the
  fusion encoder, and the MLM head predicts the masked bytes (``xmodal/objectives/mlm.py``).
  ``irr_weight=0`` switches it off (not computed).

The paper also adds an ID (identity classification) loss; identities here are hashed ints over
an open set, so it is left out. The batch needs ``image``, ``text`` and ``identity`` (int32).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh

from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.nn.matching_model import check_fusion_model
from xmodal.losses.mlm import fusion_forward, mlm_loss
from xmodal.losses.sdm import sdm_loss
from xmodal.core.registry import SpecError

LOSS_KINDS = ("sdm", "infonce")


@dataclasses.dataclass(frozen=True)
class IRRAObjective:
    model: Any
    mesh: Mesh
    loss_kind: str
    tau: float
    irr_weight: float
    mask_rate: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, batch["image"], batch["text"],
                                    batch["text"])
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        if "identity" not in batch:
            raise ValueError(f"irra needs an 'identity' batch key (int identity per pair); "
                             f"batch has {sorted(batch)}; use the emoji_styles transform")
        out, selected = fusion_forward(self.model, params["model"], batch, rng, self.mask_rate,
                                       with_mlm=self.irr_weight > 0)
        if self.loss_kind == "sdm":
            loss, aux = sdm_loss(out["zimg"], out["ztxt"], batch["identity"], tau=self.tau)
        else:
            loss, aux = clip_loss(out["zimg"], out["ztxt"], 1.0 / self.tau)
        aux = dict(aux, align_loss=jax.lax.stop_gradient(loss))
        if self.irr_weight > 0:
            irr, irr_aux = mlm_loss(out["mlm_logits"], batch["text"], selected)
            loss = loss + self.irr_weight * irr
            aux.update(irr_loss=jax.lax.stop_gradient(irr), **irr_aux)
        return loss, aux


@OBJECTIVES.register("irra")
def irra(loss_kind: str = "sdm", tau: float = 0.02, irr_weight: float = 1.0,
         mask_rate: float = 0.15):
    """See the module docstring."""
    if loss_kind not in LOSS_KINDS:
        raise SpecError(f"irra loss_kind={loss_kind!r} is not one of {LOSS_KINDS}")
    if not tau > 0:
        raise SpecError(f"irra tau must be positive; got {tau}")
    if irr_weight < 0 or not 0.0 <= mask_rate <= 1.0:
        raise SpecError(f"irra needs irr_weight >= 0 and mask_rate in [0, 1]; got "
                        f"{irr_weight}, {mask_rate}")

    def bind(model, mesh):
        check_fusion_model(model, "irra", irr_weight > 0)
        return IRRAObjective(model, mesh, loss_kind, float(tau), float(irr_weight),
                             float(mask_rate))
    return bind
