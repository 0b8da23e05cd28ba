"""The ``mvl_sib`` evaluator: MVL-SIB's four topical-matching tasks per language on the held-out
Tux Paint stamps, with the resource trend the paper reports and a per-language bar plot.

Tasks (4 options, chance 25 %; ``tasks.py`` defines how a question is drawn):
- cross-modal: ``s2i`` (a sentence → which of 4 topics, each shown by k images) and ``i2s``
  (k images of a topic → which of 4 sentences);
- text-only: ``s2s`` (a sentence → which of 4 topics, each shown by k sentences in the same
  language) and ``ss2s`` (k sentences of a topic → which of 4 sentences).
Every stamp with a sentence in the language is one question per task; its own stamp is never
among the references. Accuracy is reported per language and task for each k in ``ks``, with the
mean over languages, and the trend of accuracy against the language's coverage (log10 of the
stamps with a sentence in it: the resource a multilingual model trained on these captions had).
"""
from __future__ import annotations

import json
import os

import numpy as np

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS
from xmodal.projects.mvl_sib import tasks
from xmodal.projects.mvl_sib.transform import EMOJI_LOCALES, LANGUAGES

KEYS = ("image", "captions", "has_caption", "topic")
CROSS_MODAL, TEXT_ONLY = ("s2i", "i2s"), ("s2s", "ss2s")


def ask(task: str, images, sentences, topic, item, k, rng) -> np.ndarray:
    """One language's questions of ``task``: sentences, their topics and stamps, the images."""
    # A reference row's stamp: an image is its own stamp; a sentence is stamp ``item[row]``.
    refs = ((images, topic, np.arange(len(topic))) if task in CROSS_MODAL
            else (sentences, topic[item], item))
    if task in ("s2i", "s2s"):
        return tasks.one_to_sets(sentences, topic[item], item, *refs, k, rng)
    return tasks.set_to_one(sentences, topic[item], item, *refs, k, rng)


@EVALUATORS.register("mvl_sib")
def mvl_sib_evaluator(ks: tuple = (1, 3), languages: tuple = (), seed: int = 0,
                      min_sentences: int = 20):
    """MVL-SIB accuracies (module docstring). ``languages``: codes to report (empty: every
    language with at least ``min_sentences`` eval sentences, so an accuracy rests on enough
    questions)."""
    ks = tuple(int(x) for x in ks)
    # Checked now against every source's codes (a typo fails before training) and again at
    # eval time against the codes of the transform in use.
    requested = tasks.check_languages(list(languages), sorted({*LANGUAGES, *EMOJI_LOCALES}))

    def run(ctx: EvalContext) -> dict:
        ctx.require(KEYS, "mvl_sib needs an mvl_sib_items or mvl_sib_emoji transform")
        a = ctx.arrays
        all_codes = tuple(ctx.transform.languages)
        tasks.check_languages(requested, all_codes)
        modality = ctx.modalities[0]
        images = np.asarray(ctx.encode(modality, a[modality]), np.float32)
        has, topic = np.asarray(a["has_caption"], bool), np.asarray(a["topic"], np.int64)
        coverage = {code: int(has[:, j].sum()) for j, code in enumerate(all_codes)}
        codes = requested or [c for c in all_codes if coverage[c] >= min_sentences]
        if not codes:
            raise ValueError(f"mvl_sib: no language has {min_sentences} eval sentences")
        cols = [all_codes.index(c) for c in codes]
        # Every sentence of every reported language through the text tower in one pass.
        rows, cols_of = np.nonzero(has[:, cols])
        tokens = a["captions"][rows, np.asarray(cols)[cols_of]]
        text = np.asarray(ctx.encode("text", tokens), np.float32)
        table = {}
        for j, code in enumerate(codes):
            pick = cols_of == j
            item, sentences = rows[pick], text[pick]
            for k in ks:
                for task in CROSS_MODAL + TEXT_ONLY:
                    outcome = ask(task, images, sentences, topic, item, k,
                                  tasks.rng_for(seed, task, code, str(k)))
                    table[(code, task, k)] = tasks.accuracy(outcome)
        out = {"languages": float(len(codes)), "items": float(len(topic)),
               "topics": float(len(np.unique(topic))), "chance": 100.0 / tasks.N_OPTIONS}
        # Per language in the metrics only at the largest k (the report files have every k
        # and the question counts): 4 tasks × 78 languages is already a long table.
        for (code, task, k), (acc, n) in table.items():
            if k == ks[-1]:
                out[f"{task}/k{k}/{code}"] = acc
        # Languages below the median coverage vs the rest: the gap the paper reports between
        # low- and high-resource languages, in one number each.
        median = float(np.median([coverage[c] for c in codes]))
        low_codes = [c for c in codes if coverage[c] < median]
        for k in ks:
            for task in CROSS_MODAL + TEXT_ONLY:
                accs = {c: table[(c, task, k)][0] for c in codes}
                out[f"{task}/k{k}/mean"] = float(np.nanmean(list(accs.values())))
                if low_codes:
                    out[f"{task}/k{k}/high_coverage"] = float(np.nanmean(
                        [accs[c] for c in codes if c not in low_codes]))
                    out[f"{task}/k{k}/low_coverage"] = float(np.nanmean(
                        [accs[c] for c in low_codes]))
                if len(codes) >= 3 and len({coverage[c] for c in codes}) > 1:
                    trend = tasks.resource_trend(accs, coverage)
                    out[f"{task}/k{k}/slope_per_decade"] = trend["slope_per_decade"]
                    out[f"{task}/k{k}/spearman"] = trend["spearman"]
        if ctx.out_dir:
            write_report(ctx.out_dir, out, table, codes, coverage, ks, ctx.step)
        return out
    # Every question has 4 options: a guess (or a model that scores them alike) is right 1/4.
    run.chance = lambda ctx: {f"{task}/k{k}/{part}": 100.0 / tasks.N_OPTIONS for k in ks
                              for task in CROSS_MODAL + TEXT_ONLY
                              for part in ("mean", "high_coverage", "low_coverage")}
    return run


