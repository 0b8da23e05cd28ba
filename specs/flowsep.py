"""FlowSep (Yuan et al. 2024): language-queried separation by rectified flow in a mel-VAE latent.

    python -m xmodal.main --spec=specs/flowsep.py:runlocal --workdir=/work/runs/flowsep
    python -m xmodal.main --spec=specs/flowsep.py:runlocal --workdir=/work/runs/flowsep \
        --mode=separate --input=in.wav --query="separate the violin" --out=out.wav

Stages, in this order (the spec's ``order``), each in ``<workdir>/<stage>``:
  vae      2-D conv VAE over the normalised log-mel (targets and mixtures of lass_mix)
  clap     specs/clap.py: the audio-text model for Fréchet distance and CLAPScore (and, with
           ``query=clap``, the flow's frozen query encoder)
  flow     rectified flow (CondOT, sigma_min 1e-4) in the frozen VAE latent; the mixture latent as
           extra channels, the query by cross-attention; CFG drop 0.1
  distill  DMD2 (``xmodal.distill.dmd``): the flow as frozen teacher, a one-step separator
           started from it, a fake score updated 5 times per generator update, DMD1's
           regression to the teacher's 10-step output (weight 0.25) on a quarter of each batch
  vocoder  mel → STFT magnitude + phase → iSTFT, multi-resolution STFT loss
  mask     specs/text_mask_sep.py: the discriminative text-queried mask network (baseline)
  eval     train.steps = 0: separates the held-out mixtures (test soundfont FluidR3) and writes
           one table (separation_table.{json,md}) and spectrogram PNGs into <workdir>/eval

Arguments: ``runlocal`` (2.05 s at 8 kHz, small models; all six stages took 17–19 min on a
quiet 2-core CPU, the flow stage 7.4–8.6 of them),
``data=<lass_mix config>`` (e.g. ``lass_mix/tiny``), ``model=unet|dit``, ``tiny`` (2-step smoke
test sizes), ``steps=N`` (flow stage steps), ``eval_examples=N`` (0 = the whole test split),
``mask=false`` / ``clap=false`` / ``distill=false`` (leave out those stages and their table
entries), ``distill_steps=N``,
``noise_scale=S`` and ``sample_steps=N`` (sampling temperature and Euler steps of the table and
of --mode=separate; the paper's 1 and 10 are always reported too), ``prediction=velocity|x1``, ``time_sampler=uniform|logit_normal|shifted``,
``query=own|clap`` (the flow's query encoder: a byte Transformer trained with it, or the clap
stage's frozen text tower, as the paper's frozen FLAN-T5), ``remix=P`` (dynamic mixing of the
flow's training mixtures, ``xmodal.audio.remix``). WORKSPACE_NOTES.md has what each measured.
"""
import os

import ml_collections

from xmodal.core.spec import base, parse_arg, sibling

HERE = os.path.dirname(os.path.abspath(__file__))
VAE, FLOW, DISTILL, VOCODER, MASK, CLAP, EVAL = ("vae", "flow", "distill", "vocoder", "mask",
                                                  "clap", "eval")
# CLAP before the flow: its frozen text tower embeds the flow's queries (``query=clap``).
ORDER = (VAE, CLAP, FLOW, DISTILL, VOCODER, MASK, EVAL)
QUERIES = ("own", "clap")
# Sampling temperature of the separation (x0 ~ N(0, NOISE_SCALE²)); the paper samples at 1,
# which is also always reported. See WORKSPACE_NOTES.md for how this value was chosen.
NOISE_SCALE = 0.1
# Euler steps of the table and of --mode=separate, chosen on training mixtures like NOISE_SCALE
# (the paper's 10 is always a row too).
SAMPLE_STEPS = 2
# Dynamic mixing (``remix=P``): the borrowed interference's gain is drawn in ±REMIX_GAIN_DB.
REMIX_GAIN_DB = 3.0


