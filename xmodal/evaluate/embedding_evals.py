"""Retrieval and zero-shot evaluators for two-tower models."""
from __future__ import annotations

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.retrieval import retrieval_metrics
from xmodal.evaluate.zeroshot import PROMPT_TEMPLATES, zeroshot_accuracy, zeroshot_classifier


@EVALUATORS.register("retrieval")
def retrieval(ks: tuple = (1, 5, 10), chunk_size: int = 256):
    """Image↔text retrieval on the eval split; text i describes image i."""
    def run(ctx: EvalContext) -> dict:
        zimg = ctx.encode_image(ctx.arrays["image"])
        ztxt = ctx.encode_text(ctx.arrays["text"])
        return retrieval_metrics(zimg, ztxt, np.arange(len(ztxt)), ks=tuple(ks),
                                 chunk_size=chunk_size)
    return run


@EVALUATORS.register("zeroshot")
def zeroshot(templates: tuple = PROMPT_TEMPLATES, ks: tuple = (1, 5)):
    """Classifies eval images into ``class_names`` by prompt-ensembled text embeddings.
    Unlabelled examples (label -1, e.g. sound effects next to instruments) are left out."""
    def run(ctx: EvalContext) -> dict:
        names = list(ctx.class_names)
        labels = np.asarray(ctx.arrays["label"])
        keep = labels >= 0
        if not names or not keep.any():
            raise ValueError(f"zeroshot needs class names and labelled examples; this eval set "
                             f"has {len(names)} class names and {int(keep.sum())} labelled of "
                             f"{len(labels)} examples (its transform's label_field)")
        prompts = [t.format(c.lower()) for c in names for t in templates]
        ztxt = ctx.encode_text(ctx.tokenize(prompts)).reshape(len(names), len(templates), -1)
        zimg = ctx.encode_image(ctx.arrays["image"][keep])
        acc = zeroshot_accuracy(zimg, zeroshot_classifier(ztxt), labels[keep], ks=tuple(ks))
        return {f"zeroshot_{k}": v for k, v in acc.items()}
    return run
