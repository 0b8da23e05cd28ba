"""Zero-shot classification over the distinct values of a text field of the eval split (e.g.
emoji subgroups: "face-smiling", "person-activity", ...), for fields that are free text rather
than a ClassLabel. The classes are the distinct token rows of ``ctx.arrays[field]``; each is
decoded, written into the prompt templates and embedded as in ``zeroshot`` (CLIP prompt
ensembling, Radford et al. 2021). Subgroup names use '-' between words; ``dash_to_space``
turns them into plain words for the prompts.
"""
from __future__ import annotations

import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.evaluate.zeroshot import PROMPT_TEMPLATES, zeroshot_accuracy, zeroshot_classifier


def field_classes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(classes [C, L], labels [N])``: distinct token rows and each record's class index."""
    if tokens.ndim != 2:
        raise ValueError(f"field_zeroshot needs a [N, L] token array; got {tokens.shape}")
    classes, labels = np.unique(tokens, axis=0, return_inverse=True)
    return classes, labels.reshape(-1).astype(np.int32)


@EVALUATORS.register("field_zeroshot")
def field_zeroshot(field: str = "subgroup", templates: tuple = PROMPT_TEMPLATES,
                   ks: tuple = (1, 5), dash_to_space: bool = True, prefix: str = ""):
    """Metrics ``<prefix or field>_zeroshot_top{k}`` and ``..._classes``."""
    name = prefix or field

    def run(ctx: EvalContext) -> dict:
        if field not in ctx.arrays:
            raise ValueError(f"field_zeroshot: no eval array {field!r}; arrays: "
                             f"{sorted(ctx.arrays)}")
        classes, labels = field_classes(np.asarray(ctx.arrays[field]))
        tokenizer = ctx.transform.tokenizer
        names = [tokenizer.decode(row) for row in classes]
        if dash_to_space:
            names = [n.replace("-", " ") for n in names]
        prompts = [t.format(n) for n in names for t in templates]
        x, text = ctx.modalities
        ztxt = ctx.encode(text, ctx.tokenize(prompts)).reshape(len(names), len(templates), -1)
        zimg = ctx.encode(x, ctx.arrays[x])
        acc = zeroshot_accuracy(zimg, zeroshot_classifier(ztxt), labels, ks=tuple(ks))
        out = {f"{name}_zeroshot_{k}": v for k, v in acc.items()}
        out[f"{name}_classes"] = float(len(names))
        return out

    def chance(ctx: EvalContext) -> dict:
        # A uniform guess among the C distinct values is top-k right with probability k / C.
        c = len(field_classes(np.asarray(ctx.arrays[field]))[0])
        return {f"{name}_zeroshot_top{k}": 100.0 * min(k, c) / c for k in ks}
    run.chance = chance
    return run
