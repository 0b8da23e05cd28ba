"""Score-distillation speed: samples/s of the one-step student against its flow teacher at
each step count, and training steps/s and MFU of each distillation stage's step.

    python bench/distill.py --spec=specs/eight_gaussians.py:runlocal --workdir=runs/eg \
        [--stages=dmd,sid,reflow,one_step] [--batch=512] [--out=bench/results_distill_eg_cpu.json]
    python bench/distill.py --spec=specs/flowsep.py:runlocal --workdir=runs/flowsep --stages=distill

``--workdir`` holds the trained stages the students read (the teacher at least; speed does not
depend on the weights, so a student stage need not be trained: it is built from its spec, as
training would start it). Each student stage is built by the trainer (``trainer.build``, in a
temporary directory, with the stage's ``stage:`` references resolved into ``--workdir``).

Sampling: the teacher's ODE sample (``distill.teacher.ode_sample``, Euler, no guidance) at
1, 2, 4, 10, 25 and 50 steps and the student's sample (``Sampler.sample``) on one batch of the
stage's training conditions, jitted, best of 3 windows; ms per batch and samples/s, and the
student's speed-up over the teacher at each step count.

Training: the bare compiled step of the stage on one device-resident batch, timed over windows
of a whole number of the stage's update cycles (DMD updates its generator on one step in
``fake_updates``, so a window of one step would be unrepresentative). MFU = XLA's FLOPs of the
step / step time / a measured matmul peak (``xmodal.core.flops``); XLA counts a ``lax.cond``'s
branches as the step compiles them, so for a cadenced step its FLOPs are those of a step that
updates every group (an upper bound of the average step).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
from absl import app, flags
from ml_collections import config_flags

from xmodal.core import flops
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core.train_state import with_frozen
from xmodal.distill.student import Distillation
from xmodal.distill.teacher import ode_sample

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "workdir holding the trained teacher stage")
_STAGES = flags.DEFINE_list("stages", [], "student stages to time (default: every "
                            "distillation stage of the spec)")
_BATCH = flags.DEFINE_integer("batch", 0, "batch of the step and of sampling (0: the stage's)")
_STEPS = flags.DEFINE_integer("steps", 10, "timed training steps per window (rounded up to a "
                              "whole number of update cycles)")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")

WINDOWS = 3
TEACHER_STEPS = (1, 2, 4, 10, 25, 50)


def best_seconds(fn, n: int = 1) -> float:
    """Best of WINDOWS windows of n calls of ``fn`` (after one warm-up call), per call."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(WINDOWS):
        t = time.perf_counter()
        for _ in range(n):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t) / n)
    return best


def cycle(objective) -> int:
    """Steps after which every group has been updated a whole number of times."""
    out = 1
    for every, _ in (getattr(objective, "cadence", {}) or {}).values():
        out = math.lcm(out, int(every))
    return out


def bench_stage(name: str, stage: mlc.ConfigDict, workdir: str) -> dict:
    from xmodal.core import trainer
    stage = stages_lib.resolve_refs(stage, workdir)
    stage.evals = {}
    stage.train.log_every = 10**6
    stage.train.ckpt_every = 10**9
    stage.train.steps = 10**6   # keep the schedules away from their ends
    if _BATCH.value:
        stage.data.batch_size = _BATCH.value
    spec = spec_lib.validate(stage)
    with tempfile.TemporaryDirectory() as tmp:
        setup = trainer.build(spec, tmp)
        obj = setup.objective
        if not isinstance(obj, Distillation):
            raise SystemExit(f"stage {name!r} trains {spec.objective.name!r}, not a distillation")
        mesh = setup.mesh
        batch = parallel.global_batch(next(setup.train_iter), mesh)
        with jax.set_mesh(mesh):
            compiled = setup.step_fn.lower(setup.state, setup.batch_spec).compile()
        n = -(-_STEPS.value // cycle(obj)) * cycle(obj)
        state = setup.state

        def step():
            nonlocal state
            state, m = compiled(state, batch)
            return m
        step_s = best_seconds(step, n)
        step_flops = flops.compiled_flops(compiled)

        params = with_frozen(state.params, state.frozen)   # the step donated setup.state
        noise = obj.noise(jax.random.key(0), params, batch)
        b = noise.shape[0]
        student = jax.jit(lambda p, z, bt: obj.sample(p, z, bt, 1))
        sample_s = {"student": best_seconds(lambda: student(params, noise, batch))}
        cond = obj.condition(params, batch)
        for k in TEACHER_STEPS:
            fn = jax.jit(lambda p, z, c, k=k: ode_sample(obj.teacher, p["teacher"], z, c,
                                                        steps=k))
            sample_s[f"teacher@{k}"] = best_seconds(lambda fn=fn: fn(params, noise, cond))
    peak = flops.measured_peak()
    if jax.default_backend() != "cpu":
        peak *= jax.device_count()
    out = {"objective": spec.objective.name, "batch": b, "cycle_steps": cycle(obj),
           "train_steps_per_s": 1 / step_s, "train_examples_per_s": b / step_s,
           "step_gflops_xla": step_flops / 1e9, "mfu_pct": 100 * step_flops / step_s / peak,
           "sample_ms_per_batch": {k: 1e3 * v for k, v in sample_s.items()},
           "samples_per_s": {k: b / v for k, v in sample_s.items()},
           "student_speedup_over_teacher": {k: v / sample_s["student"]
                                           for k, v in sample_s.items() if k != "student"}}
    return out


def main(_):
    spec = _SPEC.value
    stages = dict(spec_lib.stages_of(spec))
    names = _STAGES.value or [n for n, s in stages.items()
                              if s.objective.get("teacher_from")]
    unknown = [n for n in names if n not in stages]
    if unknown:
        raise SystemExit(f"no stage {unknown} in this spec; its stages: {sorted(stages)}")
    result = {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
              "peak_tflops": flops.measured_peak() / 1e12, "stages": {}}
    for name in names:
        r = bench_stage(name, stages[name], os.path.abspath(_WORKDIR.value))
        result["stages"][name] = r
        print(f"[{name}] {r['objective']}, batch {r['batch']}: "
              f"{r['train_steps_per_s']:.3g} train steps/s, MFU {r['mfu_pct']:.3g}%")
        for k, ms in r["sample_ms_per_batch"].items():
            up = r["student_speedup_over_teacher"].get(k)
            print(f"  sample {k:<11} {ms:9.3f} ms/batch  {r['samples_per_s'][k]:11.1f} samples/s"
                  + (f"  student {up:.1f}x faster" if up else ""))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    flags.mark_flags_as_required(["spec", "workdir"])
    app.run(main)
