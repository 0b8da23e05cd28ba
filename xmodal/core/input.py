"""grain input pipelines: one training source (``train_loader``) or a weighted mixture of
several (``mixture_loader``), and eval arrays.

Training reads a random-access source (``sources.data_source``) through grain's dataset API:
a global shuffle per epoch (seeded, so a run is reproducible), each JAX process taking a
disjoint shard, and a per-process batch of ``global_batch_size // shard_count``. The batches
do not depend on the number of worker processes. The iterator's state (a few integers) is saved
next to the model with orbax, so a resumed run sees exactly the batches it would have seen
without the interruption. A mixture keeps all of this (see ``mixture_loader``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Sequence

import grain
import jax
import numpy as np


def training_example(record: Mapping[str, Any], transform: grain.transforms.Map) -> dict:
    """One record as a training batch holds it: transformed (by its ``random_map`` when it has
    one, with a fixed draw), then through the transform's ``augment`` if it has one (a fixed
    draw), so an augment that adds or drops fields gives the compiled step the fields it will
    really be fed."""
    if hasattr(transform, "random_map"):
        example = transform.random_map(record, np.random.default_rng(0))
    else:
        example = transform.map(record)
    augment = getattr(transform, "augment", None)
    return augment.random_map(example, np.random.default_rng(0)) if augment else example


def train_loader(source: Sequence, transform: grain.transforms.Map, *, global_batch_size: int,
                 seed: int, shard_index: int, shard_count: int, worker_count: int,
                 num_epochs: int | None = None, read_threads: int = 4,
                 prefetch_batches: int = 8,
                 augment: grain.transforms.RandomMap | None = None) -> grain.IterDataset:
    """Shuffled, sharded, batched training stream; its ``iter()`` has ``get_state``/``set_state``.

    Order of operations, and why:
      1. ``shuffle(seed)`` then ``repeat(num_epochs)``: a global permutation of the records,
         reseeded every epoch (epochs do not mix; ``num_epochs=None`` repeats forever).
      2. shard: process ``shard_index`` takes elements ``shard_index, shard_index +
         shard_count, ...`` of that one global stream (after dropping the last
         ``len % shard_count`` so every process has as many batches). The union of the
         processes' step-t batches is then exactly the step-t batch of a single process with
         ``global_batch_size``: the data order does not depend on the number of processes.
      3. ``map(transform)``, ``batch(global_batch_size // shard_count, drop_remainder=True)``.
      4. ``mp_prefetch`` with ``worker_count`` processes (0: in this process). Batches are
         formed before the work is split, each worker computing whole batches, so the
         batches are identical for every ``worker_count``.
    Each process (and each worker) reads with ``read_threads`` threads and keeps up to
    ``prefetch_batches`` batches ready; grain's default of 500 elements would hold 500
    *batches* here (1.5 GB at 256 x 64 px).
    Built on grain's dataset API rather than ``grain.DataLoader``: the DataLoader batches
    inside each worker from an interleaved record stream, so its batches change with
    ``worker_count``.
    """
    _check_loader_args("train_loader", global_batch_size, seed, shard_index, shard_count,
                       worker_count)
    if global_batch_size > len(source):
        raise ValueError(
            f"global_batch_size {global_batch_size} must be between 1 and the {len(source)} "
            "records of the source, else no full batch exists; lower global_batch_size")

    records = grain.MapDataset.source(source).shuffle(seed=seed).repeat(num_epochs)
    if num_epochs is not None:
        records = records[: len(records) // shard_count * shard_count]
    shard = records[shard_index::shard_count]
    mapped = training_map(shard, transform, seed)
    if augment is not None:
        # Seeded per record from (seed, position): the same crops on every run and resume.
        mapped = mapped.random_map(augment, seed=seed)
    return _batched_stream(mapped, global_batch_size // shard_count, worker_count,
                           read_threads, prefetch_batches)


class _RandomMapOf(grain.transforms.RandomMap):
    """A transform's own ``random_map(record, rng)`` as a grain RandomMap."""

    def __init__(self, transform):
        self.transform = transform

    def random_map(self, element, rng: np.random.Generator):
        return self.transform.random_map(element, rng)

    def __repr__(self) -> str:
        return f"random_map of {self.transform!r}"


def training_map(records: grain.MapDataset, transform, seed: int) -> grain.MapDataset:
    """``records`` through the transform: its ``random_map`` when it has one (a transform that
    draws per record, e.g. a video clip's start: seeded from (seed, position) by grain, so the
    draws are the same on every run and resume), else its ``map``. Evaluation always calls
    ``map``, the transform's deterministic choice."""
    if hasattr(transform, "random_map"):
        # Another seed than the augment's, so the two draws of a record are independent.
        return records.random_map(_RandomMapOf(transform), seed=(seed + 0x9E3779B1) % 2**32)
    return records.map(transform)


@dataclasses.dataclass(frozen=True)
class Part:
    """One source of a training mixture: records, their transform, sampling weight, augment."""
    source: Sequence
    transform: grain.transforms.Map
    weight: float = 1.0
    augment: grain.transforms.RandomMap | None = None


def mixture_loader(parts: Sequence[Part], *, global_batch_size: int, seed: int,
                   shard_index: int, shard_count: int, worker_count: int,
                   read_threads: int = 4, prefetch_batches: int = 8) -> grain.IterDataset:
    """Endless stream of batches interleaving several sources; same contract as
    ``train_loader`` (seeded, sharded with union = single-process batch, independent of
    ``worker_count``, state in a few integers for orbax).

      1. Part k is ``shuffle(seed + k)`` → ``repeat()`` → ``map(transform_k)`` →
         ``random_map(augment_k, seed + k)``: an endless stream of its own examples, reshuffled
         every pass over that source (a small source simply repeats more often). Each part
         has its own transform, so sources with other field names (Tux Paint's ``sound`` vs
         instruments' ``audio``) give the same example keys.
      2. ``MapDataset.mix(weights)``: grain's deterministic interleave; element i of the mixture
         comes from a fixed part and position, and every prefix holds each part's share
         ``w_k / sum(w)`` to within one element (so every batch has nearly the same share).
      3. As in ``train_loader``: shard ``shard_index::shard_count`` of the one mixed stream,
         batch, prefetch. Augmentation is seeded before sharding, so an example is augmented
         alike for any number of processes. A shard alone may be lopsided (weights 1:1 on two
         processes give each process one source); the global batch has the proportions.
    Every part's example must have the same keys, shapes and dtypes (checked on record 0).
    """
    _check_loader_args("mixture_loader", global_batch_size, seed, shard_index, shard_count,
                       worker_count)
    if not parts:
        raise ValueError("mixture_loader needs at least one Part")
    for k, part in enumerate(parts):
        if not np.isfinite(part.weight) or part.weight <= 0:
            raise ValueError(f"mixture part {k}: weight must be a finite number > 0, got "
                             f"{part.weight!r}")
        if len(part.source) < 1:
            raise ValueError(f"mixture part {k}: its source has no records")
    check_same_examples([p.transform.map(p.source[0]) for p in parts])
    streams = []
    for k, part in enumerate(parts):
        part_seed = (seed + k) % 2**32
        stream = grain.MapDataset.source(part.source).shuffle(seed=part_seed).repeat()
        stream = training_map(stream, part.transform, part_seed)
        if part.augment is not None:
            stream = stream.random_map(part.augment, seed=part_seed)
        streams.append(stream)
    mixed = grain.MapDataset.mix(streams, [float(p.weight) for p in parts])
    return _batched_stream(mixed[shard_index::shard_count], global_batch_size // shard_count,
                           worker_count, read_threads, prefetch_batches)


def check_same_examples(examples: Sequence[Mapping[str, Any]]) -> None:
    """Raises ValueError naming the first part whose example keys, shapes or dtypes differ
    from part 0's (they could not be batched together)."""
    def layout(e):
        return {k: f"{np.asarray(v).dtype.name}{list(np.shape(v))}" for k, v in e.items()}
    want = layout(examples[0])
    for k, example in enumerate(examples[1:], start=1):
        got = layout(example)
        if got != want:
            diff = "; ".join(f"{key}: {want.get(key, 'missing')} vs {got.get(key, 'missing')}"
                             for key in sorted(set(want) | set(got))
                             if want.get(key) != got.get(key))
            raise ValueError(
                f"mixture part {k} gives examples unlike part 0's, so they cannot share a "
                f"batch (part 0 vs part {k}: {diff}); make its transform give the same keys, "
                "shapes and dtypes (e.g. a fixed num_samples for audio)")


def _check_loader_args(who: str, global_batch_size: int, seed: int, shard_index: int,
                       shard_count: int, worker_count: int) -> None:
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"{who} needs 0 <= shard_index < shard_count, got "
                         f"shard_index={shard_index}, shard_count={shard_count}")
    if global_batch_size % shard_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} is not divisible by shard_count "
            f"{shard_count}; use a multiple of {shard_count}")
    if global_batch_size < 1:
        raise ValueError(f"{who} global_batch_size must be >= 1, got {global_batch_size}")
    if worker_count < 0:
        raise ValueError(f"{who} worker_count must be >= 0, got {worker_count}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"{who} seed must be an int in [0, 2**32), got {seed!r}")


class ReadBatches(grain.MapDataset):
    """``examples.batch(size, drop_remainder=True)`` that asks for each batch's elements in one
    ``_getitems`` call, so the call reaches the source through shuffle, repeat, slice, map and
    mix (each of which passes it down) and a source with a batched read (``CheckedSource``)
    reads the whole batch at once: 1.0-2.1x the records/s of grain's ``batch``, which fetches
    element by element (most for small records; ``bench/data.py --reads=element,batched``).
    Element ``i`` is the stack of parent elements ``i*size .. (i+1)*size - 1``, exactly as
    grain's ``batch`` over a repeated stream, so the batches and the iterator state (a
    position) are the same as with it."""

    def __init__(self, parent: grain.MapDataset, size: int, batch_fn=None):
        super().__init__(parent)
        self._size = size
        # Stacks the elements leaf by leaf by default; ``list`` keeps them apart (bench/data.py).
        self._batch_fn = batch_fn or (lambda elements: jax.tree.map(
            lambda *leaves: np.stack(leaves), *elements))

    def __len__(self) -> int:
        return len(self._parent) // self._size

    def __str__(self) -> str:
        return f"ReadBatches(size={self._size})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        start = index * self._size
        elements = self._parent._getitems(list(range(start, start + self._size)))  # noqa: SLF001
        return self._batch_fn(elements)


class InMemory:
    """The records of ``source``, read once (one batched read) and served from memory after:
    ``data.cache_raw``. Same length, same records at the same indices, so the batches and
    the saved iterator positions are the ones of the source itself."""

    def __init__(self, source: Sequence):
        getitems = getattr(source, "_getitems", None)
        indices = list(range(len(source)))
        self._records = list(getitems(indices)) if getitems else [source[i] for i in indices]

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index):
        return self._records[int(index)]

    def _getitems(self, indices) -> list:
        return [self._records[int(i)] for i in indices]


