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
from xmodal.core.spec import apply_size_args, base, parse_arg, sibling

LABEL_PROMPT = ("label_prompt", "label_names", "label_prob")


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, batch=0, steps=0, normaliser="raw",
                  positions="learned")
    # The CLAP spec's data (instruments + one effect in five) and its audio CNN without the
    # pooling, at the same size: the retrieval table compares the two models on the same clips.
    # The captioner learns the captions themselves: the label-prompt swap is left out.
    clap = sibling(__file__, "clap.py").get_config(
        ",".join(k for k in ("runlocal", "tiny") if a[k]))
    c = base()
    c.data = clap.data
    for transform in (c.data.transform, c.data.mix.effects.transform):
        for key in LABEL_PROMPT:
            del transform[key]
    encoder = dict(clap.model.towers.audio, pool="none")
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
        c.model.decoder = dict(decoder, width=16, depth=1, num_heads=2)
        c.optim.warmup_steps = 0
        c.train.steps = 2
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.ckpt_every = 2
        c.evals.captioning.beams = 2
        c.evals.captioning_effects.beams = 2
    return apply_size_args(c, a)
