"""Each spec end to end through the real CLI, with real data, Orbax and grain."""
import glob
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import cli
from xmodal.core.checkpoint import read_numpy
from xmodal.core.writers import read_metrics

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_spec_runs_through_cli(name, tmp_path):
    wd = tmp_path / name
    # SigLIP reads through two grain worker processes (CLIP in this process).
    workers = "--spec.data.num_workers=" + ("2" if name == "siglip" else "0")
    r = cli.run(f"specs/{name}.py:runlocal", wd, "--spec.train.steps=3",
                "--spec.train.ckpt_every=2", "--spec.objective.ring=true", workers)
    assert "step      3/3" in r.stdout and "steps/s" in r.stdout and "MFU" in r.stdout
    # No warning that is not the user's to act on: grain's shared memory is freed, TFDS's
    # OpenCV advice is dropped (in the workers too).
    assert "leaked shared_memory" not in r.stderr and "OpenCV" not in r.stderr, r.stderr
    assert "outputs in" in r.stdout and "sheets/" in r.stdout
    # The final table has a chance column: R@1 of a random ranking of the eval pairs.
    from xmodal.core import datasets
    pairs = min(48, datasets.num_examples("emoji/tiny", "test"))
    row = next(l for l in r.stdout.splitlines() if l.startswith("eval/t2i_R@1 "))
    assert float(row.split()[-1]) == pytest.approx(100 / pairs, abs=1e-3)
    assert os.listdir(wd / "sheets") == ["retrieval_0000003.png"]
    assert "final metrics at step 3" in r.stdout
    rows = read_metrics(str(wd))
    train = [row for row in rows if "train/loss" in row]
    assert [row["step"] for row in train] == [1, 2, 3]
    assert all(np.isfinite(row["train/loss"]) for row in train)
    final = {k: v for row in rows for k, v in row.items()}
    for key in ("eval/t2i_R@1", "eval/i2t_R@10", "eval/t2i_medr", "eval/zeroshot_top1"):
        assert key in final, key
    spec = json.load(open(wd / "spec.json"))
    assert spec["objective"]["name"] == name and spec["train"]["steps"] == 3
    assert glob.glob(str(wd / "tb" / "events.out.tfevents.*"))
    assert sorted(os.listdir(wd / "checkpoints")) == ["2", "3"]


def test_nonfinite_loss_stops_with_step_and_metric(tmp_path):
    r = cli.run("specs/clip.py:runlocal", tmp_path / "nan", "--spec.train.steps=6",
                "--spec.optim.lr=1e30", "--spec.optim.grad_clip_norm=0.0", check=False)
    assert r.returncode != 0
    assert "is not finite" in r.stderr and "step " in r.stderr


def test_unwritable_workdir_fails_early(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli.run("specs/clip.py:runlocal", blocker / "run", check=False)
    assert r.returncode == 1 and "not writable" in r.stderr


def test_failed_start_keeps_existing_outputs(tmp_path, trained_clip):
    wd = cli.copy_workdir(trained_clip, tmp_path / "run")
    before = {p: os.path.getmtime(p) for p in glob.glob(str(wd / "**"), recursive=True)}
    r = cli.run("specs/clip.py:runlocal", wd, "--spec.objective.name=nope", check=False)
    assert r.returncode == 2 and "unknown objective 'nope'" in r.stderr
    after = {p: os.path.getmtime(p) for p in glob.glob(str(wd / "**"), recursive=True)}
    assert before == after


def test_multistage_spec_runs_stages_in_order(tmp_path):
    """Stage b starts from a's parameters. While a trains, its progress line gives the run's
    ETA, counting b as not yet timed; b, the last, has none. Orbax's INFO lines go to the
    workdir's run.log, not to the console. ``--stages`` runs a subset."""
    import re
    import subprocess
    wd = tmp_path / "ms"

    def main(*flags):
        return subprocess.run([cli.sys.executable, "-m", "xmodal.main",
                               "--spec=tests/specs/two_stage.py", f"--workdir={wd}", *flags],
                              cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True,
                              timeout=600)
    # --stages runs a subset; an unknown name is refused with the spec's stage names.
    r = main("--stages=c")
    assert r.returncode != 0 and "no stage ['c']" in r.stderr and "['a', 'b']" in r.stderr
    r = main()
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.listdir(wd / "a" / "checkpoints") == ["2"]
    assert os.listdir(wd / "b" / "checkpoints") == ["1"]
    assert f"from init_from {wd / 'a'}" in r.stdout
    assert json.load(open(wd / "b" / "spec.json"))["init_from"] == str(wd / "a")
    lines = [line for line in r.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2", "1/1"], r.stdout[-2000:]
    assert "run ETA ≥" in lines[1] and "(+1 stage not yet timed)" in lines[1]
    assert "run ETA" not in lines[2]
    log = (wd / "run.log").read_text()
    assert "Saving checkpoint at step 2" in log and "Saving checkpoint at step 1" in log
    assert not re.search(r"^[IW]\d{4} ", r.stderr + r.stdout, re.MULTILINE), r.stderr[-2000:]
    b_checkpoint = os.path.getmtime(wd / "b" / "checkpoints" / "1")
    r = main("--stages=a")      # a is done (restored at its last step); b is left alone
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 2 stages" in r.stdout and "training" in r.stdout
    assert os.path.getmtime(wd / "b" / "checkpoints" / "1") == b_checkpoint


def test_nonfinite_state_is_never_checkpointed(tmp_path):
    # Checkpoint every step, log rarely: the guard must still stop before saving a NaN state.
    wd = tmp_path / "nan_ckpt"
    r = cli.run("specs/clip.py:runlocal", wd, "--spec.train.steps=6", "--spec.train.log_every=100",
                "--spec.train.ckpt_every=1", "--spec.optim.lr=1e30",
                "--spec.optim.grad_clip_norm=0.0", check=False)
    assert r.returncode != 0 and "is not finite" in r.stderr
    root = wd / "checkpoints"
    steps = ocp.utils.checkpoint_steps(str(root)) if root.exists() else []
    for s in steps:
        state = read_numpy(str(root / str(s) / "state"))
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
