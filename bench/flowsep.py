"""FlowSep speed: the flow stage's training steps/s and MFU, and separation latency vs NFE;
with ``--ablate_workdir`` instead, separation quality vs steps, solver, CFG scale and noise
scale (sampling temperature).

    python bench/flowsep.py --spec=specs/flowsep.py:runlocal [--steps=20] [--out=bench/x.json]
    python bench/flowsep.py --spec=specs/flowsep.py:runlocal --ablate_workdir=W --examples=128
    python bench/flowsep.py --spec=specs/flowsep.py:runlocal --ablate_workdir=W --split=test

The flow stage of the spec is built by the trainer (``trainer.build``) with an untrained VAE of
the VAE stage's architecture in place of ``vae_from`` (speed does not depend on the weights), and
its bare compiled step is timed on one device-resident batch (best of 3 windows, the machine may
be shared). MFU = XLA's FLOPs per step / step time / a measured matmul peak
(``xmodal.core.flops``). Latency: seconds of compute per second of separated audio for the path
mixture → Euler steps of the flow (NFE = steps, CFG off) → VAE decoder → neural vocoder
(untrained, same architecture), batch ``--latency_batch``, for NFE in 1, 2, 5, 10, 25.
"""
from __future__ import annotations

import json
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from xmodal.core import flops
from xmodal.core import parallel
from xmodal.core import spec as spec_lib
from xmodal.audio.mel import MelConfig

_SPEC = config_flags.DEFINE_config_file("spec", None, "spec file, path[:arg]", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "timed steps per window")
_LAT_BATCH = flags.DEFINE_integer("latency_batch", 8, "mixtures per separation call")
_OUT = flags.DEFINE_string("out", "", "also write the numbers as JSON here")
_ABLATE = flags.DEFINE_string(
    "ablate_workdir", "", "a trained FlowSep workdir: instead of timing, measure separation "
    "quality on held-out mixtures vs Euler steps, solver, CFG scale and noise scale")
_EXAMPLES = flags.DEFINE_integer("examples", 128, "held-out mixtures for --ablate_workdir")
_SPLIT = flags.DEFINE_string("split", "dev", "split for --ablate_workdir: 'dev' (lass_mix "
                             "1.1.0: drawn like test, other seeds), where sampler and renderer "
                             "settings are chosen; 'test' or 'train' to read those")

WINDOWS = 3
NFES = (1, 2, 5, 10, 25)


def _stage(spec, objective_name):
    return next((n, s) for n, s in spec_lib.stages_of(spec) if s.objective.name == objective_name)


def ablate(spec, workdir: str) -> dict:
    """Log-mel distance and mixture-phase SI-SDRi (mean over ``--examples`` held-out mixtures)
    of the trained FlowSep in ``workdir`` for several sampler settings."""
    from xmodal.core import datasets as sources
    from xmodal.core.registry import TRANSFORMS
    from xmodal.evaluate.separation import log_mel_distance, sdr_improvement
    from xmodal.projects.flowsep.separator import Separator

    sep = Separator.from_workdir(spec, workdir)
    _, flow = _stage(spec, "flowsep")
    t = TRANSFORMS.build(flow.data.transform.name,
                         **spec_lib.component_kwargs(flow.data.transform))
    split = _SPLIT.value
    src = sources.data_source(flow.data.name, split, flow.data.data_dir or None)
    ex = [t.map(src[i]) for i in range(min(_EXAMPLES.value, len(src)))]
    mix = np.stack([e["mixture"] for e in ex])
    tgt = np.stack([e["target"] for e in ex])
    tok = np.stack([e["query"] for e in ex])
    cfg = sep.objective.mel
    settings = [dict(steps=n, solver="euler", cfg_scale=1.0) for n in NFES]
    settings += [dict(steps=5, solver="midpoint", cfg_scale=1.0),
                 dict(steps=5, solver="heun", cfg_scale=1.0)]
    settings += [dict(steps=10, solver="euler", cfg_scale=w) for w in (0.0, 2.0, 3.0)]
    settings += [dict(steps=10, solver="euler", cfg_scale=1.0, noise_scale=tau)
                 for tau in (0.7, 0.5, 0.3, 0.1, 0.0)]
    # Steps at the chosen temperature (specs/flowsep.py NOISE_SCALE, SAMPLE_STEPS).
    settings += [dict(steps=n, solver="euler", cfg_scale=1.0, noise_scale=0.1) for n in (1, 2, 5)]
    rows = []
    for s in settings:
        outs = {"mixture_phase": [], "vae_ratio": [], "vocoder": []}
        for i in range(0, len(mix), 32):
            o = sep.separate(mix[i:i + 32], tok[i:i + 32], seed=i,
                             which=("vocoder", "mixture_phase", "vae_ratio"), **s)
            for k in outs:
                if k in o:
                    outs[k].append(o[k])
        row = dict(s)
        for k, v in outs.items():
            if not v:
                continue
            est = np.nan_to_num(np.concatenate(v))
            row[f"{k}_log_mel_distance"] = float(np.mean(log_mel_distance(
                est, tgt, cfg.sample_rate, n_mels=64, n_fft=cfg.n_fft, hop=cfg.hop)))
            row[f"{k}_sdri"] = float(np.mean(sdr_improvement(est, tgt, mix)))
        rows.append(row)
        print(row, flush=True)
    mixture = {"log_mel_distance": float(np.mean(log_mel_distance(
        mix, tgt, cfg.sample_rate, n_mels=64, n_fft=cfg.n_fft, hop=cfg.hop)))}
    return {"workdir": workdir, "split": split, "examples": len(mix), "mixture": mixture, "rows": rows}


