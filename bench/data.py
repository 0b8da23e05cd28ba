"""Input-pipeline throughput per dataset: records/s read, decoded and batched through grain.

    python bench/data.py [--datasets=emoji,emoji/tiny] [--workers=0,2] [--batches=30]

Each prepared (or preparable) dataset's train split is read through grain's dataset API with a
seeded shuffle, a decoding map and batches of 64; records are left unstacked (their fields
differ per dataset), so this measures reading + decoding, the part every pipeline shares.
``--reads`` compares how a batch's records are read, in one run: ``element`` (grain's
``batch``: one ArrayRecord read per record) and ``batched`` (``core.input.ReadBatches``, what
the trainer uses: one read per batch). With
worker processes the unstacked records are also pickled between processes, so small records
(motion, wordnet) gain little from workers. The image-text training pipeline (resize + tokenize + stack into arrays) is measured by
``bench/train.py``.
Datasets whose packages are missing are listed with the install command and skipped.
"""
from __future__ import annotations

import json
import time

import grain
from absl import app, flags

from xmodal.core import datasets as sources
from xmodal.core.input import ReadBatches

_DATASETS = flags.DEFINE_list("datasets", [], "names (default: every registered dataset)")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "grain worker counts to try")
_BATCHES = flags.DEFINE_integer("batches", 30, "timed batches per measurement")
_BATCH = flags.DEFINE_integer("batch", 64, "records per batch")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")
_READS = flags.DEFINE_list("reads", ["batched"], "element (grain's batch), batched (ReadBatches)")


def _touch(record):
    # Decoding happens when the record is read; touching every field keeps lazy decoders honest.
    return {k: (v.shape if hasattr(v, "shape") else len(v) if hasattr(v, "__len__") else v)
            for k, v in record.items()}


def measure(name: str, workers: int, batches: int, batch: int, reads: str = "batched") -> float:
    src = sources.data_source(name, "train")
    records = grain.MapDataset.source(src).shuffle(seed=0).repeat(None).map(_touch)
    if reads == "element":
        batched = records.batch(batch, batch_fn=list)
    elif reads == "batched":
        batched = ReadBatches(records, batch, batch_fn=list)
    else:
        raise ValueError(f"--reads: element or batched, got {reads!r}")
    # The training pipeline's read options: grain's default buffer (500 batches) would fill
    # during warm-up and the timed loop would only read the buffer.
    ds = batched.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8))
    if workers:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    it = iter(ds)
    next(it)  # start-up (worker spawn) is not throughput
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t)
    if hasattr(it, "close"):
        it.close()
    return rate


def main(_):
    names = _DATASETS.value or sources.names()
    rows = []
    for name in names:
        try:
            sources.check_installed(name)
        except sources.DataSourceMissing as e:
            print(f"{name:<24} skipped: {e}")
            continue
        for w in map(int, _WORKERS.value):
            for reads in _READS.value:
                rate = measure(name, w, _BATCHES.value, _BATCH.value, reads)
                rows.append({"dataset": name, "workers": w, "reads": reads,
                             "records_per_s": rate})
                print(f"{name:<24} workers={w}  reads={reads:<8} {rate:10.0f} records/s",
                      flush=True)
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    app.run(main)
