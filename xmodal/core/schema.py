"""The schema of a (stage) spec: every valid key with its default value and type.

Plain values give the type a spec value must have. ``Component`` marks a node that names a
registered callable (``{"name": "two_tower", ...kwargs}``); its kwargs are checked against the
callable's signature. ``Components`` is a mapping of such nodes (e.g. several evaluators).
``Entries`` is a mapping of names the spec chooses to nodes that all follow one schema (the
extra training sources of ``data.mix``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Component:
    registry: Callable[[], object]  # lazy, so the schema imports no model code
    default: dict | None = None     # None: the spec must set it


@dataclasses.dataclass(frozen=True)
class Components:
    registry: Callable[[], object]
    # Keys an entry may carry besides its component's arguments; read by the trainer, never
    # passed to the component (an evaluator's ``data``: which eval set it measures).
    reserved: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Entries:
    schema: Callable[[], dict]      # the node every entry follows (a function: fresh defaults)
    required: tuple[str, ...] = ()  # keys each entry must set


def _models():
    from xmodal.core.registry import MODELS
    return MODELS


def _objectives():
    from xmodal.core.registry import OBJECTIVES
    return OBJECTIVES


def _transforms():
    from xmodal.core.registry import TRANSFORMS
    return TRANSFORMS


def _evaluators():
    from xmodal.core.registry import EVALUATORS
    return EVALUATORS


def mix_source() -> dict:
    """One extra training source of ``data.mix``; weights are relative to ``data.weight``."""
    return {
        "name": "",                 # dataset name, e.g. 'tuxpaint/effects' (required)
        "weight": 1.0,              # share of the training stream: weight / sum of all weights
        "train_split": "train",
        "eval_split": "test",       # the eval set of evaluators whose 'data' names this entry
        # record -> example; must give the same keys, shapes and dtypes as data.transform's
        "transform": Component(_transforms),
    }


def defaults() -> dict:
    return {
        "seed": 0,
        # Mesh axis sizes; -1 takes the remaining devices. Batch is split over (data, fsdp).
        "mesh": {"data": -1, "fsdp": 1, "model": 1},
        # Multi-host: empty coordinator = single process, or read XMODAL_COORDINATOR et al.
        "distributed": {"coordinator_address": "", "num_processes": 1, "process_id": -1},
        # compute_dtype 'bfloat16' = bf16 matmul inputs with f32 accumulation; params stay f32.
        # 'auto' = bfloat16 where the hardware has native bf16 products, else float32.
        "precision": {"compute_dtype": "auto", "param_dtype": "float32"},
        "data": {
            "name": "emoji",
            "data_dir": "",            # '' = $XMODAL_DATA_DIR or ~/.cache/xmodal/datasets
            "train_split": "train",
            "eval_split": "test",
            # record → example; see xmodal/data/transforms (image_text, ...)
            "transform": Component(_transforms, default={"name": "image_text"}),
            "batch_size": 256,          # global batch, over all processes
            "num_workers": 2,           # grain worker processes per host (0 = in-process)
            # Read the training split's records once, into memory, and serve them from there
            # (big_vision's cache_raw): for a split small enough to hold whose records cost
            # more to read and decode than the step that uses them (toy points, tiny sets).
            "cache_raw": False,
            "eval_max_examples": 0,     # 0 = the whole eval split (of every eval set)
            # data.name's sampling weight; matters only next to data.mix.
            "weight": 1.0,
            # More training sources interleaved with data.name's, by a name the spec chooses:
            # {"effects": {"name": "tuxpaint/effects", "weight": 0.25, "transform": {...}}}.
            # An evaluator with "data": "effects" measures that entry's eval_split instead.
            "mix": Entries(mix_source, required=("name", "transform")),
        },
        "model": Component(_models),
        "objective": Component(_objectives),
        "optim": {
            "name": "adamw",            # adamw | sgd
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "b1": 0.9,
            "b2": 0.98,
            "eps": 1e-6,
            "momentum": 0.9,            # sgd only
            "schedule": "cosine",       # cosine | linear | constant (after linear warmup)
            "warmup_steps": 0,
            "end_lr_factor": 0.0,
            "grad_clip_norm": 1.0,      # 0 = off
            "grad_accum": 1,            # micro-batches per update
            # [(regex over '/'-joined param path, multiplier)]; first match wins; 0 freezes.
            "lr_mults": [],
            "freeze": [],               # regexes of params that are never updated
            # [(parameter group, lr multiplier)]: a group's own learning rate (a distillation
            # generator slower than its fake score); unnamed groups take optim.lr.
            "group_lr": [],
            "decay_exclude": [r".*bias$", r".*scale$", r".*logit_.*", r".*embedding$"],
        },
        "train": {
            "steps": 1000,              # 0 = evaluate only (an eval stage)
            "log_every": 50,            # steps between logged metrics (metrics.jsonl, TensorBoard)
            # Wall seconds between console progress lines whatever log_every says (the first
            # step's line comes at once); 0 = only the logged steps.
            "progress_every_s": 30.0,
            "eval_every": 500,          # 0 = only at the end
            "ckpt_every": 500,
            "keep_ckpts": 3,
            "ema_decay": 0.0,           # 0 = no EMA copy of the parameters
            "check_finite": True,       # stop with the step and metric name on NaN/Inf
        },
        # --mode=sample (xmodal.inference.sample): how a generative stage draws samples.
        "sample": {
            "num": 16,                  # samples; their conditions are the eval split's first
            "steps": 0,                 # ODE steps; 0 = the objective's own default
            "solver": "",               # euler | midpoint | heun | rk4; '' = the objective's
            "seed": 0,                  # the noise
        },
        # "data": '' (data.name's eval split) or a data.mix entry's name, for any evaluator.
        "evals": Components(_evaluators, reserved=("data",)),
        "sharding": {
            # [(regex, PartitionSpec as a tuple of axis names/None)], first match wins.
            "rules": [(r".*", ())],
            # Logical activation axes → mesh axes (flax logical axis rules).
            "logical_axis_rules": [("batch", ("data", "fsdp")), ("length", None),
                                   ("embed", None), ("mlp", "model"), ("heads", "model")],
        },
        "resume": "",       # a checkpoint directory to resume the whole train state from
        "init_from": "",    # a checkpoint directory to take parameters only from
    }


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a number (``low``/``high`` bounds, each closed or open) or a
    string (``choices``), said in words by ``describe``."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def holds(self, value) -> bool:
        if self.choices:
            return value in self.choices
        if not math.isfinite(value):
            return False   # NaN compares false with every bound; inf passes an open top
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return " and ".join(parts)


POSITIVE, NON_NEGATIVE = Range(low=0, low_open=True), Range(low=0)
AT_LEAST_ONE, UNIT = Range(low=1), Range(low=0, high=1, high_open=True)

# The valid range of each numeric (or enumerated) key of a stage; checked by spec.validate, so
# a value out of range stops the start in one line before anything is written.
RANGES = {
    "data.batch_size": AT_LEAST_ONE,
    "data.num_workers": NON_NEGATIVE,
    "data.eval_max_examples": NON_NEGATIVE,
    "optim.name": Range(choices=("adamw", "sgd")),
    "optim.lr": NON_NEGATIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.b1": UNIT,
    "optim.b2": UNIT,
    "optim.eps": POSITIVE,
    "optim.momentum": UNIT,
    "optim.schedule": Range(choices=("cosine", "linear", "constant")),
    "optim.warmup_steps": NON_NEGATIVE,
    "optim.end_lr_factor": NON_NEGATIVE,
    "optim.grad_clip_norm": NON_NEGATIVE,
    "optim.grad_accum": AT_LEAST_ONE,
    "train.steps": NON_NEGATIVE,
    "train.log_every": AT_LEAST_ONE,
    "train.progress_every_s": NON_NEGATIVE,
    "train.eval_every": NON_NEGATIVE,
    "train.ckpt_every": AT_LEAST_ONE,
    "train.keep_ckpts": AT_LEAST_ONE,
    "train.ema_decay": UNIT,
    "sample.num": AT_LEAST_ONE,
    "sample.steps": NON_NEGATIVE,
    "sample.solver": Range(choices=("", "euler", "midpoint", "heun", "rk4")),
}
