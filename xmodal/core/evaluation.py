"""The spec's evaluators over its eval sets: for the training loop, and for ``--mode=eval`` and
eval-only stages (``train.steps = 0``), which build no optimizer and no training loader.

An evaluation reads four things of a state: ``step``, ``params``, ``ema`` and ``frozen``. The
trainer passes its ``TrainState``; the eval path passes an ``EvalState`` restored from the
checkpoint's parameters alone (``restore_eval_state``: the optimizer moments and the iterator
position are never read, so a run evaluates with a third of the memory its training needed).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from xmodal.core import checkpoint as ckpt_lib
from xmodal.core import datasets as sources
from xmodal.core import eval_data
from xmodal.core import input as pipeline
from xmodal.core import objective as objective_lib
from xmodal.core import parallel
from xmodal.core import run_io
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core import train_state as ts
from xmodal.core.eval_context import Applier, EvalContext
from xmodal.core.registry import EVALUATORS, TRANSFORMS
from xmodal.core.writers import MetricWriter


def run(spec: mlc.ConfigDict, workdir: str) -> dict:
    """``--mode=eval`` and eval-only stages: model, parameters, evaluators and eval data only
    (no optimizer, no training loader); writes the metrics at the state's step, re-derives a
    finished stage's outputs, prints the table."""
    run_io.check_writable(workdir)
    parallel.init_distributed(spec.distributed)
    mesh = parallel.make_mesh(spec.mesh)
    data = load_data(spec)
    model, objective = objective_lib.build(spec, mesh)
    state, source = restore_eval_state(spec, workdir, mesh, objective, data.example())
    step = int(jax.device_get(state.step))
    logging.info("evaluating the parameters of %s at step %d", source, step)
    if jax.process_index() == 0:
        run_io.truncate_metrics(workdir, step)
        spec_lib.write_json(spec, workdir)
    evaluation = Evaluation(spec, workdir, mesh, model, objective, data)
    result = evaluation(state)
    writer = MetricWriter(workdir)
    writer.write(step, result, replace=True)
    writer.close()
    if step == spec.train.steps > 0:  # a finished stage re-derives its outputs
        write_stage_outputs(evaluation, state, workdir)
    run_io.print_table(result, f"eval at step {step}", evaluation.chance)
    return result


@dataclasses.dataclass
class EvalSet:
    """One eval split (read on use: ``eval_data``), with what an EvalContext needs beside it."""
    split: Any
    class_names: list
    transform: Any
    features: Any


@dataclasses.dataclass
class Data:
    """The spec's named sources ("" is ``data.name``, the others ``data.mix`` entries): their
    transforms, their training sources (random access, no loader) and the eval sets the
    evaluators read (``data.name``'s always, a mix entry's when an evaluator names it)."""
    named: dict
    transforms: dict
    train_sources: dict
    eval_sets: dict

    @property
    def transform(self):
        return self.transforms[""]

    @property
    def train_source(self):
        return self.train_sources[""]

    def example(self) -> dict:
        """One transformed training record: the batch fields' shapes and dtypes, read without
        advancing any stream."""
        return pipeline.training_example(self.train_source[0], self.transform)


def load_data(spec: mlc.ConfigDict) -> Data:
    data_dir = spec.data.data_dir or None
    named = {"": spec.data, **spec.data.mix}
    builders = {k: sources.prepare(d.name, data_dir) for k, d in named.items()}
    transforms = {k: TRANSFORMS.build(d.transform.name, **spec_lib.component_kwargs(d.transform))
                  for k, d in named.items()}
    train_sources = {k: sources.data_source(d.name, d.train_split, data_dir)
                     for k, d in named.items()}
    wanted = {""} | {c.get("data", "") for c in spec.evals.values()}
    eval_sets = {k: _eval_set(named[k], builders[k], transforms[k], data_dir,
                              spec.data.eval_max_examples) for k in sorted(wanted)}
    return Data(named, transforms, train_sources, eval_sets)


def _eval_set(data: mlc.ConfigDict, builder, transform, data_dir: str | None,
              max_examples: int) -> EvalSet:
    source = sources.data_source(data.name, data.eval_split, data_dir)
    split = eval_data.RecordSplit(source, transform, max_examples or None)
    label_field = getattr(transform, "label_field", None)
    class_names = builder.info.features[label_field].names if label_field else []
    return EvalSet(split, list(class_names), transform, builder.info.features)


