"""Retrieval and zero-shot evaluators for two-tower models."""
from __future__ import annotations

import os

import jax
import numpy as np

from xmodal.core.registry import EVALUATORS
from xmodal.core.eval_context import EvalContext
from xmodal.core.eval_data import FieldView
from xmodal.evaluate.retrieval import retrieval_metrics
from xmodal.evaluate.retrieval_sheet import retrieval_sheet
from xmodal.evaluate.zeroshot import PROMPT_TEMPLATES, zeroshot_accuracy, zeroshot_classifier


@EVALUATORS.register("retrieval")
def retrieval(ks: tuple = (1, 5, 10), chunk_size: int = 256, sheet_queries: int = 8,
              sheet_k: int = 5):
    """x↔text retrieval on the eval split (x: the model's other modality, images or audio;
    metric names keep CLIP's i2t/t2i); text i describes item i. With an output folder, an image
    model and ``sheet_queries`` > 0, also writes ``<out_dir>/sheets/retrieval_<step>.png``:
    that many queries each way and their top ``sheet_k`` (``xmodal.evaluate.retrieval_sheet``)."""
    def run(ctx: EvalContext) -> dict:
        x, text = ctx.modalities
        # One pass over the split, batch by batch: only the embeddings are held.
        zimg, ztxt = ctx.stream_encode(x, text)
        metrics = retrieval_metrics(zimg, ztxt, np.arange(len(ztxt)), ks=tuple(ks),
                                    chunk_size=chunk_size)
        if sheet_queries and ctx.out_dir and x == "image" and jax.process_index() == 0:
            write_sheet(ctx, zimg, ztxt, sheet_queries, sheet_k)
        return metrics
    run.chance = lambda ctx: retrieval_chance(ctx.size, ks)
    return run


def retrieval_chance(n: int, ks) -> dict:
    """A random ranking of n one-to-one pairs: the pair's rank is uniform on 1..n."""
    out = {}
    for d in ("t2i", "i2t"):
        out.update({f"{d}_R@{k}": 100.0 * min(k, n) / n for k in ks})
        out[f"{d}_medr"] = out[f"{d}_meanr"] = (n + 1) / 2
        out[f"{d}_mrr"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    return out


def sheet_path(workdir: str, step: int, data: str = "") -> str:
    return os.path.join(workdir, "sheets", f"retrieval{'_' + data if data else ''}_{step:07d}.png")


def write_sheet(ctx: EvalContext, zimg, ztxt, queries: int, k: int) -> str:
    tokenizer = ctx.transform.tokenizer
    captions = [tokenizer.decode(t) for t in ctx.arrays["text"]]   # token ids: a small field
    # The sheet draws a few images: each read when drawn, the split's images never stacked.
    images = FieldView(ctx.split, "image")
    sheet, _ = retrieval_sheet(zimg, ztxt, images, captions, queries, k,
                               title=f"{os.path.basename(os.path.abspath(ctx.out_dir))}, step "
                                     f"{ctx.step}, {len(captions)} eval pairs")
    path = sheet_path(ctx.out_dir, ctx.step, ctx.eval_set)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sheet.save(path + ".tmp", format="PNG")
    os.replace(path + ".tmp", path)   # a reader never sees half a PNG
    return path


@EVALUATORS.register("zeroshot")
def zeroshot(templates: tuple = PROMPT_TEMPLATES, ks: tuple = (1, 5)):
    """Classifies eval items (images, audio: the model's other modality) into ``class_names`` by
    prompt-ensembled text embeddings.
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
        x, text = ctx.modalities
        ztxt = ctx.encode(text, ctx.tokenize(prompts)).reshape(len(names), len(templates), -1)
        (zimg,) = ctx.stream_encode(x)
        zimg = zimg[keep]
        acc = zeroshot_accuracy(zimg, zeroshot_classifier(ztxt), labels[keep], ks=tuple(ks))
        return {f"zeroshot_{k}": v for k, v in acc.items()}
    # A uniform guess among C classes is top-k right with probability k / C.
    run.chance = lambda ctx: {f"zeroshot_top{k}": 100.0 * min(k, len(ctx.class_names)) /
                              max(len(ctx.class_names), 1) for k in ks}
    return run