def main(_):
    from xmodal.core import trainer
    if _ABLATE.value:
        out = ablate(spec_lib.validate(_SPEC.value), _ABLATE.value)
        if _OUT.value:
            with open(_OUT.value, "w") as f:
                json.dump(out, f, indent=2)
        return
    from xmodal.core.stages import build_model
    from xmodal.projects.flowsep.separator import Separator

    full = spec_lib.validate(_SPEC.value)
    _, vae = _stage(full, "mel_vae")
    _, voc = _stage(full, "vocoder")
    flow_name, flow = _stage(full, "flowsep")
    raw = mlc.ConfigDict(flow.to_dict())
    raw.objective.vae_from = ""
    raw.objective.vae = spec_lib.component_kwargs(vae.model)
    raw.objective.mel = dict(vae.objective.mel)
    raw.evals = {}
    raw.train.steps = 10 ** 6
    raw.train.ckpt_every = 10 ** 9
    raw.init_from = ""
    spec = spec_lib.validate(raw)
    n = _STEPS.value
    out = {"spec": "flowsep/" + flow_name, "model": spec.model.name,
           "device": jax.devices()[0].device_kind, "devices": jax.device_count(),
           "batch": spec.data.batch_size}
    with tempfile.TemporaryDirectory() as workdir:
        setup = trainer.build(spec, workdir)
        with jax.set_mesh(setup.mesh):
            compiled = setup.step_fn.lower(setup.state, setup.batch_spec).compile()
        step_flops = flops.compiled_flops(compiled)
        batch = parallel.global_batch(next(setup.train_iter), setup.mesh)
        state, m = compiled(setup.state, batch)
        jax.block_until_ready(m)
        best = float("inf")
        for _ in range(WINDOWS):
            t = time.perf_counter()
            for _ in range(n):
                state, m = compiled(state, batch)
            jax.block_until_ready(m)
            best = min(best, (time.perf_counter() - t) / n)
        peak = flops.measured_peak() * (1 if jax.default_backend() == "cpu" else
                                        jax.device_count())
        out.update({"train_steps_per_s": 1 / best,
                    "train_examples_per_s": spec.data.batch_size / best,
                    "step_gflops": step_flops / 1e9, "peak_tflops": peak / 1e12,
                    "mfu_pct": 100 * step_flops / best / peak})

        # Latency vs NFE on mixtures of the eval split.
        vocoder = build_model(voc.model.to_dict())
        arrays = {k: v[:_LAT_BATCH.value] for k, v in batch.items()}
        mix = np.asarray(jax.device_get(arrays["mixture"]))
        toks = np.asarray(jax.device_get(arrays["query"]))
        mel = MelConfig(**dict(vae.objective.mel)).mel(jnp.asarray(mix))
        vparams = vocoder.init(jax.random.key(0), mel)["params"]
        sep = Separator(_objective(setup), {**state.frozen, **state.params}, vocoder, vparams,
                        sample_rate=int(spec.data.transform.sample_rate))
        out["latency_batch"] = len(mix)
        out["clip_seconds"] = mix.shape[1] / sep.sample_rate
        out["latency_s_per_audio_s"] = {str(k): sep.latency(mix, toks, steps=k) for k in NFES}
    for k, v in out.items():
        print(f"{k:<22}  {v:.4g}" if isinstance(v, float) else f"{k:<22}  {v}")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(out, f, indent=2)


def _objective(setup):
    # The trainer keeps its bound objective inside the step closure; build an identical one.
    from xmodal.core.registry import MODELS
    from xmodal.core.precision import Policy
    from xmodal.core.registry import OBJECTIVES
    s = setup.spec
    policy = Policy.from_mapping(s.precision)
    model = MODELS.build(s.model.name, dtype=policy.compute_dtype, param_dtype=policy.param_dtype,
                         **spec_lib.component_kwargs(s.model))
    return OBJECTIVES.build(s.objective.name, **spec_lib.component_kwargs(s.objective))(
        model, setup.mesh)


if __name__ == "__main__":
    flags.mark_flags_as_required(["spec"])
    app.run(main)
