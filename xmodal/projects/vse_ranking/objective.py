"""Global ranking objective over a two-tower model ("Deep Learning Applied to Image and Text
Matching", 2015: two channels embedded into one space, trained with a bidirectional ranking
loss; the choice of negatives specialises the system to one retrieval direction).

    loss = i2t_weight * mean_i cost_i2t(i) + t2i_weight * mean_i cost_t2i(i)
    cost_i2t(i) = sum / max over negatives j of [margin - s_ii + s_ij]_+

with s = cosine similarity of the towers' unit-norm embeddings; ``negatives`` is "in_batch"
(sum over every other pair of the batch), "hardest" (VSE++) or "semi_hard" (FaceNet). The
formula and the papers are in ``xmodal/objectives/ranking.py``, which computes it. The model's
``logit_scale`` is not used (a hinge on cosines needs no temperature) and gets no gradient.

If ``ids_key`` names a batch key (e.g. "label" for an identity), rows sharing an id are not
each other's negatives.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh

from xmodal.nn.two_tower import paired_inputs
from xmodal.core.registry import OBJECTIVES
from xmodal.losses.ranking import NEGATIVES, hinge_ranking_loss


@dataclasses.dataclass(frozen=True)
class RankingObjective:
    model: Any
    mesh: Mesh
    margin: float
    negatives: str
    i2t_weight: float
    t2i_weight: float
    ids_key: str
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        variables = self.model.init({"params": rng}, *paired_inputs(self.model, batch))
        return {"model": variables["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        zimg, ztxt, _ = self.model.apply(
            {"params": params["model"]}, *paired_inputs(self.model, batch), train=True,
            rngs={"dropout": rng})
        ids = None
        if self.ids_key:
            if self.ids_key not in batch:
                raise KeyError(f"ranking ids_key={self.ids_key!r} is not a batch key; batch "
                               f"keys: {', '.join(sorted(batch))}")
            ids = batch[self.ids_key]
        return hinge_ranking_loss(zimg, ztxt, margin=self.margin, negatives=self.negatives,
                                  i2t_weight=self.i2t_weight, t2i_weight=self.t2i_weight,
                                  ids=ids)


@OBJECTIVES.register("ranking")
def ranking(margin: float = 0.2, negatives: str = "in_batch", i2t_weight: float = 1.0,
            t2i_weight: float = 1.0, ids_key: str = ""):
    """Bidirectional hinge ranking loss; ``negatives`` in ("in_batch", "hardest", "semi_hard")."""
    if negatives not in NEGATIVES:
        raise ValueError(f"ranking negatives must be one of {NEGATIVES}; got {negatives!r}")
    if margin < 0:
        raise ValueError(f"ranking margin must be >= 0; got {margin}")
    if i2t_weight < 0 or t2i_weight < 0 or i2t_weight + t2i_weight == 0:
        raise ValueError(f"ranking direction weights must be >= 0 and not both 0; got "
                         f"i2t_weight={i2t_weight}, t2i_weight={t2i_weight}")
    return lambda model, mesh: RankingObjective(model, mesh, float(margin), negatives,
                                                float(i2t_weight), float(t2i_weight), ids_key)
