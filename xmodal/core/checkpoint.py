"""Orbax checkpoints of the train state together with the grain iterator state.

``workdir/checkpoints/<step>/`` holds ``state`` (the TrainState pytree, saved sharded),
``data`` (each process's grain iterator position) and ``meta`` (JSON: step, spec name). Saves
are asynchronous and keep the newest N. A run resumes from, in order: its own workdir, the
spec's ``resume`` directory, the spec's ``init_from`` (parameters only), or scratch.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from xmodal.core.input import iterator_checkpoint_args
from xmodal.core.registry import SpecError


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
    return mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=iterator_checkpoint_args(data_iter),
        meta=ocp.args.JsonSave(meta)), force=force)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state, data_iter):
    """Restores state (with the abstract state's shardings) and the iterator in place."""
    got = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=iterator_checkpoint_args(data_iter, restore=True)))
    return got["state"]


def find_step_dir(path: str) -> tuple[str, int]:
    """A checkpoint root (``.../checkpoints``), a workdir, or one step's folder → (root, step)."""
    path = os.path.abspath(path)
    for root in (path, os.path.join(path, "checkpoints")):
        if os.path.isdir(root):
            steps = ocp.utils.checkpoint_steps(root)  # committed steps only
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
