"""The ``videoqa`` objective: the smoothed ranking loss over each question's five candidates
(``xmodal.losses.choice``), averaged over the clip's real questions."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.losses.choice import smoothed_ranking_loss

FIELDS = ("video", "flow", "question", "candidates")


@dataclasses.dataclass(frozen=True)
class VideoQAObjective:
    model: Any
    margin: float
    gamma: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        return {"model": self.model.init({"params": rng}, *(batch[f] for f in FIELDS))["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        scores = self.model.apply({"params": params["model"]}, *(batch[f] for f in FIELDS),
                                  train=True, rngs={"dropout": rng})
        return smoothed_ranking_loss(scores, batch["answer"], batch["valid"], self.margin,
                                     self.gamma)


@OBJECTIVES.register("videoqa")
def videoqa(margin: float = 1.0, gamma: float = 1.0):
    if margin < 0:
        raise SpecError(f"objective.margin={margin} must be >= 0")
    if gamma <= 0:
        raise SpecError(f"objective.gamma={gamma} must be > 0")
    return lambda model, mesh: VideoQAObjective(model, float(margin), float(gamma))
