"""Orbax checkpoints of the train state together with the grain iterator state.

``workdir/checkpoints/<step>/`` holds ``state`` (the TrainState pytree, saved sharded),
``data`` (each process's grain iterator position, with its SHA-256: ``input.CheckedPosition``)
and ``meta`` (JSON: step, stage name, and a checksum of every array of the state). Saves are asynchronous and keep the newest N. A run
resumes from, in order: its own workdir, the spec's ``resume`` directory, the spec's
``init_from`` (parameters only), or scratch.

A checkpoint that does not restore — a file truncated or deleted, its metadata unreadable, an
array whose bytes differ from the checksum written with it, or an input position edited after
it was written — is reported in one line (step,
path, why), set aside as ``<step>.unrestorable`` and the next older one is used; when none
restores the run stops, saying how to start fresh, and never starts from scratch over them.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from xmodal.core.input import iterator_checkpoint_args
from xmodal.core.parallel import path_str
from xmodal.core.registry import RunStateError, SpecError


def manager(workdir: str, keep: int, async_save: bool = True) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
            # A failed or killed save leaves a tmp folder; clean it up on the next start.
            cleanup_tmp_directories=True),
        item_names=("state", "data", "meta"),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()},
    )


def save(mngr: ocp.CheckpointManager, step: int, state, data_iter, meta: dict, force=False) -> bool:
    meta = dict(meta, checksums=checksums(state))
    return mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=iterator_checkpoint_args(data_iter),
        meta=ocp.args.JsonSave(meta)), force=force)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter):
    """Restores state (with the abstract state's shardings) and the iterator in place; raises
    if an array's bytes differ from their checksum."""
    check_manifests(os.path.join(str(mngr.directory), str(step), "state"))
    check_shapes(os.path.join(str(mngr.directory), str(step), "state"), abstract_state)
    got = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=iterator_checkpoint_args(data_iter, restore=True),
        meta=ocp.args.JsonRestore()))
    verify(got["state"], (got["meta"] or {}).get("checksums"))
    return got["state"]


def restore_newest(mngr: ocp.CheckpointManager, restore_step) -> tuple[Any, int]:
    """``restore_step(step)`` for the newest step that restores, falling back over the ones that
    do not (each reported and set aside); ``(None, -1)`` when there are no checkpoints."""
    root = str(mngr.directory)
    problems = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            with quiet():
                return restore_step(step), step
        except SpecError:  # the spec's model does not fit it: the checkpoint is not at fault
            raise
        except Exception as e:  # whatever else broke it, this checkpoint cannot be used
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            problems.append(f"step {step}: {why}")
            print(f"checkpoint {root}/{step} does not restore ({why}); set aside as "
                  f"{step}.unrestorable, trying the next older one", file=sys.stderr, flush=True)
            if jax.process_index() == 0:
                os.replace(os.path.join(root, str(step)),
                           os.path.join(root, f"{step}.unrestorable"))
            mngr.reload()
    if problems:
        raise RunStateError(f"no checkpoint in {root} restores ({'; '.join(problems)}); to "
                            f"start from scratch, move {os.path.dirname(root)} away")
    return None, -1


# tensorstore's OCDBT format: every manifest file begins with these four bytes.
OCDBT_MAGIC = bytes.fromhex("0cdb3a2a")


def check_manifests(state_dir: str) -> None:
    """ValueError naming a ``manifest.ocdbt`` of the saved state that is empty or does not
    begin with OCDBT's magic number, before orbax opens it: orbax's own message for that is
    "'NoneType' object has no attribute 'tree'", and the reads it abandons then print pages of
    "Event loop is closed" tracebacks under the one line that reports the checkpoint."""
    for folder, _, files in os.walk(state_dir):
        if "manifest.ocdbt" in files:
            path = os.path.join(folder, "manifest.ocdbt")
            with open(path, "rb") as f:
                head = f.read(len(OCDBT_MAGIC))
            if head != OCDBT_MAGIC:
                found = "is empty" if not head else f"begins with 0x{head.hex()}"
                raise ValueError(f"{path} {found}, not an OCDBT manifest")


def check_shapes(state_dir: str, abstract) -> None:
    """A SpecError naming the first array of ``abstract`` that the saved state lacks or holds
    in another shape (another model's checkpoint), read from its metadata before any array."""
    with quiet():
        saved = ocp.PyTreeCheckpointer().metadata(state_dir).item_metadata.tree
    flat = {path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(saved)}
    for path, want in jax.tree_util.tree_leaves_with_path(abstract):
        name = path_str(path)
        got = flat.get(name)
        if got is None or tuple(got.shape) != tuple(want.shape):
            found = "absent" if got is None else f"shape {tuple(got.shape)}"
            raise SpecError(f"checkpoint {state_dir} does not hold this spec's parameters: "
                            f"{name} is {found}, the spec's model needs {tuple(want.shape)}")


# ------------------------------------------------------------------------------ checksums
# Two 32-bit sums per array over its bytes read as unsigned words: the plain sum and the sum
# weighted by position (so a swap of two words shows too), both modulo 2**32. Computed on the
# devices where the arrays live (only two numbers per array come back), and on the host the
# same way for a state read as numpy; a flipped byte changes both.

_WORDS = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _words(x):
    x = jnp.asarray(x)   # TrainState.rng is raw uint32 key data, so no typed keys here
    w = jax.lax.bitcast_convert_type(x, _WORDS[x.dtype.itemsize]).astype(jnp.uint32)
    return w.reshape(-1)


