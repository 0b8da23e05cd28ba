"""Evaluators: periodic measurements of a model on held-out data.

A spec's ``evals = {"retrieval": {"name": "retrieval", "ks": (1, 5, 10)}, ...}`` names factories
registered here. A factory takes the spec kwargs and returns ``run(ctx) -> {metric: value}``
where ``ctx`` is an ``EvalContext`` (``xmodal/evaluate/context.py``).
"""
from xmodal.registry import Registry

EVALUATORS = Registry("evaluator")

from xmodal.evaluate import two_tower as _two_tower  # noqa: E402,F401  (registers evaluators)
