"""Captioning quality as the COCO caption evaluation server and DCASE measure it, computed by
``pycocoevalcap`` (the packaged coco-caption code; its Java parts run on the machine's JRE):
BLEU-1..4 (Papineni et al. 2002), METEOR 1.5 (Denkowski & Lavie 2014), ROUGE-L (Lin 2004) and
CIDEr-D (Vedantam et al. 2015; coco-caption's ``Cider`` is the -D variant: Gaussian length
penalty, clipped counts, IDF from the evaluated references). Captions are first tokenised by
the Stanford PTB tokenizer, as the server does.

Left out: SPICE, and so SPIDEr = (CIDEr-D + SPICE) / 2. SPICE needs Stanford CoreNLP 3.6.0's
models, which ``pycocoevalcap`` downloads on first use from Stanford's site; no package index
this project installs from carries them.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Mapping, Sequence

import numpy as np

def caption_metrics(candidates: Sequence[str], references: Sequence[Sequence[str]],
                    meteor: bool = True) -> dict[str, float]:
    """Corpus scores of ``candidates[i]`` against ``references[i]`` (one or more each).
    ``meteor=False`` skips METEOR (a JVM start and 1-2 s per call). Needs ``java`` on PATH."""
    return caption_metrics_by_group(candidates, references,
                                    {"": np.arange(len(candidates))}, meteor)[""]


def caption_metrics_by_group(candidates: Sequence[str], references: Sequence[Sequence[str]],
                             groups: Mapping[str, Sequence[int]], meteor: bool = True
                             ) -> dict[str, dict[str, float]]:
    """``{group: corpus scores of the items in groups[group]}``: the captions are tokenised
    once and one METEOR process scores every group (each Java start costs about a second)."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"caption_metrics: {len(candidates)} candidates for "
                         f"{len(references)} reference sets (need one set each, at least one)")
    if shutil.which("java") is None:
        raise RuntimeError("caption_metrics needs Java (the PTB tokenizer and METEOR are Java): "
                           "apt-get install default-jre-headless")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    with java_stderr_silenced():
        res = tokenizer.tokenize({i: [{"caption": c}] for i, c in enumerate(candidates)})
        gts = tokenizer.tokenize({i: [{"caption": r} for r in refs]
                                  for i, refs in enumerate(references)})
    scorer = None
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        scorer = Meteor()
    out = {}
    for name, idx in groups.items():
        g = {int(i): gts[int(i)] for i in idx}
        r = {int(i): res[int(i)] for i in idx}
        if not g:
            continue
        bleu, _ = Bleu(4).compute_score(g, r, verbose=0)
        scores = {"BLEU-1": bleu[0], "BLEU-4": bleu[3],
                  "ROUGE-L": Rouge().compute_score(g, r)[0],
                  "CIDEr-D": Cider().compute_score(g, r)[0]}
        if scorer is not None:
            scores["METEOR"] = scorer.compute_score(g, r)[0]
        out[name] = {k: float(v) for k, v in scores.items()}
    del scorer  # its Java process ends when the object is collected (its __del__)
    return out


@contextlib.contextmanager
def java_stderr_silenced():
    """The PTB tokenizer's Java process inherits this process's stderr and writes a line per
    call ("PTBTokenizer tokenized N tokens at ..."); the file descriptor is pointed at
    /dev/null for the call (a Python-level redirect does not reach a child process)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
