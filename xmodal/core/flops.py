"""Model FLOPs from XLA's cost analysis, and the device's peak measured by a large matmul.

MFU = (FLOPs of one compiled step / step time) / measured peak. The peak is measured, not taken
from a datasheet, because the same code runs on laptops, CPUs with AMX and accelerators.
"""
from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp


def compiled_flops(compiled) -> float:
    """FLOPs XLA counts for one call of a compiled function (0 if the backend gives none)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


@functools.lru_cache(maxsize=None)
def measured_peak(dtype: str = "bfloat16", n: int = 4096, reps: int = 5) -> float:
    """FLOP/s of the best of ``reps`` n×n matmuls on one device (bf16 in, f32 accumulate).

    Cached on disk per device kind, so each run does not pay the few seconds again.
    """
    dev = jax.devices()[0]
    key = f"{dev.platform}:{dev.device_kind}:{dtype}:{n}"
    cache = os.path.join(os.path.expanduser("~/.cache/xmodal"), "peak_flops.json")
    try:
        with open(cache) as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    a = jax.device_put(jnp.ones((n, n), dtype), dev)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    f(a, a).block_until_ready()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(a, a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    peak = 2 * n ** 3 / best
    known[key] = peak
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache + ".tmp", "w") as f:
            json.dump(known, f)
        os.replace(cache + ".tmp", cache)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return peak
