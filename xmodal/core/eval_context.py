"""What an evaluator gets: the eval split, the current parameters, the model and objective, and
a way to apply any function of the parameters over arrays in sharded, fixed-size chunks."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import jax
import numpy as np
from jax.sharding import Mesh

from xmodal.core import parallel


@dataclasses.dataclass
class EvalContext:
    arrays: dict[str, np.ndarray]            # the whole eval split, transformed, stacked, in order
    class_names: Sequence[str]               # names of the transform's label_field (or [])
    params: dict[str, Any]                   # group → parameters (the EMA copy when EMA is on)
    model: Any = None                        # the spec's model (a flax module)
    objective: Any = None                    # the bound objective (frozen parts, samplers...)
    transform: Any = None                    # the data transform (its tokenizer, fields...)
    features: Any = None                     # the dataset's tfds features (ClassLabel names...)
    applier: "Applier | None" = None
    out_dir: str = ""                        # where an evaluator writes files ('' = none)
    step: int = 0
    eval_set: str = ""                       # the evals' ``data`` name of this set ('' = main)

    def require(self, keys: Sequence[str], needs: str) -> None:
        """One line when the eval arrays lack ``keys``: ``needs`` says what provides them
        (e.g. "gqr needs the gqr_items transform")."""
        missing = [key for key in keys if key not in self.arrays]
        if missing:
            raise ValueError(f"{needs} (arrays {', '.join(keys)}; missing {', '.join(missing)})")

    def apply(self, fn: Callable, *arrays: np.ndarray) -> Any:
        """``fn(params, *batch_arrays)`` over arrays of equal length, chunked and sharded;
        outputs (arrays or pytrees of arrays) are concatenated on the host."""
        return self.applier(fn, self.params, *arrays)

    def apply_model(self, method: str, *arrays: np.ndarray, group: str = "model") -> Any:
        """``model.<method>(*batch_arrays)`` with the ``group`` parameters, chunked."""
        return self.applier(method_fn(self.model, method, group), self.params, *arrays)

    @property
    def modalities(self) -> tuple[str, str]:
        """What the model matches, (x, "text"): the eval arrays' keys of the two sides."""
        if not isinstance(self.model, Matcher):
            raise ValueError(f"model {type(self.model).__name__} declares no modalities (an "
                             "embedding evaluator needs a two-tower model)")
        return tuple(self.model.modalities)

    def encode(self, modality: str, x: np.ndarray) -> np.ndarray:
        """Unit-norm embeddings of ``x`` by the model's ``modality`` tower, chunked."""
        return self.applier(encode_fn(self.model, modality), self.params, x)

    def encode_image(self, images: np.ndarray) -> np.ndarray:
        return self.apply_model("encode_image", images)

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        return self.apply_model("encode_text", tokens)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer = getattr(self.transform, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"transform {self.transform!r} has no tokenizer to embed prompts")
        return tokenizer.encode_batch(texts)


@runtime_checkable
class Matcher(Protocol):
    """A two-tower model as the embedding evaluators see it: the modalities it matches, in
    order (x, "text"), and ``encode(x, modality)``."""

    @property
    def modalities(self) -> tuple[str, str]: ...

    def encode(self, x, modality: str, train: bool = False): ...


_METHOD_FNS: dict = {}


def encode_fn(model, modality: str, group: str = "model") -> Callable:
    # One function object per (model, modality, group), so the Applier compiles it once.
    key = (id(model), ("encode", modality), group)
    if key not in _METHOD_FNS:
        _METHOD_FNS[key] = lambda params, x: model.apply(
            {"params": params[group]}, x, modality, method="encode")
    return _METHOD_FNS[key]


def method_fn(model, method: str, group: str = "model") -> Callable:
    # One function object per (model, method, group), so the Applier compiles it once.
    key = (id(model), method, group)
    if key not in _METHOD_FNS:
        _METHOD_FNS[key] = lambda params, *xs: model.apply({"params": params[group]}, *xs,
                                                           method=method)
    return _METHOD_FNS[key]


class Applier:
    """Applies jitted ``fn(params, *xs)`` over arrays of any length in fixed-size padded chunks.

    One compiled shape per function; each chunk is split over the mesh's batch axes, and only
    the outputs (not the inputs) come back to the host. Every process holds the whole eval
    split, so each can serve any slice of a chunk.
    """

    def __init__(self, mesh: Mesh, batch_size: int):
        n_dev = parallel.batch_size_per_device(mesh)
        self.batch_size = max(n_dev, batch_size // n_dev * n_dev)
        self.sharding = parallel.batch_sharding(mesh)
        self.out_sharding = parallel.replicated(mesh)
        self._jitted: dict = {}

    def __call__(self, fn: Callable, params, *arrays: np.ndarray) -> Any:
        if not arrays:
            raise ValueError("Applier needs at least one array to chunk over")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError(f"Applier arrays differ in length: {[len(a) for a in arrays]}")
        if fn not in self._jitted:
            self._jitted[fn] = jax.jit(fn, out_shardings=self.out_sharding)
        jfn, bs = self._jitted[fn], self.batch_size
        out = []
        for i in range(0, n, bs):
            pad = bs - min(bs, n - i)
            chunks = []
            for a in arrays:
                c = np.asarray(a[i:i + bs])
                if pad:
                    c = np.concatenate([c, np.repeat(c[-1:], pad, axis=0)])
                chunks.append(jax.make_array_from_callback(c.shape, self.sharding,
                                                           lambda idx, c=c: c[idx]))
            y = jax.device_get(jfn(params, *chunks))
            out.append(jax.tree.map(lambda v: np.asarray(v)[: bs - pad], y))
        return jax.tree.map(lambda *vs: np.concatenate(vs), *out)


def batched(fn: Callable, mesh: Mesh, batch_size: int) -> Callable:
    """``run(params, *xs)``: ``fn`` applied through an ``Applier`` (for code outside an eval)."""
    applier = Applier(mesh, batch_size)
    return lambda params, *xs: applier(fn, params, *xs)