def _stage(a, data, transform, batch, steps, lr):
    c = base()
    c.data.name = data
    c.data.transform = dict(transform)
    c.data.batch_size = batch
    c.data.num_workers = 0 if a.runlocal or a.tiny else 2
    c.data.eval_max_examples = a.eval_examples or 0
    c.optim.lr = lr
    c.optim.weight_decay = 0.0
    c.optim.warmup_steps = min(100, max(steps // 10, 0))
    c.train.steps = steps
    c.train.log_every = max(1, min(50, steps))
    c.train.eval_every = 0
    c.train.ckpt_every = max(steps, 1)
    c.train.keep_ckpts = 1
    c.precision.compute_dtype = "float32"
    return c


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, data="lass_mix", model="unet", steps=0,
                  eval_examples=0, mask=True, clap=True, prediction="velocity",
                  time_sampler="uniform", noise_scale=NOISE_SCALE, query="own", remix=0.0,
                  sample_steps=SAMPLE_STEPS, distill=True, distill_steps=0)
    if a.query not in QUERIES:
        raise ValueError(f"flowsep query={a.query!r}: one of {', '.join(QUERIES)}")
    if a.query == "clap" and not a.clap:
        raise ValueError("flowsep query=clap reads the clap stage's text tower: drop clap=false")
    if a.runlocal or a.tiny:
        sr, length = 8000, 16384                      # 2.05 s at 8 kHz
        mel = dict(sample_rate=sr, n_fft=512, hop=256, n_mels=64)   # 64 frames × 64 bands
    else:
        sr, length = 16000, 64000                     # the full 4 s at 16 kHz
        mel = dict(sample_rate=sr, n_fft=1024, hop=160, n_mels=64)
    transform = dict(name="separation", sample_rate=sr, source_rate=16000, length=length,
                     max_text_len=48)
    tiny = a.tiny
    batch = 8 if tiny else (32 if a.runlocal else 64)
    # runlocal: all six stages in ~20 minutes on 2 CPU cores (times in WORKSPACE_NOTES.md).
    vae_steps = 2 if tiny else (300 if a.runlocal else 20_000)
    flow_steps = a.steps or (2 if tiny else (1000 if a.runlocal else 100_000))
    voc_steps = 2 if tiny else (200 if a.runlocal else 20_000)

    vae = _stage(a, a.data, transform, batch, vae_steps, 2e-3 if a.runlocal else 1e-3)
    vae.model = dict(name="mel_vae", latent_channels=8,
                     widths=(8, 16) if tiny else ((16, 32) if a.runlocal else (64, 128)))
    vae.objective = dict(name="mel_vae", kl_weight=1e-4, mel=mel)
    vae.evals = dict(vae=dict(name="mel_vae"))

    if a.model == "dit":
        net = dict(name="dit", patch=2, width=32 if tiny else (128 if a.runlocal else 384),
                   depth=1 if tiny else (4 if a.runlocal else 12), num_heads=4,
                   text_width=32 if tiny else 128, text_depth=1 if tiny else 2)
    else:
        net = dict(name="unet", widths=(16, 32) if tiny else ((64, 128) if a.runlocal else
                                                              (128, 256, 512)),
                   num_heads=4, text_width=32 if tiny else 128, text_depth=1 if tiny else 2)
    flow_objective = dict(name="flowsep", vae_from="stage:" + VAE, cfg_drop=0.1, sigma_min=1e-4,
                          max_text_len=48, prediction=a.prediction, time_sampler=a.time_sampler,
                          query_from="stage:" + CLAP if a.query == "clap" else "",
                          remix=float(a.remix), remix_gain_db=REMIX_GAIN_DB)
    flow = _stage(a, a.data, transform, batch, flow_steps, 1e-3 if a.runlocal else 3e-4)
    flow.model = dict(net)
    flow.objective = dict(flow_objective)
    flow.train.ema_decay = 0.0 if (a.runlocal or tiny) else 0.999

    voc = _stage(a, a.data, transform, batch // 2 if not tiny else batch, voc_steps, 2e-3)
    voc.model = dict(name="mel_vocoder", n_fft=mel["n_fft"],
                     width=32 if tiny else (128 if a.runlocal else 256), depth=1 if tiny else 4)
    res = ((128, 32), (256, 64), (512, 128)) if (a.runlocal or tiny) else (
        (512, 128), (1024, 256), (2048, 512))
    voc.objective = dict(name="vocoder", mel=mel, resolutions=res, mel_weight=1.0)

    stages = {VAE: vae, FLOW: flow, VOCODER: voc}
    if a.distill:
        # DMD2's update ratio 5 and DMD1's regression weight 0.25; the regression targets are
        # the teacher's 10-step Euler solution from the same noise, solved inside the step.
        distill_steps = a.distill_steps or (2 if tiny else (400 if a.runlocal else 20_000))
        distill = _stage(a, a.data, transform, batch, distill_steps,
                         2e-4 if a.runlocal else 5e-5)
        distill.model = dict(net)
        distill.objective = dict(name="dmd", teacher_from="stage:" + FLOW,
                                 fake_updates=2 if tiny else 5, t_min=0.02, t_max=0.98,
                                 regression_weight=0.25, regression_rows=batch // 4,
                                 regression_steps=2 if tiny else 10)
        stages[DISTILL] = distill

    # mask_from / clap_from stay "" without those stages (their table entries are then left
    # out); they can point at other trained workdirs: --spec.stages.eval.evals.separation.*.
    evaluator = dict(name="separation", vocoder_from="stage:" + VOCODER, mask_from="",
                     clap_from="", steps=a.sample_steps, solver="euler", cfg_scale=1.0,
                     noise_scale=float(a.noise_scale),
                     # the paper's sampler (10 steps from N(0, I)) is always a row
                     extra_rows=((10, 1.0),) if (a.sample_steps, a.noise_scale) != (10, 1.0)
                     else (),
                     nfe_sweep=(1, 2, 5, 10, 25), plots=4)
    # The discriminative mask baseline and the CLAP scorer: their own specs, as stages.
    if a.mask and os.path.isfile(os.path.join(HERE, "text_mask_sep.py")):
        mask_args = ",".join(x for x in ("runlocal" if a.runlocal else "",
                                         "tiny" if tiny else "", f"data={a.data}") if x)
        stages[MASK] = sibling(__file__, "text_mask_sep.py").get_config(
            mask_args + (",steps=200" if a.runlocal and not tiny else ""))
        evaluator["mask_from"] = "stage:" + MASK
    if a.clap and os.path.isfile(os.path.join(HERE, "clap.py")):
        clap = sibling(__file__, "clap.py").get_config(
            "runlocal,steps=2,batch=8" if tiny else ("runlocal,steps=100" if a.runlocal else None))
        if tiny:
            clap.data.name = "instruments/tiny"
            clap.data.mix.effects.name = "tuxpaint/effects_tiny"
            clap.data.eval_max_examples = 16
            clap.train.eval_every = 0
        stages[CLAP] = clap
        evaluator["clap_from"] = "stage:" + CLAP
    if a.distill:
        evaluator["student_from"] = "stage:" + DISTILL
    if tiny:
        evaluator.update(nfe_sweep=(1, 2), plots=2, gl_iters=4, chunk=8, latency_batch=2)

    ev = _stage(a, a.data, transform, batch, 0, 1e-3)
    ev.model = dict(net)
    ev.objective = dict(flow_objective)
    ev.init_from = "stage:" + FLOW
    ev.evals = dict(separation=evaluator)
    stages[EVAL] = ev
    return ml_collections.ConfigDict(
        {"stages": stages, "seed": 0, "order": [n for n in ORDER if n in stages]})
