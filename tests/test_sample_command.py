"""``--mode=sample`` through the real CLI on a trained 8-Gaussians teacher and its one-step
student: the samples land on their class's mode, the spec's ``sample`` node (steps, solver,
seed) changes them as it says, files are written, and bad input is one line."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from xmodal.core import spec as spec_lib
from xmodal.core import trainer
from xmodal.data.sets.eight_gaussians import CENTRES

# Each test here trains a stage through the trainer (a module-scoped teacher, sampler or
# workdir): part of the whole suite, not of the quick `-m "not slow"` loop.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_one_device")]

SPEC = "specs/eight_gaussians.py:tiny"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, eight_gaussians_teacher):
    """The shared trained teacher (a 64-wide MLP that finds the modes) and a few steps of a
    DMD student."""
    wd = str(tmp_path_factory.mktemp("eg"))
    cli.copy_workdir(eight_gaussians_teacher, os.path.join(wd, "teacher"))
    c = spec_lib.load(os.path.join(cli.ROOT, SPEC))
    for stage in c.stages.values():
        stage.model.width, stage.model.depth = 64, 2
        stage.evals = {}
    trainer.run(spec_lib.validate(c), wd, only=("dmd",))
    return wd


def _sample(wd, out, *args, check=True):
    cmd = [sys.executable, "-m", "xmodal.main", f"--spec={SPEC}", f"--workdir={wd}",
           "--mode=sample", f"--out={out}",
           # the spec as trained (the fixture's sizes), then the test's own overrides
           "--spec.stages.teacher.model.width=64", "--spec.stages.teacher.model.depth=2",
           "--spec.stages.dmd.model.width=64", "--spec.stages.dmd.model.depth=2", *args]
    r = subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                       timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def _labels(out):
    lines = open(os.path.join(out, "conditions.txt")).read().splitlines()
    return np.array([int(line.rsplit("label ", 1)[1]) for line in lines])


def test_teacher_samples_land_on_their_modes_and_follow_the_sample_node(workdir, tmp_path):
    a, b, c, d = (str(tmp_path / k) for k in "abcd")
    node = "--spec.stages.teacher.sample."
    _sample(workdir, a, "--stage=teacher", node + "num=256", node + "steps=20",
            node + "solver=heun")
    x = np.load(os.path.join(a, "samples.npy"))
    assert x.shape == (256, 2) and os.path.getsize(os.path.join(a, "points.png")) > 1000
    labels = _labels(a)
    assert labels.shape == (256,) and len(set(labels)) == 8   # the eval split's own labels
    to_own = np.linalg.norm(x - CENTRES[labels], axis=-1)
    # A class-conditional teacher puts each sample by its label's mode (radius 2, std 0.1);
    # the noise it starts from is ~2 away on average.
    assert np.median(to_own) < 0.5, np.median(to_own)

    _sample(workdir, b, "--stage=teacher", node + "num=256", node + "steps=20",
            node + "solver=heun")
    np.testing.assert_array_equal(np.load(os.path.join(b, "samples.npy")), x)  # same seed
    _sample(workdir, c, "--stage=teacher", node + "num=256", node + "steps=1")
    one = np.load(os.path.join(c, "samples.npy"))
    assert np.abs(one - x).max() > 1e-3                                        # 1 Euler step
    _sample(workdir, d, "--stage=teacher", node + "num=256", node + "steps=20",
            node + "solver=heun", node + "seed=1")
    assert np.abs(np.load(os.path.join(d, "samples.npy")) - x).max() > 1e-2   # other noise


def test_default_stage_is_the_last_trained_generator(workdir, tmp_path):
    out = str(tmp_path / "s")
    r = _sample(workdir, out, "--spec.stages.dmd.sample.num=8")
    assert "stage 'dmd'" in r.stdout and "DMD" in r.stdout
    assert np.load(os.path.join(out, "samples.npy")).shape == (8, 2)


@pytest.mark.parametrize("args, message", [
    (("--stage=nope",), "this spec's stages are"),
    (("--stage=sid",), "train it first"),
    (("--stage=teacher", "--prompt=a cat"), "not conditioned on text"),
    (("--stage=teacher", "--spec.stages.teacher.sample.solver=leapfrog"),
     "'stages.teacher.sample.solver' = 'leapfrog' is out of range: it must be one of '', "
     "'euler'"),
    (("--stage=dmd", "--spec.stages.dmd.sample.solver=heun"), "no ODE method"),
    (("--stage=teacher", "--spec.stages.teacher.sample.num=0"),
     "'stages.teacher.sample.num' = 0 is out of range: it must be >= 1"),
])
def test_bad_sample_input_is_one_line(workdir, tmp_path, args, message):
    out = tmp_path / "x"
    r = _sample(workdir, str(out), *args, check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not out.exists()
