"""One run per workdir: a second run into a workdir in use is refused in one line naming the
owner, and loses nothing of the first; a killed run leaves no lock behind."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from tests import cli
from xmodal.core import run_io
from xmodal.core.registry import SpecError


def test_a_held_lock_names_its_owner_and_is_released_on_exit(tmp_path):
    with run_io.WorkdirLock(str(tmp_path)):
        owner = json.loads((tmp_path / ".lock").read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(SpecError, match=rf"is in use by pid {os.getpid()} on host "
                                            rf"{socket.gethostname()} since .*one run per"):
            run_io.WorkdirLock(str(tmp_path)).__enter__()
        # Another process of a multi-host run holds its own lock in the same workdir.
        with run_io.WorkdirLock(str(tmp_path), process_index=1):
            assert (tmp_path / ".lock.process_1").exists()
    with run_io.WorkdirLock(str(tmp_path)):   # released: taken again
        pass


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    wd = tmp_path / "run"
    first = subprocess.Popen(cli.command("specs/clip.py:runlocal", wd, "--spec.train.steps=5000",
                                         "--spec.train.ckpt_every=2"),
                             cwd=cli.ROOT, env=cli.env(devices=1), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        for line in first.stdout:          # training has started: checkpoints are being written
            if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= 4:
                break
        time.sleep(1.0)
        before = _committed(wd)
        second = subprocess.run(cli.command("specs/clip.py:runlocal", wd,
                                            "--spec.train.steps=3"),
                                cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                                text=True, timeout=600)
        assert second.returncode == 1
        lines = [l for l in second.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and f"is in use by pid {first.pid} on host" in lines[0], lines
        assert first.poll() is None                         # the first run goes on
        after = _committed(wd)      # its checkpoints go on (the oldest rotate out: keep 3)
        assert before and after and max(after) >= max(before), (before, after)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # kill -9 released the lock: the killed run's newest checkpoint can be evaluated at once.
    newest = max(_committed(wd))
    third = subprocess.run(cli.command("specs/clip.py:runlocal", wd, "--spec.train.steps=5000",
                                       "--spec.train.ckpt_every=2", "--mode=eval"),
                           cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f"eval at step {newest}" in third.stdout


def _committed(wd) -> list[int]:
    return sorted(int(d) for d in os.listdir(wd / "checkpoints") if d.isdigit())
