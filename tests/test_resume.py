"""Resume is exact: N steps, kill -9, resume to 2N == 2N uninterrupted (bitwise on CPU)."""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests import cli
from xmodal.core.checkpoint import read_numpy
from xmodal.core.writers import read_metrics

pytestmark = pytest.mark.slow

N = 3
TOTAL = "--spec.train.steps=1000"  # the schedule's horizon; each run stops early with until_step


def _params(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    tree = read_numpy(path)
    return jax.tree.leaves(tree["params"]), jax.tree.leaves(tree["opt_state"])


def _wait_for_checkpoint(workdir, step, proc, timeout=300):
    root = os.path.join(workdir, "checkpoints")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.isdir(root) and step in ocp.utils.checkpoint_steps(root):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


# On a 2-device mesh that shards the kernels (fsdp=2): the resumed run restores sharded
# state, the restore a pod run does. The other resume tests run on one device.
MESH = ("--spec.mesh.data=1", "--spec.mesh.fsdp=2")


def test_kill9_then_resume_is_bitwise_exact(tmp_path):
    ref, cut = str(tmp_path / "ref"), str(tmp_path / "cut")
    cli.run("specs/clip.py:runlocal", ref, TOTAL, *MESH, f"--until_step={2 * N}",
            f"--spec.train.ckpt_every={N}", devices=2)

    proc = subprocess.Popen(cli.command("specs/clip.py:runlocal", cut, TOTAL, *MESH,
                                        f"--spec.train.ckpt_every={N}"),
                            cwd=cli.ROOT, env=cli.env(devices=2), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(cut, N, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    committed = ocp.utils.checkpoint_steps(os.path.join(cut, "checkpoints"))
    assert max(committed) < 2 * N, "the killed run got too far for the test to mean anything"

    cli.run("specs/clip.py:runlocal", cut, TOTAL, *MESH, f"--until_step={2 * N}",
            f"--spec.train.ckpt_every={N}", devices=2)
    p_ref, o_ref = _params(ref, 2 * N)
    p_cut, o_cut = _params(cut, 2 * N)
    for a, b in zip(p_ref + o_ref, p_cut + o_cut):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The log shows each step once, with the same losses as the uninterrupted run.
    loss = lambda wd: {r["step"]: r["train/loss"] for r in read_metrics(wd) if "train/loss" in r}  # noqa: E731
    assert sorted(loss(cut)) == list(range(1, 2 * N + 1))
    assert loss(cut) == loss(ref)


def test_sigterm_saves_and_exits_zero(tmp_path):
    # With grain worker processes: their shutdown must leave nothing on the console (no
    # leaked-shared-memory warning, no tracebacks): the one SIGTERM line is the last word.
    wd = str(tmp_path / "run")
    proc = subprocess.Popen(cli.command("specs/clip.py:runlocal", wd, TOTAL,
                                        "--spec.train.ckpt_every=100000",
                                        "--spec.data.num_workers=2"),
                            cwd=cli.ROOT, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _sigterm_after_first_log(proc, os.path.join(wd, "metrics.jsonl"))
    steps = ocp.utils.checkpoint_steps(os.path.join(wd, "checkpoints"))
    assert len(steps) == 1 and 1 <= steps[0] < 1000


def test_resume_order_workdir_then_resume_then_init_from(tmp_path, trained_clip):
    src = str(cli.copy_workdir(trained_clip, tmp_path / "src"))   # 2 steps trained

    # spec.resume: the whole state (step, optimizer, data position) continues from src.
    res = str(tmp_path / "res")
    r = cli.run("specs/clip.py:runlocal", res, "--spec.train.steps=3", f"--spec.resume={src}")
    assert "from resume" in r.stdout
    assert [row["step"] for row in read_metrics(res) if "train/loss" in row] == [3]

    # spec.init_from: parameters only; the step count and optimizer start from zero.
    ini = str(tmp_path / "ini")
    r = cli.run("specs/clip.py:runlocal", ini, "--spec.train.steps=1", f"--spec.init_from={src}")
    assert "from init_from" in r.stdout
    src_params = jax.tree.leaves(read_numpy(os.path.join(src, "checkpoints", "2", "state"))["params"])
    ini_state = read_numpy(os.path.join(ini, "checkpoints", "1", "state"))
    assert int(ini_state["step"]) == 1
    # One small Adam step away from the source parameters, far closer than a fresh init.
    diffs = [np.abs(a - b).max() for a, b in zip(src_params, jax.tree.leaves(ini_state["params"]))]
    assert max(diffs) < 5e-3

    # A workdir checkpoint wins over spec.resume.
    r = cli.run("specs/clip.py:runlocal", res, "--spec.train.steps=4", f"--spec.resume={src}")
    assert "from workdir checkpoint 3" in r.stdout


def test_sigterm_in_a_multi_stage_run_ends_the_invocation_and_resumes_in_that_stage(tmp_path):
    wd = tmp_path / "run"
    long_a = ("--spec.stages.a.train.steps=5000", "--spec.stages.a.train.ckpt_every=100000")
    proc = subprocess.Popen([sys.executable, "-m", "xmodal.main", "--spec=tests/specs/two_stage.py",
                             f"--workdir={wd}", *long_a],
                            cwd=cli.ROOT, env=cli.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _sigterm_after_first_log(proc, str(wd / "a" / "metrics.jsonl"))
    assert not (wd / "b").exists(), "the next stage started after SIGTERM"
    (saved,) = ocp.utils.checkpoint_steps(str(wd / "a" / "checkpoints"))
    # The next invocation resumes stage a where it stopped, finishes it, then runs b.
    r = subprocess.run([sys.executable, "-m", "xmodal.main", "--spec=tests/specs/two_stage.py",
                        f"--workdir={wd}", f"--spec.stages.a.train.steps={saved + 1}",
                        "--spec.stages.a.train.ckpt_every=100000"],
                       cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"from workdir checkpoint {saved}," in r.stdout
    assert ocp.utils.checkpoint_steps(str(wd / "b" / "checkpoints")) == [1]
    # Once more: both stages are restored at their last step and train nothing, so neither
    # compiles its train step.
    again = subprocess.run(r.args, cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "compiling the train step" not in again.stdout, again.stdout
    assert ocp.utils.checkpoint_steps(str(wd / "b" / "checkpoints")) == [1]


def _sigterm_after_first_log(proc, metrics_path: str) -> None:
    """SIGTERM once the run has logged a step; it must save, say so and exit 0."""
    t0 = time.time()
    while not (os.path.exists(metrics_path) and os.path.getsize(metrics_path) > 0):
        assert proc.poll() is None and time.time() - t0 < 300
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    said = [line for line in (out + err).splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and "checkpoint saved at step" in said[0], said   # said once
    assert "leaked" not in err and "Traceback" not in err, err[-3000:]
