"""Entity-linking evaluator (M3EL's protocol): every eval mention ranks every eval entity.

Entities are the distinct ``entity_id`` values of the eval split (first occurrence kept), each
mention's gold entity is its record's. Scores come from the objective's ``score_matrix`` (the
sum of the active matching levels, which need not be a dot product: global-to-local matching
attends over the entity's tokens), and ``ranking_metrics.entity_linking_metrics`` turns them
into Hits@K and MRR. The score matrix S [Nm, Ne] is passed as mention "embeddings" against the
identity matrix as entity "embeddings", so that function's dot product gives back S exactly.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.ranking import entity_linking_metrics

KEYS = ("mention_image", "mention_text", "entity_image", "entity_text", "entity_id")


@runtime_checkable
class RanksEntities(Protocol):
    """What the evaluator asks of its objective (``M3ELObjective``): the [mentions, entities]
    ranking scores of encoded mentions ``m`` and entities ``e``, summed over matching
    ``levels`` (the objective's ranking levels when None)."""

    def score_matrix(self, m: dict, e: dict, levels: tuple[str, ...] | None = None,
                     chunk_size: int = 256) -> np.ndarray: ...


def gold_entities(entity_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the distinct entities in first-occurrence order, gold index per record)."""
    ids = np.asarray(entity_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"entity_id must be a non-empty 1-D array, got shape {ids.shape}")
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)                 # distinct ids by first occurrence
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return first[order], position[inverse.reshape(-1)]


def metrics_from_scores(scores: np.ndarray, gold: np.ndarray, ks=(1, 3, 5),
                        chunk_size: int = 256) -> dict[str, float]:
    """H@K and MRR of ``scores`` [Nm, Ne] with gold entity indices ``gold`` [Nm]."""
    scores = np.asarray(scores, np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [mentions, entities], got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("entity-linking scores contain NaN/Inf; the model diverged")
    ks = tuple(k for k in ks if k <= scores.shape[1]) or (1,)
    eye = np.eye(scores.shape[1], dtype=np.float32)
    return entity_linking_metrics(scores, eye, gold, ks=ks, chunk_size=chunk_size)


@EVALUATORS.register("entity_linking")
def entity_linking(ks: tuple = (1, 3, 5), per_level: bool = True, chunk_size: int = 256):
    """H@K and MRR of the objective's ranking score; ``per_level`` adds each level's H@1/MRR
    (``<level>_H@1``) to show what each matching level contributes on its own."""
    def run(ctx: EvalContext) -> dict:
        missing = [k for k in KEYS if k not in ctx.arrays]
        if missing or not isinstance(ctx.objective, RanksEntities):
            raise ValueError(f"entity_linking needs the emoji_entities transform (arrays "
                             f"{', '.join(KEYS)}; missing {missing}) and an objective with "
                             f"score_matrix (m3el); got {type(ctx.objective).__name__}")
        a = ctx.arrays
        rows, gold = gold_entities(a["entity_id"])
        m = ctx.apply_model("encode", a["mention_image"], a["mention_text"])
        e = ctx.apply_model("encode", a["entity_image"][rows], a["entity_text"][rows])
        out = metrics_from_scores(ctx.objective.score_matrix(m, e, chunk_size=chunk_size), gold,
                                  ks, chunk_size)
        out["num_entities"] = float(len(rows))
        if per_level:
            levels = ctx.objective.ranking_levels()
            for level in ("intra",) * (ctx.objective.weights["intra"] > 0) + levels:
                if len(levels) == 1 and level == levels[0]:
                    continue  # the same as the overall score
                r = metrics_from_scores(ctx.objective.score_matrix(m, e, (level,), chunk_size),
                                        gold, (1,), chunk_size)
                out[f"{level}_H@1"], out[f"{level}_MRR"] = r["H@1"], r["MRR"]
        return out
    return run
