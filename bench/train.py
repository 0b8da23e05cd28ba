"""Training speed of a spec: bare jitted step, the trainer's loop, the input pipeline, MFU.

    python bench/train.py --spec=specs/clip.py:runlocal [--steps=40] [--spec.data.batch_size=256]

Reports steps/s and examples/s of (a) the bare compiled step on a device-resident batch,
(b1) the trainer's loop fed from host batches already in memory (host→device, NaN guard,
logging): its ratio to (a) is the trainer's own per-step overhead; (b2) the same loop on the real
grain pipeline, decoding included (on a 2-core machine the decoding workers share the cores
with the step); (c) the input pipeline alone and how many times the loop's consumption it
delivers; (d) MFU = XLA's FLOPs per step / step time / a measured matmul peak.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import ml_collections as mlc
from absl import app, flags
from ml_collections import config_flags

from xmodal.core import flops
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.core.precision import Policy

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 40, "timed steps per measurement")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")


WINDOWS = 3  # best of this many timing windows: the machine may be shared


class InMemory:
    """Cycles over a few host batches; checkpointable like a grain iterator (as bytes)."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def __next__(self):
        self.i += 1
        return self.batches[self.i % len(self.batches)]

    def get_state(self) -> bytes:
        return json.dumps({"i": self.i}).encode()

    def set_state(self, state: bytes) -> None:
        self.i = json.loads(state)["i"]


def _timed_steps(fn, state, batch, n):
    """Seconds per step of the bare compiled step, best of WINDOWS windows of n steps."""
    state, m = fn(state, batch)
    jax.block_until_ready(m)
    best = float("inf")
    for _ in range(WINDOWS):
        t = time.perf_counter()
        for _ in range(n):
            state, m = fn(state, batch)
        jax.block_until_ready(m)
        best = min(best, (time.perf_counter() - t) / n)
    return best, state


def main(_):
    from xmodal.core import trainer
    raw = mlc.ConfigDict(_SPEC.value.to_dict())
    raw.evals = {}
    raw.train.log_every = _STEPS.value
    raw.train.ckpt_every = 10**9
    raw.train.steps = 10**6   # keep the schedule away from its end
    spec = spec_lib.validate(raw)
    n = _STEPS.value
    out = {"spec": _SPEC.value.to_dict()["model"]["name"], "device": jax.devices()[0].device_kind,
           "devices": jax.device_count(), "batch": spec.data.batch_size,
           "compute_dtype": str(Policy.from_mapping(spec.precision).compute_dtype.__name__)}
    with tempfile.TemporaryDirectory() as workdir:
        setup = trainer.build(spec, workdir)
        mesh = setup.mesh
        with jax.set_mesh(mesh):
            compiled = setup.step_fn.lower(setup.state, setup.batch_spec).compile()
        step_flops = flops.compiled_flops(compiled)

        # (c) input pipeline alone, on a fresh iterator of the same loader.
        it = iter(setup.loader)
        next(it)
        t = time.perf_counter()
        for _ in range(WINDOWS * n):
            next(it)
        data_s = (time.perf_counter() - t) / (WINDOWS * n)

        # (a) bare step on one device-resident batch.
        batch = parallel.global_batch(next(setup.train_iter), mesh)
        bare_s, state = _timed_steps(compiled, setup.state, batch, n)
        setup.state = state

        # (b) the trainer's loop, logging every n steps; the first window (partial, warming up
        # the iterator) is dropped, and the best of the next WINDOWS full windows is kept.
        # Twice: fed from batches already in memory (the trainer's own per-step overhead) and
        # from the real grain pipeline (what a run sees, input decoding included).
        def loop_steps_per_s(setup, iterator):
            setup.train_iter = iterator
            setup.start = int(jax.device_get(setup.state.step))
            first_full = (setup.start // n + 1) * n
            trainer.train(setup, until_step=first_full + WINDOWS * n)
            path = os.path.join(setup.workdir, "metrics.jsonl")
            rows = [json.loads(line) for line in open(path)]
            return max(r["perf/steps_per_s"] for r in rows
                       if "perf/steps_per_s" in r and r["step"] > first_full)

        cached = [next(setup.train_iter) for _ in range(4)]
        trainer_sps = loop_steps_per_s(setup, InMemory(cached))
        fresh = trainer.build(spec, os.path.join(workdir, "grain"))
        loop_sps = loop_steps_per_s(fresh, fresh.train_iter)

    peak = flops.measured_peak()
    if jax.default_backend() != "cpu":
        peak *= jax.device_count()
    b = spec.data.batch_size
    out.update({
        "bare_steps_per_s": 1 / bare_s, "bare_examples_per_s": b / bare_s,
        "trainer_steps_per_s": trainer_sps,
        "trainer_overhead_pct": 100 * (1 / trainer_sps - bare_s) / bare_s,
        "loop_steps_per_s": loop_sps, "loop_examples_per_s": loop_sps * b,
        "loop_overhead_pct": 100 * (1 / loop_sps - bare_s) / bare_s,
        "data_examples_per_s": b / data_s,
        "data_over_consumption": (b / data_s) / (loop_sps * b),
        "step_gflops": step_flops / 1e9, "peak_tflops": peak / 1e12,
        "mfu_pct": 100 * step_flops / bare_s / peak,
    })
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["spec"])
    app.run(main)
