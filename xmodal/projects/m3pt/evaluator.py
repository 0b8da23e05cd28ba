"""Tagging evaluator (M3PT's protocol): each eval item's top-K tags among the whole vocabulary.

Items are embedded with the model's ``encode_item`` (image + text fusion), the objective's tag
vocabulary with ``encode_tags`` (the text tower), and ``ranking_metrics.tagging_metrics`` gives
P@K, R@K and F1@K over the items with at least one in-vocabulary tag. Eval keywords that are not
in the (training) vocabulary cannot be predicted; they are dropped from the targets and
reported: ``unseen_tags`` (count), ``unseen_tag_share`` (percent of all eval keywords).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.ranking import tagging_metrics

KEYS = ("image", "text", "tags", "unseen_tags")


@runtime_checkable
class TagsItems(Protocol):
    """What the evaluator asks of its objective (``M3PTObjective``): the tag vocabulary and
    each tag's tokens, which the model's ``encode_tags`` embeds."""
    vocab: tuple[str, ...]
    tag_tokens: np.ndarray          # int32 [T, max_tag_len]


def tag_counts(tags: np.ndarray, unseen: np.ndarray) -> dict[str, float]:
    """Counts of in-vocabulary and dropped eval keywords and of items left with no tag."""
    kept, dropped = float(np.sum(tags)), float(np.sum(unseen))
    return {"eval_tags": kept, "unseen_tags": dropped,
            "unseen_tag_share": 100.0 * dropped / max(kept + dropped, 1.0),
            "untagged_items": float(np.sum(~np.any(tags, axis=1)))}


@EVALUATORS.register("tagging")
def tagging(ks: tuple = (1, 3, 5), chunk_size: int = 256):
    """P@K, R@K, F1@K of the top-K tags, plus the unseen-tag counts (module docstring)."""
    def run(ctx: EvalContext) -> dict:
        missing = [k for k in KEYS if k not in ctx.arrays]
        if missing or not isinstance(ctx.objective, TagsItems):
            raise ValueError(f"tagging needs the emoji_tags transform (arrays {', '.join(KEYS)};"
                             f" missing {missing}) and an objective with tag_tokens (m3pt); "
                             f"got {type(ctx.objective).__name__}")
        vocab = getattr(ctx.transform, "vocab", None)
        if vocab is not None and tuple(vocab) != tuple(ctx.objective.vocab):
            raise ValueError(
                f"the transform's tag vocabulary ({len(vocab)} tags) differs from the "
                f"objective's ({len(ctx.objective.vocab)}); give data.transform and objective "
                "the same dataset/vocab_split/min_count")
        a = ctx.arrays
        tags = np.asarray(a["tags"]).astype(bool)
        out = tag_counts(tags, a["unseen_tags"])
        if not tags.any():
            # Nothing to score (e.g. a tiny eval split): report the counts only.
            return dict(out, num_items=0.0)
        zitem = ctx.apply_model("encode_item", a["image"], a["text"])
        ztag = ctx.apply_model("encode_tags", ctx.objective.tag_tokens)
        ks_ok = tuple(k for k in ks if k <= len(ztag)) or (1,)
        out.update(tagging_metrics(zitem, ztag, tags, ks=ks_ok, chunk_size=chunk_size))
        return out
    return run
