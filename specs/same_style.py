"""Same-style retrieval with one embedding for image, text and image + text (same-product
retrieval across styles): the same playing card in 30 deck styles, or the same emoji in four
emoji fonts. A CNN and an n-gram text tower project into one space; a gated fusion embeds
image + text queries into the same space; a multi-positive contrastive loss (SDM over item
identities) pulls image(style a), text and image(a) + text towards image(style b).

    python -m xmodal.main --spec=specs/same_style.py:runlocal --workdir=runs/same_style
    python -m xmodal.main --spec=specs/same_style.py:runlocal,data=emoji_styles ...

Arguments: ``runlocal`` (2-core CPU, minutes), ``data=cards|emoji_styles``, ``batch=N``,
``steps=N``. Test items are unseen decks (cards: 5 of 22 deck families) or unseen emoji
(emoji_styles); the eval reports R@1/5/10 (and median rank, MRR) for image→image across
styles, text→image (plus mAP) and image+text→image.
"""
from xmodal.core.registry import SpecError
from xmodal.core.spec import apply_size_args, base, parse_arg

DATA = {
    "cards": dict(name="card_pairs", data_name="cards", max_text_len=32),
    "emoji_styles": dict(name="emoji_style_pairs", text_field="name", max_text_len=48),
}


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, data="cards", batch=0, steps=0)
    if a.data not in DATA:
        raise SpecError(f"same_style data={a.data!r}; valid: {', '.join(DATA)}")
    c = base()
    c.data.name = a.data
    c.data.transform = dict(DATA[a.data], image_size=64)
    c.data.batch_size = 256
    c.model = dict(name="unified", embed_dim=512, fusion="gated",
                   image=dict(name="cnn", channels=(64, 128, 256, 512), convs_per_stage=2,
                              width=512),
                   text=dict(name="ngram_text", ngrams=(1, 2, 3), buckets=16384, mlp_dim=512,
                             width=512))
    c.objective = dict(name="same_style", tau=0.05)
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.steps = 10_000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.evals = dict(same_style=dict(name="same_style", ks=(1, 5, 10)))
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.image = dict(name="cnn", channels=(32, 64, 128), convs_per_stage=1, width=128)
        c.model.text = dict(name="ngram_text", ngrams=(1, 2, 3), buckets=8192, mlp_dim=256,
                            width=128)
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 50
        # cards: 1300 training records = 10 batches of 128; 400 steps ≈ 40 epochs.
        c.train.steps = 400
        c.train.log_every = 50
        c.train.eval_every = 200
        c.train.ckpt_every = 400
    return apply_size_args(c, a)
