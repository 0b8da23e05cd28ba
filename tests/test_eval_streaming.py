"""Streaming evaluation (``core/eval_data.py``, ``Applier.stream``): the split is read batch by
batch, each process only its rows, and the outputs equal those of the split held in memory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from xmodal.core import eval_data, parallel
from xmodal.core.eval_context import Applier, EvalContext


class Counted:
    """A random-access source of n records that logs every index it is asked for."""

    def __init__(self, n: int, frame_shape=(6, 5, 3)):
        self.n, self.frame_shape, self.reads = n, frame_shape, []
        self._lock = threading.Lock()

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self._getitems([i])[0]

    def _getitems(self, indices):
        with self._lock:
            self.reads.extend(int(i) for i in indices)
        return [{"id": int(i)} for i in indices]


class Expand:
    """A transform: record i -> a 'video' filled with i, a feature vector and a label."""

    def map(self, record):
        i = record["id"]
        return {"video": np.full((4, 6, 5, 3), i % 251, np.uint8),
                "x": np.arange(3, dtype=np.float32) + i,
                "label": np.int32(i % 7)}


def _mesh():
    return parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1})


def video_fn(params, video, x):
    # Per example: the mean frame value times w, and x's sum.
    return {"m": video.astype(jnp.float32).mean(axis=(1, 2, 3, 4)) * params["w"],
            "s": x.sum(-1)}


def test_stream_equals_the_split_in_memory_and_reads_every_record_once():
    n = 37                                    # 8 devices, chunks of 16: 16 + 16 + 5 padded
    source = Counted(n)
    split = eval_data.RecordSplit(source, Expand())
    params = {"w": jnp.float32(2.0)}
    out, kept = Applier(_mesh(), 16).stream(video_fn, params, split, ["video", "x"],
                                            keep=["label"])
    ids = np.arange(n)
    np.testing.assert_allclose(out["m"], 2.0 * (ids % 251))
    np.testing.assert_allclose(out["s"], 3 * ids + 3)
    np.testing.assert_array_equal(kept["label"], ids % 7)
    # Each record once; the padding re-reads record 36 (the last window repeats its last
    # example), never an index past the split.
    streamed = source.reads[:]
    assert max(streamed) == n - 1
    counts = np.bincount(streamed, minlength=n)
    assert counts[:32].tolist() == [1] * 32          # full windows: each row read once
    assert counts[32:36].tolist() == [1] * 4 and counts[36] == 12   # 5 real rows + 11 pads
    # The same evaluation through the in-memory arrays gives the same numbers.
    arrays = eval_data.LazyArrays(eval_data.RecordSplit(Counted(n), Expand()))
    direct = Applier(_mesh(), 16)(video_fn, params, arrays["video"], arrays["x"])
    np.testing.assert_allclose(out["m"], direct["m"])
    np.testing.assert_allclose(out["s"], direct["s"])


def test_stream_holds_only_a_few_batches_at_once():
    n, bs, prefetch = 200, 8, 2
    source = Counted(n)
    split = eval_data.RecordSplit(source, Expand(), threads=1)
    stream = eval_data.stream_batches(split, ["x"], bs, list(range(bs)), prefetch=prefetch)
    valid, first = next(stream)
    assert valid == bs and first["x"][:, 0].tolist() == list(range(bs))
    # The first window and the `prefetch` next ones have been asked for, nothing further.
    assert max(source.reads) < (prefetch + 1) * bs
    rest = [b["x"][:v, 0] for v, b in stream]
    np.testing.assert_array_equal(np.concatenate([first["x"][:, 0]] + rest), np.arange(n))


def test_lazy_arrays_stack_a_field_on_first_use_with_the_small_fields_only():
    source = Counted(20)
    arrays = eval_data.LazyArrays(eval_data.RecordSplit(source, Expand()))
    assert sorted(arrays) == ["label", "video", "x"] and "video" in arrays
    assert arrays.held_bytes() == 0
    np.testing.assert_array_equal(arrays["label"], np.arange(20) % 7)
    # The label and x were stacked in one pass; the video (360 B/example here, but bigger than
    # the small-field limit in this test's setting) was not.
    assert set(arrays._held) == {"label", "x"}
    reads = len(source.reads)
    np.testing.assert_array_equal(arrays["x"][:, 0], np.arange(20))
    assert len(source.reads) == reads                # no second pass for a held field
    with pytest.raises(KeyError):
        arrays["nothing"]


@pytest.fixture(autouse=True)
def _small_limit(monkeypatch):
    # Every field above 64 bytes per example counts as big: the 360-byte "video" does.
    monkeypatch.setattr(eval_data, "SMALL_FIELD_BYTES", 64)


def test_context_stream_names_missing_fields():
    ctx = EvalContext(arrays={"x": np.zeros((4, 3), np.float32)}, class_names=[],
                      params={}, applier=Applier(_mesh(), 8))
    with pytest.raises(ValueError, match="missing video"):
        ctx.stream(video_fn, ["video", "x"])
    assert ctx.size == 4


def test_field_view_reads_one_example():
    source = Counted(10)
    view = eval_data.FieldView(eval_data.RecordSplit(source, Expand()), "video")
    assert len(view) == 10 and int(view[7][0, 0, 0, 0]) == 7
    assert source.reads[-1:] == [7]


def test_process_rows_of_a_batch_sharding():
    # One process holding all 8 fake devices reads every row.
    sharding = parallel.batch_sharding(_mesh())
    assert eval_data.process_rows(sharding, 16) == list(range(16))


WORKER = r"""
import json, os, sys
import numpy as np
import jax, jax.numpy as jnp
from xmodal.core import parallel, eval_data
from xmodal.core.eval_context import Applier
from tests.test_eval_streaming import Counted, Expand, video_fn
parallel.init_distributed({})
mesh = parallel.make_mesh({"data": -1, "fsdp": 1, "model": 1})
source = Counted(37)
out, kept = Applier(mesh, 8).stream(video_fn, {"w": jnp.float32(2.0)},
                                    eval_data.RecordSplit(source, Expand()), ["video", "x"],
                                    keep=["label"])
json.dump({"reads": source.reads, "m": out["m"].tolist(), "label": kept["label"].tolist()},
          open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_two_processes_read_disjoint_rows_and_get_the_same_outputs(tmp_path):
    from tests.test_distributed import _free_port
    port = _free_port()
    procs, files = [], []
    for pid in range(2):
        env = cli.env(devices=2, XMODAL_COORDINATOR=f"127.0.0.1:{port}",
                      XMODAL_NUM_PROCESSES="2", XMODAL_PROCESS_ID=str(pid))
        files.append(tmp_path / f"p{pid}.json")
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, str(files[-1])],
                                      cwd=cli.ROOT, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    got = [json.loads(f.read_text()) for f in files]
    ids = np.arange(37)
    for g in got:                               # both processes get every output
        np.testing.assert_allclose(g["m"], 2.0 * ids)
        assert g["label"] == (ids % 7).tolist()
    # 4 devices in all, chunks of 8: process 0 reads rows 0-3 of each chunk, process 1 rows
    # 4-7. The padding of the last chunk (5 real rows) makes process 1 re-read record 36.
    reads = [set(g["reads"]) for g in got]
    assert reads[0] & reads[1] <= {36}
    assert reads[0] | reads[1] == set(range(37))
    assert {0, 1, 2, 3, 8, 9, 10, 11} <= reads[0] and not {4, 5, 6, 7} & reads[0]
    assert os.environ.get("XMODAL_COORDINATOR") is None   # the test process stayed single
