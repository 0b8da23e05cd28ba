"""Text-to-image person retrieval as evaluated by IRRA (Jiang & Ye 2023): every caption of the
eval split is a query against a gallery of images with identity labels; every gallery image of
the query's identity is a positive. Rank-1/5/10 (CMC), mAP and mINP come from
``ranking_metrics.person_retrieval_metrics``.

The gallery is every style of every eval record (``style_images`` from the ``emoji_styles``
transform; ``image`` when there is none), so one identity has several images (skin tones x
drawing styles, as one person has several camera views). Identical queries (same caption and
identity, e.g. skin-tone variants whose captions lost the tone) are scored once. ``group``
restricts queries and gallery to one class of ``ctx.class_names`` (e.g. "People & Body").
"""
from __future__ import annotations

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.ranking import person_retrieval_chance, person_retrieval_metrics


def select_group(ctx: EvalContext, group: str) -> np.ndarray:
    """Indices of eval records in class ``group`` (all records for ``group=""``)."""
    n = len(ctx.arrays["text"])
    if not group:
        return np.arange(n)
    names = list(ctx.class_names)
    if group not in names:
        raise ValueError(f"person_retrieval group={group!r} is not a class name; classes: "
                         f"{names}")
    keep = np.flatnonzero(ctx.arrays["label"] == names.index(group))
    if keep.size == 0:
        raise ValueError(f"person_retrieval: the eval split has no record in group {group!r}")
    return keep


def unique_queries(text: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (caption, identity) rows, in first-seen order."""
    rows = np.concatenate([text.astype(np.int64), ids.astype(np.int64)[:, None]], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    first = np.sort(first)
    return text[first], ids[first]


@EVALUATORS.register("person_retrieval")
def person_retrieval(group: str = "", ks: tuple = (1, 5, 10), chunk_size: int = 256,
                     prefix: str = ""):
    """Returns ``R@k``, ``mAP``, ``mINP`` (percent), ``num_queries`` and ``gallery_size``, each
    name preceded by ``prefix`` (two of these evaluators in one spec need different ones)."""
    def run(ctx: EvalContext) -> dict:
        for key in ("text", "identity"):
            if key not in ctx.arrays:
                raise ValueError(f"person_retrieval needs eval arrays 'text' and 'identity'; "
                                 f"got {sorted(ctx.arrays)} (use the emoji_styles transform)")
        keep = select_group(ctx, group)
        ids = ctx.arrays["identity"][keep]
        if "style_images" in ctx.arrays:
            views = ctx.arrays["style_images"][keep]            # [N, styles, S, S, 3]
            gallery = views.reshape((-1,) + views.shape[2:])
            gallery_ids = np.repeat(ids, views.shape[1])
        else:
            gallery, gallery_ids = ctx.arrays["image"][keep], ids
        q_text, q_ids = unique_queries(ctx.arrays["text"][keep], ids)
        out = person_retrieval_metrics(ctx.encode_text(q_text), q_ids, ctx.encode_image(gallery),
                                       gallery_ids, ks=tuple(ks), chunk_size=chunk_size)
        out["gallery_size"] = float(len(gallery))
        return {prefix + k: v for k, v in out.items()}

    def chance(ctx: EvalContext) -> dict:
        keep = select_group(ctx, group)
        ids = ctx.arrays["identity"][keep]
        views = ctx.arrays["style_images"].shape[1] if "style_images" in ctx.arrays else 1
        _, q_ids = unique_queries(ctx.arrays["text"][keep], ids)
        out = person_retrieval_chance(q_ids, np.repeat(ids, views), ks)
        return {prefix + k: v for k, v in out.items()}
    run.chance = chance
    return run
