"""CLIP (Radford et al. 2021) on emoji: OpenMoji images ↔ their Unicode names.

    python -m xmodal.main --spec=specs/clip.py:runlocal --workdir=runs/clip

Arguments: ``runlocal`` (a 2-core CPU in minutes), ``batch=N``, ``steps=N``.
Held-out emoji (by base emoji, skin-tone variants together) are the retrieval test set.
"""
import math

from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, batch=0, steps=0)
    c = base()
    c.data.name = "emoji"
    c.data.transform = dict(name="image_text", image_size=64, max_text_len=48, text_field="name",
                            label_field="group")
    c.data.batch_size = 1024
    c.model = dict(
        name="two_tower", embed_dim=512, temperature_init=math.log(1 / 0.07),
        towers=dict(image=vit_tower("base"), text=text_tower("base")))
    c.objective = dict(name="clip", ring=True)
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 500
    c.train.steps = 20_000
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.train.ckpt_every = 2000
    c.evals = dict(retrieval=dict(name="retrieval"), zeroshot=dict(name="zeroshot"))
    c.sharding.rules = [
        # fsdp: split the big matrices' input dimension; everything else replicated.
        (r".*/(kernel|embedding)$", ("fsdp",)),
        (r".*", ()),
    ]
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 32
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.towers.image = vit_tower("small", patch_size=4)
        c.model.towers.text = text_tower("small", max_len=32)
        c.objective.ring = False
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 50
        # ~27 steps per epoch of the 3.4k training emoji: 600 steps ≈ 22 epochs, ~6 minutes.
        c.train.steps = 600
        c.train.log_every = 50
        c.train.eval_every = 300
        c.train.ckpt_every = 300
    return apply_size_args(c, a)
