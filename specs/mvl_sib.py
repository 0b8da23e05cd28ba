"""MVL-SIB ("MVL-SIB: A Massively Multilingual Vision-Language Benchmark for Cross-Modal Topical
Matching", Schmidt et al. 2025) on Tux Paint stamps: a two-tower image-text model trained on
the stamps' captions, asked per language whether a sentence and images share a topic
(cross-modal) and whether sentences do (text-only), 4 options, chance 25 %.

    python -m xmodal.main --spec=specs/mvl_sib.py:runlocal --workdir=runs/mvl_sib
    python -m xmodal.main --spec=specs/mvl_sib.py:runlocal,captions=en --workdir=runs/mvl_sib_en
    python -m xmodal.main --spec=specs/mvl_sib.py:runlocal,data=emoji --workdir=runs/mvl_sib_emoji

``data=tuxpaint`` (default): topics are the stamps' 16 top-level folders, languages the 78 of
the Debian stamps package, sentences the stamps' captions. ``data=emoji``: topics are the 9
Unicode emoji groups, languages 138 CLDR locales, sentences the emoji's CLDR names (Noto
drawings).
``captions=multi`` (default) trains on a random language of each stamp at each visit, so a
language's share of training is its coverage; ``captions=en`` trains on English only. The
``mvl_sib`` evaluator (``xmodal/projects/mvl_sib``) reports accuracy per language and task for
k = 1 and 3 references, its trend against coverage, and a bar plot. Arguments: ``runlocal``
(2-core CPU, minutes), ``data=tuxpaint|emoji``, ``captions=en|multi``, ``batch=N``,
``steps=N``.
"""
import math

from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower

SOURCES = {"tuxpaint": ("tuxpaint", "mvl_sib_items"), "emoji": ("emoji_styles", "mvl_sib_emoji")}


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, data="tuxpaint", captions="multi", batch=0, steps=0)
    if a.data not in SOURCES:
        raise ValueError(f"mvl_sib data={a.data!r}; valid: {', '.join(SOURCES)}")
    c = base()
    c.data.name, transform = SOURCES[a.data]
    c.data.transform = dict(name=transform, image_size=64, max_text_len=64,
                            captions=a.captions)
    c.data.batch_size = 256
    c.model = dict(name="two_tower", embed_dim=256, temperature_init=math.log(1 / 0.07),
                   towers=dict(image=vit_tower("small", patch_size=8),
                               text=text_tower("small", max_len=64)))
    c.objective = dict(name="clip")
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.train.steps = 5000
    c.train.log_every = 100
    c.train.eval_every = 5000
    c.train.ckpt_every = 1000
    c.evals = dict(retrieval=dict(name="retrieval"),
                   mvl_sib=dict(name="mvl_sib", ks=(1, 3), seed=0, min_sentences=20))
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 48
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.towers.image = vit_tower("small", patch_size=4)
        c.model.towers.text = text_tower("small", max_len=48)
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 50
        # 854 training stamps = 6.7 batches of 128: 800 steps ≈ 120 visits per stamp (2,724
        # training emoji: 38 visits each).
        c.train.steps = 800
        c.train.eval_every = 800
        c.train.ckpt_every = 400
    return apply_size_args(c, a)
