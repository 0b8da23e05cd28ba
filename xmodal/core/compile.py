"""``--mode=compile --target=v5e:16x16``: compile a spec's train step for a TPU slice that is not
here, ahead of time, on this machine's CPU (maxtext's ``train_compile``), and say whether it fits.

    bash setup.sh                   # puts libtpu (the TPU compiler) in ~/.cache/xmodal/libtpu
    python -m xmodal.main --spec=specs/clip.py --workdir=runs/clip --mode=compile --target=v5e:4x4

For each stage that trains (or those of ``--stages``), the step is built exactly as the trainer
builds it (``trainer.step_parts``: the spec's model, objective, optimizers, mesh axes and sharding
rules), but on the devices of the named topology (``jax.experimental.topologies``) and from
``jax.ShapeDtypeStruct``s: no parameter is materialised. It is lowered and compiled by libtpu,
and the compiled program's own analyses give, per chip:

- memory (``memory_analysis``): arguments (the train state and the batch shard), outputs,
  temporaries, and the peak arguments + outputs - aliased (the donated state) + temporaries,
  against the chip's HBM; a step over HBM is an error (exit non-zero) naming the stage (libtpu
  itself refuses to compile a step whose temporaries exceed HBM: its figure is reported);
- FLOPs and bytes accessed per step (``cost_analysis``, per chip);
- an estimated step time: the roofline max(FLOPs / peak bf16 FLOP/s, bytes / HBM bandwidth)
  (XLA's own ``optimal_seconds`` is printed beside it; it came out negative for some steps, so
  it is not what the estimate uses), and the examples/s and MFU that time implies. It is an
  estimate, not a bound: the roofline leaves out collectives and launch overheads (the real step
  is slower for those), while XLA's "bytes accessed" sums the operands of every HLO op and can
  overstate the HBM traffic of fused code (the estimate is then too slow).

``precision.compute_dtype='auto'`` means bfloat16 here (the TPU has native bf16 products). Chip
figures are Google Cloud's published per-chip numbers (``CHIPS``). A stage that reads earlier
stages (a teacher, a VAE) reads them from ``--workdir`` as training would, so those must exist.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
import time

import jax
import numpy as np

from xmodal.core import datasets as sources
from xmodal.core import input as pipeline
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core import trainer
from xmodal.core.registry import TRANSFORMS, SpecError


@dataclasses.dataclass(frozen=True)
class Chip:
    hbm_bytes: float
    bf16_flops: float       # peak dense bf16 FLOP/s
    hbm_bandwidth: float    # bytes/s


# Google Cloud TPU system architecture pages, per chip.
CHIPS = {
    "v4": Chip(32 * 2**30, 275e12, 1228e9),
    "v5e": Chip(16 * 2**30, 197e12, 819e9),
    "v5p": Chip(95 * 2**30, 459e12, 2765e9),
    "v6e": Chip(32 * 2**30, 918e12, 1640e9),
}


# Kept out of the environment's site-packages: a libtpu there makes every CPU run of jax probe
# for a TPU and print pages of warnings. ``--mode=compile`` alone puts it on the path.
LIBTPU_DIR = os.environ.get("XMODAL_LIBTPU_DIR",
                            os.path.expanduser("~/.cache/xmodal/libtpu"))


def find_libtpu() -> bool:
    import importlib.util
    import sys
    if importlib.util.find_spec("libtpu") is None and os.path.isdir(LIBTPU_DIR):
        sys.path.insert(0, LIBTPU_DIR)
        importlib.invalidate_caches()
    return importlib.util.find_spec("libtpu") is not None


class DoesNotFit(SpecError):
    """The compiled step needs more memory per chip than the chip has."""


@contextlib.contextmanager
def native_stderr_to(path: str):
    """The process's stderr (file descriptor 2, where C++ libraries write) goes to ``path``
    while inside. libtpu, loaded off a TPU VM, prints pages that read as failures ("could
    not determine TPU accelerator type", an ``E0000 ... INVALID_ARGUMENT`` about worker
    hostnames) and change nothing for a compile-only topology; they are kept in ``path``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def topology_devices(target: str, log_dir: str = "") -> tuple[list, Chip]:
    """The devices of a TPU topology such as ``v5e:4x4`` (from libtpu, no TPU needed);
    libtpu's start-up output goes to ``<log_dir>/libtpu.log`` when ``log_dir`` is given."""
    generation = target.split(":", 1)[0]
    if generation not in CHIPS or ":" not in target:
        raise SpecError(f"--target={target!r}: a TPU topology <generation>:<shape>, e.g. "
                        f"v5e:4x4, v5p:2x2x2; generations {', '.join(CHIPS)}")
    if not find_libtpu():
        raise SpecError("--mode=compile needs libtpu (the TPU compiler; no TPU is needed): "
                        f"bash setup.sh (installs it in {LIBTPU_DIR}) or pip install -e '.[tpu]'")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")   # not on a TPU VM: no metadata server
    # libtpu takes a host-wide lockfile so that two processes never drive one TPU; compiling
    # for a topology drives none, and two compiles at once (two tests, two users) must work.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    quiet = native_stderr_to(os.path.join(log_dir, "libtpu.log")) if log_dir else \
        contextlib.nullcontext()
    try:
        with quiet:
            topo = topologies.get_topology_desc(topology_name=target, platform="tpu")
    except Exception as e:  # libtpu's message for an unknown shape is long; keep its first line
        raise SpecError(f"--target={target!r}: libtpu has no such topology "
                        f"({str(e).splitlines()[0][:200]})") from None
    return list(topo.devices), CHIPS[generation]