def write_report(out_dir: str, out: dict, table: dict, codes, coverage, ks,
                 step: int) -> None:
    """``mvl_sib.json`` (every number), ``mvl_sib.md`` (a row per language) and
    ``mvl_sib.png`` (bars per language, cross-modal vs text-only, languages by coverage)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "mvl_sib.json"), "w") as f:
        rows = [{"language": c, "task": t, "k": k, "accuracy": acc, "questions": n}
                for (c, t, k), (acc, n) in table.items()]
        json.dump({"step": step, "coverage": coverage, "summary": out, "rows": rows}, f,
                  indent=2)
    k = ks[-1]
    cell = lambda v: "–" if np.isnan(v) else f"{v:.1f}"  # noqa: E731  (– : too few sentences)
    order = sorted(codes, key=lambda c: (-coverage[c], c))
    tasks_all = CROSS_MODAL + TEXT_ONLY
    lines = [f"Accuracy (%) with k = {k} references, 4 options (chance 25); – where a "
             "language has too few sentences of some topics for a question.", "",
             "| language | eval sentences | " + " | ".join(tasks_all) + " |",
             "|---|---|" + "---|" * len(tasks_all)]
    for c in order:
        lines.append(f"| {c} | {coverage[c]} | "
                     + " | ".join(cell(out[f"{t}/k{k}/{c}"]) for t in tasks_all) + " |")
    lines.append("| **mean** | | " + " | ".join(cell(out[f"{t}/k{k}/mean"])
                                              for t in tasks_all) + " |")
    with open(os.path.join(out_dir, "mvl_sib.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(order)), 3.2), dpi=120)
    for offset, (task, colour) in zip((-0.2, 0.2), (("s2i", "tab:blue"), ("s2s", "tab:orange"))):
        ax.bar(x + offset, [out[f"{task}/k{k}/{c}"] for c in order], 0.4, color=colour,
               label=f"{task} ({'cross-modal' if task in CROSS_MODAL else 'text-only'})")
    ax.axhline(25.0, color="grey", linestyle="--", linewidth=0.8, label="chance")
    ax.set_xticks(x, order, rotation=90, fontsize=6)
    ax.set_ylabel(f"accuracy % (k={k})")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "mvl_sib.png"))
    plt.close(fig)
