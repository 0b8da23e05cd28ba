"""FlowSep's evaluation: separate the held-out mixtures, score every system on the same
mixtures, write ONE table (``separation_table.json`` / ``.md`` in the stage workdir), the
latency per separated second vs the number of Euler steps, and spectrogram PNGs.

Rows: FlowSep with the neural vocoder, with the estimate's magnitude on the mixture's phase
(the mel ratio to the mixture, and to the VAE-decoded mixture: ``separation.render``), with
Griffin-Lim; the unprocessed mixture; the oracle ideal ratio mask (upper bound); the
discriminative text-queried mask network (the mask stage, when trained); the reference itself
(the ceiling of the embedding metrics). Columns: Fréchet distance and CLAPScore with our own
audio-text model (when its stage is trained), log-mel distance, SI-SDR and SI-SDRi.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from xmodal.audio.spectrogram_picture import save_spectrograms
from xmodal.core.registry import EVALUATORS, SpecError
from xmodal.core.eval_context import EvalContext
from xmodal.projects.flowsep.baselines import (mask_estimates, mixture_estimate,
                                                   oracle_irm, score_estimates)
from xmodal.core.stages import is_trained, load_stage
from xmodal.projects.flowsep.separator import Separator

QUERY_PREFIX = "separate the "
COLUMNS = ("fd", "clap_score", "log_mel_distance", "si_sdr", "sdri")
VAE_RATIO_ROW = "FlowSep (estimate magnitude + mixture phase, ratio to the VAE-decoded mixture)"


def labels_from_tokens(tokenizer, tokens) -> list[str]:
    out = []
    for row in tokens:
        text = tokenizer.decode(row)
        out.append(text[len(QUERY_PREFIX):] if text.startswith(QUERY_PREFIX) else text)
    return out


def markdown_table(rows: dict, notes: list[str]) -> str:
    head = "| system | Fréchet distance ↓ | CLAPScore ↑ | log-mel distance ↓ | SI-SDR (dB) ↑ | SDRi (dB) ↑ |"
    lines = [head, "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        cells = [("—" if r.get(c) is None else f"{r[c]:.3f}" if c in ("fd", "clap_score",
                  "log_mel_distance") else f"{r[c]:.2f}") for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


STUDENT_OBJECTIVES = ("dmd", "sid", "reflow")


def load_student(student_from: str, objective, params):
    """(flow objective, params, label) that separate with the one-step student trained in
    ``student_from`` (a ``dmd``/``sid``/``reflow`` stage distilling this spec's flow): the
    flow objective with the student's network, its parameters as ``model`` beside the frozen
    VAE and query encoder of ``params``."""
    stage = load_stage(student_from)
    name = stage.spec["objective"]["name"]
    if name not in STUDENT_OBJECTIVES:
        raise SpecError(f"student_from {student_from!r} trained objective {name!r}, not a "
                        f"distillation ({', '.join(STUDENT_OBJECTIVES)})")
    group = "generator" if "generator" in stage.params else "model"
    frozen = {k: v for k, v in params.items() if k != "model"}
    student_params = dict(frozen, model=jax.tree.map(jnp.asarray, stage.params[group]))
    teacher = stage.spec["objective"].get("teacher_from", "")
    label = f"{name.upper() if name != 'reflow' else 'reflow'} from {os.path.basename(teacher)}"
    return objective.with_model(stage.model), student_params, label


@EVALUATORS.register("separation")
def separation(vocoder_from: str = "", mask_from: str = "", clap_from: str = "",
               student_from: str = "", student_noise_scale: float = 1.0,
               steps: int = 10, solver: str = "euler", cfg_scale: float = 1.0,
               noise_scale: float = 1.0, extra_rows: tuple = (),
               nfe_sweep: tuple = (1, 2, 5, 10, 25), plots: int = 4, chunk: int = 32,
               latency_batch: int = 8, gl_iters: int = 32, seed: int = 0):
    """See the module docstring. ``*_from``: stage workdirs ("stage:vocoder", ...); a missing
    one drops its row/columns (said in the table's notes). ``steps`` and ``noise_scale``: the
    sampler of the main FlowSep rows (``separate_latent``; noise scale 1 = the paper's
    N(0, I)); ``extra_rows``: ``(steps, noise_scale)`` pairs for more FlowSep rows (vocoder
    and the VAE-ratio mixture-phase renderer), e.g. the paper's (10, 1.0). ``student_from``:
    a one-step student of this flow ("stage:distill"), whose rows (one network call, from
    noise of scale ``student_noise_scale``; 1 = what it was trained on) and latency join the
    same table."""
    def run(ctx: EvalContext) -> dict:
        obj = ctx.objective
        mixture = np.asarray(ctx.arrays["mixture"], np.float32)
        target = np.asarray(ctx.arrays["target"], np.float32)
        tokens = np.asarray(ctx.arrays["query"])
        sr = obj.mel.sample_rate
        vocoder = vparams = None
        notes = [f"{len(mixture)} held-out mixtures of {mixture.shape[1] / sr:.2f} s at {sr} Hz; "
                 f"FlowSep: {steps} {solver} steps, CFG scale {cfg_scale}, "
                 f"noise scale {noise_scale}, step {ctx.step}"]
        if is_trained(vocoder_from):
            voc = load_stage(vocoder_from)
            vocoder, vparams = voc.model, jax.tree.map(jnp.asarray, voc.params["model"])
        else:
            notes.append("no trained vocoder stage: the 'FlowSep (vocoder)' row is missing")
        sep = Separator(obj, ctx.params, vocoder, vparams, sample_rate=sr, gl_iters=gl_iters)

        # ---------------------------------------------------------------- separate, in chunks
        def separate_all(n_steps, which, tau=noise_scale, sep=sep, solver=solver):
            outs: dict[str, list] = {}
            for i in range(0, len(mixture), chunk):
                m, q = mixture[i:i + chunk], tokens[i:i + chunk]
                pad = chunk - len(m)
                if pad:  # one compiled shape
                    m = np.concatenate([m, np.repeat(m[-1:], pad, 0)])
                    q = np.concatenate([q, np.repeat(q[-1:], pad, 0)])
                o = sep.separate(m, q, steps=n_steps, solver=solver, cfg_scale=cfg_scale,
                                 seed=seed + i, which=which, noise_scale=tau)
                for k, v in o.items():
                    outs.setdefault(k, []).append(v[: chunk - pad])
            return {k: np.concatenate(v) for k, v in outs.items()}

        outs = separate_all(steps, ("vocoder", "mixture_phase", "vae_ratio", "griffin_lim"))
        estimates = {}
        if "vocoder" in outs:
            estimates["FlowSep (vocoder)"] = outs["vocoder"]
        estimates["FlowSep (estimate magnitude + mixture phase)"] = outs["mixture_phase"]
        estimates[VAE_RATIO_ROW] = outs["vae_ratio"]
        estimates["FlowSep (Griffin-Lim)"] = outs["griffin_lim"]
        for n, tau in extra_rows:
            n, tau = int(n), float(tau)
            tag = f"{n} {solver} step{'s' if n > 1 else ''}, noise scale {tau:g}"
            # Extra settings get the chosen mixture-phase renderer only (each row costs scoring).
            more = separate_all(n, ("vocoder", "vae_ratio"), tau)
            if "vocoder" in more:
                estimates[f"FlowSep, {tag} (vocoder)"] = more["vocoder"]
            estimates[VAE_RATIO_ROW.replace("FlowSep", f"FlowSep, {tag}")] = more["vae_ratio"]
        student_sep, short_names = None, {}
        if is_trained(student_from):
            s_obj, s_params, s_label = load_student(student_from, obj, ctx.params)
            student_sep = Separator(s_obj, s_params, vocoder, vparams, sample_rate=sr,
                                    gl_iters=gl_iters)
            more = separate_all(1, ("vocoder", "vae_ratio"), float(student_noise_scale),
                                sep=student_sep, solver="one_step")
            tag = f"one-step student ({s_label}, noise scale {student_noise_scale:g})"
            if "vocoder" in more:
                estimates[f"FlowSep {tag} (vocoder)"] = more["vocoder"]
                short_names[f"FlowSep {tag} (vocoder)"] = "student_vocoder"
            name = VAE_RATIO_ROW.replace("FlowSep", f"FlowSep {tag}")
            estimates[name] = more["vae_ratio"]
            short_names[name] = "student_mixphase_vae"
            notes.append(f"one-step student: {student_from}, one network call G(z) = x1(z, t=0)")
        elif student_from:
            notes.append("no trained one-step student stage: its rows are missing")
        estimates["mixture (unprocessed)"] = mixture_estimate(mixture)
        estimates["oracle IRM (upper bound)"] = oracle_irm(mixture, target, obj.mel.n_fft,
                                                           obj.mel.hop)
        if is_trained(mask_from):
            estimates["mask network (discriminative)"] = mask_estimates(mask_from, mixture,
                                                                        tokens, sr)
        else:
            notes.append("no trained mask network stage: its row is missing")
        estimates["reference (target)"] = target

        # ---------------------------------------------------------------- scores
        scorer = None
        if is_trained(clap_from):
            from xmodal.projects.clap.score import load_clap
            scorer = load_clap(clap_from)
            notes.append(f"Fréchet distance (fd) and CLAPScore: our audio-text model "
                         f"(specs/clap.py stage), audio resampled to {scorer.sample_rate} Hz; "
                         "CLAPScore text = 'a <queried label> playing a short phrase'")
        else:
            notes.append("no trained audio-text (CLAP) stage: Fréchet distance and CLAPScore "
                         "are missing")
        queries = [ctx.transform.tokenizer.decode(q) for q in tokens]
        rows = {}
        for name, est in estimates.items():
            est = np.nan_to_num(np.asarray(est, np.float32))
            r = score_estimates(est, target, mixture, queries, sr, scorer=scorer,
                                n_fft=obj.mel.n_fft, hop=obj.mel.hop, n_mels=64)
            if name.startswith("reference"):  # SDR of the reference with itself says nothing
                r["si_sdr"] = r["sdri"] = None
            rows[name] = r
        notes.append(f"log-mel distance: mean |log-mel difference| (natural log, 64 bands, "
                     f"n_fft {obj.mel.n_fft}, hop {obj.mel.hop}); SDRi = SI-SDR improvement "
                     "over the mixture")

        # ---------------------------------------------------------------- latency vs NFE
        latency = {}
        lb = min(latency_batch, len(mixture))
        for n in nfe_sweep:
            latency[int(n)] = sep.latency(mixture[:lb], tokens[:lb], steps=int(n), solver="euler",
                                          cfg_scale=cfg_scale)

        student_latency = None
        if student_sep is not None:
            student_latency = student_sep.latency(mixture[:lb], tokens[:lb], steps=1,
                                                  solver="one_step")

        # ---------------------------------------------------------------- files
        result = {"rows": rows, "latency_s_per_audio_s": {str(k): v for k, v in latency.items()},
                  "student_latency_s_per_audio_s": student_latency,
                  "notes": notes, "step": ctx.step, "examples": int(len(mixture)),
                  "latency_batch": lb}
        if ctx.out_dir:
            os.makedirs(ctx.out_dir, exist_ok=True)
            with open(os.path.join(ctx.out_dir, "separation_table.json"), "w") as f:
                json.dump(result, f, indent=2)
            lat = "\n".join(["| Euler steps (NFE) | s per separated s |", "|---|---|"] +
                            [f"| {k} | {v:.4f} |" for k, v in latency.items()] +
                            ([f"| one-step student (1) | {student_latency:.4f} |"]
                             if student_latency is not None else []))
            with open(os.path.join(ctx.out_dir, "separation_table.md"), "w") as f:
                f.write(markdown_table(rows, notes) + "\nLatency (flow + VAE decoder + "
                        f"vocoder, batch {lb}):\n\n" + lat + "\n")
            labels = labels_from_tokens(ctx.transform.tokenizer, tokens)
            for j in range(min(plots, len(mixture))):
                mels = [np.asarray(obj.mel.mel(mixture[j:j + 1]))[0],
                        np.asarray(obj.mel.mel(target[j:j + 1]))[0], outs["mel"][j]]
                save_spectrograms(os.path.join(ctx.out_dir, f"spectrogram_{j}.png"), mels,
                                  [f"mixture (query: {labels[j]})", "target",
                                   "FlowSep estimate (VAE-decoded mel)"])
        flat = {}
        short = {"FlowSep (vocoder)": "flowsep_vocoder",
                 "FlowSep (estimate magnitude + mixture phase)": "flowsep_mixphase",
                 VAE_RATIO_ROW: "flowsep_mixphase_vae",
                 "FlowSep (Griffin-Lim)": "flowsep_griffinlim", "mixture (unprocessed)": "mixture",
                 "oracle IRM (upper bound)": "oracle_irm",
                 "mask network (discriminative)": "mask_network",
                 "reference (target)": "reference", **short_names}
        for name, r in rows.items():
            key = short.get(name) or "".join(c if c.isalnum() else "_" for c in name.lower())
            for k, v in r.items():
                if v is not None:
                    flat[f"{key}/{k}"] = v
        for k, v in latency.items():
            flat[f"latency_nfe{k}"] = v
        if student_latency is not None:
            flat["latency_student"] = student_latency
        return flat
    return run
