"""Specs of the toy systems at the sizes the tests train them, shared by the tests and the
session fixtures that train them once (conftest.py)."""
from __future__ import annotations

import os

from tests import cli
from xmodal.core import spec as spec_lib

EIGHT_GAUSSIANS = os.path.join(cli.ROOT, "specs/eight_gaussians.py")


def eight_gaussians_spec(**dmd):
    """``specs/eight_gaussians.py:runlocal`` with a 64-wide, 2-layer MLP in every stage, batch
    256: a teacher of 2000 steps that finds the eight modes, a 600-step DMD student;
    ``dmd`` overrides the DMD stage's objective."""
    c = spec_lib.load(EIGHT_GAUSSIANS + ":runlocal,steps=2000,student_steps=600")
    for stage in c.stages.values():
        stage.model.width, stage.model.depth = 64, 2
        stage.data.batch_size = 256
        stage.data.eval_max_examples = 1024
    c.stages.teacher.evals.sw.steps = (1, 50)
    for k, v in dmd.items():
        c.stages.dmd.objective[k] = v
    return c
