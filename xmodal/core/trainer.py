"""One generic training loop, read top to bottom in phases.

mesh → data → model + objective → sharded state → restore → step fn → evals → loop.
Contrastive, flow and distillation runs share it: family-specific behaviour lives in the
objective (what is minimised, per parameter group) and the evaluators (what is measured).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from absl import logging

from xmodal.core import checkpoint as ckpt_lib
from xmodal.core import compilation_cache
from xmodal.core import flops
from xmodal.core import optim
from xmodal.core import parallel
from xmodal.core import run_io
from xmodal.core import spec as spec_lib
from xmodal.core import step as step_lib
from xmodal.core import objective as objective_lib
from xmodal.core import stages as stages_lib
from xmodal.core import train_state as ts
from xmodal.core import input as pipeline
from xmodal.core import datasets as sources
from xmodal.core import evaluation as eval_lib
from xmodal.core.registry import SpecError
from xmodal.core.writers import MetricWriter


def run(spec: mlc.ConfigDict, workdir: str, mode: str = "train", until_step: int = 0,
        only: tuple = ()) -> dict:
    """Runs every stage of ``spec`` in order (``workdir/<stage>`` each), or only the stages
    named in ``only`` (still in the spec's order; e.g. retrain one stage of a pipeline whose
    earlier stages are done); returns final metrics."""
    stages = spec_lib.stages_of(spec)
    names = [n for n, _ in stages]
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise SpecError(f"no stage {unknown} in this spec; its stages: {names}")
    chosen = [(n, s) for n, s in stages if not only or n in only]
    # Multi-process JAX starts before anything asks for a device (process_index below).
    if chosen:
        parallel.init_distributed(chosen[0][1].distributed)
    # Every dataset of every stage that will run is checked before the first stage starts: a
    # missing package fails now, in one line with its install command, not after hours.
    for _, stage in chosen:
        for data in (stage.data, *stage.data.mix.values()):
            sources.check_installed(data.name)
    if jax.process_index() == 0 and len(stages) > 1:
        print(f"{len(chosen)} of {len(stages)} stages in {workdir}: " + ", ".join(
            f"{n} ({s.train.steps} steps)" for n, s in chosen), flush=True)
    created = not os.path.exists(workdir)
    results = {}
    try:
        run_io.check_writable(workdir)
        with run_io.WorkdirLock(workdir, jax.process_index()), \
                run_io.log_to_workdir(workdir, jax.process_index()):
            for i, (name, stage) in enumerate(chosen):
                stage_dir = os.path.join(workdir, name) if name else workdir
                stage = stages_lib.resolve_refs(stage, workdir)
                later = run_io.LaterStages.of([(n, s.train.steps, os.path.join(workdir, n))
                                               for n, s in chosen[i + 1:]])
                results[name or "main"] = run_stage(stage, stage_dir, mode=mode,
                                                    until_step=until_step, later=later)
    except BaseException:
        # A start that failed before any checkpoint was committed leaves nothing behind.
        if created and jax.process_index() == 0 and not _has_checkpoint(workdir):
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    return results


def _has_checkpoint(workdir: str) -> bool:
    for root, dirs, _ in os.walk(workdir):
        if os.path.basename(root) == "checkpoints" and any(d.isdigit() for d in dirs):
            return True
    return False


@dataclasses.dataclass
class Setup:
    """Everything the loop needs, built once by ``build``; also what the benchmarks time."""
    spec: mlc.ConfigDict
    workdir: str
    mesh: Any
    loader: Any
    train_iter: Any
    state: ts.TrainState
    batch_spec: dict
    step_fn: Any                 # jitted train step (state, global batch) -> (state, metrics)
    evaluate: eval_lib.Evaluation  # state -> {"eval/...": value}; false when there are none
    mngr: Any
    writer: MetricWriter
    start: int
    source: str = "scratch"      # where the state came from (checkpoint, resume, init_from)
    objective: Any = None        # the built objective (what benchmarks sample with)


def run_stage(spec: mlc.ConfigDict, workdir: str, mode: str = "train", until_step: int = 0,
              later: run_io.LaterStages | None = None) -> dict:
    # A stage with train.steps = 0 only evaluates (e.g. the eval stage of a pipeline).
    if mode == "eval" or spec.train.steps == 0:
        return eval_lib.run(spec, workdir)
    setup = build(spec, workdir)
    try:
        return train(setup, until_step, later)
    finally:
        # On any exit, an error's too: stops grain's workers and frees their shared memory.
        if hasattr(setup.train_iter, "close"):
            setup.train_iter.close()


def build(spec: mlc.ConfigDict, workdir: str) -> Setup:
    """Phases mesh → data → model + objective → sharded state → restore → step fn → evals."""
    # ---------------------------------------------------------------- workdir and processes
    run_io.check_writable(workdir)
    parallel.init_distributed(spec.distributed)
    pid, nproc = jax.process_index(), jax.process_count()

    # ---------------------------------------------------------------- mesh
    mesh = parallel.make_mesh(spec.mesh)
    check_batch_size(spec, mesh)
    logging.info("mesh %s over %d devices, %d process(es)", dict(mesh.shape), mesh.size, nproc)

    # ---------------------------------------------------------------- data
    data = eval_lib.load_data(spec)
    transform, train_source = data.transform, data.train_source
    # data.cache_raw: each training source read once into memory.
    held = pipeline.InMemory if spec.data.cache_raw else (lambda source: source)
    loader_args = dict(global_batch_size=spec.data.batch_size, seed=spec.seed, shard_index=pid,
                       shard_count=nproc, worker_count=spec.data.num_workers)
    if spec.data.mix:
        loader = pipeline.mixture_loader(
            [pipeline.Part(held(data.train_sources[k]), data.transforms[k], float(d.weight),
                           getattr(data.transforms[k], "augment", None))
             for k, d in data.named.items()],
            **loader_args)
    else:
        # Kept apart from the mixture so single-source runs (and their saved iterator
        # states) see exactly the batches they always did.
        loader = pipeline.train_loader(held(train_source), transform,
                                       augment=getattr(transform, "augment", None),
                                       **loader_args)
    train_iter = iter(loader)
    # ---------------------------------------------------------------- model + objective
    # Shapes come from one transformed record, so the stream itself is not advanced.
    parts = step_parts(spec, mesh, data.example())
    model, objective, batch_spec = parts.model, parts.objective, parts.batch_spec
    frozen_host, ema = parts.frozen_host, parts.ema
    init_state, init_rng = parts.init_state, parts.init_rng
    abstract_state, state_shardings = parts.abstract_state, parts.state_shardings

    # ---------------------------------------------------------------- restore
    mngr = ckpt_lib.manager(workdir, spec.train.keep_ckpts)
    state, source = None, "scratch"
    try:
        state, step = ckpt_lib.restore_newest(
            mngr, lambda s: ckpt_lib.restore(mngr, s, abstract_state, train_iter))
    except Exception:
        # Closed now, while its worker processes' queues are open: left to the interpreter's
        # exit, grain's finalizers print pages of "handle is closed" tracebacks and leak
        # shared memory under the one line that says why the run stopped.
        train_iter.close()
        raise
    if state is not None:
        source = f"workdir checkpoint {step}"
    elif spec.resume:
        root, step = ckpt_lib.find_step_dir(spec.resume)
        other = ckpt_lib.manager(os.path.dirname(root), keep=spec.train.keep_ckpts)
        state = ckpt_lib.restore(other, step, abstract_state, train_iter)
        other.close()
        source = f"resume {root}/{step}"
    if state is None:
        # Frozen arrays go in as sharded arguments (each device gets only its shard), not as
        # constants baked into the init program.
        frozen = parallel.place(frozen_host, state_shardings.frozen)
        with jax.set_mesh(mesh):
            init = jax.jit(init_state, out_shardings=state_shardings).lower(init_rng, frozen)
            state = init.compile(compilation_cache.for_one_call())(init_rng, frozen)
        if spec.init_from:
            params = ckpt_lib.restore_params(spec.init_from, abstract_state.params)
            state = state.replace(params=params,
                                  ema=jax.tree.map(jnp.copy, params) if ema else {})
            source = f"init_from {spec.init_from}"
    start = int(jax.device_get(state.step))
    logging.info("train state from %s at step %d", source, start)
    if pid == 0:
        run_io.truncate_metrics(workdir, start)
        spec_lib.write_json(spec, workdir)
    writer = MetricWriter(workdir)

    # ---------------------------------------------------------------- step function
    step_fn = parts.jitted_step()

    # ---------------------------------------------------------------- evals
    evaluate = eval_lib.Evaluation(spec, workdir, mesh, model, objective, data)
    return Setup(spec, workdir, mesh, loader, train_iter, state, batch_spec, step_fn, evaluate,
                 mngr, writer, start, source, objective)


def check_batch_size(spec: mlc.ConfigDict, mesh) -> None:
    """The global batch splits evenly over the mesh's batch devices and the micro-batches."""
    n_batch_dev = parallel.batch_size_per_device(mesh)
    if spec.data.batch_size % (n_batch_dev * spec.optim.grad_accum):
        raise SpecError(f"data.batch_size={spec.data.batch_size} must divide by the batch "
                        f"devices ({n_batch_dev}) × optim.grad_accum ({spec.optim.grad_accum})")