class Evaluation:
    """``evaluate(state) -> {"eval/...": value}`` and ``stage_outputs(state)``, with the chance
    levels of the metrics whose evaluators know them (filled by each evaluation)."""

    def __init__(self, spec: mlc.ConfigDict, out_dir: str, mesh, model, objective, data: Data):
        # "data" is the evals' reserved key (core/schema.py): which eval set, never an argument.
        self.evaluators = {
            k: (c.get("data", ""),
                EVALUATORS.build(c.name, **spec_lib.component_kwargs(c, reserved=("data",))))
            for k, c in spec.evals.items()}
        self.applier = Applier(mesh, spec.data.batch_size)
        self.out_dir, self.model, self.objective, self.data = out_dir, model, objective, data
        self.ema = spec.train.ema_decay > 0
        self.train_split = spec.data.train_split
        self.chance: dict = {}

    def __bool__(self) -> bool:
        return bool(self.evaluators)

    def context(self, state, es: EvalSet, eval_set: str = "") -> EvalContext:
        """What an evaluator (or ``stage_outputs``) sees: one set's split (its fields stacked
        on first use, ``ctx.arrays``, or streamed, ``ctx.stream``), the parameters by the EMA
        policy with the frozen networks, and the chunked applier. A fresh context per
        evaluation: nothing an evaluator stacked outlives it."""
        return EvalContext(
            arrays=eval_data.LazyArrays(es.split), class_names=es.class_names,
            params=ts.with_frozen(state.ema if self.ema else state.params, state.frozen),
            model=self.model, objective=self.objective, transform=es.transform,
            features=es.features, applier=self.applier, out_dir=self.out_dir,
            step=int(jax.device_get(state.step)), eval_set=eval_set)

    def __call__(self, state) -> dict:
        out = {}
        for data, fn in self.evaluators.values():
            # Another eval set's metrics carry its name: eval/effects/t2i_R@1.
            prefix = f"eval/{data}/" if data else "eval/"
            ctx = self.context(state, self.data.eval_sets[data], data)
            out.update({prefix + k: float(v) for k, v in fn(ctx).items()})
            if hasattr(fn, "chance"):
                self.chance.update({prefix + k: float(v) for k, v in fn.chance(ctx).items()})
        return out

    def stage_outputs(self, state) -> dict:
        """The objective's hand-over values, computed on (up to 512 of) the training records,
        never the eval split."""
        if not objective_lib.has_stage_outputs(self.objective):
            return {}
        source, transform = self.data.train_source, self.data.transform
        split = eval_data.RecordSplit(source, transform, min(512, len(source)))
        ctx = self.context(state, EvalSet(split, [], transform, None))
        return dict(objective_lib.stage_outputs(self.objective, ctx), step=ctx.step,
                    examples=len(split), split=self.train_split)


def write_stage_outputs(evaluation: Evaluation, state, stage_dir: str) -> None:
    outputs = evaluation.stage_outputs(state)
    if outputs and jax.process_index() == 0:
        stages_lib.write_outputs(stage_dir, outputs)


# ------------------------------------------------------------------------------ eval-only state

@dataclasses.dataclass
class EvalState:
    """What an evaluation reads of a train state, and nothing else."""
    step: Any
    params: dict
    ema: dict
    frozen: dict


def restore_eval_state(spec: mlc.ConfigDict, workdir: str, mesh, objective,
                       example: dict) -> tuple[EvalState, str]:
    """Parameters (and EMA and frozen networks) from the workdir's newest checkpoint, else the
    spec's ``resume``, else initialised (and ``init_from``'s parameters), placed by the spec's
    sharding rules; returns the state and where it came from."""
    ema = spec.train.ema_decay > 0
    batch = {k: jax.ShapeDtypeStruct((1,) + np.shape(v), np.asarray(v).dtype)
             for k, v in example.items()}
    frozen_host = objective_lib.load_frozen(objective)
    abstract_frozen = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype),
                                   frozen_host)
    init_rng, _ = jax.random.split(jax.random.key(spec.seed))  # the trainer's init key
    abstract_params = jax.eval_shape(
        lambda r, b, f: objective_lib.init(objective, r, b, f), init_rng, batch, abstract_frozen)
    abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": abstract_params,
                "ema": abstract_params if ema else {}, "frozen": abstract_frozen}
    shardings = parallel.tree_shardings(mesh, spec.sharding.rules, abstract)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            abstract, shardings)

    found, tree = None, None
    if os.path.isdir(os.path.join(workdir, "checkpoints")):
        mngr = ckpt_lib.manager(workdir, spec.train.keep_ckpts)
        tree, step = ckpt_lib.restore_newest(mngr, lambda s: _restore_verified(mngr, s, abstract))
        mngr.close()
        found = (str(mngr.directory), step) if tree is not None else None
    if tree is None and spec.resume:   # the workdir has no checkpoint (or no folder) yet
        found = ckpt_lib.find_step_dir(spec.resume)
        tree = _restore_partial(os.path.join(found[0], str(found[1]), "state"), abstract)
    if found:
        return EvalState(tree["step"], tree["params"], tree["ema"], tree["frozen"]), \
            f"checkpoint {found[0]}/{found[1]}"
    frozen = parallel.place(frozen_host, shardings["frozen"])
    zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in batch.items()}
    with jax.set_mesh(mesh):
        params = jax.jit(lambda r, f: objective_lib.init(objective, r, zeros, f),
                         out_shardings=shardings["params"])(init_rng, frozen)
    source = "scratch"
    if spec.init_from:
        params = ckpt_lib.restore_params(spec.init_from, abstract["params"])
        source = f"init_from {spec.init_from}"
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings["step"])
    return EvalState(step, params, jax.tree.map(jnp.copy, params) if ema else {}, frozen), source


def _restore_verified(mngr, step: int, abstract: dict) -> dict:
    """One step's parameters, checked against the checksums saved with them."""
    tree = _restore_partial(os.path.join(str(mngr.directory), str(step), "state"), abstract)
    meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    ckpt_lib.verify(tree, (meta or {}).get("checksums"))
    return tree


def _restore_partial(state_dir: str, abstract: dict) -> dict:
    """Only the leaves of ``abstract`` out of a saved TrainState, each read straight into its
    shards (orbax's partial restore: the optimizer state on disk is never loaded)."""
    ckpt_lib.check_shapes(state_dir, abstract)
    with ckpt_lib.quiet():
        return ocp.PyTreeCheckpointer().restore(state_dir, args=ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=True))
