"""AAC→ATR (Labbé et al., "Killing two birds with one stone: Can an audio captioning system also
be used for audio-text retrieval?", 2023): an audio captioner trained only to caption, whose
likelihoods also retrieve, on the CLAP spec's data: ``instruments`` (GM soundfont notes and
phrases ↔ "a violin playing C4") mixed with Tux Paint's sound effects (``tuxpaint/effects``:
"A crow."), held out by item.

    python -m xmodal.main --spec=specs/aac_atr.py:runlocal --workdir=runs/aac_atr
    python -m xmodal.main --spec=specs/aac_atr.py:runlocal --workdir=runs/aac_atr \
        --mode=caption --audio=clip.wav

Model: ``captioner``: the CLAP spec's audio CNN without its pooling (one token per pooled
frame) and a Transformer decoder over byte tokens, cross-attending to the clip's tokens.
Objective: ``captioning`` (smoothed token NLL; the clip dropped for ``drop_condition`` of the
rows so the decoder also learns the unconditional caption model, one of the audio→text
normalisers). Evals: ``caption_retrieval`` (R@K and mAP@10 both ways from the NLL matrix, on
dev and test halves) and ``captioning`` (BLEU-4, METEOR, ROUGE-L, CIDEr-D of beam captions), on
the instruments' test split and the held-out effects (``eval/effects_...``).

Arguments: ``runlocal`` (a 2-core CPU in under 20 minutes), ``tiny`` (a 2-step smoke test on the
tiny configs), ``normaliser`` (audio→text normaliser of the ``a2t_*`` metrics: raw, mean or
uncond; every one is reported as ``a2t_<normaliser>_*``; the default ``raw`` won on the
instruments' dev half, see the README), ``positions`` (learned or rope), ``batch=N``, ``steps=N``.
"""
from xmodal.core.spec import apply_size_args, base, mix_source, parse_arg
from xmodal.data.sets.instruments import CLIP_SECONDS, SAMPLE_RATE


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, batch=0, steps=0, normaliser="raw",
                  positions="learned")
    c = base()
    c.data.name = "instruments"
    c.data.transform = dict(name="audio_text", max_text_len=48, audio_field="audio",
                            text_field="caption", label_field="instrument", gain_db=6.0,
                            num_samples=int(CLIP_SECONDS * SAMPLE_RATE))
    # Effects: the same transform with Tux Paint's field names and no label (cut or padded to
    # the instruments' 2 s), one training clip in five as in the CLAP spec.
    effects = dict(c.data.transform, audio_field="sound", label_field="")
    c.data.mix = dict(effects=mix_source("tuxpaint/effects", effects, weight=0.25))
    c.data.batch_size = 256
    encoder = dict(name="audio_encoder", sample_rate=16000, n_fft=1024, hop=256, n_mels=64,
                   channels=(32, 64, 128, 256), width=256, pool="none")
    decoder = dict(vocab_size=259, max_len=48, width=256, depth=4, num_heads=4,
                   positions=a.positions, tie_embedding=True, dropout=0.1)
    c.model = dict(name="captioner", encoder=encoder, decoder=decoder)
    c.objective = dict(name="captioning", label_smoothing=0.1, drop_condition=0.1)
    # fsdp: the towers' rule; the decoder's kernels and token embedding are split the same way.
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    retrieval = dict(name="caption_retrieval", normaliser=a.normaliser)
    c.evals = dict(retrieval=retrieval, captioning=dict(name="captioning"),
                   retrieval_effects=dict(retrieval, data="effects"),
                   captioning_effects=dict(name="captioning", data="effects"))
    c.optim.lr = 1e-3
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.train.steps = 5000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    if a.runlocal:
        c.data.batch_size = 64
        c.data.num_workers = 0
        c.model.encoder.channels = (16, 32, 64, 128)
        c.model.encoder.width = 128
        c.model.decoder.width = 128
        c.model.decoder.depth = 2
        c.optim.warmup_steps = 50
        # 1,384 instrument clips + 118 effects: ~23 steps per epoch at batch 64, 800 steps ≈ 34
        # epochs at ~0.8 steps/s on 2 cores (~19 minutes with the evals; 900 took 21).
        c.train.steps = 800
        c.train.log_every = 50
        c.train.eval_every = 800
        c.train.ckpt_every = 400
    if a.tiny:
        c.data.name = "instruments/tiny"
        c.data.mix.effects.name = "tuxpaint/effects_tiny"
        c.data.batch_size = 8
        c.data.num_workers = 0
        c.model.encoder = dict(encoder, n_fft=256, hop=128, n_mels=16, channels=(4, 8), width=8)
        c.model.decoder = dict(decoder, width=16, depth=1, num_heads=2)
        c.optim.warmup_steps = 0
        c.train.steps = 2
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.ckpt_every = 2
        c.evals.captioning.beams = 2
        c.evals.captioning_effects.beams = 2
    return apply_size_args(c, a)
