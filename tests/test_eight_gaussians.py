"""specs/eight_gaussians.py through the real trainer: every stage of the tiny spec runs through
the CLI, and (slow) a one-step DMD student distilled from a trained flow teacher beats the
teacher's own one-step sample and lands far below an untrained generator. (The issue's 1.5x of
the teacher's 50-step distance is met at the runlocal size, WORKSPACE_NOTES.md; this CI-sized
run, a 64-wide MLP for 600 steps, reaches about 1.7x.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import cli, toy_runs
from xmodal.core import spec as spec_lib
from xmodal.core import trainer

SPEC = os.path.join(cli.ROOT, "specs/eight_gaussians.py")


def _last(workdir, key):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r[key] for r in rows if key in r][-1]


@pytest.mark.slow
def test_tiny_spec_runs_every_stage_through_the_cli(tmp_path):
    wd = tmp_path / "eg"
    r = subprocess.run([sys.executable, "-m", "xmodal.main", "--spec=specs/eight_gaussians.py:tiny",
                        f"--workdir={wd}"], cwd=cli.ROOT, env=cli.env(devices=1),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("teacher", "dmd", "sid", "reflow", "one_step"):
        assert os.listdir(wd / stage / "checkpoints") == ["4"], stage
        assert np.isfinite(_last(wd / stage, "eval/sw@1")), stage
    # The generator updates on steps 1 and 3 of 4 (fake_updates=2); the fake score on every one.
    rows = [json.loads(line) for line in open(wd / "dmd" / "metrics.jsonl")]
    gen = {r["step"]: r["train/generator/loss"] for r in rows if "train/generator/loss" in r}
    assert gen[1] == 0.0 and gen[2] != 0.0 and gen[3] == 0.0 and gen[4] != 0.0


@pytest.mark.slow
@pytest.mark.usefixtures("on_one_device")
def test_dmd_student_in_one_step_beats_the_teachers_one_step_sample(tmp_path,
                                                                   eight_gaussians_teacher):
    wd = str(tmp_path / "eg")
    cli.copy_workdir(eight_gaussians_teacher, os.path.join(wd, "teacher"))
    trainer.run(spec_lib.validate(toy_runs.eight_gaussians_spec()), wd, only=("dmd",))
    teacher50 = _last(os.path.join(wd, "teacher"), "eval/sw@50")
    teacher1 = _last(os.path.join(wd, "teacher"), "eval/sw@1")
    student = _last(os.path.join(wd, "dmd"), "eval/sw@1")
    untrained = _untrained_sw(wd)
    assert teacher50 < teacher1                              # the teacher itself is a flow
    assert student < 0.8 * teacher1, (student, teacher1)
    assert student < 3.0 * teacher50, (student, teacher50)
    assert untrained > 5 * student, (untrained, student)


def _untrained_sw(wd):
    """The same one-step generator freshly initialised, evaluated without training."""
    c = toy_runs.eight_gaussians_spec(student_init="scratch",
                                      teacher_from=os.path.join(wd, "teacher"))
    c.stages.dmd.train.steps = 0
    out = trainer.run(spec_lib.validate(c), wd + "_untrained", only=("dmd",))
    return out["dmd"]["eval/sw@1"]
