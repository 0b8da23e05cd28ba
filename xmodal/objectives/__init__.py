"""Objectives: what a training step minimises, per parameter group.

A spec's ``objective = {"name": "clip", **kwargs}`` names a factory registered here; the factory
takes the spec kwargs and returns ``bind(model, mesh) -> Objective``. An objective has
``groups`` (names of its parameter groups), ``init(rng, batch) -> {group: params}`` and
``loss(params, batch, rng, group) -> (loss, aux)``, a pure function (a loss whose signature
has ``step`` also gets the step number, for schedules over training). Optional: ``cadence``
(``{group: (every, offset)}``). Frozen parts (a VAE or teacher from an earlier stage) are loaded
by the factory or ``bind`` from a path in its kwargs (``"stage:vae"`` resolves to that stage's
workdir) and closed over, never part of the train state.
"""
from xmodal.registry import Registry, import_all

OBJECTIVES = Registry("objective")

import_all(__name__, __path__)  # every module registers what it defines
