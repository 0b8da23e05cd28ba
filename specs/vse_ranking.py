"""Image-text matching with a global ranking loss ("Deep Learning Applied to Image and Text
Matching", 2015): a CNN image channel and a text channel (bag of words + MLP, n-grams + MLP, or
a sequence encoder) embedded into one space, trained with a bidirectional hinge ranking loss
whose negatives (all in-batch, hardest, semi-hard) can specialise the system to one direction.

    python -m xmodal.main --spec=specs/vse_ranking.py:runlocal --workdir=runs/vse
    python -m xmodal.main --spec=specs/vse_ranking.py:runlocal,text=seq,negatives=hardest ...

Arguments: ``runlocal`` (2-core CPU, minutes), ``text=bow|ngram|seq``,
``negatives=in_batch|hardest|semi_hard``, ``data=tuxpaint|emoji``, ``direction=both|i2t|t2i``
(which direction(s) the loss trains), ``batch=N``, ``steps=N``. Held-out stamps / emoji are the
retrieval test set; the eval reports R@1/5/10, median and mean rank and MRR in both directions
(``i2t_*``: image annotation, ``t2i_*``: image search).
"""
from xmodal.core.registry import SpecError
from xmodal.core.spec import apply_size_args, base, parse_arg

TEXT_TOWERS = {
    "bow": dict(name="bow_text", buckets=4096, mlp_dim=512),
    "ngram": dict(name="ngram_text", ngrams=(1, 2, 3), buckets=16384, mlp_dim=512),
    "seq": dict(name="seq_text", encoder="gru", embed_dim=64, pool="mean"),
}
DATA = {
    # Tux Paint stamps and their English sentence ("A crow."); no class label.
    "tuxpaint": dict(name="image_caption", text_field="caption", max_text_len=64),
    # OpenMoji emoji and their English CLDR names.
    "emoji": dict(name="image_text", text_field="name", label_field="group", max_text_len=48),
}
DIRECTIONS = {"both": (1.0, 1.0), "i2t": (1.0, 0.0), "t2i": (0.0, 1.0)}


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, text="ngram", negatives="in_batch", data="tuxpaint",
                  direction="both", batch=0, steps=0)
    for key, valid in (("text", TEXT_TOWERS), ("data", DATA), ("direction", DIRECTIONS)):
        if a[key] not in valid:
            raise SpecError(f"vse_ranking {key}={a[key]!r}; valid: {', '.join(valid)}")
    c = base()
    c.data.name = a.data
    c.data.transform = dict(DATA[a.data], image_size=64)
    c.data.batch_size = 256
    width = 512
    c.model = dict(name="two_tower", embed_dim=512,
                   towers=dict(image=dict(name="cnn", channels=(64, 128, 256, 512),
                                          convs_per_stage=2, width=width),
                               text=dict(TEXT_TOWERS[a.text], width=width)))
    i2t, t2i = DIRECTIONS[a.direction]
    c.objective = dict(name="ranking", margin=0.2, negatives=a.negatives, i2t_weight=i2t,
                       t2i_weight=t2i)
    c.optim.lr = 1e-3
    c.optim.weight_decay = 1e-4
    c.optim.warmup_steps = 200
    c.train.steps = 10_000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.evals = dict(retrieval=dict(name="retrieval", ks=(1, 5, 10)))
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.towers.image = dict(name="cnn", channels=(32, 64, 128), convs_per_stage=1, width=128)
        text = dict(TEXT_TOWERS[a.text], width=128)
        if a.text == "seq":
            text["embed_dim"] = 32
        else:
            text["mlp_dim"] = 256
        c.model.towers.text = text
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 50
        # Tux Paint: 854 training stamps = 6.7 batches of 128; 400 steps ≈ 60 epochs.
        c.train.steps = 400
        c.train.log_every = 50
        c.train.eval_every = 200
        c.train.ckpt_every = 400
    return apply_size_args(c, a)
