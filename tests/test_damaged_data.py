"""A damaged prepared dataset is one line naming the dataset, the file and the rebuild command,
through the real CLI; ``prepare --force`` rebuilds it and the same command then trains."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from xmodal.core import datasets as sources

pytestmark = pytest.mark.slow


@pytest.fixture()
def data_dir(tmp_path):
    """A private copy of the prepared emoji/tiny (with its shard record), to damage."""
    assert sources.verify("emoji/tiny") == []
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

    os.truncate(shard, 30_000)            # a truncated shard: caught by its size at start
    r = _train(tmp_path, data)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert f"shard {shard} has 30000 bytes, {len(good)} when it was built" in lines[0]
    assert lines[0].endswith(fix)

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


def _verify(data):
    return subprocess.run([sys.executable, "-m", "xmodal.data", "verify", "emoji/tiny",
                           f"--data_dir={data}"], cwd=cli.ROOT, env=cli.env(devices=1),
                          capture_output=True, text=True, timeout=600)


def test_verify_names_a_file_with_flipped_bytes(tmp_path, data_dir):
    data, version = data_dir
    r = _verify(data)
    assert r.returncode == 0 and "every file has the size and sha256" in r.stdout, r.stderr
    shard = str(version / "xmodal_emoji-train.array_record-00000-of-00001")
    _flip_byte(shard)                     # same size: only the checksum can tell
    r = _verify(data)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr[-3000:]
    assert lines[0] == (f"error: dataset emoji/tiny: {shard} does not have the checksum it was "
                        "built with; rebuild it: python -m xmodal.data prepare emoji/tiny --force")

    # A copy without its shard record (built before it existed): the flipped byte is found by
    # reading every record, and nothing is recorded over it.
    record = version / sources.SHARDS_FILE
    record.unlink()
    r = _verify(data)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr[-3000:]
    assert shard in lines[0] and "cannot be read" in lines[0], lines[0]
    assert not record.exists()
    _flip_byte(shard)                     # flipped back: the copy reads whole, and is recorded
    r = _verify(data)
    assert r.returncode == 0 and "every record was read" in r.stdout, r.stderr[-3000:]
    assert record.exists() and "every file has the size" in _verify(data).stdout


def test_a_record_with_inf_names_its_index():
    """The finite check of every record read (the list stands in for the ArrayRecord reader:
    the check is CheckedSource's own code)."""
    records = [{"point": np.zeros(2, np.float32), "label": 0} for _ in range(5)]
    records[3]["point"] = np.array([1.0, np.inf], np.float32)
    source = sources.CheckedSource(records, "eight_gaussians", "train", ["a-00000", "a-00001"],
                                   [3, 2])
    assert source[2]["label"] == 0
    with pytest.raises(sources.DataDamaged) as e:
        source[3]
    assert str(e.value) == ("dataset eight_gaussians split train: record 3 field 'point' holds "
                            "NaN or Inf (a-00001); rebuild it: python -m xmodal.data prepare "
                            "eight_gaussians --force")
    with pytest.raises(sources.DataDamaged) as batched:   # a batched read checks each record
        source._getitems([2, 3, 4])
    assert str(batched.value) == str(e.value)


class FailingReader(list):
    """An ArrayRecord reader whose batched read fails, as it does on a damaged chunk; read one
    by one, record 3 is the damaged one."""

    def __getitems__(self, indices):
        raise RuntimeError("DATA_LOSS: Corrupted Riegeli/records file at byte 512")

    def __getitem__(self, index):
        if index == 3:
            raise RuntimeError("DATA_LOSS: Corrupted Riegeli/records file at byte 512")
        return super().__getitem__(index)


def test_a_failed_batched_read_names_the_damaged_record():
    records = FailingReader({"point": np.full(2, i, np.float32), "label": i} for i in range(5))
    source = sources.CheckedSource(records, "eight_gaussians", "train", ["a-00000", "a-00001"],
                                   [3, 2])
    assert [r["label"] for r in source._getitems([0, 4, 2])] == [0, 4, 2]
    with pytest.raises(sources.DataDamaged, match=r"record 3 of a-00001 cannot be read"):
        source._getitems([1, 3])
