"""M3PT (Yang et al. 2023, "M3PT: A Multi-Modal Model for POI Tagging") on emoji.

    python -m xmodal.main --spec=specs/m3pt.py:runlocal --workdir=runs/m3pt

Items are emoji (a Twemoji drawing + the English name), tags their English CLDR keywords
(skin-tone variants take their base emoji's). The tag vocabulary is the keywords carried by at
least ``min_count`` distinct training emoji; held-out emoji (by base) are the eval items, their
keywords outside the vocabulary are dropped and counted (eval/unseen_tags). Metric: P@K, R@K,
F1@K of each item's top-K tags.

Arguments: ``runlocal``, ``batch=N``, ``steps=N``, ``modalities=both|text|image`` (the fused vs
uni-modal ablation), ``loss=softmax|sigmoid``, ``min_count=N``.
"""
import math

from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, batch=0, steps=0, modalities="both", loss="softmax",
                  min_count=3)
    c = base()
    c.data.name = "emoji_styles"
    c.data.transform = dict(name="emoji_tags", vocab_split="train", min_count=a.min_count,
                            image_size=64, max_text_len=48, style="twemoji")
    # One value each for the dataset and the vocabulary, shared by transform and objective
    # (the objective embeds the same tag strings the transform's targets index).
    c.data.transform.dataset = c.data.get_ref("name")
    c.data.transform.data_dir = c.data.get_ref("data_dir")
    c.model = dict(
        name="tagging_model", embed_dim=256, item_modalities=a.modalities,
        temperature_init=math.log(1 / 0.07), bias_init=-5.0,
        image=vit_tower("medium"), text=text_tower("medium"))
    c.objective = dict(name="m3pt", max_tag_len=24, loss=a.loss, die_weight=0.5,
                       align_weight=0.5)
    c.objective.dataset = c.data.get_ref("name")
    c.objective.data_dir = c.data.get_ref("data_dir")
    c.objective.vocab_split = c.data.transform.get_ref("vocab_split")
    c.objective.min_count = c.data.transform.get_ref("min_count")
    c.data.batch_size = 512
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.train.steps = 5000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.evals = dict(tagging=dict(name="tagging", ks=(1, 3, 5)))
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 32
        c.data.batch_size = 128
        c.model.embed_dim = 96
        c.model.image = vit_tower("mini")
        c.model.text = text_tower("mini", max_len=32)
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 30
        # 21 steps per epoch of the 2,724 training emoji at batch 128: 400 steps ≈ 19 epochs.
        c.train.steps = 400
        c.train.log_every = 25
        c.train.eval_every = 200
        c.train.ckpt_every = 400
    return apply_size_args(c, a)