@dataclasses.dataclass
class StepParts:
    """What the train step is made of, abstractly (no parameter materialised): built by
    ``step_parts`` for the trainer, and for ``--mode=compile`` on a mesh of devices that are
    not here (``xmodal.core.compile``)."""
    mesh: Any
    model: Any
    objective: Any
    batch_spec: dict            # ShapeDtypeStruct per batch field, batch-sharded
    frozen_host: Any            # the frozen networks, host numpy
    ema: bool
    init_state: Any             # (rng, frozen) -> TrainState
    init_rng: Any
    abstract_state: Any         # ShapeDtypeStructs with their shardings
    state_shardings: Any
    train_step: Any             # the pure step (state, batch) -> (state, metrics)

    def jitted_step(self):
        """The step, jitted with the state's and the batch's shardings, the state donated."""
        return jax.jit(self.train_step, donate_argnums=(0,),
                       in_shardings=(self.state_shardings, parallel.batch_sharding(self.mesh)),
                       out_shardings=(self.state_shardings, parallel.replicated(self.mesh)))


def step_parts(spec: mlc.ConfigDict, mesh, example: dict) -> StepParts:
    """Model, objective, optimizers, abstract sharded state and the step, from the spec, a mesh
    and one transformed example (its fields' shapes and dtypes)."""
    model, objective = objective_lib.build(spec, mesh)

    # ---------------------------------------------------------------- sharded train state
    batch_spec = {k: jax.ShapeDtypeStruct((spec.data.batch_size,) + np.shape(v), np.asarray(v).dtype,
                                          sharding=parallel.batch_sharding(mesh))
                  for k, v in example.items()}
    rng = jax.random.key(spec.seed)
    init_rng, state_rng = jax.random.split(rng)
    # Frozen networks (teachers, VAEs, query encoders) through the stage API, on the host.
    frozen_host = objective_lib.load_frozen(objective)
    abstract_frozen = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype),
                                   frozen_host)
    abstract_params = jax.eval_shape(
        lambda r, b, f: objective_lib.init(objective, r, b, f), init_rng, batch_spec,
        abstract_frozen)
    total = spec.train.steps
    txs, schedules = {}, {}
    group_lr = {g: float(m) for g, m in spec.optim.group_lr}
    if set(group_lr) - set(objective.groups):
        raise SpecError(f"optim.group_lr names {sorted(set(group_lr) - set(objective.groups))}; "
                        f"the objective's parameter groups: {list(objective.groups)}")
    for g in objective.groups:
        # A group updated every k-th step runs its schedule (and warmup) over its own updates.
        every, _ = objective_lib.cadence_of(objective, g)
        cfg = dict(spec.optim.to_dict(), warmup_steps=-(-spec.optim.warmup_steps // every),
                   lr=spec.optim.lr * group_lr.get(g, 1.0))
        txs[g], schedules[g] = optim.make(cfg, abstract_params[g],
                                          objective_lib.updates_in(objective, g, total))
    ema = spec.train.ema_decay > 0

    def create(params, frozen):
        return ts.create(params, txs, state_rng, ema, frozen, objective_lib.init_state(objective))

    def init_state(r, frozen):
        zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in batch_spec.items()}
        return create(objective_lib.init(objective, r, zeros, frozen), frozen)

    # From the abstract parameters: the optimizer's state traced, not the model's init again.
    abstract_state = jax.eval_shape(create, abstract_params, abstract_frozen)
    state_shardings = parallel.tree_shardings(mesh, spec.sharding.rules, abstract_state)
    abstract_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract_state, state_shardings)
    train_step = step_lib.make_train_step(
        objective, txs, schedules, accum=spec.optim.grad_accum, ema_decay=spec.train.ema_decay,
        logical_axis_rules=tuple(tuple(r) for r in spec.sharding.logical_axis_rules))
    return StepParts(mesh, model, objective, batch_spec, frozen_host, ema, init_state, init_rng,
                     abstract_state, state_shardings, train_step)


