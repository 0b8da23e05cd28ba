"""Captioning quality of the captioner on the eval split: beam-search captions scored against
each clip's reference (``xmodal.evaluate.caption_metrics``: BLEU, METEOR, ROUGE-L, CIDEr-D),
on the whole split and its dev/test halves (the retrieval evaluator's halves). With an output
folder, ``captions[_<eval set>]_<step>.jsonl`` lists every clip's reference, beam caption and
a sampled one.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from xmodal.core.datasets import DataSourceMissing
from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.evaluate.caption_metrics import caption_metrics_by_group
from xmodal.inference.captions import generate
from xmodal.projects.aac_atr.retrieval import decode_all, halves


@EVALUATORS.register("captioning")
def captioning(beams: int = 4, alpha: float = 0.0, top_p: float = 0.9, meteor: bool = True,
               seed: int = 0):
    """Beam search with ``beams`` beams and length penalty ``alpha``; the listed sampled
    caption is nucleus sampling at ``top_p``. ``meteor=False`` skips METEOR."""
    if shutil.which("java") is None:  # at the run's start, not after its training
        raise DataSourceMissing("the captioning evaluator needs Java (the caption metrics' "
                                "tokenizer and METEOR): apt-get install default-jre-headless")
    fns = {}

    def run(ctx: EvalContext) -> dict:
        ctx.require(("audio", "text"), "captioning needs the audio_text transform")
        model = ctx.model
        if not fns:  # one function object each, so the Applier compiles them once
            fns["beam"] = lambda p, mem: generate(model, p["model"], mem, "beam", beams=beams,
                                                  alpha=alpha)
            fns["sample"] = lambda p, mem, key: generate(
                model, p["model"], mem, "sample", rng=key[0], top_p=top_p)
        memory = ctx.apply_model("encode", ctx.arrays["audio"])
        tokenizer = ctx.transform.tokenizer
        beam = decode_all(tokenizer, ctx.apply(fns["beam"], memory))
        # One key per clip; a chunk samples with its first clip's key (fixed given the seed).
        keys = np.asarray(jax.random.split(jax.random.PRNGKey(seed), len(memory)))
        sampled = decode_all(tokenizer, ctx.apply(fns["sample"], memory, keys))
        refs = decode_all(tokenizer, ctx.arrays["text"])
        groups = {half: idx for half, idx in halves(refs).items() if len(idx)}
        scores = caption_metrics_by_group(beam, [[r] for r in refs], groups, meteor=meteor)
        out = {("" if half == "all" else f"{half}/") + k: v
               for half, metrics in scores.items() for k, v in metrics.items()}
        if ctx.out_dir and jax.process_index() == 0:
            name = f"captions_{ctx.eval_set}" if ctx.eval_set else "captions"
            path = os.path.join(ctx.out_dir, f"{name}_{ctx.step:07d}.jsonl")
            with open(path + ".tmp", "w") as f:
                for r, b, s in zip(refs, beam, sampled):
                    f.write(json.dumps({"reference": r, "beam": b, "sampled": s}) + "\n")
            os.replace(path + ".tmp", path)
        return out
    return run
