"""Separating with a trained FlowSep pipeline: mixture waveforms + query tokens → estimates.

    sep = Separator.from_workdir(spec, workdir)         # the stage workdirs of specs/flowsep.py
    out = sep.separate(mixture [B, T], tokens [B, L], steps=10, solver="euler", cfg_scale=1.0)
    out["vocoder"], out["mixture_phase"], out["griffin_lim"]: float32 [B, T];  out["mel"]

Three ways from the estimated mel to a waveform:
  * ``vocoder``: the trained neural vocoder (``xmodal.projects.flowsep.vocoder_model``), as the paper;
  * ``mixture_phase``: the estimate's magnitude with the mixture's phase. The magnitude is the
    mixture's scaled per mel band by estimate / mixture mel power (clipped to [0, 1],
    ``MelConfig.mel_ratio_mask``), so it is phase-aligned with the reference and SDR means
    something;
  * ``vae_ratio``: as ``mixture_phase``, but the ratio is to the mixture's mel *as the VAE
    reconstructs it* (decode(encode(mixture))): the estimate is a VAE decode, so both sides of
    the ratio carry the decoder's smoothing and the ratio measures the separation, not the
    VAE's reconstruction error (chosen on training mixtures: +0.65 / +0.49 dB SDRi over
    ``mixture_phase`` for two runlocal seeds, WORKSPACE_NOTES.md);
  * ``griffin_lim``: the pseudo-inverse magnitude with Griffin-Lim phase (``data.griffin_lim``).
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.audio.griffin_lim import griffin_lim
from xmodal.core.registry import OBJECTIVES
from xmodal.projects.flowsep.vocoder_loss import vocode
from xmodal.core.registry import SpecError

RENDERERS = ("vocoder", "mixture_phase", "vae_ratio", "griffin_lim")


def render(objective, params, mel_est, mixture, *, vocoder=None, vocoder_params=None,
           gl_iters: int = 32, which: tuple = RENDERERS) -> dict:
    """Waveforms [B, T] from estimated normalised mel [B, F, M] (see the module docstring),
    for the renderers in ``which`` (``vocoder`` only when a vocoder is given)."""
    cfg, length = objective.mel, mixture.shape[-1]
    out = {"mel": mel_est}
    if "mixture_phase" in which or "vae_ratio" in which:
        mix_spec = cfg.stft(mixture)
        refs = {"mixture_phase": lambda: cfg.mel(mixture),
                "vae_ratio": lambda: objective.decode_mel(params, objective.encode(params, mixture))}
        for name in (n for n in refs if n in which):
            mask = cfg.pad_frames(cfg.mel_ratio_mask(mel_est, refs[name]()), length)
            out[name] = cfg.istft(mix_spec * mask, length)
    if "griffin_lim" in which:
        mag = cfg.pad_frames(cfg.mel_to_magnitude(mel_est), length)
        out["griffin_lim"] = griffin_lim(mag, length, cfg.n_fft, cfg.hop, iters=gl_iters)
    if "vocoder" in which and vocoder is not None:
        out["vocoder"] = vocode(vocoder, vocoder_params, mel_est, cfg, length)
    return out


class Separator:
    """A flow objective, its params (the flow network's "model" and the frozen "vae" and
    "query_encoder", as the trainer passes them) and an optional
    neural vocoder; ``separate`` runs everything jitted, one compile per (shape, settings)."""

    def __init__(self, objective, params, vocoder=None, vocoder_params=None,
                 sample_rate: int = 16000, length: int = 0, gl_iters: int = 32):
        self.objective, self.params = objective, params
        self.vocoder, self.vocoder_params = vocoder, vocoder_params
        self.sample_rate, self.length, self.gl_iters = sample_rate, length, gl_iters
        self._fns: dict = {}

    @classmethod
    def from_workdir(cls, spec, workdir: str) -> "Separator":
        """From a trained multi-stage FlowSep workdir (``workdir/<stage>``): the flow stage is
        the first that trains a ``flowsep`` objective, the vocoder the one with ``vocoder``."""
        stages = dict(spec_lib.stages_of(spec))
        flow_stage = next((n for n, s in stages.items() if s.objective.name == "flowsep"
                           and s.train.steps > 0), None)
        vocoder_stage = next((n for n, s in stages.items() if s.objective.name == "vocoder"),
                             None)
        if flow_stage is None:
            raise SpecError(f"spec has no stage training a 'flowsep' objective; stages: "
                            f"{sorted(stages)}")
        if not stages_lib.is_trained(os.path.join(workdir, flow_stage)):
            raise SpecError(f"no trained flow stage in {os.path.join(workdir, flow_stage)!r}: "
                            f"train the spec first (--mode=train)")
        flow = stages_lib.resolve_refs(stages[flow_stage], workdir)
        model = stages_lib.build_model(flow.model.to_dict())
        objective = OBJECTIVES.build(flow.objective.name,
                                     **spec_lib.component_kwargs(flow.objective))(model, None)
        # The trained network and the frozen networks it was trained with (VAE, query encoder).
        params = jax.tree.map(jnp.asarray, {
            **objective.load_frozen(), **stages_lib.load_params(os.path.join(workdir, flow_stage))})
        vocoder = vocoder_params = None
        vdir = os.path.join(workdir, vocoder_stage or "")
        if vocoder_stage in stages and stages_lib.is_trained(vdir):
            vocoder = stages_lib.build_model(stages[vocoder_stage].model.to_dict())
            vocoder_params = jax.tree.map(jnp.asarray, stages_lib.load_params(vdir)["model"])
        t = flow.data.transform
        return cls(objective, params, vocoder, vocoder_params,
                   sample_rate=int(t.get("sample_rate", 16000)), length=int(t.get("length", 0)))

    def fn(self, steps: int, solver: str, cfg_scale: float, which: tuple = RENDERERS,
           noise_scale: float = 1.0):
        """Jitted ``(params, vocoder_params, mixture, tokens, rng) -> dict of outputs``."""
        key = (steps, solver, float(cfg_scale), tuple(which), float(noise_scale))
        if key not in self._fns:
            obj, voc, iters = self.objective, self.vocoder, self.gl_iters

            def run(params, vparams, mixture, tokens, rng):
                z, _ = obj.separate_latent(params, mixture, tokens, rng, steps=steps,
                                           solver=solver, cfg_scale=cfg_scale,
                                           noise_scale=noise_scale)
                mel = obj.decode_mel(params, z)
                return render(obj, params, mel, mixture, vocoder=voc, vocoder_params=vparams,
                              gl_iters=iters, which=which)
            self._fns[key] = jax.jit(run)
        return self._fns[key]

    def separate(self, mixture, tokens, *, steps: int = 10, solver: str = "euler",
                 cfg_scale: float = 1.0, seed: int = 0, which: tuple = RENDERERS,
                 noise_scale: float = 1.0) -> dict:
        mixture = jnp.asarray(mixture, jnp.float32)
        tokens = jnp.asarray(tokens, jnp.int32)
        run = self.fn(steps, solver, cfg_scale, which, noise_scale)
        out = run(self.params, self.vocoder_params, mixture, tokens, jax.random.key(seed))
        return {k: np.asarray(v) for k, v in out.items()}

    def latency(self, mixture, tokens, steps: int, solver: str = "euler",
                cfg_scale: float = 1.0, repeats: int = 3) -> float:
        """Seconds of compute per second of separated audio (best of ``repeats``, after a
        compile run), for the path mixture → flow → VAE decoder → neural vocoder (the
        mixture-phase renderer when there is no vocoder)."""
        f = self.fn(steps, solver, cfg_scale,
                    ("vocoder",) if self.vocoder is not None else ("mixture_phase",))
        args = (self.params, self.vocoder_params, jnp.asarray(mixture, jnp.float32),
                jnp.asarray(tokens, jnp.int32), jax.random.key(0))
        jax.block_until_ready(f(*args))
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            best = min(best, time.perf_counter() - t0)
        audio_seconds = np.asarray(mixture).size / self.sample_rate
        return best / audio_seconds
