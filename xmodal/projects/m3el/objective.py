"""M3EL objective (Hu et al. 2024, "Multi-level Matching Network for Multimodal Entity
Linking"): mention i and entity i of a batch are a pair, every other entity a negative.

With m = encode(mention), e = encode(entity) (``xmodal/nn/entity_model.py``), s_* learned
logit scales, and each term symmetric (mention→entity and entity→mention):

    L = w_intra · ½ [ IM(m.txt, e.txt) + IM(m.img, e.img) ]            intra-modal contrastive
      + w_g2g   · ½ [ NCE(m.txt_g, e.txt_g) + NCE(m.img_g, e.img_g) ]  global-to-global
      + w_g2l   · ½ [ GL(m.txt_g, e.txt_l) + GL(m.img_g, e.img_l) ]    global-to-local
      + w_cross · ½ [ NCE(m.t2v, e.t2v) + NCE(m.v2t, e.v2t) ]          bidirectional cross-modal

IM is ``intra_modal_loss`` (InfoNCE whose denominator also holds the anchor's own-view
neighbours, weighted by ``intra_negative_weight``: the paper's "negative samples from the same
modality"), NCE is ``clip_loss``, GL is ``global_local_loss`` (a global attends over the other
side's tokens). A weight of 0 switches a level off (the ablation flags); it is then neither
computed nor used for ranking.

Ranking (``score_matrix``): the matching score of mention i and entity j is the sum over the
active matching levels (g2g, g2l, cross) of their cosine scores, each level the mean of its two
modality (or direction) scores; with no matching level active, the intra-modal embeddings'
score is used.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from xmodal.core.registry import OBJECTIVES
from xmodal.losses.contrastive import clip_loss
from xmodal.losses.intra_modal import global_local_loss, global_local_scores, intra_modal_loss

MATCHING = ("g2g", "g2l", "cross")
BATCH_KEYS = ("mention_image", "mention_text", "entity_image", "entity_text")


def level_scores(m: dict, e: dict, level: str, attn_temperature: float) -> jax.Array:
    """[Nm, Ne] cosine-based score of one level between mention and entity outputs."""
    if level == "intra":
        return 0.5 * (m["txt"] @ e["txt"].T + m["img"] @ e["img"].T)
    if level == "g2g":
        return 0.5 * (m["txt_g"] @ e["txt_g"].T + m["img_g"] @ e["img_g"].T)
    if level == "g2l":
        return 0.5 * (global_local_scores(m["txt_g"], e["txt_l"], e["txt_mask"], attn_temperature)
                      + global_local_scores(m["img_g"], e["img_l"], e["img_mask"],
                                            attn_temperature))
    if level == "cross":
        return 0.5 * (m["t2v"] @ e["t2v"].T + m["v2t"] @ e["v2t"].T)
    raise ValueError(f"unknown m3el level {level!r}; levels: intra, {', '.join(MATCHING)}")


@functools.lru_cache(maxsize=32)
def scores_fn(levels: tuple[str, ...], attn_temperature: float):
    """Jitted ``(m, e) -> sum of level_scores``, one per (levels, temperature)."""
    return jax.jit(lambda m, e: sum(level_scores(m, e, k, attn_temperature) for k in levels))


@dataclasses.dataclass(frozen=True)
class M3ELObjective:
    model: Any
    mesh: Mesh
    weights: dict            # level -> loss weight (0 = off)
    intra_negative_weight: float
    attn_temperature: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, *(batch[k] for k in BATCH_KEYS))
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        m, e, scale = self.model.apply({"params": params["model"]},
                                       *(batch[k] for k in BATCH_KEYS), train=True,
                                       rngs={"dropout": rng})
        total, aux = jnp.zeros((), jnp.float32), {}
        w = self.weights
        if w["intra"] > 0:
            lt, at = intra_modal_loss(m["txt"], e["txt"], scale["intra"], self.intra_negative_weight)
            li, ai = intra_modal_loss(m["img"], e["img"], scale["intra"], self.intra_negative_weight)
            total += w["intra"] * 0.5 * (lt + li)
            aux.update(intra_loss=0.5 * (lt + li), intra_txt_acc=at["a2b_acc"],
                       intra_img_acc=ai["a2b_acc"])
        if w["g2g"] > 0:
            lt, at = clip_loss(m["txt_g"], e["txt_g"], scale["g2g"])
            li, ai = clip_loss(m["img_g"], e["img_g"], scale["g2g"])
            total += w["g2g"] * 0.5 * (lt + li)
            aux.update(g2g_loss=0.5 * (lt + li), g2g_txt_acc=at["i2t_acc"],
                       g2g_img_acc=ai["i2t_acc"])
        if w["g2l"] > 0:
            t = self.attn_temperature
            lt, at = global_local_loss(m["txt_g"], e["txt_l"], e["txt_mask"], scale["g2l"], t)
            li, ai = global_local_loss(m["img_g"], e["img_l"], e["img_mask"], scale["g2l"], t)
            total += w["g2l"] * 0.5 * (lt + li)
            aux.update(g2l_loss=0.5 * (lt + li), g2l_txt_acc=at["g2l_acc"],
                       g2l_img_acc=ai["g2l_acc"])
        if w["cross"] > 0:
            lt, at = clip_loss(m["t2v"], e["t2v"], scale["cross"])
            lv, av = clip_loss(m["v2t"], e["v2t"], scale["cross"])
            total += w["cross"] * 0.5 * (lt + lv)
            aux.update(cross_loss=0.5 * (lt + lv), t2v_acc=at["i2t_acc"], v2t_acc=av["i2t_acc"])
        aux.update({f"logit_scale_{k}": v for k, v in scale.items()})
        return total, aux

    def ranking_levels(self) -> tuple[str, ...]:
        active = tuple(k for k in MATCHING if self.weights[k] > 0)
        return active or ("intra",)

    def score_matrix(self, m: dict, e: dict, levels: tuple[str, ...] | None = None,
                     chunk_size: int = 256) -> np.ndarray:
        """[Nm, Ne] ranking scores (sum over ``levels``, default ``ranking_levels()``)."""
        fn = scores_fn(tuple(levels or self.ranking_levels()), self.attn_temperature)
        n = len(m["txt"])
        rows = []
        for start in range(0, n, chunk_size):
            chunk = {k: v[start:start + chunk_size] for k, v in m.items()}
            rows.append(np.asarray(fn(chunk, e)))
        return np.concatenate(rows)


@OBJECTIVES.register("m3el")
def m3el(intra_weight: float = 1.0, g2g_weight: float = 1.0, g2l_weight: float = 1.0,
         cross_weight: float = 1.0, intra_negative_weight: float = 1.0,
         attn_temperature: float = 0.1):
    """M3EL's multi-level loss; any level weight 0 turns that level off (see module doc)."""
    weights = {"intra": intra_weight, "g2g": g2g_weight, "g2l": g2l_weight,
               "cross": cross_weight}
    for k, v in weights.items():
        if not v >= 0:
            raise ValueError(f"m3el {k}_weight must be >= 0 (0 turns the level off), got {v}")
    if not any(v > 0 for v in weights.values()):
        raise ValueError("m3el: every level weight is 0; nothing would be trained")
    if not intra_negative_weight >= 0:
        raise ValueError(f"m3el intra_negative_weight must be >= 0, got {intra_negative_weight}")
    if not attn_temperature > 0:
        raise ValueError(f"m3el attn_temperature must be > 0, got {attn_temperature}")
    return lambda model, mesh: M3ELObjective(model, mesh, weights, float(intra_negative_weight),
                                             float(attn_temperature))
