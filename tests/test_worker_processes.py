"""grain's worker processes never outlive their run: after ``kill -9`` of the trainer every
process it started is gone within seconds (a normal run's clean exit is tested with the
end-to-end run, which must not warn of leaked shared memory)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests import cli

pytestmark = pytest.mark.slow


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):   # a process that just ended
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_die_with_a_killed_trainer(tmp_path):
    run = subprocess.Popen(
        cli.command("specs/clip.py:runlocal", tmp_path / "run", "--spec.train.steps=5000",
                    "--spec.data.num_workers=2"),
        cwd=cli.ROOT, env=cli.env(devices=1), stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        for line in run.stdout:
            if line.startswith("step "):   # training: the workers are feeding it
                break
        workers = _descendants(run.pid)
        assert len(workers) >= 2, workers
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_running(p) for p in workers):
        time.sleep(0.1)
    left = [p for p in workers if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived the killed trainer"