def train(setup: Setup, until_step: int = 0, later: run_io.LaterStages | None = None) -> dict:
    """The loop: step, log, evaluate, checkpoint; stops at the end, at until_step or on SIGTERM.
    ``later``: what the invocation's later stages still need (the progress line's run ETA)."""
    spec, workdir, state, train_iter = setup.spec, setup.workdir, setup.state, setup.train_iter
    mesh, mngr, writer, evaluate = setup.mesh, setup.mngr, setup.writer, setup.evaluate
    pid, start, total = jax.process_index(), setup.start, spec.train.steps
    # ---------------------------------------------------------------- loop
    stop_at = min(until_step, total) if until_step else total
    sigterm = run_io.SigtermFlag()
    if pid == 0:
        print(describe(setup, stop_at), flush=True)
    compiled, step_flops = None, 0.0
    if start < stop_at:
        # A stage restored at its last step (a resumed multi-stage run, a sweep re-reading a
        # finished point) has nothing to train: no compile (up to a minute on a CPU per stage).
        if pid == 0:
            print("compiling the train step ...", end=" ", flush=True)
        t0 = time.perf_counter()
        with jax.set_mesh(mesh):
            compiled = setup.step_fn.lower(state, setup.batch_spec).compile()
        if pid == 0:
            print(f"done in {time.perf_counter() - t0:.0f} s", flush=True)
        step_flops = flops.compiled_flops(compiled)
    # Fake CPU devices share one processor, so the CPU peak is counted once, not per device.
    peak = flops.measured_peak() * (1 if jax.default_backend() == "cpu" else jax.device_count())
    meter = run_io.Progress(start, stop_at, spec.data.batch_size, step_flops, peak,
                            later=later)
    def say(step: int, values: dict) -> None:
        print(meter.line(step, values, first=step == start + 1), flush=True)
        hint = meter.cpu_hint(values["perf/eta_s"], jax.default_backend())
        if hint:
            print(hint, flush=True)

    preempted = False
    pending = None          # previous step's metrics, checked one step late to keep dispatch async
    final = {}
    step = start
    while step < stop_at:
        local = next(train_iter)
        batch = parallel.global_batch(local, mesh)
        state, metrics = compiled(state, batch)
        step += 1
        if step == start + 1:  # one sync, so the meter's rates leave out the pipeline start
            jax.block_until_ready(metrics)
            meter.warmed_up(step)
        if pending is not None:
            run_io.check_finite(*pending, enabled=spec.train.check_finite)
        pending = (step, metrics)
        logged = step % spec.train.log_every == 0 or step == stop_at
        if not logged and pid == 0 and (step == start + 1
                                         or meter.due(spec.train.progress_every_s)):
            # A sign of life between the logged steps: the first step at once, then a line
            # every progress_every_s; on the console only, so metrics.jsonl keeps its rows.
            host = {k: float(v) for k, v in jax.device_get(metrics).items()
                    if k != run_io.FINITE}
            say(step, {**host, **meter.rates(step)})
        if logged:
            run_io.check_finite(step, metrics, enabled=spec.train.check_finite)
            host = {k: float(v) for k, v in jax.device_get(metrics).items()
                    if k != run_io.FINITE}
            host.update(meter.update(step))
            writer.write(step, host)
            if pid == 0:
                say(step, host)
            else:  # other processes' view of the same (global) numbers, on their stderr
                print(f"process {pid}: {meter.line(step, host, first=step == start + 1)}",
                      file=sys.stderr, flush=True)
        is_last = step == stop_at
        if (spec.train.eval_every and step % spec.train.eval_every == 0) or is_last:
            if setup.evaluate:
                final = evaluate(state)
                writer.write(step, final)
                meter.pause()
        preempted = sigterm.any_process()
        if step % spec.train.ckpt_every == 0 or is_last or preempted:
            # Never save a non-finite state: check this step now, not one step late.
            run_io.check_finite(step, metrics, enabled=spec.train.check_finite)
            ckpt_lib.save(mngr, step, state, train_iter,
                          {"step": step, "stage": os.path.basename(workdir)}, force=True)
        if preempted:   # said once, by the Preempted raised below
            break
    if pending is not None:
        run_io.check_finite(*pending, enabled=spec.train.check_finite)
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
    sigterm.restore()
    if step == total:  # the trained state (setup.state was donated)
        eval_lib.write_stage_outputs(setup.evaluate, state, workdir)
    if preempted:
        raise run_io.Preempted(f"SIGTERM: checkpoint saved at step {step} in {workdir}; the "
                               "same command resumes there")
    if pid == 0 and final:
        run_io.print_table(final, f"final metrics at step {step}", setup.evaluate.chance)
    if pid == 0:
        sheets = ", sheets/" if os.path.isdir(os.path.join(workdir, "sheets")) else ""
        print(f"outputs in {os.path.abspath(workdir)}: metrics.jsonl, tb/, checkpoints/, "
              f"spec.json{sheets}", flush=True)
    return final


def describe(setup: Setup, stop_at: int) -> str:
    """One line saying what is about to train, before the long part starts."""
    spec, state = setup.spec, setup.state
    count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))  # noqa: E731
    frozen = count(state.frozen)
    return (f"training {spec.model.name} with objective {spec.objective.name}: "
            f"{_millions(count(state.params))} trained parameters"
            + (f" + {_millions(frozen)} frozen" if frozen else "")
            + f", steps {setup.start}→{stop_at} of {spec.train.steps}, batch "
            f"{spec.data.batch_size}, mesh {dict(setup.mesh.shape)}, from {setup.source}, "
            f"workdir {setup.workdir}")


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 10_000 else f"{n:,}"