def compile_stage(stage, devices: list, chip: Chip) -> dict:
    """Compiles one stage's train step on ``devices``; returns its report (module docstring)."""
    if stage.precision.compute_dtype == "auto":
        stage.precision.compute_dtype = "bfloat16"
    mesh = parallel.make_mesh(stage.mesh, devices)
    trainer.check_batch_size(stage, mesh)
    data_dir = stage.data.data_dir or None
    sources.prepare(stage.data.name, data_dir)
    transform = TRANSFORMS.build(stage.data.transform.name,
                                 **spec_lib.component_kwargs(stage.data.transform))
    record = sources.data_source(stage.data.name, stage.data.train_split, data_dir)[0]
    t0 = time.perf_counter()
    parts = trainer.step_parts(stage, mesh, pipeline.training_example(record, transform))
    lowered = parts.jitted_step().lower(parts.abstract_state, parts.batch_spec)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(parts.abstract_state.params))
    head = {"chips": len(devices), "mesh": dict(mesh.shape), "batch": int(stage.data.batch_size),
            "trained_parameters": params}
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        # libtpu itself refuses a program whose temporaries exceed HBM ("CompileTimeHbmOom").
        need = re.search(r"required for HLO temporaries \(([\d.]+)G\)", str(e))
        if "RESOURCE_EXHAUSTED" not in str(e) or need is None:
            raise
        return dict(head, compile_seconds=round(time.perf_counter() - t0, 1), fits=False,
                    temp_bytes=int(float(need.group(1)) * 2**30),
                    peak_bytes=int(float(need.group(1)) * 2**30), hbm_bytes=int(chip.hbm_bytes),
                    refused="libtpu: " + str(e).splitlines()[0][:300])
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
            + mem.temp_size_in_bytes)
    flops, accessed = float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))
    roofline = max(flops / chip.bf16_flops, accessed / chip.hbm_bandwidth)
    return {
        **head, "compile_seconds": round(seconds, 1),
        "argument_bytes": int(mem.argument_size_in_bytes),
        "output_bytes": int(mem.output_size_in_bytes),
        "alias_bytes": int(mem.alias_size_in_bytes), "temp_bytes": int(mem.temp_size_in_bytes),
        "peak_bytes": int(peak), "hbm_bytes": int(chip.hbm_bytes),
        "fits": bool(peak <= chip.hbm_bytes),
        "flops_per_chip": flops, "bytes_accessed_per_chip": accessed,
        "xla_optimal_seconds": float(cost.get("optimal_seconds", float("nan"))),
        "roofline_seconds": roofline,
        "bound": "compute" if flops / chip.bf16_flops >= accessed / chip.hbm_bandwidth
                 else "memory",
        "examples_per_second": stage.data.batch_size / roofline if roofline > 0 else None,
        "mfu_at_roofline": (flops / roofline / chip.bf16_flops) if roofline > 0 else None,
    }


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def describe(name: str, target: str, r: dict) -> str:
    if "refused" in r:
        return (f"{name or 'main'} on {target} ({r['chips']} chips, mesh {r['mesh']}, batch "
                f"{r['batch']}): does not compile, its temporaries alone need "
                f"{_gb(r['temp_bytes'])} per chip of {_gb(r['hbm_bytes'])}")
    return (f"{name or 'main'} on {target} ({r['chips']} chips, mesh {r['mesh']}, batch "
            f"{r['batch']}, {r['trained_parameters'] / 1e6:.1f} M parameters; compiled in "
            f"{r['compile_seconds']} s): per chip {_gb(r['peak_bytes'])} of {_gb(r['hbm_bytes'])} "
            f"(arguments {_gb(r['argument_bytes'])}, temporaries {_gb(r['temp_bytes'])}, outputs "
            f"{_gb(r['output_bytes'])}, aliased {_gb(r['alias_bytes'])}); "
            f"{r['flops_per_chip'] / 1e12:.3f} TFLOP and {r['bytes_accessed_per_chip'] / 1e9:.2f} GB "
            f"accessed per chip per step; roofline {r['roofline_seconds'] * 1e3:.2f} ms "
            f"({r['bound']}-bound; XLA's estimate {r['xla_optimal_seconds'] * 1e3:.2f} ms) → about "
            f"{r['examples_per_second']:,.0f} examples/s")


def run(spec, workdir: str, target: str, only: tuple = (), out: str = "") -> dict:
    """Compiles every chosen stage for ``target``; prints and returns the reports; writes them
    as JSON to ``out`` when given. Raises DoesNotFit after reporting every stage."""
    os.makedirs(workdir, exist_ok=True)
    devices, chip = topology_devices(target, log_dir=workdir)
    stages = spec_lib.stages_of(spec)
    names = [n for n, _ in stages]
    if set(only) - set(names):
        raise SpecError(f"no stage {sorted(set(only) - set(names))} in this spec; its stages: "
                        f"{names}")
    chosen = [(n, s) for n, s in stages if (n in only if only else s.train.steps > 0)]
    reports, too_big = {}, []
    for name, stage in chosen:
        stage = stages_lib.resolve_refs(stage, workdir)
        r = compile_stage(stage, devices, chip)
        reports[name or "main"] = r
        print(describe(name, target, r), flush=True)
        if not r["fits"]:
            too_big.append(f"{name or 'main'} needs {_gb(r['peak_bytes'])} per chip, "
                           f"{target} chips have {_gb(r['hbm_bytes'])}")
    if out:
        with open(out, "w") as f:
            json.dump({"target": target, "stages": reports}, f, indent=1)
    if too_big:
        raise DoesNotFit("the step does not fit: " + "; ".join(too_big))
    return reports
