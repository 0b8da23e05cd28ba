"""Run outputs users script against: ``metrics.jsonl`` and TensorBoard event files.

TensorBoard's own event writer is used directly (clu.metric_writers imports TensorFlow). Only
process 0 writes; every other process gets a writer that does nothing.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import jax
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricWriter:
    def __init__(self, workdir: str, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            # Append: a resumed run continues the same file rather than overwriting history.
            self._jsonl = open(self.path, "a", buffering=1)
            self._tb = EventFileWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: Mapping[str, float], replace: bool = False) -> None:
        """Appends one row. ``replace``: first drop the values of these metrics at this step
        that an earlier evaluation wrote (a re-evaluation replaces them, so a reader never
        sees two values of one metric at one step)."""
        if not self.enabled or not metrics:
            return
        row = {"step": int(step)}
        row.update({k: _py(v) for k, v in metrics.items()})
        if replace:
            self._drop(int(step), set(metrics))
        self._jsonl.write(json.dumps(row) + "\n")
        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                  for k, v in row.items() if k != "step" and isinstance(v, (int, float))]
        self._tb.add_event(event_pb2.Event(step=int(step), wall_time=time.time(),
                                           summary=summary_pb2.Summary(value=values)))

    def _drop(self, step: int, keys: set) -> None:
        self._jsonl.close()
        with open(self.path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        kept = []
        for r in rows:
            if r.get("step") == step:
                r = {k: v for k, v in r.items() if k not in keys}
                if set(r) == {"step"}:
                    continue
            kept.append(r)
        with open(self.path + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(self.path + ".tmp", self.path)
        self._jsonl = open(self.path, "a", buffering=1)

    def flush(self) -> None:
        if self.enabled:
            self._jsonl.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()


def _py(v):
    v = np.asarray(v).item() if hasattr(v, "shape") else v
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf; keep the fact visible
    return v


def read_metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
