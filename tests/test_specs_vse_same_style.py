"""End to end through the CLI: vse_ranking and same_style for 2 steps on tiny data with tiny
widths; metrics.jsonl must hold a finite loss and every eval key."""
import json
import math
import subprocess
import sys

import pytest

from tests.cli import ROOT, env
from tests.data_helpers import missing

COMMON = ["--spec.data.batch_size=8", "--spec.data.num_workers=0", "--spec.train.steps=2",
          "--spec.train.log_every=1", "--spec.train.eval_every=0",
          "--spec.optim.warmup_steps=0", "--spec.data.transform.image_size=16",
          "--spec.model.embed_dim=8"]

RETRIEVAL = [f"{d}_{m}" for d in ("i2t", "t2i") for m in ("R@1", "R@5", "R@10", "medr")]
RUNS = {
    "vse_tuxpaint_ngram": ("specs/vse_ranking.py:runlocal", "tuxpaint/tiny",
                           ["--spec.data.name=tuxpaint/tiny"], RETRIEVAL),
    "vse_emoji_seq_semihard": ("specs/vse_ranking.py:runlocal,data=emoji,text=seq,"
                               "negatives=semi_hard,direction=t2i", "emoji/tiny",
                               ["--spec.data.name=emoji/tiny"], RETRIEVAL),
    # cards/tiny's test split is one deck, so no test card has another style: i2i and it2i
    # score no query there and report only their query counts (0).
    "same_style_cards": ("specs/same_style.py:runlocal", "cards/tiny",
                         ["--spec.data.name=cards/tiny",
                          "--spec.data.transform.data_name=cards/tiny"],
                         ["i2i_queries", "it2i_queries", "t2i_R@1", "t2i_mAP"]),
    "same_style_emoji": ("specs/same_style.py:runlocal,data=emoji_styles", "emoji_styles/tiny",
                         ["--spec.data.name=emoji_styles/tiny"],
                         ["i2i_R@1", "i2i_medr", "it2i_R@5", "t2i_R@10", "t2i_mAP"]),
}


def _narrow_towers(spec: str) -> list[str]:
    # vse's two_tower names its towers (model.towers.image); same-style's model has fixed ones.
    from xmodal.core import spec as spec_lib
    prefix = "towers." if "towers" in spec_lib.load(spec).model else ""
    return [f"--spec.model.{prefix}{tower}.width=8" for tower in ("image", "text")]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_two_steps(name, tmp_path):
    spec, data, overrides, keys = RUNS[name]
    if missing(data):
        pytest.skip(missing(data))
    cmd = [sys.executable, "-m", "xmodal.main", f"--spec={spec}",
           f"--workdir={tmp_path / 'run'}", *COMMON, *_narrow_towers(spec), *overrides]
    r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-5000:]}"
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    final = rows[-1]
    for key in keys:
        assert math.isfinite(final[f"eval/{key}"]), key
    if name == "same_style_cards":
        assert final["eval/i2i_queries"] == 0.0
