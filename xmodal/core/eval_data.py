"""An eval split that is read when it is used, not held: ``RecordSplit`` transforms records on
demand, ``ArraySplit`` serves arrays already in memory (tests, small derived sets), and both
give the same three things:

- ``read(indices)``: those examples, transformed and stacked (a batch);
- ``LazyArrays(split)``: the ``ctx.arrays`` mapping of the evaluators written against a split
  in memory; a field is stacked the first time it is asked for (with every small field of
  the split, read in the same pass), so only the fields an evaluator touches are ever held;
- ``stream_batches``: fixed-size batches for a jitted function, each JAX process reading only
  the rows its own devices take (``Applier.stream`` in ``eval_context``).

Why: a video eval split (T x H x W x 3 frames per example) does not fit in host memory on
every process, and a two-tower retrieval needs only its embeddings kept.
"""
from __future__ import annotations

import collections.abc
import concurrent.futures
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

# A field at most this many bytes per example is "small" (labels, token ids, question types):
# stacked together with the first field asked for, so a second lookup does not read the split
# again. Bigger ones (images, audio, video) are stacked only on request.
SMALL_FIELD_BYTES = 16384
READ_CHUNK = 256


class ArraySplit:
    """A split already in memory: ``{field: array}``, all of one length."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = dict(arrays)
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"eval arrays differ in length: {lengths}")
        self._n = next(iter(lengths.values())) if lengths else 0

    def __len__(self) -> int:
        return self._n

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def read(self, indices: Sequence[int], fields: Sequence[str] | None = None) -> dict:
        idx = np.asarray(indices, np.int64)
        return {k: np.asarray(self.arrays[k])[idx] for k in (fields or self.arrays)}


class RecordSplit:
    """The first ``count`` records of a random-access ``source`` through ``transform.map``,
    read (and transformed) only when asked for. Reads use the source's batched read
    (``_getitems``) where it has one, and transform in a small thread pool (decoding PNG, JPEG
    and video frames releases the GIL)."""

    def __init__(self, source: Sequence, transform, count: int | None = None,
                 threads: int = 4):
        n = len(source) if count is None else min(count, len(source))
        if n < 1:
            raise ValueError(f"an eval split needs at least one example; the source has "
                             f"{len(source)}, max_examples={count}")
        self.source, self.transform, self._n, self.threads = source, transform, n, threads
        self._layout: dict | None = None

    def __len__(self) -> int:
        return self._n

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.layout())

    def layout(self) -> dict[str, tuple[tuple, np.dtype]]:
        """Each field's (shape, dtype) per example, from record 0."""
        if self._layout is None:
            first = self.transform.map(self.source[0])
            self._layout = {k: (np.shape(v), np.asarray(v).dtype) for k, v in first.items()}
        return self._layout

    def read(self, indices: Sequence[int], fields: Sequence[str] | None = None) -> dict:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self._n]
        if bad:
            raise IndexError(f"eval split of {self._n} examples has no example {bad[0]}")
        getitems = getattr(self.source, "_getitems", None)
        records = list(getitems(indices)) if getitems else [self.source[i] for i in indices]
        out: dict[str, np.ndarray] = {}

        def put(j: int, example: Mapping[str, Any]) -> None:
            # Each example goes straight into its row: the batch is never held twice (as a
            # list of examples and as their stack).
            for k in fields or example:
                out[k][j] = example[k]

        first = self.transform.map(records[0])
        for k in fields or first:
            v = np.asarray(first[k])
            out[k] = np.empty((len(records),) + v.shape, v.dtype)
        put(0, first)
        rest = range(1, len(records))
        if self.threads > 1 and len(records) > 2:
            with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
                for j, example in zip(rest, pool.map(lambda j: self.transform.map(records[j]),
                                                     rest)):
                    put(j, example)
        else:
            for j in rest:
                put(j, self.transform.map(records[j]))
        return out


