"""Audio-text retrieval with the captioner itself (the paper's finding): score every (clip,
caption) pair of the eval split by the caption's teacher-forced NLL given the clip
(``xmodal.inference.captions.pair_nll``: an N×M matrix, blocked over the mesh).

- text→audio: a caption ranks the clips by its NLL given each (lower first);
- audio→text: a clip ranks the captions by NLL minus a per-caption normaliser, because raw NLL
  ranks short and generic captions first for every clip. ``NORMALISERS``:
  ``raw`` (none), ``mean`` (the caption's mean NLL over all clips of the split) and ``uncond``
  (its NLL under the decoder's null memory: the unconditional pass, see the objective's
  ``drop_condition``). Text→audio is unchanged by any of them (a constant per query).

Every metric is reported on the whole split and on its ``dev`` and ``test`` halves
(``xmodal.evaluate.heldout``, keyed by the caption's text, so identical captions fall in one
half); within a half, only that half's clips and captions compete. The spec's ``normaliser``
(chosen on ``dev``) gives the ``a2t_*`` metrics; every normaliser is also reported as
``a2t_<normaliser>_*``. Metrics: R@K in percent, mAP@10 (one relevant item per query: the
mean of 1/rank within the top 10), median rank. Ties are broken at random in expectation
(``xmodal.evaluate.ties``): a captioner that gives every pair one NLL scores chance.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS, SpecError
from xmodal.evaluate import heldout
from xmodal.evaluate.retrieval import check_ks, ranks_from_scores
from xmodal.evaluate.ties import TiedRanks
from xmodal.inference.captions import caption_nll, pair_nll

NORMALISERS = ("raw", "mean", "uncond")
SALT = "aac_atr"


def normalised(nll: np.ndarray, uncond: np.ndarray, how: str) -> np.ndarray:
    """``[N clips, M captions]`` audio→text costs: NLL minus the caption's normaliser, in f64
    (the mean of N equal f32 values is then exactly that value: a caption scored alike for
    every clip normalises to exactly 0, a tie, not rounding noise that orders the captions)."""
    nll, uncond = np.asarray(nll, np.float64), np.asarray(uncond, np.float64)
    if how == "raw":
        return nll
    if how == "mean":
        return nll - nll.mean(axis=0, keepdims=True)
    if how == "uncond":
        return nll - uncond[None, :]
    raise SpecError(f"normaliser {how!r} is not one of {', '.join(NORMALISERS)}")


def summary(ranks: TiedRanks, ks: Sequence[int], prefix: str) -> dict[str, float]:
    out = {f"{prefix}_R@{k}": float(100.0 * np.mean(ranks.hit_at(k))) for k in ks}
    out[f"{prefix}_mAP@10"] = float(100.0 * np.mean(ranks.reciprocal_rank(cutoff=10)))
    out[f"{prefix}_medr"] = float(np.median(ranks.expected_rank()))
    return out


def retrieval_metrics(nll: np.ndarray, uncond: np.ndarray, normaliser: str,
                      ks: Sequence[int]) -> dict[str, float]:
    """Clip i's caption is caption i. Text→audio and every audio→text normaliser."""
    diagonal = np.arange(len(nll))
    out = summary(ranks_from_scores(-nll.T, diagonal), ks, "t2a")
    for how in NORMALISERS:
        ranks = ranks_from_scores(-normalised(nll, uncond, how), diagonal)
        out.update(summary(ranks, ks, f"a2t_{how}"))
        if how == normaliser:
            out.update(summary(ranks, ks, "a2t"))
    return out


def decode_all(tokenizer, ids) -> list[str]:
    """The texts of token rows ``ids`` [N, L]."""
    return [tokenizer.decode(row) for row in np.asarray(ids)]


def halves(captions: Sequence[str]) -> dict[str, np.ndarray]:
    dev = heldout.dev_half(captions, SALT)
    return {half: heldout.select(half, dev) for half in heldout.HALVES}


@EVALUATORS.register("caption_retrieval")
def caption_retrieval(ks: tuple = (1, 5, 10), normaliser: str = "mean",
                      items_per_block: int = 16, captions_per_block: int = 64):
    """See the module docstring; ``normaliser`` one of ``NORMALISERS``."""
    ks = check_ks(ks)
    if normaliser not in NORMALISERS:
        raise SpecError(f"caption_retrieval normaliser {normaliser!r} is not one of "
                        f"{', '.join(NORMALISERS)}")
    state = {}

    def run(ctx: EvalContext) -> dict:
        ctx.require(("audio", "text"), "caption_retrieval needs the audio_text transform")
        model, text = ctx.model, ctx.arrays["text"]
        if "uncond" not in state:  # one function object, so the Applier compiles it once
            state["uncond"] = lambda p, mem, ids: caption_nll(model, p["model"], mem, ids,
                                                              unconditional=True)
        memory = ctx.apply_model("encode", ctx.arrays["audio"])
        mesh = ctx.applier.sharding.mesh
        nll = pair_nll(model, ctx.params["model"], memory, text, mesh,
                       items_per_block, captions_per_block)
        uncond = ctx.apply(state["uncond"], memory, text)
        captions = decode_all(ctx.transform.tokenizer, text)
        out = {}
        for half, idx in halves(captions).items():
            if len(idx) < 2:
                continue
            metrics = retrieval_metrics(nll[np.ix_(idx, idx)], uncond[idx], normaliser, ks)
            prefix = "" if half == "all" else f"{half}/"
            out.update({prefix + k: v for k, v in metrics.items()})
        return out

    def chance(ctx: EvalContext) -> dict:
        captions = decode_all(ctx.transform.tokenizer, ctx.arrays["text"])
        out = {}
        for half, idx in halves(captions).items():
            n = len(idx)
            if n < 2:
                continue
            flat = TiedRanks(np.zeros(n, np.int64), np.full(n, n - 1))   # every pair tied
            prefix = "" if half == "all" else f"{half}/"
            for name in ("t2a", "a2t", *(f"a2t_{h}" for h in NORMALISERS)):
                out.update({prefix + k: v for k, v in summary(flat, ks, name).items()})
        return out
    run.chance = chance
    return run
