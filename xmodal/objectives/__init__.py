"""Objectives: what a training step minimises, per parameter group.

A spec's ``objective = {"name": "clip", **kwargs}`` names a factory registered here; the factory
takes the spec kwargs and returns ``bind(model, mesh) -> Objective``. An objective has
``groups`` (names of its parameter groups), ``init(rng, batch) -> {group: params}`` and
``loss(params, batch, rng, group) -> (loss, aux)``, a pure function.
"""
from xmodal.registry import Registry

OBJECTIVES = Registry("objective")

from xmodal.objectives import two_tower as _two_tower  # noqa: E402,F401  (registers clip, siglip)
