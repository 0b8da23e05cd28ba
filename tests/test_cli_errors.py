"""What a user sees when the command line is wrong or the machine lacks something: one line,
a non-zero exit, nothing written; and a re-evaluation that never duplicates a metric row."""
import collections
import os
import subprocess
import sys

import pytest

from tests import cli
from xmodal.core.writers import read_metrics


def _run(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "xmodal.main", *args], cwd=cli.ROOT,
                          env=env or cli.env(devices=1), capture_output=True, text=True,
                          timeout=timeout)


def _lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_misspelt_override_is_one_line_naming_the_valid_keys(tmp_path):
    wd = tmp_path / "run"
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--spec.train.stepz=10")
    assert r.returncode == 2
    assert _lines(r.stderr) == [
        "spec error: --spec.train.stepz: train has no key 'stepz'; its keys: check_finite, "
        "ckpt_every, ema_decay, eval_every, keep_ckpts, log_every, progress_every_s, steps"]
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--spec.trian.steps=10")
    assert r.returncode == 2 and len(_lines(r.stderr)) == 1
    assert "the spec has no key 'trian'" in r.stderr and "train" in r.stderr
    assert not wd.exists()


@pytest.mark.parametrize("flag, message", [
    ("--spec.data.batch_size=-128", "'data.batch_size' = -128 is out of range: it must be >= 1"),
    ("--spec.train.ckpt_every=0", "'train.ckpt_every' = 0 is out of range: it must be >= 1"),
    ("--spec.optim.lr=-0.001", "'optim.lr' = -0.001 is out of range: it must be >= 0"),
    ("--spec.train.keep_ckpts=0", "'train.keep_ckpts' = 0 is out of range: it must be >= 1"),
])
def test_out_of_range_value_is_one_line_naming_key_value_and_range(tmp_path, flag, message):
    wd = tmp_path / "run"
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", flag)
    assert r.returncode == 2                # a spec error, as a misspelt key
    assert _lines(r.stderr) == [f"spec error: spec key {message}"]
    assert not wd.exists()


def test_wrong_type_is_one_line_naming_the_flag_and_value(tmp_path):
    wd = tmp_path / "run"
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--spec.train.steps=abc")
    assert r.returncode == 2
    (line,) = _lines(r.stderr)
    assert line.startswith("spec error: flag --spec.train.steps=abc:") and "int" in line
    assert not wd.exists()


def test_unknown_mode_and_stray_flag_are_refused(tmp_path):
    wd = tmp_path / "run"
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--mode=smaple")
    assert r.returncode == 2 and _lines(r.stderr) == [
        "unknown --mode='smaple'; valid: train, eval, compile, caption, embed, sample, separate, "
        "zeroshot"]
    # Every family's verb exists; on a workdir with nothing trained it says so in one line.
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--mode=sample")
    assert r.returncode == 2 and "train it first" in r.stderr and "Traceback" not in r.stderr
    # A command's flag given to a generic mode is an error, not silently ignored.
    r = _run("--spec=specs/clip.py:runlocal", f"--workdir={wd}", "--query=the violin")
    assert r.returncode == 2 and _lines(r.stderr) == [
        "unknown flag(s) for --mode=train: --query=the violin"]
    assert not wd.exists()


def test_help_names_every_mode_and_the_exit_codes():
    from xmodal.core.registry import COMMANDS
    r = _run("--help")
    assert r.returncode == 0
    for mode in ("train", "eval", "compile", *COMMANDS.names()):
        assert f"--mode={mode}" in r.stdout, mode
    assert "Exit status: 0 done" in r.stdout and "; 2 the command line" in r.stdout


@pytest.mark.slow
def test_missing_data_source_names_the_install_command_and_writes_nothing(tmp_path):
    """FlowSep's stages read Debian packages (the clap stage's Tux Paint effects, the FluidR3
    soundfont): on a machine without them (an empty Debian root here) the start fails in one
    line with the command that installs the first missing one, before any stage runs, and
    leaves no half-made workdir behind."""
    empty = tmp_path / "debroot"
    empty.mkdir()
    wd = tmp_path / "run"
    r = _run("--spec=specs/flowsep.py:tiny,data=lass_mix/tiny", f"--workdir={wd}",
             env=cli.env(devices=1, DEBROOT=str(empty)))
    assert r.returncode != 0
    last = _lines(r.stderr)[-1]
    assert last.startswith("data source missing: ") and "/usr/share/" in last
    assert "apt-get install -y" in last and "(or: python -m xmodal.data install " in last
    assert not wd.exists()


@pytest.mark.slow
def test_reevaluation_replaces_its_rows(tmp_path, trained_clip):
    # Also what --mode=eval reads: the workdir's newest checkpoint (step 2).
    wd = cli.copy_workdir(trained_clip, tmp_path / "run")
    for _ in range(2):
        r = cli.run("specs/clip.py:runlocal", wd, "--spec.train.steps=2", "--mode=eval")
        assert "eval at step 2" in r.stdout
    rows = read_metrics(str(wd))
    seen = collections.Counter((row["step"], k) for row in rows for k in row if k != "step")
    assert seen[(2, "eval/t2i_R@1")] == 1 and max(seen.values()) == 1
    assert [row["step"] for row in rows if "train/loss" in row] == [1, 2]  # training kept
    assert os.path.isdir(wd / "checkpoints" / "2")
