"""Same-style retrieval objective over a ``unified`` model: image, text and image+text queries
pulled to the same item drawn in another style.

A batch holds, per row, an item's image in style a (``image``), its image in another style b
(``image2``), its text and its identity ``label``. Several rows may share an identity (a card
is in ~25 training decks, so a batch of 128 cards has ~2.5 rows per card), so the loss is
multi-positive: SDM (Jiang & Ye 2023, "Cross-Modal Implicit Relation Reasoning and Aligning for
Text-to-Image Person Retrieval"; ``xmodal/objectives/sdm.py``), whose target distribution of a
row is uniform over every row of the same identity, and which reduces to symmetric InfoNCE
(CLIP) when all identities differ:

    loss = w_ii * SDM(z_a, z_b) + w_ti * SDM(z_text, z_b) + w_fi * SDM(z_fused(a, text), z_b)

(each SDM term is the sum of its two directions; all use the same ``label`` ids and ``tau``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh

from xmodal.core.registry import OBJECTIVES
from xmodal.losses.sdm import sdm_loss

KEYS = ("image", "image2", "text", "label")


@dataclasses.dataclass(frozen=True)
class SameStyleObjective:
    model: Any
    mesh: Mesh
    tau: float
    image_weight: float
    text_weight: float
    fused_weight: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, batch["image"], batch["text"])
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        missing = [k for k in KEYS if k not in batch]
        if missing:
            raise KeyError(f"same_style needs batch keys {KEYS} (transform card_pairs or "
                           f"emoji_style_pairs); missing {missing}")
        za, zb, zt, zf = self.model.apply(
            {"params": params["model"]}, batch["image"], batch["image2"], batch["text"],
            train=True, method="encode_pairs", rngs={"dropout": rng})
        ids = batch["label"]
        l_ii, _ = sdm_loss(za, zb, ids, tau=self.tau)
        l_ti, _ = sdm_loss(zt, zb, ids, tau=self.tau)
        l_fi, _ = sdm_loss(zf, zb, ids, tau=self.tau)
        loss = self.image_weight * l_ii + self.text_weight * l_ti + self.fused_weight * l_fi
        return loss, {"image_image_loss": jax.lax.stop_gradient(l_ii),
                      "text_image_loss": jax.lax.stop_gradient(l_ti),
                      "fused_image_loss": jax.lax.stop_gradient(l_fi)}


@OBJECTIVES.register("same_style")
def same_style(tau: float = 0.05, image_weight: float = 1.0, text_weight: float = 1.0,
               fused_weight: float = 1.0):
    """Multi-positive (SDM) contrastive loss: image↔image, text↔image, image+text↔image."""
    if not tau > 0:
        raise ValueError(f"same_style tau must be a positive temperature; got {tau}")
    weights = (image_weight, text_weight, fused_weight)
    if min(weights) < 0 or sum(weights) == 0:
        raise ValueError(f"same_style weights must be >= 0 and not all 0; got {weights}")
    return lambda model, mesh: SameStyleObjective(model, mesh, float(tau), *map(float, weights))
