"""One retrieval table: the captioner's likelihood retrieval (its run's last evaluation) beside a
contrastive CLAP model trained on the same data and split (``specs/clap.py``), on the same
half of the same eval sets, ranked by the same rules (``retrieval.summary``: ties at random).

    python -m xmodal.projects.aac_atr.compare --aac=runs/aac_atr --clap=runs/clap --half=test

CLAP's audio and caption embeddings are computed here from its newest checkpoint (its own run
evaluates the whole split, not the halves); similarity = cosine. Prints a markdown table.
"""
from __future__ import annotations

import argparse

import ml_collections as mlc
import numpy as np

from xmodal.core import stages as stages_lib
from xmodal.core.eval_data import LazyArrays
from xmodal.core.evaluation import load_data
from xmodal.core.writers import read_metrics
from xmodal.evaluate.retrieval import ranks_from_scores
from xmodal.inference.two_tower import Embedder
from xmodal.projects.aac_atr.retrieval import NORMALISERS, decode_all, halves, summary

SETS = {"": "instruments", "effects": "Tux Paint effects"}
COLUMNS = ("t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_R@5", "a2t_R@10",
           "a2t_mAP@10")
KS = (1, 5, 10)


def clap_metrics(workdir: str, half: str) -> dict[str, dict[str, float]]:
    emb = Embedder.from_workdir(workdir)
    data = load_data(mlc.ConfigDict(stages_lib.read_spec(workdir)))
    out = {}
    for key in SETS:
        arrays = LazyArrays(data.eval_sets[key].split)
        captions = decode_all(emb.transform.tokenizer, arrays["text"])
        idx = halves(captions)[half]
        za = emb.embed_items(list(arrays["audio"][idx]))
        zt = emb.embed_texts([captions[i] for i in idx])
        scores = za @ zt.T
        diagonal = np.arange(len(idx))
        out[key] = {**summary(ranks_from_scores(scores.T, diagonal), KS, "t2a"),
                    **summary(ranks_from_scores(scores, diagonal), KS, "a2t")}
    return out


def aac_metrics(workdir: str, half: str, normaliser: str
                ) -> tuple[int, dict[str, dict[str, float]]]:
    rows = [r for r in read_metrics(workdir) if "eval/t2a_R@1" in r]
    if not rows:
        raise SystemExit(f"{workdir}: no caption_retrieval evaluation in metrics.jsonl")
    row = rows[-1]
    prefix = "" if half == "all" else f"{half}/"
    out = {}
    for key in SETS:
        base = f"eval/{key}/" if key else "eval/"
        out[key] = {c: row[f"{base}{prefix}{c.replace('a2t', f'a2t_{normaliser}')}"]
                    for c in COLUMNS}
    return int(row["step"]), out


def table(aac: dict, clap: dict, normaliser: str) -> str:
    lines = ["| eval set | system | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for key, name in SETS.items():
        for system, metrics in ((f"AAC→ATR captioner (a2t: {normaliser})", aac[key]),
                                ("CLAP, contrastive", clap[key])):
            lines.append(f"| {name} | {system} | " +
                         " | ".join(f"{metrics[c]:.1f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--aac", required=True)
    p.add_argument("--clap", required=True)
    p.add_argument("--half", default="test", choices=("all", "dev", "test"))
    p.add_argument("--normaliser", default="", choices=("", *NORMALISERS),
                   help="the captioner's audio→text normaliser (default: its spec's)")
    args = p.parse_args(argv)
    normaliser = (args.normaliser or
                  stages_lib.read_spec(args.aac)["evals"]["retrieval"]["normaliser"])
    step, aac = aac_metrics(args.aac, args.half, normaliser)
    print(f"{args.half} half; captioner at step {step}")
    print(table(aac, clap_metrics(args.clap, args.half), normaliser))


if __name__ == "__main__":
    main()
