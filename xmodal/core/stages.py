"""Stages: ``"stage:<name>"`` references, and the one way to read a trained stage.

A multi-stage spec (FlowSep: vae → clap → flow → ...) trains each stage in ``workdir/<stage>``.
A later stage names an earlier one as ``"stage:vae"`` anywhere in its spec (``resume``,
``init_from``, an objective's ``vae_from``...); ``resolve_refs`` turns that into the path.

    stage = load_stage("runs/flowsep/vae")
    stage.model, stage.params["model"], stage.spec["objective"], stage.outputs["latent_std"]

**EMA policy** (one for every reader): a stage's parameters are its EMA copy when the run kept
one (``train.ema_decay > 0``), else its trained parameters — the parameters its own evaluators
measured. Parameters come from the newest committed checkpoint, read on the host as numpy, so
any mesh or process count may have written them; the reader places them (as frozen state, see
``train_state.TrainState.frozen``).

**Outputs**: what a stage computes once training ends for the stages after it (the VAE's latent
std on its training split) is in ``workdir/<stage>/stage_outputs.json``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax.numpy as jnp
import ml_collections as mlc

from xmodal.core import checkpoint as ckpt_lib
from xmodal.core.registry import MODELS, SpecError

PREFIX = "stage:"
OUTPUTS = "stage_outputs.json"


def resolve_refs(stage: mlc.ConfigDict, workdir: str) -> mlc.ConfigDict:
    """Every string ``"stage:<name>"`` in ``stage`` becomes ``workdir/<name>``."""
    def resolve(node):
        if isinstance(node, dict):
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(resolve(v) for v in node)
        if isinstance(node, str) and node.startswith(PREFIX):
            return os.path.join(workdir, node.removeprefix(PREFIX))
        return node
    return mlc.ConfigDict(resolve(stage.to_dict()))


def tuples(node: Any) -> Any:
    """spec.json stores tuples as lists; flax module fields want hashable tuples."""
    if isinstance(node, dict):
        return {k: tuples(v) for k, v in node.items()}
    if isinstance(node, list):
        return tuple(tuples(v) for v in node)
    return node


def read_spec(stage_dir: str) -> dict:
    """The stage's ``spec.json`` (lists as tuples)."""
    path = os.path.join(stage_dir, "spec.json")
    if not os.path.isfile(path):
        raise SpecError(f"no spec.json in {stage_dir!r}: train that stage first")
    with open(path) as f:
        return tuples(json.load(f))


def is_trained(stage_dir: str) -> bool:
    """Whether ``stage_dir`` holds a stage that can be loaded: its spec.json and a committed
    checkpoint (a stage stopped before its first checkpoint is not trained)."""
    if not stage_dir or not os.path.isfile(os.path.join(stage_dir, "spec.json")):
        return False
    try:
        ckpt_lib.find_step_dir(stage_dir)
    except SpecError:
        return False
    return True


def load_params(stage_dir: str) -> dict:
    """``{group: params}`` (numpy) of the newest committed checkpoint, by the EMA policy."""
    root, step = ckpt_lib.find_step_dir(stage_dir)
    state = ckpt_lib.read_numpy(os.path.join(root, str(step), "state"))
    return state["ema"] if state.get("ema") else state["params"]


def read_outputs(stage_dir: str) -> dict:
    path = os.path.join(stage_dir, OUTPUTS)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def write_outputs(stage_dir: str, outputs: dict) -> None:
    tmp = os.path.join(stage_dir, OUTPUTS + ".tmp")
    with open(tmp, "w") as f:
        json.dump(outputs, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(stage_dir, OUTPUTS))


def build_model(model_spec: dict, dtype=jnp.float32):
    """The module a stage's ``model`` node names, in ``dtype`` (float32 for inference)."""
    kw = {k: v for k, v in tuples(dict(model_spec)).items() if k != "name"}
    return MODELS.build(model_spec["name"], dtype=dtype, param_dtype=jnp.float32, **kw)


@dataclasses.dataclass(frozen=True)
class Stage:
    """A trained stage: its spec, model, parameters (``{group: numpy tree}``) and outputs."""
    path: str
    spec: dict
    model: Any
    params: dict
    outputs: dict

    def expect(self, *, model: str | None = None, objective: str | None = None,
               what: str = "") -> "Stage":
        """Raises SpecError unless the stage trained this model / objective (e.g. a
        ``teacher_from`` that names a stage of another kind)."""
        for key, want in (("model", model), ("objective", objective)):
            got = self.spec.get(key, {}).get("name")
            if want is not None and got != want:
                raise SpecError(f"{what or 'stage'} {self.path!r} trained {key} {got!r}, "
                                f"not {want!r}")
        return self


def load_stage(stage_dir: str) -> Stage:
    """The trained stage in ``stage_dir`` (see the module docstring for the EMA policy)."""
    spec = read_spec(stage_dir)
    return Stage(stage_dir, spec, build_model(spec["model"]), load_params(stage_dir),
                 read_outputs(stage_dir))