def _batched_stream(examples: grain.MapDataset, per_process_batch: int, worker_count: int,
                    read_threads: int, prefetch_batches: int) -> grain.IterDataset:
    batches = ReadBatches(examples, per_process_batch)
    stream = batches.to_iter_dataset(grain.ReadOptions(
        num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
    if worker_count > 0:
        stream = stream.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count),
                                    worker_init_fn=die_with_parent)
        stream = stream.map(to_process_memory)
    return stream


def die_with_parent(worker_index: int = 0, worker_count: int = 0) -> None:
    """In a grain worker: a watchdog thread ends the worker within half a second of its
    parent's death (``kill -9`` of the trainer included, which runs no cleanup), so no worker
    outlives its run. A process-level check: Linux's PR_SET_PDEATHSIG fires when the *thread*
    that started the worker ends, which grain's does at a normal shutdown, before the worker
    has freed its shared memory."""
    import threading
    import time
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)   # reparented: the parent is gone

    threading.Thread(target=watch, name="xmodal-parent-watchdog", daemon=True).start()


def to_process_memory(batch: Mapping[str, Any]) -> dict:
    """A worker's batch copied out of grain's shared memory. grain unlinks a segment when its
    array is freed, but a device array made from it aliases the buffer (zero-copy on CPU), the
    unlink then fails, and every batch leaks its segment (the "leaked shared_memory objects"
    warning at exit). One memcpy per batch frees it at once."""
    from grain.multiprocessing import SharedMemoryArray
    return {k: np.array(v) if isinstance(v, SharedMemoryArray) else v for k, v in batch.items()}


