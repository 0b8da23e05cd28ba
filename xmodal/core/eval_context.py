"""What an evaluator gets: the eval split, the current parameters, the model and objective, and
a way to apply any function of the parameters over the split in sharded, fixed-size chunks:
``ctx.stream`` reads the split batch by batch (each process its own rows) and keeps only the
function's outputs; ``ctx.arrays`` stacks a field in host memory when an evaluator asks for
it (``core/eval_data.py``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import jax
import numpy as np
from jax.sharding import Mesh

from xmodal.core import eval_data, parallel


@dataclasses.dataclass
class EvalContext:
    arrays: Any                              # {field: the split's stacked field}, lazily:
                                             # a dict, or eval_data.LazyArrays over a split
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

    def __post_init__(self):
        if not isinstance(self.arrays, eval_data.LazyArrays):
            self.arrays = eval_data.LazyArrays(eval_data.split_of(self.arrays))

    @property
    def split(self):
        """The eval split itself (``read(indices)``, ``len``), for reading a few examples."""
        return self.arrays.split

    @property
    def size(self) -> int:
        """How many examples the eval split has (without reading any)."""
        return len(self.split)

    def stream(self, fn: Callable, fields: Sequence[str], keep: Sequence[str] = ()
               ) -> tuple[Any, dict[str, np.ndarray]]:
        """``fn(params, *batch[fields])`` over the whole split in sharded fixed-size batches,
        reading each batch as it is used (never the split at once); returns the outputs
        concatenated on the host, and the ``keep`` fields (small ones: labels, types) of every
        example, gathered on the way."""
        self.require(list(fields) + list(keep), f"stream of {getattr(fn, '__name__', fn)}")
        return self.applier.stream(fn, self.params, self.split, fields, keep)

    def stream_encode(self, *modalities: str) -> tuple[np.ndarray, ...]:
        """Unit-norm embeddings of the split's ``modalities`` fields, each by its tower, in
        one pass over the split."""
        fn = encode_all_fn(self.model, tuple(modalities))
        out, _ = self.stream(fn, modalities)
        return tuple(out)

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


def encode_all_fn(model, modalities: tuple[str, ...], group: str = "model") -> Callable:
    # ``(z_1, ..., z_k)`` of fields 1..k by their towers: one compiled program per pass.
    key = (id(model), ("encode_all",) + modalities, group)
    if key not in _METHOD_FNS:
        _METHOD_FNS[key] = lambda params, *xs: tuple(
            model.apply({"params": params[group]}, x, m, method="encode")
            for x, m in zip(xs, modalities))
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
    the outputs (not the inputs) come back to the host. ``__call__`` takes arrays every
    process holds whole; ``stream`` reads a split chunk by chunk, each process only its rows.
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
        # The same chunks as a split's: one chunking path (padding, sharding, compiling).
        split = eval_data.ArraySplit({str(i): a for i, a in enumerate(arrays)})
        out, _ = self.stream(fn, params, split, [str(i) for i in range(len(arrays))])
        return out

    def stream(self, fn: Callable, params, split, fields: Sequence[str],
               keep: Sequence[str] = ()) -> tuple[Any, dict[str, np.ndarray]]:
        """``fn(params, *batch[fields])`` over ``split`` (``eval_data``) in ``batch_size``
        chunks; each process reads only the rows of a chunk its devices take, and the next
        chunks are read while one is computed. Returns (outputs concatenated on the host,
        ``{k: keep field k of every example}``). The kept fields (numeric: labels, types) ride
        through the device beside the inputs, so every process gets all of them without
        reading another process's rows."""
        fields, keep = list(fields), list(keep)
        if not fields:
            raise ValueError("Applier.stream needs at least one field to feed the function")
        key = (fn, len(fields))
        if key not in self._jitted:
            nf = len(fields)
            self._jitted[key] = jax.jit(lambda params, *xs: (fn(params, *xs[:nf]), xs[nf:]),
                                        out_shardings=self.out_sharding)
        jfn, bs = self._jitted[key], self.batch_size
        rows = eval_data.process_rows(self.sharding, bs)
        out, kept = [], []
        for valid, batch in eval_data.stream_batches(split, fields + keep, bs, rows):
            chunks = [jax.make_array_from_callback(batch[f].shape, self.sharding,
                                                   lambda idx, c=batch[f]: c[idx])
                      for f in fields + keep]
            y, k = jax.device_get(jfn(params, *chunks))
            out.append(jax.tree.map(lambda v: np.asarray(v)[:valid], y))
            kept.append([np.asarray(v)[:valid] for v in k])
        gathered = [np.concatenate(vs) for vs in zip(*kept)] if keep else []
        return jax.tree.map(lambda *vs: np.concatenate(vs), *out), dict(zip(keep, gathered))


def batched(fn: Callable, mesh: Mesh, batch_size: int) -> Callable:
    """``run(params, *xs)``: ``fn`` applied through an ``Applier`` (for code outside an eval)."""
    applier = Applier(mesh, batch_size)
    return lambda params, *xs: applier(fn, params, *xs)
