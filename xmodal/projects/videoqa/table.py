"""The README's table: one row per workdir, the accuracy of its last evaluation overall and per
question type.

    python -m xmodal.projects.videoqa.table NAME=WORKDIR [NAME=WORKDIR ...]
"""
from __future__ import annotations

import sys

from xmodal.core.writers import read_metrics
from xmodal.data.sets.sprite_questions import QTYPES

COLUMNS = ("acc",) + tuple(f"acc_{t}" for t in QTYPES)


def row(workdir: str) -> tuple[int, dict[str, float]]:
    rows = [r for r in read_metrics(workdir) if "eval/acc" in r]
    if not rows:
        raise SystemExit(f"{workdir}: no videoqa evaluation in its metrics.jsonl")
    last = rows[-1]
    return int(last["step"]), {c: last.get(f"eval/{c}", float("nan")) for c in COLUMNS}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    print("| model | step | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for item in argv:
        name, _, workdir = item.partition("=")
        step, values = row(workdir or name)
        print(f"| {name} | {step} | " + " | ".join(f"{values[c]:.1f}" for c in COLUMNS) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