class CheckedPosition:
    """An iterator's saved position with the SHA-256 of that position beside it.

    grain writes the position as plain JSON (``process_<i>-of-<n>.json``), which nothing
    guards: a changed ``next_index`` would resume silently on other batches, and another edit
    fails only at the first batch, after the restore "succeeded". Saved through this wrapper,
    the file holds ``{"iterator": <grain's state>, "sha256": <its digest>}`` and a restore
    whose position does not match its digest raises, so the checkpoint is set aside like one
    whose arrays changed. A file written without the digest (before it existed) is restored
    as it is."""

    def __init__(self, iterator: grain.DatasetIterator):
        self.iterator = iterator

    @staticmethod
    def digest(state) -> str:
        return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()

    def get_state(self) -> bytes:
        state = self.iterator.get_state()
        return json.dumps({"iterator": state, "sha256": self.digest(state)}, indent=4).encode()

    def set_state(self, data: bytes) -> None:
        saved = json.loads(data)
        if isinstance(saved, dict) and set(saved) == {"iterator", "sha256"}:
            if self.digest(saved["iterator"]) != saved["sha256"]:
                raise ValueError("the data iterator's saved position differs from its "
                                 "checksum (the file changed after it was written)")
            saved = saved["iterator"]
        self.iterator.set_state(saved)

    def start_prefetch(self) -> None:
        self.iterator.start_prefetch()


