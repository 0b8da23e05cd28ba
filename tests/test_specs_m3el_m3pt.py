"""specs/m3el.py and specs/m3pt.py through the real CLI for 2 steps on emoji_styles/tiny: the
loss is finite and the evaluators' keys are logged."""
import json

import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.core import spec as spec_lib
from xmodal.core.writers import read_metrics

TINY_STYLES = [
    "--spec.data.name=emoji_styles/tiny",
    "--spec.train.steps=2",
    "--spec.train.ckpt_every=2",
    # tiny's test split has 2 emoji; evaluating on its 73 training emoji exercises the
    # evaluators on a real entity list and real tags (this checks plumbing, not quality).
    "--spec.data.eval_split=train",
    "--spec.data.eval_max_examples=0",
]


def final_metrics(wd) -> tuple[list, dict]:
    rows = read_metrics(str(wd))
    return [r for r in rows if "train/loss" in r], {k: v for r in rows for k, v in r.items()}


def test_dataset_name_moves_the_transform_and_objective_too():
    c = spec_lib.load("specs/m3pt.py:runlocal,modalities=image,min_count=2")
    c.data.name = "emoji_styles/tiny"
    c.data.transform.min_count = 4
    v = spec_lib.validate(c)
    assert v.data.transform.dataset == v.objective.dataset == "emoji_styles/tiny"
    assert v.objective.min_count == 4 and v.model.item_modalities == "image"
    c = spec_lib.load("specs/m3el.py:runlocal,intra=0,cross=0")
    c.data.name = "emoji_styles/tiny"
    v = spec_lib.validate(c)
    assert v.data.transform.dataset == "emoji_styles/tiny"
    assert v.objective.intra_weight == 0.0 and v.objective.cross_weight == 0.0


@pytest.mark.slow
@skip_unless_installed("emoji_styles/tiny")
def test_m3el_runs_through_cli(tmp_path):
    wd = tmp_path / "m3el"
    cli.run("specs/m3el.py:runlocal", wd, *TINY_STYLES, "--spec.model.num_heads=2")
    train, final = final_metrics(wd)
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) for r in train)
    assert "train/intra_loss" in train[0] and "train/cross_loss" in train[0]
    for key in ("eval/H@1", "eval/H@3", "eval/H@5", "eval/MRR", "eval/g2l_H@1"):
        assert key in final and np.isfinite(final[key]), key
    assert final["eval/num_entities"] == 73
    assert json.load(open(wd / "spec.json"))["objective"]["name"] == "m3el"


@pytest.mark.slow
@skip_unless_installed("emoji_styles/tiny")
def test_m3pt_runs_through_cli(tmp_path):
    wd = tmp_path / "m3pt"
    cli.run("specs/m3pt.py:runlocal,min_count=2", wd, *TINY_STYLES)
    train, final = final_metrics(wd)
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["train/loss"]) for r in train)
    assert "train/die_loss" in train[0] and "train/align_loss" in train[0]
    for key in ("eval/P@1", "eval/R@5", "eval/F1@3", "eval/unseen_tags", "eval/num_items"):
        assert key in final and np.isfinite(final[key]), key
    assert final["eval/num_items"] > 0
