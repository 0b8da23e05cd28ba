"""specs/lightclip.py and specs/irra.py through the real CLI: 2 steps on tiny data."""
import json

import numpy as np
import pytest

from tests import cli

pytestmark = pytest.mark.slow

SMALL = ["--spec.data.name=emoji_styles/tiny",
         # The tiny test split holds 2 records; evaluate on the 73 training records instead.
         "--spec.data.eval_split=train",
         "--spec.model.fusion_heads=2",
         "--spec.train.steps=2"]


def metrics(workdir):
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    train = [r for r in rows if "train/loss" in r]
    evals = {k: v for r in rows for k, v in r.items() if k.startswith("eval/")}
    return train, evals


def test_lightclip_spec_runs(tmp_path):
    cli.run("specs/lightclip.py:runlocal", tmp_path, *SMALL,
            "--spec.model.inject_layers=(0,)")
    train, evals = metrics(tmp_path)
    assert len(train) == 2 and all(np.isfinite(r["train/loss"]) for r in train)
    for key in ("train/global_loss", "train/token_loss", "train/mlm_loss", "train/smoothing"):
        assert key in train[-1]
    for key in ("eval/zeroshot_top1", "eval/subgroup_zeroshot_top1", "eval/t2i_R@1",
                "eval/i2t_R@5"):
        assert np.isfinite(evals[key])


def test_irra_spec_runs_with_infonce_and_no_irr(tmp_path):
    cli.run("specs/irra.py:runlocal,loss=infonce,no_irr", tmp_path, *SMALL)
    train, evals = metrics(tmp_path)
    assert all(np.isfinite(r["train/loss"]) for r in train)
    assert "train/irr_loss" not in train[-1]
    # The option reached the objective: InfoNCE logs its in-batch accuracies, SDM its two
    # directional KL terms, and without IRR the loss is the alignment loss alone.
    assert "train/i2t_acc" in train[-1] and "train/i2t_loss" not in train[-1]
    assert train[-1]["train/loss"] == pytest.approx(train[-1]["train/align_loss"], rel=1e-6)
    spec = json.load(open(tmp_path / "spec.json"))
    assert spec["objective"]["loss_kind"] == "infonce" and spec["objective"]["irr_weight"] == 0


def test_irra_spec_runs(tmp_path):
    cli.run("specs/irra.py:runlocal", tmp_path, *SMALL)
    train, evals = metrics(tmp_path)
    assert len(train) == 2 and all(np.isfinite(r["train/loss"]) for r in train)
    # The loss is SDM's alignment plus irr_weight x IRR's masked-token cross-entropy, which
    # two steps from initialisation is still near ln(260), uniform over the byte vocabulary.
    spec = json.load(open(tmp_path / "spec.json"))
    w = spec["objective"]["irr_weight"]
    assert w == 1.0 and spec["objective"]["loss_kind"] == "sdm"
    for r in train:
        assert r["train/loss"] == pytest.approx(r["train/align_loss"] + w * r["train/irr_loss"],
                                                rel=1e-5)
        assert abs(r["train/irr_loss"] - np.log(260)) < 1.0, r["train/irr_loss"]
        assert r["train/i2t_loss"] > 0 and r["train/t2i_loss"] > 0
    for scope in ("people", "all"):
        r1, r10 = evals[f"eval/{scope}_R@1"], evals.get(f"eval/{scope}_R@10", 100.0)
        m_ap, m_inp = evals[f"eval/{scope}_mAP"], evals.get(f"eval/{scope}_mINP", 0.0)
        assert 0.0 <= r1 <= r10 <= 100.0 and 0.0 < m_inp <= 100.0 and 0.0 < m_ap <= 100.0, \
            (scope, evals)
    assert evals["eval/people_gallery_size"] < evals["eval/all_gallery_size"]
