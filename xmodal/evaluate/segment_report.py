"""What the ``segmentation`` evaluator writes: its table (``segmentation_table.{json,md}``)
and a sequence's segments on a time line: the truth and each method's prediction, one band
each, a colour per segment (predicted clusters coloured by the true segment they overlap most,
so a right answer looks like the truth)."""
from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from xmodal.evaluate import segmentation as seg


def time_line(path: str, true, preds: Mapping[str, np.ndarray], title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true = np.unique(np.asarray(true), return_inverse=True)[1]
    bands = [("truth", true)]
    for name, p in preds.items():
        p = np.unique(np.asarray(p), return_inverse=True)[1]
        _, rows, cols = seg.matching(p, true)
        colour = np.full(p.max() + 1, -1)
        colour[rows] = cols
        bands.append((name, colour[p]))
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(bands) + 0.8), dpi=110)
    image = np.array([[(0.83, 0.83, 0.83, 1.0) if c < 0 else cmap(c % 20) for c in labels]
                      for _, labels in bands])        # unmatched clusters grey
    ax.imshow(image, aspect="auto", interpolation="nearest",
              extent=(0, len(true), len(bands) - 0.5, -0.5))
    for row, (name, _) in enumerate(bands):
        ax.text(-0.5, row, name, ha="right", va="center", fontsize=8)
    for b in seg.boundaries(true):
        ax.axvline(b, color="black", linewidth=0.6)
    ax.set_ylim(len(bands) - 0.5, -0.5)
    ax.set_xlim(0, len(true))
    ax.set_yticks([])
    ax.set_xlabel("clip (time order)", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_table(out_dir: str, rows: dict, chance: dict, n_seq: int, n_clips: int,
                tolerance: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "segmentation_table.json"), "w") as f:
        json.dump({"rows": rows, "one_cluster": chance, "sequences": n_seq, "clips": n_clips,
                   "tolerance": tolerance}, f, indent=2)
    lines = [f"{n_seq} held-out sequences, {n_clips} clips; percent, mean over sequences; "
             f"boundary F1 within ±{tolerance} clip", "",
             "| features | method | " + " | ".join(seg.METRICS) + " |",
             "|---|---|" + "---|" * len(seg.METRICS)]
    for name, r in rows.items():
        for m, ms in r.items():
            lines.append(f"| {name} | {m} | " + " | ".join(f"{ms[k]:.1f}" for k in seg.METRICS)
                         + " |")
    lines.append("| one cluster (chance) | — | " + " | ".join(f"{chance[k]:.1f}"
                                                         for k in seg.METRICS) + " |")
    with open(os.path.join(out_dir, "segmentation_table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
