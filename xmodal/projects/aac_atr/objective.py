"""The captioning objective: the smoothed token NLL of each clip's caption under teacher forcing
(``xmodal.losses.sequence``), nothing else (the paper trains for captioning only).

``drop_condition`` is the probability that a training row's clip is replaced by the decoder's
learned null memory (``xmodal.nn.decoder``), as classifier-free guidance trains its
unconditional model (Ho & Salimans, 2022): the same decoder then also gives a caption's
unconditional likelihood, one of the two audio→text normalisers of the retrieval evaluator.
With 0 the null memory is never trained and that normaliser is meaningless.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax

from xmodal.core.registry import OBJECTIVES, SpecError
from xmodal.losses.sequence import caption_loss, shift


@dataclasses.dataclass(frozen=True)
class CaptioningObjective:
    model: Any
    label_smoothing: float
    drop_condition: float
    groups: tuple[str, ...] = ("model",)

    def init(self, rng: jax.Array, batch: dict) -> dict:
        inputs, _, _ = shift(batch["text"])
        if inputs.shape[1] > self.model.max_len:
            raise SpecError(f"captions of {batch['text'].shape[1]} tokens "
                            "(data.transform.max_text_len) do not fit the decoder's context "
                            f"model.decoder.max_len={self.model.max_len}: set max_len >= "
                            f"{inputs.shape[1]}")
        return {"model": self.model.init({"params": rng}, batch["audio"], inputs)["params"]}

    def loss(self, params: dict, batch: dict, rng: jax.Array, group: str = "model"):
        drop_rng, dropout_rng = jax.random.split(rng)
        inputs, targets, weights = shift(batch["text"])
        drop = jax.random.bernoulli(drop_rng, self.drop_condition, (inputs.shape[0],))
        logits = self.model.apply({"params": params["model"]}, batch["audio"], inputs,
                                  train=True, drop_memory=drop, rngs={"dropout": dropout_rng})
        return caption_loss(logits, targets, weights, self.label_smoothing)


@OBJECTIVES.register("captioning")
def captioning(label_smoothing: float = 0.1, drop_condition: float = 0.1):
    if not 0.0 <= drop_condition < 1.0:
        raise SpecError(f"objective.drop_condition={drop_condition} must lie in [0, 1)")
    if not 0.0 <= label_smoothing < 1.0:
        raise SpecError(f"objective.label_smoothing={label_smoothing} must lie in [0, 1)")
    return lambda model, mesh: CaptioningObjective(model, label_smoothing, drop_condition)
