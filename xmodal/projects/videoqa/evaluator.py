"""The ``videoqa`` evaluator: multiple-choice accuracy, overall and per question type, read
through the eval split batch by batch (``ctx.stream``: a video split is never held).

A question is worth 1/n when its right answer is one of the n candidates sharing the best score
(``evaluate.ties.expected_hit``), so a model that scores every candidate alike gets chance,
20 %, on every type.
"""
from __future__ import annotations

import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.data.sets.sprite_questions import CANDIDATES, QTYPES
from xmodal.evaluate.ties import expected_hit
from xmodal.projects.videoqa.objective import FIELDS

_SCORE_FNS: dict = {}


def score_fn(model):
    # One function object per model: the Applier compiles it once.
    if id(model) not in _SCORE_FNS:
        _SCORE_FNS[id(model)] = lambda params, *xs: model.apply({"params": params["model"]}, *xs)
    return _SCORE_FNS[id(model)]


def accuracies(scores: np.ndarray, answer: np.ndarray, qtype: np.ndarray,
               valid: np.ndarray) -> dict[str, float]:
    """``acc`` over every real question and ``acc_<type>`` per type (in %), and counts."""
    hits = np.array([expected_hit(s, int(a)) for s, a in
                     zip(scores[valid > 0], answer[valid > 0])])
    types = qtype[valid > 0]
    out = {"acc": 100.0 * float(hits.mean()) if len(hits) else 0.0,
           "questions": float(len(hits))}
    for t, name in enumerate(QTYPES):
        if np.any(types == t):
            out[f"acc_{name}"] = 100.0 * float(hits[types == t].mean())
    return out


@EVALUATORS.register("videoqa")
def videoqa():
    seen: dict = {}

    def run(ctx: EvalContext) -> dict:
        scores, kept = ctx.stream(score_fn(ctx.model), FIELDS, keep=("answer", "qtype", "valid"))
        out = accuracies(np.asarray(scores, np.float32), kept["answer"], kept["qtype"],
                         kept["valid"])
        seen["metrics"] = [k for k in out if k.startswith("acc")]
        return out

    # Five candidates: a uniform guess is right 1 time in 5, on every type the split asks.
    run.chance = lambda ctx: {k: 100.0 / CANDIDATES for k in seen.get("metrics", ["acc"])}
    return run