def split_of(arrays_or_split) -> "ArraySplit | RecordSplit":
    if isinstance(arrays_or_split, (ArraySplit, RecordSplit)):
        return arrays_or_split
    if isinstance(arrays_or_split, LazyArrays):
        return arrays_or_split.split
    return ArraySplit(arrays_or_split)


class LazyArrays(collections.abc.Mapping):
    """``{field: stacked array}`` over a split, each field stacked on its first lookup (with
    the split's small fields) and kept. Iteration and ``in`` see every field without reading
    any."""

    def __init__(self, split):
        self.split = split
        self._held: dict[str, np.ndarray] = {}

    def __iter__(self):
        return iter(self.split.fields)

    def __len__(self) -> int:
        return len(self.split.fields)

    def __contains__(self, key) -> bool:
        return key in self.split.fields

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._held:
            return self._held[key]
        if isinstance(self.split, ArraySplit):
            return self.split.arrays[key]
        if key not in self.split.fields:
            raise KeyError(key)
        layout = self.split.layout()
        want = [key] + [k for k, (shape, dtype) in layout.items()
                        if k != key and k not in self._held
                        and int(np.prod(shape)) * np.dtype(dtype).itemsize <= SMALL_FIELD_BYTES]
        n = len(self.split)
        parts = [self.split.read(range(i, min(i + READ_CHUNK, n)), want)
                 for i in range(0, n, READ_CHUNK)]
        for k in want:
            self._held[k] = np.concatenate([p[k] for p in parts])
        return self._held[key]

    def held_bytes(self) -> int:
        """Bytes of the fields stacked so far (what this mapping holds in host memory)."""
        return sum(v.nbytes for v in self._held.values())


class FieldView(collections.abc.Sequence):
    """``view[i]``: field ``key`` of example i, read when indexed (a retrieval sheet's few
    pictures, without stacking the split's images)."""

    def __init__(self, split, key: str):
        self.split, self.key = split, key

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        return self.split.read([int(i)], [self.key])[self.key][0]


def process_rows(sharding, batch_size: int) -> list[int]:
    """The rows of a ``batch_size`` batch that this process's devices take under ``sharding``
    (a batch-axis sharding): what it must read. Sorted, without repeats (a replicated axis gives
    two devices the same rows)."""
    rows: set[int] = set()
    for index in sharding.addressable_devices_indices_map((batch_size,)).values():
        rows.update(range(batch_size)[index[0]])
    return sorted(rows)


def stream_batches(split, fields: Sequence[str], batch_size: int, rows: Sequence[int],
                   prefetch: int = 1) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """``(valid, batch)`` for consecutive ``batch_size`` windows of the split: ``batch[field]``
    has ``batch_size`` rows of which only ``rows`` (this process's) are read; the others are
    zeros that no device of this process ever sees. The last window repeats its last example
    into the padding; ``valid`` says how many rows are real. The next ``prefetch`` windows are
    read in background threads while the current one is used (so at most ``1 + prefetch``
    windows are in memory)."""
    n = len(split)
    starts = list(range(0, n, batch_size))

    def window(start: int) -> tuple[int, dict]:
        valid = min(batch_size, n - start)
        want = [start + min(r, valid - 1) for r in rows]   # padding repeats the last example
        got = split.read(want, fields)
        if len(rows) == batch_size:      # one process holds every device: no gaps to fill
            return valid, got
        batch = {}
        for k, v in got.items():
            full = np.zeros((batch_size,) + v.shape[1:], v.dtype)
            full[list(rows)] = v
            batch[k] = full
        return valid, batch

    # At most 1 + prefetch windows exist at once: the one in use and those being read.
    with concurrent.futures.ThreadPoolExecutor(max(1, prefetch)) as pool:
        pending = collections.deque(pool.submit(window, s) for s in starts[:max(1, prefetch)])
        next_start = len(pending)
        while pending:
            result = pending.popleft().result()
            if next_start < len(starts):
                pending.append(pool.submit(window, starts[next_start]))
                next_start += 1
            yield result
            del result

