"""A damaged prepared dataset is one line naming the dataset, the file and the rebuild command,
through the real CLI; ``prepare --force`` rebuilds it and the same command then trains."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests import cli
from xmodal.core import datasets as sources

pytestmark = pytest.mark.slow


@pytest.fixture()
def data_dir(tmp_path):
    """A private copy of the prepared emoji/tiny, to damage."""
    src = sources.prepare("emoji/tiny").data_path
    dst = tmp_path / "data" / os.path.relpath(str(src), sources.default_data_dir())
    shutil.copytree(str(src), dst)
    return tmp_path / "data", dst


def _train(tmp_path, data, *flags):
    return subprocess.run(cli.command("specs/clip.py:runlocal", tmp_path / "run",
                                      "--spec.train.steps=1", f"--spec.data.data_dir={data}",
                                      *flags),
                          cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                          timeout=600)


def _flip_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))


def test_damaged_files_name_themselves_and_prepare_force_rebuilds(tmp_path, data_dir):
    data, version = data_dir
    shard = str(version / "xmodal_emoji-test.array_record-00000-of-00001")
    good = open(shard, "rb").read()
    fix = "rebuild it: python -m xmodal.data prepare emoji/tiny --force"

    _flip_byte(shard)        # a flipped byte (the eval split is read whole at start)
    r = _train(tmp_path, data)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("data damaged: dataset emoji/tiny split test: record ")
    assert shard in lines[0] and lines[0].endswith(fix)

    os.truncate(shard, 30_000)                            # a truncated shard
    r = _train(tmp_path, data)
    assert r.returncode == 1 and shard in r.stderr and fix in r.stderr, r.stderr[-3000:]

    open(shard, "wb").write(good)
    info = version / "dataset_info.json"
    info.write_text("{broken")                            # broken metadata
    r = _train(tmp_path, data)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("data damaged: dataset emoji/tiny in ") and fix in lines[0]

    # prepare --force rebuilds the copy; the same command then trains.
    p = subprocess.run([sys.executable, "-m", "xmodal.data", "prepare", "emoji/tiny", "--force",
                        f"--data_dir={data}"], cwd=cli.ROOT, env=cli.env(devices=1),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert info.read_text() != "{broken"
    assert not [d for d in os.listdir(data) if d.startswith(".rebuild-")]   # staging cleaned
    r = _train(tmp_path, data)
    assert r.returncode == 0, r.stderr[-3000:]
