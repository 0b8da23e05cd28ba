"""Evaluators: periodic measurements of a model on held-out data.

A spec's ``evals = {"retrieval": {"name": "retrieval", "ks": (1, 5, 10)}, ...}`` names factories
registered here. A factory takes the spec kwargs and returns ``run(ctx) -> {metric: value}``
where ``ctx`` is an ``EvalContext`` (``xmodal/evaluate/context.py``).
"""
from xmodal.registry import Registry, import_all

EVALUATORS = Registry("evaluator")

import_all(__name__, __path__)  # every module registers what it defines
