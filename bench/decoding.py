"""Decoding speed of a captioner: tokens/s with the key/value cache against the uncached
reference (the whole decoder over the token buffer at every step), greedy and beam search, in
one run on the same weights and clips.

    python bench/decoding.py --spec=specs/aac_atr.py:runlocal [--batch=32] [--beams=4] \
        [--out=bench/results_decoding_cpu.json]

The model is the spec's, randomly initialised (speed does not depend on the weights); its
``max_len`` is the buffer. Both ways decode every position (no early stop: the shapes are
fixed), so tokens/s = batch × (max_len - 1) / seconds, the best of 3 timed calls after a
compile-and-warm-up call.
"""
from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from xmodal.core import objective as objective_lib
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.inference.captions import generate

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_BATCH = flags.DEFINE_integer("batch", 32, "clips decoded at once")
_BEAMS = flags.DEFINE_integer("beams", 4, "beams of the beam-search rows")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")


def best_of(fn, reps: int = 3) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main(_):
    spec = spec_lib.validate(_SPEC.value)
    mesh = parallel.make_mesh({"data": 1}, jax.devices()[:1])
    model, _ = objective_lib.build(spec, mesh)
    batch = _BATCH.value
    samples = int(spec.data.transform.num_samples)
    audio = jax.random.normal(jax.random.PRNGKey(0), (batch, samples)) * 0.1
    ids = jnp.ones((batch, model.max_len - 1), jnp.int32)
    params = model.init(jax.random.PRNGKey(1), audio, ids)["params"]
    memory = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode"))(params, audio)
    tokens = batch * (model.max_len - 1)
    rows = []
    for method in ("greedy", "beam"):
        for cached in (True, False):
            fn = jax.jit(lambda p, m, method=method, cached=cached: generate(
                model, p, m, method, beams=_BEAMS.value, cached=cached))
            seconds = best_of(lambda: fn(params, memory))
            rows.append({"method": method, "cached": cached, "seconds": seconds,
                         "tokens_per_s": tokens / seconds})
            print(f"{method:6s} {'cache' if cached else 'no cache':8s} {seconds:8.3f} s "
                  f"{tokens / seconds:10.1f} tokens/s", flush=True)
    for method in ("greedy", "beam"):
        fast, slow = (next(r for r in rows if r["method"] == method and r["cached"] == c)
                      for c in (True, False))
        print(f"{method}: the cache is {slow['seconds'] / fast['seconds']:.2f}x faster")
    result = {"command": " ".join(sys.argv), "batch": batch, "beams": _BEAMS.value,
              "max_len": model.max_len, "device": jax.devices()[0].device_kind, "rows": rows}
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    flags.mark_flag_as_required("spec")
    app.run(main)
