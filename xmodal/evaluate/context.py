"""What an evaluator gets: encoders bound to the current parameters, and the eval split."""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from xmodal import parallel


@dataclasses.dataclass
class EvalContext:
    arrays: dict[str, np.ndarray]            # the whole eval split, stacked, in order
    class_names: Sequence[str]               # label names, for zero-shot classification
    encode_image: Callable[[np.ndarray], np.ndarray]
    encode_text: Callable[[np.ndarray], np.ndarray]
    tokenize: Callable[[Sequence[str]], np.ndarray]


def batched(fn: Callable, mesh: Mesh, batch_size: int) -> Callable:
    """``fn(params, x_batch)`` jitted once, applied over an array of any length in fixed-size
    padded chunks: ``run(params, x) -> np.ndarray``.

    One compiled shape for every chunk; the chunk is split over the mesh's batch axes, and only
    the outputs (not the inputs) come back to the host.
    """
    n_dev = parallel.batch_size_per_device(mesh)
    batch_size = max(n_dev, batch_size // n_dev * n_dev)
    sharding = parallel.batch_sharding(mesh)
    jfn = jax.jit(fn, out_shardings=parallel.replicated(mesh))

    def run(params, x: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(x), batch_size):
            chunk = x[i:i + batch_size]
            pad = batch_size - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            # Every process holds the whole eval split, so each can serve any slice.
            y = jfn(params, jax.make_array_from_callback(chunk.shape, sharding,
                                                         lambda idx, c=chunk: c[idx]))
            out.append(np.asarray(jax.device_get(y))[: batch_size - pad])
        return np.concatenate(out)

    return run
