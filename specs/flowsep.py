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

Arguments: ``runlocal`` (2.05 s at 8 kHz, small models; the six stages other than distill took
17–19 min on a quiet 2-core CPU, the flow stage 7.4–8.6 of them), ``tiny`` (2-step smoke test
sizes; wins over ``runlocal``); the sizes of each are a row of ``SIZES``.
``data=<lass_mix config>`` (e.g. ``lass_mix/tiny``), ``model=unet|dit``, ``steps=N`` (flow
stage steps), ``distill_steps=N``, ``eval_examples=N`` (0 = the whole test split),
``mask=false`` / ``clap=false`` / ``distill=false`` (leave out those stages and their table
entries), ``noise_scale=S`` and ``sample_steps=N`` (sampling temperature and Euler steps of the
table and of --mode=separate; the paper's 1 and 10 are always reported too),
``prediction=velocity|x1``, ``time_sampler=uniform|logit_normal|shifted``, ``query=own|clap``
(the flow's query encoder: a byte Transformer trained with it, or the clap stage's frozen text
tower, as the paper's frozen FLAN-T5), ``remix=P`` (dynamic mixing of the flow's training
mixtures, ``xmodal.audio.remix``). WORKSPACE_NOTES.md has what each measured.
"""
import ml_collections

from xmodal.core.spec import base, parse_arg, sibling

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

# Every size of the pipeline, one quantity a line: (tiny, runlocal, full). tiny is a 2-step
# smoke test; runlocal (2.05 s at 8 kHz) runs all stages but distill in ~20 minutes on 2 CPU
# cores (times in WORKSPACE_NOTES.md); full is 4 s at 16 kHz.
_BY_SIZE = dict(
    sample_rate=(8000, 8000, 16000),
    length=(16384, 16384, 64000),
    n_fft=(512, 512, 1024),                 # of the log-mel: runlocal 64 frames × 64 bands
    hop=(256, 256, 160),
    batch=(8, 32, 64),
    num_workers=(0, 0, 2),
    vae_steps=(2, 300, 20_000),
    vae_lr=(1e-3, 2e-3, 1e-3),
    vae_widths=((8, 16), (16, 32), (64, 128)),
    flow_steps=(2, 1000, 100_000),
    flow_lr=(3e-4, 1e-3, 3e-4),
    ema_decay=(0.0, 0.0, 0.999),
    unet_widths=((16, 32), (64, 128), (128, 256, 512)),
    dit_width=(32, 128, 384),
    dit_depth=(1, 4, 12),
    text_width=(32, 128, 128),              # the flow network's text encoder
    text_depth=(1, 2, 2),
    distill_steps=(2, 400, 20_000),
    distill_lr=(5e-5, 2e-4, 5e-5),
    fake_updates=(2, 5, 5),
    regression_steps=(2, 10, 10),
    vocoder_steps=(2, 200, 20_000),
    vocoder_batch=(8, 16, 32),
    vocoder_width=(32, 128, 256),
    vocoder_depth=(1, 4, 4),
    vocoder_ffts=((128, 256, 512), (128, 256, 512), (512, 1024, 2048)),   # of the STFT loss
    # the arguments of the sibling specs' stages
    mask_args=(dict(tiny=True), dict(runlocal=True, steps=200), {}),
    clap_args=(dict(runlocal=True, steps=2, batch=8), dict(runlocal=True, steps=100), {}),
    # the eval stage's evaluator; tiny also takes fewer Griffin-Lim iterations and smaller
    # batches, where the others keep the evaluator's defaults
    nfe_sweep=((1, 2), (1, 2, 5, 10, 25), (1, 2, 5, 10, 25)),
    plots=(2, 4, 4),
    separation=(dict(gl_iters=4, chunk=8, latency_batch=2), {}, {}),
)
# SIZES["runlocal"]: the numbers of one size, a plain mapping.
SIZES = {name: {key: values[i] for key, values in _BY_SIZE.items()}
         for i, name in enumerate(("tiny", "runlocal", "full"))}


def _stage(a, size, batch, steps, lr):
    c = base()
    c.data.name = a.data
    c.data.transform = dict(name="separation", sample_rate=size["sample_rate"],
                            source_rate=16000, length=size["length"], max_text_len=48)
    c.data.batch_size = batch
    c.data.num_workers = size["num_workers"]
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


def _sibling(name, **args):
    """Another spec's config, its argument string built from ``args``: ``runlocal=True,
    steps=100`` → ``"runlocal,steps=100"``."""
    arg = ",".join(key if value is True else f"{key}={value}" for key, value in args.items())
    return sibling(__file__, name).get_config(arg)


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, data="lass_mix", model="unet", steps=0,
                  eval_examples=0, mask=True, clap=True, prediction="velocity",
                  time_sampler="uniform", noise_scale=NOISE_SCALE, query="own", remix=0.0,
                  sample_steps=SAMPLE_STEPS, distill=True, distill_steps=0)
    if a.query not in QUERIES:
        raise ValueError(f"flowsep query={a.query!r}: one of {', '.join(QUERIES)}")
    if a.query == "clap" and not a.clap:
        raise ValueError("flowsep query=clap reads the clap stage's text tower: drop clap=false")
    size = SIZES["tiny" if a.tiny else "runlocal" if a.runlocal else "full"]
    mel = dict(sample_rate=size["sample_rate"], n_fft=size["n_fft"], hop=size["hop"], n_mels=64)
    batch = size["batch"]
    stages = {}

    vae = _stage(a, size, batch, size["vae_steps"], size["vae_lr"])
    vae.model = dict(name="mel_vae", latent_channels=8, widths=size["vae_widths"])
    vae.objective = dict(name="mel_vae", kl_weight=1e-4, mel=mel)
    vae.evals = dict(vae=dict(name="mel_vae"))
    stages[VAE] = vae

    # The CLAP scorer and, below, the discriminative mask baseline: their own specs, as stages.
    if a.clap:
        clap = _sibling("clap.py", **size["clap_args"])
        if a.tiny:
            # clap.py's runlocal model on the tiny data sets, no evaluation inside its 2 steps
            clap.data.name = "instruments/tiny"
            clap.data.mix.effects.name = "tuxpaint/effects_tiny"
            clap.data.eval_max_examples = 16
            clap.train.eval_every = 0
        stages[CLAP] = clap

    if a.model == "dit":
        net = dict(name="dit", patch=2, width=size["dit_width"], depth=size["dit_depth"],
                   num_heads=4)
    else:
        net = dict(name="unet", widths=size["unet_widths"], num_heads=4)
    net.update(text_width=size["text_width"], text_depth=size["text_depth"])
    flow_objective = dict(name="flowsep", vae_from="stage:" + VAE, cfg_drop=0.1, sigma_min=1e-4,
                          max_text_len=48, prediction=a.prediction, time_sampler=a.time_sampler,
                          query_from="stage:" + CLAP if a.query == "clap" else "",
                          remix=float(a.remix), remix_gain_db=REMIX_GAIN_DB)
    flow = _stage(a, size, batch, a.steps or size["flow_steps"], size["flow_lr"])
    flow.model = dict(net)
    flow.objective = dict(flow_objective)
    flow.train.ema_decay = size["ema_decay"]
    stages[FLOW] = flow

    if a.distill:
        # DMD2's update ratio 5 and DMD1's regression weight 0.25; the regression targets are
        # the teacher's 10-step Euler solution from the same noise, solved inside the step.
        distill = _stage(a, size, batch, a.distill_steps or size["distill_steps"],
                         size["distill_lr"])
        distill.model = dict(net)
        distill.objective = dict(name="dmd", teacher_from="stage:" + FLOW,
                                 fake_updates=size["fake_updates"], t_min=0.02, t_max=0.98,
                                 regression_weight=0.25, regression_rows=batch // 4,
                                 regression_steps=size["regression_steps"])
        stages[DISTILL] = distill

    voc = _stage(a, size, size["vocoder_batch"], size["vocoder_steps"], 2e-3)
    voc.model = dict(name="mel_vocoder", n_fft=mel["n_fft"], width=size["vocoder_width"],
                     depth=size["vocoder_depth"])
    # each STFT of the loss hops a quarter of its length
    voc.objective = dict(name="vocoder", mel=mel, mel_weight=1.0,
                         resolutions=tuple((n, n // 4) for n in size["vocoder_ffts"]))
    stages[VOCODER] = voc

    if a.mask:
        stages[MASK] = _sibling("text_mask_sep.py", **size["mask_args"], data=a.data)

    # mask_from / clap_from stay "" without those stages (their table entries are then left
    # out); they can point at other trained workdirs: --spec.stages.eval.evals.separation.*.
    evaluator = dict(name="separation", vocoder_from="stage:" + VOCODER,
                     mask_from="stage:" + MASK if a.mask else "",
                     clap_from="stage:" + CLAP if a.clap else "",
                     steps=a.sample_steps, solver="euler", cfg_scale=1.0,
                     noise_scale=float(a.noise_scale),
                     # the paper's sampler (10 steps from N(0, I)) is always a row
                     extra_rows=((10, 1.0),) if (a.sample_steps, a.noise_scale) != (10, 1.0)
                     else (),
                     nfe_sweep=size["nfe_sweep"], plots=size["plots"], **size["separation"])
    if a.distill:
        evaluator["student_from"] = "stage:" + DISTILL
    ev = _stage(a, size, batch, 0, 1e-3)
    ev.model = dict(net)
    ev.objective = dict(flow_objective)
    ev.init_from = "stage:" + FLOW
    ev.evals = dict(separation=evaluator)
    stages[EVAL] = ev
    return ml_collections.ConfigDict(
        {"stages": stages, "seed": 0, "order": [n for n in ORDER if n in stages]})
