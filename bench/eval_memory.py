"""Host memory of an evaluation: the eval split held in memory (as every process did before
evaluation streamed: ``input.eval_arrays`` over the whole split) against streamed (read batch by
batch, only the outputs kept: ``core/eval_data.py``), the same spec, evaluators and parameters,
each way in a fresh process, one after the other in one run.

    python bench/eval_memory.py --spec=specs/clap.py:effects=false [--split=train] \
        [--out=bench/results_eval_memory_cpu.json]

Per way: host memory allocated through Python and numpy (``tracemalloc``: the arrays an
evaluation holds, not XLA's own buffers nor the allocator's free pages) once the eval data is
ready, before the first evaluation (``before_eval_mb``: what the held split costs between
evaluations), and its peak while the evaluators run twice, the process's peak resident set
(``ru_maxrss``: everything, jax and the compiled programs included), and the seconds of the
second evaluation (the first compiles).
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc

from absl import app, flags
from ml_collections import config_flags

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_SPLIT = flags.DEFINE_string("split", "", "evaluate this split instead of the spec's")
_WAY = flags.DEFINE_enum("way", "", ["", "held", "streamed"], "one way only (internal)")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")


def measure(way: str) -> dict:
    import jax
    from xmodal.core import eval_data, evaluation, objective as objective_lib, parallel
    from xmodal.core import input as pipeline

    spec = _SPEC.value
    if _SPLIT.value:
        spec.unlock()
        spec.data.eval_split = _SPLIT.value
    mesh = parallel.make_mesh(spec.mesh)
    tracemalloc.start()
    data = evaluation.load_data(spec)
    if way == "held":   # the split transformed and stacked up front, as eval_arrays did
        for es in data.eval_sets.values():
            split = es.split
            es.split = eval_data.ArraySplit(pipeline.eval_arrays(split.source, split.transform,
                                                                 len(split)))
    model, objective = objective_lib.build(spec, mesh)
    state, _ = evaluation.restore_eval_state(spec, "/nonexistent", mesh, objective,
                                             data.example())
    run = evaluation.Evaluation(spec, "", mesh, model, objective, data)
    held_mb = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.reset_peak()
    first = run(state)
    start = time.perf_counter()
    second = run(state)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    assert first == second, "two evaluations of the same parameters differ"
    examples = {k or spec.data.name: len(es.split) for k, es in data.eval_sets.items()}
    jax.clear_caches()
    return {"way": way, "examples": examples, "before_eval_mb": held_mb,
            "traced_peak_mb": peak / 2**20,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "eval_seconds": seconds, "metrics": second}


def main(argv) -> None:
    del argv
    if _WAY.value:
        print(json.dumps(measure(_WAY.value)))
        return
    rows = []
    for way in ("held", "streamed"):
        args = [a for a in sys.argv[1:] if not a.startswith("--out")]
        out = subprocess.run([sys.executable, __file__, *args, f"--way={way}"], check=True,
                             capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    if rows[0]["metrics"] != rows[1]["metrics"]:
        raise SystemExit("held and streamed evaluations gave different metrics")
    print(f"{'way':10s} {'examples':>10s} {'held MB':>8s} {'eval peak MB':>13s} "
          f"{'max RSS MB':>11s} {'eval s':>7s}")
    for r in rows:
        print(f"{r['way']:10s} {sum(r['examples'].values()):10d} {r['before_eval_mb']:8.1f} "
              f"{r['traced_peak_mb']:13.1f} {r['max_rss_mb']:11.0f} {r['eval_seconds']:7.2f}")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"command": "python bench/eval_memory.py " + " ".join(sys.argv[1:]),
                       "rows": [{k: v for k, v in r.items() if k != "metrics"} for r in rows],
                       "metrics_equal": True}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
