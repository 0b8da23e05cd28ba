"""M3EL (Hu et al. 2024, "Multi-level Matching Network for Multimodal Entity Linking") on emoji.

    python -m xmodal.main --spec=specs/m3el.py:runlocal --workdir=runs/m3el

A mention is an emoji's CLDR keywords ("face, grin") with the emoji drawn in one style; its
entity is the English name ("grinning face") with the emoji drawn in another style (training:
a random pair of distinct styles per record; evaluation: Twemoji mentions, OpenMoji entities).
Held-out emoji (by base, skin tones together) are the eval mentions and the entity list.
Metric: H@1/3/5 and MRR of the gold entity among all eval entities (paper, WikiMEL: H@1 88.84,
MRR 92.30).

Arguments: ``runlocal`` (a 2-core CPU in minutes), ``batch=N``, ``steps=N``, and the ablation
flags ``intra=0`` (intra-modal contrastive off), ``cross=0`` (cross-modal matching off),
``g2l=0`` (global-to-local off), ``intra_neg=W`` (weight of intra-modal negatives).
"""
import math

from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, batch=0, steps=0, intra=1.0, cross=1.0, g2l=1.0,
                  intra_neg=1.0)
    c = base()
    c.data.name = "emoji_styles"
    c.data.transform = dict(name="emoji_entities", image_size=64, max_text_len=64,
                            mention_style="twemoji", entity_style="openmoji")
    # The transform reads CLDR keywords of the same dataset: one value, so that
    # --spec.data.name=emoji_styles/tiny moves both.
    c.data.transform.dataset = c.data.get_ref("name")
    c.data.transform.data_dir = c.data.get_ref("data_dir")
    c.data.batch_size = 512
    c.model = dict(
        name="entity_model", embed_dim=256, num_heads=8, temperature_init=math.log(1 / 0.07),
        image=vit_tower("medium"), text=text_tower("medium", max_len=64))
    c.objective = dict(name="m3el", intra_weight=a.intra, g2g_weight=1.0, g2l_weight=a.g2l,
                       cross_weight=a.cross, intra_negative_weight=a.intra_neg,
                       attn_temperature=0.1)
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 200
    c.train.steps = 5000
    c.train.log_every = 100
    c.train.eval_every = 1000
    c.train.ckpt_every = 1000
    c.evals = dict(el=dict(name="entity_linking", ks=(1, 3, 5)))
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 48
        c.data.batch_size = 128
        c.model.embed_dim = 96
        c.model.num_heads = 4
        c.model.image = vit_tower("mini")
        c.model.text = text_tower("mini")
        c.optim.lr = 2e-3
        c.optim.warmup_steps = 30
        # 2,724 training emoji = 21 steps per epoch at batch 128: 300 steps ≈ 14 epochs.
        c.train.steps = 300
        c.train.log_every = 25
        c.train.eval_every = 150
        c.train.ckpt_every = 300
    return apply_size_args(c, a)
