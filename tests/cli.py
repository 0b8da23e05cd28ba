"""Runs ``python -m xmodal.main`` as a user would, with a tiny model for speed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small enough to compile and step in seconds on 2 cores, same code paths as the real specs.
TINY = [
    "--spec.data.name=emoji/tiny",
    "--spec.data.batch_size=16",
    "--spec.data.num_workers=0",
    "--spec.data.eval_max_examples=48",
    "--spec.model.embed_dim=16",
    "--spec.train.log_every=1",
    "--spec.train.eval_every=0",
    "--spec.optim.warmup_steps=0",
]


def tiny_towers(spec: str) -> list[str]:
    """The tower overrides of TINY: under ``model.towers.<modality>`` for a ``two_tower``
    model (its towers named by the spec), ``model.image`` / ``model.text`` for the image-text
    models with fixed tower names."""
    from xmodal.core import spec as spec_lib
    model = spec_lib.load(spec).model
    nodes = [f"towers.{m}" for m in model.towers] if "towers" in model else ["image", "text"]
    return [f"--spec.model.{node}.{key}={value}" for node in nodes
            for key, value in (("width", 16), ("depth", 1), ("num_heads", 2))]


def env(devices: int = 1, **extra: str) -> dict:
    """The environment of a CLI run on ``devices`` fake CPU devices. One by default: a
    one-device program is read back from the persistent compilation cache, a multi-device one
    is compiled again in every process (compilation_cache.several_cpu_devices), so a CLI run
    of the tests' tiny size takes ~10 s on one device and ~26 s on eight (2-core CPU). Tests
    of sharding, multi-device restore and multi-process runs name their devices."""
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONUNBUFFERED"] = "1"
    e.update(extra)
    return e


def command(spec: str, workdir, *args: str) -> list[str]:
    return [sys.executable, "-m", "xmodal.main", f"--spec={spec}", f"--workdir={workdir}",
            *TINY, *tiny_towers(spec), *args]


def run(spec: str, workdir, *args: str, devices: int = 1, timeout: int = 600,
        check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(command(spec, workdir, *args), cwd=ROOT, env=env(devices),
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\n"
                             f"stderr:\n{r.stderr[-5000:]}")
    return r


def copy_workdir(src, dst):
    """A private copy of a shared trained workdir (conftest's ``shared_workdir``), without its
    ``TRAINED`` marker and locks."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("TRAINED", ".lock*"))
    return dst
