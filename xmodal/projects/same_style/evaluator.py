"""Same-style retrieval: find the same item drawn in another style, from an image, a text, or
an image + text query.

Gallery: every image of the eval split with its identity and style: ``arrays["views"]`` (every
style of each item, emoji_style_pairs) when present, else ``arrays["image"]`` (one record = one
item in one style, card_pairs: the whole split is the gallery). Queries, one per eval record:

- ``i2i``: the record's image (style s). Relevant: gallery images of the same identity in a
  style other than s. Gallery images of the same identity *and* style (the query itself) are
  removed from its ranking, not counted as misses.
- ``it2i``: the fused image + text embedding of the record, ranked the same way.
- ``t2i``: the record's text; relevant: every gallery image of its identity (no exclusion; a
  text is never in the image gallery); Rank-K and mAP by ``person_retrieval_metrics``.

Ranks follow ``xmodal.evaluate.retrieval``: rank = 1 + the number of non-relevant (and not
removed) gallery items scoring higher than the best relevant item, those tied with it in random
order (every metric at its expectation, ``xmodal.evaluate.ties``); R@K in percent, median rank,
mean rank and MRR by ``rank_summary``. Queries with no relevant item (an item present in one
style only) are left out; ``<prefix>_queries`` says how many were scored.
"""
from __future__ import annotations

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.ranking import person_retrieval_chance, person_retrieval_metrics
from xmodal.evaluate.retrieval import check_ks, check_query_gallery, rank_summary
from xmodal.evaluate.ties import TiedRanks


def cross_style_ranks(queries, query_ids, query_styles, gallery, gallery_ids, gallery_styles,
                      chunk_size: int = 1024) -> tuple[np.ndarray, TiedRanks]:
    """Rank of each query's best relevant gallery item (see module docstring): which queries
    have a relevant item (bool [Nq]), and the ranks of those queries."""
    q, g = check_query_gallery(queries, gallery, "queries", "gallery")
    q, g = np.asarray(q), np.asarray(g)
    args = [np.asarray(a) for a in (query_ids, query_styles, gallery_ids, gallery_styles)]
    qid, qst, gid, gst = args
    if qid.shape != (len(q),) or qst.shape != (len(q),):
        raise ValueError(f"query_ids and query_styles must have shape ({len(q)},); got "
                         f"{qid.shape} and {qst.shape}")
    if gid.shape != (len(g),) or gst.shape != (len(g),):
        raise ValueError(f"gallery_ids and gallery_styles must have shape ({len(g)},); got "
                         f"{gid.shape} and {gst.shape}")
    counts = np.zeros((3, len(q)), np.int64)
    has_relevant = np.zeros(len(q), bool)
    for start in range(0, len(q), chunk_size):
        sl = slice(start, start + chunk_size)
        scores = q[sl] @ g.T
        same_id = qid[sl, None] == gid[None, :]
        same_style = qst[sl, None] == gst[None, :]
        relevant = same_id & ~same_style
        removed = same_id & same_style
        best = np.max(np.where(relevant, scores, -np.inf), axis=1, keepdims=True)
        other = ~relevant & ~removed
        counts[0, sl] = ((scores > best) & other).sum(axis=1)
        counts[1, sl] = ((scores == best) & other).sum(axis=1)
        counts[2, sl] = ((scores == best) & relevant).sum(axis=1)
        has_relevant[sl] = relevant.any(axis=1)
    return has_relevant, TiedRanks(*counts).select(has_relevant)


def summary(scored: tuple[np.ndarray, TiedRanks], ks, prefix: str) -> dict[str, float]:
    _, ranks = scored
    out = {f"{prefix}_queries": float(len(ranks))}
    if len(ranks):
        out.update(rank_summary(ranks, ks, prefix))
    return out


@EVALUATORS.register("same_style")
def same_style(ks: tuple = (1, 5, 10)):
    """i2i, t2i and it2i retrieval across styles (see module docstring)."""
    ks = check_ks(ks)

    def run(ctx: EvalContext) -> dict:
        a = ctx.arrays
        for key in ("image", "text", "label", "style"):
            if key not in a:
                raise KeyError(f"same_style eval needs arrays {key!r} (transform card_pairs or "
                               f"emoji_style_pairs); got {', '.join(sorted(a))}")
        ids, styles = a["label"].astype(np.int64), a["style"].astype(np.int64)
        zimg = ctx.encode_image(a["image"])
        if "views" in a:
            n, v = a["views"].shape[:2]
            gallery = ctx.encode_image(a["views"].reshape((n * v,) + a["views"].shape[2:]))
            g_ids, g_styles = np.repeat(ids, v), np.tile(np.arange(v), n)
        else:
            gallery, g_ids, g_styles = zimg, ids, styles
        ztxt = ctx.encode_text(a["text"])
        zfused = ctx.apply_model("encode_fused", a["image"], a["text"])
        out = summary(cross_style_ranks(zimg, ids, styles, gallery, g_ids, g_styles), ks, "i2i")
        out.update(summary(cross_style_ranks(zfused, ids, styles, gallery, g_ids, g_styles),
                           ks, "it2i"))
        t2i = person_retrieval_metrics(ztxt, ids, gallery, g_ids, ks=ks)
        out.update({f"t2i_{k}": v for k, v in t2i.items()})
        return out

    def chance(ctx: EvalContext) -> dict:
        """A random order of each query's candidates: its relevant items are equally likely
        anywhere among them (``ties.TiedRanks`` with everything tied)."""
        a = ctx.arrays
        ids, styles = a["label"].astype(np.int64), a["style"].astype(np.int64)
        if "views" in a:
            n, v = a["views"].shape[:2]
            g_ids, g_styles = np.repeat(ids, v), np.tile(np.arange(v), n)
        else:
            g_ids, g_styles = ids, styles
        same_id = ids[:, None] == g_ids[None, :]
        relevant = (same_id & (styles[:, None] != g_styles[None, :])).sum(axis=1)
        candidates = len(g_ids) - (same_id & (styles[:, None] == g_styles[None, :])).sum(axis=1)
        scored = relevant > 0
        ranks = TiedRanks(np.zeros(int(scored.sum())), (candidates - relevant)[scored],
                          relevant[scored])
        out = {}
        for prefix in ("i2i", "it2i"):
            out.update(rank_summary(ranks, ks, prefix))
        t2i = person_retrieval_chance(ids, g_ids, ks)
        out.update({f"t2i_{k}": v for k, v in t2i.items()})
        return out
    run.chance = chance
    return run