def _sums(x):
    w = _words(x)
    weights = jnp.arange(1, w.size + 1, dtype=jnp.uint32)
    return jnp.stack([jnp.sum(w, dtype=jnp.uint32), jnp.sum(w * weights, dtype=jnp.uint32)])


_SUMS = jax.jit(lambda tree: jax.tree.map(_sums, tree))


def checksums(tree) -> dict[str, list[int]]:
    """``{'/'-joined path: [sum, weighted sum]}`` of every array of ``tree``.

    A state held in this process's CPU memory (numpy, or jax arrays on CPU devices) is summed
    by numpy where it lies: the same modular sums, without tracing and compiling a program
    for the tree's structure (about 1 s per save of a small model, most of its saving time);
    anything else on the devices (``_SUMS``)."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if all(_in_host_memory(x) for _, x in leaves):
        return {path_str(p): _host_sums(np.asarray(x)) for p, x in leaves}
    sums = jax.device_get(_SUMS(tree))
    return {path_str(p): [int(v) for v in np.asarray(s)]
            for p, s in jax.tree_util.tree_leaves_with_path(sums)}


def _in_host_memory(x) -> bool:
    if isinstance(x, np.ndarray) or np.isscalar(x):   # numpy arrays, Python / numpy scalars
        return True
    return (isinstance(x, jax.Array) and x.is_fully_addressable
            and all(d.platform == "cpu" for d in x.devices()))


_NP_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _host_sums(x: np.ndarray) -> list[int]:
    """``_sums`` in numpy: unsigned 32-bit arithmetic wraps modulo 2**32 as it does there. The
    dtype is first made the one ``jnp.asarray`` gives (64-bit to 32-bit unless x64 is on), so a
    leaf sums to the same words on both paths."""
    x = np.asarray(x)
    x = np.ascontiguousarray(x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False))
    x = x.reshape(-1)
    w = x.view(_NP_WORDS[x.dtype.itemsize]).astype(np.uint32)
    weights = np.arange(1, w.size + 1, dtype=np.uint32)
    return [int(np.sum(w, dtype=np.uint32)), int(np.sum(w * weights, dtype=np.uint32))]


def verify(tree, expected: dict | None, where: str = "") -> None:
    """Raises ValueError naming the first array of ``tree`` whose checksum differs from
    ``expected`` (a checkpoint's meta); checkpoints written without checksums pass."""
    if not expected:
        return
    got = checksums(tree)
    bad = [k for k, v in got.items() if k in expected and expected[k] != v]
    if bad:
        raise ValueError(f"{where}array {bad[0]} differs from its checksum"
                         + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))

def committed_steps(root: str) -> list[int]:
    """The committed checkpoint steps under a checkpoint root (``.../checkpoints``), ascending;
    [] when it does not exist. A save in progress or killed (orbax's ``*.orbax-checkpoint-tmp-*``
    folders) is not one."""
    return list(ocp.utils.checkpoint_steps(root)) if os.path.isdir(root) else []


def find_step_dir(path: str) -> tuple[str, int]:
    """A checkpoint root (``.../checkpoints``), a workdir, or one step's folder → (root, step)."""
    path = os.path.abspath(path)
    for root in (path, os.path.join(path, "checkpoints")):
        if os.path.isdir(root):
            steps = committed_steps(root)
            if steps:
                return root, max(steps)
    parent, leaf = os.path.split(path)
    if leaf.isdigit() and os.path.isdir(os.path.join(path, "state")):
        return parent, int(leaf)
    raise SpecError(f"no committed checkpoint found at {path!r} (looked for <step>/state under "
                    f"it and under {os.path.join(path, 'checkpoints')!r})")


def read_numpy(state_dir: str) -> Any:
    """One saved train state as a tree of numpy arrays on the host, whatever mesh or number of
    processes wrote it (for inspection, tests and converting checkpoints)."""
    state_dir = os.path.abspath(state_dir)  # orbax finds no metadata under a relative path
    if not os.path.isdir(state_dir):
        raise SpecError(f"no saved train state at {state_dir!r}")
    ckptr = ocp.PyTreeCheckpointer()
    with quiet():
        tree = ckptr.metadata(state_dir).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(restore_args=args))


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    # Reading one item of a manager's step folder, orbax warns that the item has no metadata
    # file of its own (it is the step folder's): true, expected, and nothing a user can act on.
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def restore_params(path: str, abstract_params) -> Any:
    """Parameters only (for ``init_from``), placed with ``abstract_params``' shardings.

    The source may have had another optimizer, mesh or process count: its state is read on the
    host and only ``params`` is placed on the devices.
    """
    root, step = find_step_dir(path)
    tree = read_numpy(os.path.join(root, str(step), "state"))
    if "params" not in tree:
        raise SpecError(f"checkpoint {root}/{step} has no 'params'; it holds {sorted(tree)}")
    got, want = jax.tree.structure(tree["params"]), jax.tree.structure(abstract_params)
    if got != want:
        raise SpecError(f"init_from {root}/{step}: its parameters do not match this model's "
                        f"({len(jax.tree.leaves(tree['params']))} vs "
                        f"{len(jax.tree.leaves(abstract_params))} arrays)")
    return jax.tree.map(lambda x, a: jax.device_put(x.astype(a.dtype), a.sharding),
                        tree["params"], abstract_params)
