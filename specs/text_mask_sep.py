"""Discriminative text-queried mask separator on ``lass_mix`` (the LASS-Net family, Liu et al.
2022): a sigmoid mask on the mixture's STFT from a FiLM-conditioned TCN over log-magnitude
frames, the query through a byte text transformer; the mixture's phase. The baseline FlowSep
(``specs/flowsep.py``) is compared with; that spec can include this one as a stage.

    python -m xmodal.main --spec=specs/text_mask_sep.py:runlocal --workdir=/work/runs/mask_sep

Held out: lass_mix's test split (default config: mixtures rendered with the FluidR3 soundfont,
training ones with TimGM6mb). The eval reports SI-SDR, SI-SDRi and log-mel distance of the
mask network, of the unprocessed mixture and of the oracle IRM.

Arguments: ``runlocal`` (2.05 s at 8 kHz, as FlowSep's runlocal; a few minutes on 2 CPU cores),
``tiny`` (a 2-step smoke test), ``data=<lass_mix config>``, ``loss=si_sdr|l1_mag|both``,
``batch=N``, ``steps=N``.
"""
from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, data="lass_mix", loss="si_sdr", batch=0,
                  steps=0)
    small = a.runlocal or a.tiny
    if small:
        # FlowSep's runlocal rate and crop, so the two separate the same audio.
        sr, length, n_fft, hop = 8000, 16384, 256, 64
        mel_fft, mel_hop = 256, 128
    else:
        sr, length, n_fft, hop = 16000, 64000, 1024, 256
        mel_fft, mel_hop = 1024, 160
    c = base()
    c.data.name = a.data
    c.data.transform = dict(name="separation", sample_rate=sr, source_rate=16000,
                            length=length, max_text_len=48)
    c.data.batch_size = 64
    c.model = dict(name="mask_separator", n_fft=n_fft, hop=hop, width=256, depth=8, kernel=3,
                   text=text_tower("small", depth=2))
    c.objective = dict(name="mask_separation", loss=a.loss)
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.0
    c.optim.warmup_steps = 500
    c.train.steps = 20_000
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.train.ckpt_every = 2000
    c.precision.compute_dtype = "float32"
    c.evals = dict(mask_sep=dict(name="mask_separation", n_fft=mel_fft, hop=mel_hop, n_mels=64))
    if small:
        c.data.batch_size = 32
        c.data.num_workers = 0
        c.model.width = 128
        c.model.depth = 6
        c.model.text = text_tower("mini", width=64)
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 50
        # ~1 step/s on 2 shared CPU cores: ~7 minutes; 2000 training mixtures = 62 steps/epoch.
        c.train.steps = 400
        c.train.log_every = 50
        c.train.eval_every = 200
        c.train.ckpt_every = 400
        c.train.keep_ckpts = 1
    if a.tiny:
        c.data.batch_size = 8
        c.model.width = 16
        c.model.depth = 2
        c.model.text = text_tower("tiny")
        c.optim.warmup_steps = 0
        c.train.steps = 2
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.ckpt_every = 2
    return apply_size_args(c, a)
