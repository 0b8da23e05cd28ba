"""Device mesh, parameter sharding rules and multi-host set-up, all driven by the spec.

Sharding is configuration (maxtext, big_vision): ``mesh = {data: -1, fsdp: 1, model: 1}`` and a
table of ``(regex, PartitionSpec)`` rules over '/'-joined parameter paths, first match wins.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from xmodal.core.registry import SpecError

BATCH_AXES = ("data", "fsdp")  # the global batch is split over both


def init_distributed(cfg: Mapping[str, Any]) -> None:
    """Starts multi-process JAX when the spec or the environment asks for it.

    Environment (set by a launcher) wins over the spec: XMODAL_COORDINATOR,
    XMODAL_NUM_PROCESSES, XMODAL_PROCESS_ID. On CPU the collectives go through gloo.

    Process 0's coordinator service listens only on the coordinator address's interface (JAX's
    default is every interface): loopback for local processes, the host's internal address on a
    pod. XMODAL_COORDINATOR_BIND names another ``host:port`` to listen on.
    """
    address = os.environ.get("XMODAL_COORDINATOR", cfg.get("coordinator_address", ""))
    if not address:
        return
    num = int(os.environ.get("XMODAL_NUM_PROCESSES", cfg.get("num_processes", 1)))
    pid = int(os.environ.get("XMODAL_PROCESS_ID", cfg.get("process_id", -1)))
    if pid < 0:
        raise SpecError("distributed.process_id (or XMODAL_PROCESS_ID) must be set with a coordinator")
    if jax.distributed.is_initialized():
        return
    # Only affects the CPU client (harmless on accelerators); asking for the backend here
    # would initialise it, which must not happen before jax.distributed.initialize.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    bind = os.environ.get("XMODAL_COORDINATOR_BIND", address)
    jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid,
                               coordinator_bind_address=bind)


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh with the spec's named axes; one axis may be -1 (the remaining devices)."""
    devices = list(devices if devices is not None else jax.devices())
    names = tuple(axes)
    sizes = [int(axes[n]) for n in names]
    if sizes.count(-1) > 1:
        raise SpecError(f"mesh {dict(axes)}: at most one axis may be -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise SpecError(f"mesh {dict(axes)}: {len(devices)} devices are not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise SpecError(f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices, "
                        f"there are {len(devices)}")
    grid = np.asarray(devices).reshape(sizes)
    return Mesh(grid, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def batch_size_per_device(mesh: Mesh) -> int:
    return int(np.prod([mesh.shape[a] for a in BATCH_AXES if a in mesh.shape]))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(tuple(a for a in BATCH_AXES if a in mesh.shape)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def path_str(path) -> str:
    """'/'-joined names of a pytree key path, e.g. ``params/img/attn/query/kernel``."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
    return "/".join(parts)


def match_rules(rules: Sequence[tuple[str, Sequence[Any]]], tree) -> Any:
    """PartitionSpec for every leaf: the first rule whose regex matches the leaf's path.

    Axes a leaf cannot be split over (size not divisible) fall back to replication for that
    dimension, so one rule table serves every model size.
    """
    compiled = [(re.compile(r), tuple(spec)) for r, spec in rules]

    def one(path, leaf):
        name = path_str(path)
        for regex, spec in compiled:
            if regex.fullmatch(name):
                return P(*spec[: np.ndim(leaf)])
        raise SpecError(f"no sharding rule matches parameter {name!r}; add a rule or a "
                        f"catch-all ('.*', ())")

    return jax.tree_util.tree_map_with_path(one, tree)


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    out = []
    for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = axis if isinstance(axis, tuple) else (axis,) if axis else ()
        size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        out.append(axis if axes and dim % size == 0 else None)
    while out and out[-1] is None:  # P("fsdp") rather than P("fsdp", None): same meaning
        out.pop()
    return P(*out)


def tree_shardings(mesh: Mesh, rules, abstract_tree) -> Any:
    """NamedShardings for an abstract (ShapeDtypeStruct) tree under the spec's rules."""
    specs = match_rules(rules, abstract_tree)
    return jax.tree.map(lambda s, x: NamedSharding(mesh, fit_spec(s, x.shape, mesh)),
                        specs, abstract_tree, is_leaf=lambda x: isinstance(x, P))


def global_batch(local: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
    """Builds the global batch from this process's shard (multi-host safe)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


def place(host_tree, shardings) -> Any:
    """Host (numpy) arrays placed with ``shardings``: each device receives only its own shard,
    and every process may hold the whole array (as a stage read from disk is)."""
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: x[idx]),
        host_tree, shardings)
