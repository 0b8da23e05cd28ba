"""LightCLIP (Nie et al. 2023): a small CLIP trained with three levels of interaction, on emoji
drawn in four styles (Noto, Twemoji, OpenMoji, Fluent) and their Unicode names.

    python -m xmodal.main --spec=specs/lightclip.py:runlocal --workdir=/work/runs/lightclip

- global: CLIP loss with progressively softened negative labels (alpha 0 -> 0.2 over training);
- token: relaxed bipartite (Sinkhorn) matching of image patches to caption bytes;
- MLM: masked caption bytes predicted with the image injected into text stages.

Arguments: ``runlocal`` (2-core CPU in minutes), ``batch=N``, ``steps=N``, and the ablation
switches ``no_soft``, ``no_token``, ``no_mlm``. Each training record shows one random style;
evaluation uses Noto drawings of held-out emoji (split by base emoji). Evals: image<->text R@K,
zero-shot accuracy over the 9 Unicode groups and over the subgroups of the eval split.
"""
import math

from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, batch=0, steps=0, no_soft=False, no_token=False,
                  no_mlm=False)
    c = base()
    c.data.name = "emoji_styles"
    c.data.transform = dict(name="emoji_styles", image_size=64, max_text_len=48,
                            text_field="name", label_field="group", eval_style="noto")
    c.data.batch_size = 1024
    c.model = dict(
        name="fusion_two_tower", embed_dim=512, temperature_init=math.log(1 / 0.07),
        fusion="inject", inject_layers=(1, 3, 5), fusion_heads=8,
        image=vit_tower("base"),
        # A short text encoder (LightCLIP's point) with one extra id for the MLM mask token.
        text=text_tower("base", vocab_size=260, depth=6))
    c.objective = dict(name="lightclip", max_smoothing=0.2, ramp_steps=20_000, ramp="linear",
                       token_weight=1.0, token_tau=0.05, sinkhorn_iters=20, token_batch=256,
                       mlm_weight=1.0, mask_rate=0.15)
    c.optim.lr = 5e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 500
    c.train.steps = 20_000
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.train.ckpt_every = 2000
    c.evals = dict(retrieval=dict(name="retrieval"), zeroshot=dict(name="zeroshot"),
                   subgroup=dict(name="field_zeroshot", field="subgroup"))
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 32
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.fusion_heads = 4
        c.model.inject_layers = (0, 1)
        c.model.image = vit_tower("small")
        c.model.text = text_tower("small", vocab_size=260, max_len=32)
        # The [b, b, P, L] Sinkhorn plan is the costly part on a CPU: 32 pairs, 10 iterations.
        c.objective.token_batch = 32
        c.objective.sinkhorn_iters = 10
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 30
        # ~21 steps per epoch of the 2.7k training emoji: 300 steps ≈ 14 epochs.
        c.train.steps = 300
        c.train.log_every = 50
        c.train.eval_every = 300
        c.train.ckpt_every = 300
    apply_size_args(c, a)
    c.objective.ramp_steps = c.train.steps
    if a.no_soft:
        c.objective.max_smoothing = 0.0
    if a.no_token:
        c.objective.token_weight = 0.0
    if a.no_mlm:
        c.objective.mlm_weight = 0.0
    return c