def iterator_checkpoint_args(iterator: grain.DatasetIterator, restore: bool = False):
    """orbax args that save (or restore into) ``iterator``'s position, with its checksum
    (``CheckedPosition``).

    Use as one item of ``ocp.args.Composite(..., data=iterator_checkpoint_args(it))``; the
    grain handler writes one small JSON file per JAX process. Restoring sets the state of
    ``iterator`` in place, so pass a fresh iterator of an identically built loader, with the
    same ``worker_count`` too: grain's state layout differs with and without workers.
    """
    if restore:
        return grain.checkpoint.CheckpointRestore(CheckedPosition(iterator))
    return grain.checkpoint.CheckpointSave(CheckedPosition(iterator))


def eval_arrays(source: Sequence, transform: grain.transforms.Map,
                max_examples: int | None = None) -> dict[str, np.ndarray]:
    """The first ``max_examples`` records (all if None) in source order, transformed and stacked.

    For evaluation sets small enough to hold in memory (here at most ~10^4 items).
    """
    count = len(source) if max_examples is None else min(max_examples, len(source))
    if count < 1:
        raise ValueError(f"eval_arrays needs at least one example; source has {len(source)}, "
                         f"max_examples={max_examples}")
    examples = [transform.map(source[i]) for i in range(count)]
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}
