"""CLAP-style audio-text model (Elizalde et al., "CLAP: Learning Audio Concepts from Natural
Language Supervision", 2023; the CLIP loss of Radford et al. 2021) on ``instruments`` (GM
soundfont notes and phrases ↔ captions like "a violin playing C4") mixed with Tux Paint sound
effects (``tuxpaint/effects``: a crow, a car horn ↔ "A crow.").

    python -m xmodal.main --spec=specs/clap.py:runlocal --workdir=/work/runs/clap

Audio tower: ``audio_encoder`` (a CNN over the log-mel it computes from the waveform, in JAX);
text tower: ``text_transformer`` over bytes. Held-out items (instrument + note or phrase seed,
sha1 split of the data set) are the retrieval test set; held-out effects (stamp-hash split)
are a second one (metrics ``eval/effects/...``). Zero-shot instrument accuracy is on the
instrument clips. The trained model is FlowSep's scorer
(``xmodal.projects.clap.score.load_clap``): Fréchet distance of its audio embeddings, and
CLAPScore = cosine(audio embedding of an estimate, text embedding of its query).

Arguments: ``label_prob=P`` (default 0.5: the probability that a training clip's caption is
replaced by its instrument's label prompt "a violin playing a short phrase", the text a scorer
uses for a separated violin; 0 = the captions only), ``effects`` (default true;
``effects=false`` trains on instruments only), ``effects_weight=W`` (default 0.25 against the
instruments' 1: one training clip in five is an effect, though effects are 8 % of the clips),
``runlocal`` (a 2-core CPU in ~5 minutes), ``tiny`` (a 2-step smoke test on
``instruments/tiny`` + ``tuxpaint/effects_tiny``, for CI and FlowSep's tiny pipeline),
``batch=N``, ``steps=N``.
"""
import math

from xmodal.data.sets.instruments import CLIP_SECONDS, INSTRUMENT_NAMES, SAMPLE_RATE
from xmodal.core.spec import apply_size_args, base, mix_source, parse_arg
from xmodal.nn.presets import text_tower

# Zero-shot instrument prompts: the captions of phrases ("a violin playing a short phrase").
PROMPTS = ("a {} playing a short phrase", "an {} playing a short phrase")


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, batch=0, steps=0, label_prob=0.5,
                  effects=True, effects_weight=0.25)
    c = base()
    c.data.name = "instruments"
    c.data.transform = dict(name="audio_text", max_text_len=48, audio_field="audio",
                            text_field="caption", label_field="instrument", gain_db=6.0,
                            num_samples=int(CLIP_SECONDS * SAMPLE_RATE),
                            # half the time the caption is the scorer's label prompt instead
                            label_prompt="{article} {label} playing a short phrase",
                            label_names=INSTRUMENT_NAMES, label_prob=a.label_prob)
    evals = dict(retrieval=dict(name="retrieval"),
                 zeroshot=dict(name="zeroshot", templates=PROMPTS))
    if a.effects:
        # The same transform with Tux Paint's field names and no label: an effect is cut (or
        # padded) to the instruments' 2 s, its label is -1 (zero-shot skips it) and its
        # caption is never swapped for a label prompt.
        effects = dict(c.data.transform, audio_field="sound", label_field="")
        c.data.mix = dict(effects=mix_source("tuxpaint/effects", effects,
                                             weight=a.effects_weight))
        evals["retrieval_effects"] = dict(name="retrieval", data="effects")
    c.data.batch_size = 256
    c.model = dict(
        name="two_tower", embed_dim=256, temperature_init=math.log(1 / 0.07),
        towers=dict(audio=dict(name="audio_encoder", sample_rate=16000, n_fft=1024, hop=256,
                               n_mels=64, channels=(32, 64, 128, 256), width=256),
                    text=text_tower("small", width=256, depth=4)))
    c.objective = dict(name="clip")
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.train.steps = 5000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.evals = evals
    if a.runlocal:
        c.data.batch_size = 64
        c.data.num_workers = 0
        c.model.embed_dim = 128
        c.model.towers.audio.channels = (16, 32, 64, 128)
        c.model.towers.audio.width = 128
        c.model.towers.text = text_tower("small", depth=2)
        c.optim.warmup_steps = 30
        # 1384 training clips: ~22 steps per epoch at batch 64, 400 steps ≈ 18 epochs.
        c.train.steps = 400
        c.train.log_every = 25
        c.train.eval_every = 200
        c.train.ckpt_every = 200
    if a.tiny:
        c.data.name = "instruments/tiny"
        if a.effects:
            c.data.mix.effects.name = "tuxpaint/effects_tiny"
        c.data.batch_size = 8
        c.data.num_workers = 0
        c.model.embed_dim = 8
        c.model.towers.audio = dict(name="audio_encoder", sample_rate=16000, n_fft=256,
                                    hop=128, n_mels=16, channels=(4, 8), width=8)
        c.model.towers.text = text_tower("tiny", width=8)
        c.optim.warmup_steps = 0
        c.train.steps = 2
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.ckpt_every = 2
    return apply_size_args(c, a)
