"""IRRA (Jiang & Ye 2023): text-to-image "person" retrieval with implicit relation reasoning
(cross-modal MLM) and similarity distribution matching (SDM), on emoji.

    python -m xmodal.main --spec=specs/irra.py:runlocal --workdir=/work/runs/irra

An identity is a base emoji (all its skin tones); its gallery images are every skin tone in
every one of four drawing styles (like one person in several camera views). Captions are the
Unicode names with the skin tone removed ("woman running"), so a caption describes an identity,
and SDM treats every pair of the batch with the same identity as a positive. Training uses all
emoji groups (one random style per record); the test queries and gallery are the held-out
People & Body emoji (``person_retrieval``, group "People & Body"), with all held-out emoji as
a second, larger gallery (``person_retrieval_all``).

Arguments: ``runlocal``, ``batch=N``, ``steps=N``, ``loss=sdm|infonce`` (the alignment
loss), ``no_irr`` (no cross-modal MLM).
"""
from xmodal.core.spec import apply_size_args, base, parse_arg
from xmodal.nn.presets import text_tower, vit_tower


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, batch=0, steps=0, loss="sdm", no_irr=False)
    c = base()
    c.data.name = "emoji_styles"
    c.data.transform = dict(name="emoji_styles", image_size=64, max_text_len=48,
                            text_field="name", label_field="group", identity_field="base",
                            strip_skin_tone=True, eval_style="noto")
    c.data.batch_size = 128  # IRRA's batch size
    c.model = dict(
        name="fusion_two_tower", embed_dim=512, fusion="encoder", fusion_depth=4,
        fusion_heads=8,
        image=vit_tower("base"), text=text_tower("base", vocab_size=260))
    c.objective = dict(name="irra", loss_kind=a.loss, tau=0.02, irr_weight=1.0, mask_rate=0.15)
    c.optim.lr = 1e-4
    c.optim.weight_decay = 0.05
    c.optim.warmup_steps = 500
    c.train.steps = 20_000
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.train.ckpt_every = 2000
    c.evals = dict(
        person_retrieval=dict(name="person_retrieval", group="People & Body", prefix="people_"),
        person_retrieval_all=dict(name="person_retrieval", prefix="all_"))
    c.sharding.rules = [(r".*/(kernel|embedding)$", ("fsdp",)), (r".*", ())]
    if a.runlocal:
        c.data.transform.image_size = 32
        c.data.transform.max_text_len = 32
        c.data.batch_size = 128
        c.model.embed_dim = 128
        c.model.fusion_depth = 1
        c.model.fusion_heads = 4
        c.model.image = vit_tower("small")
        c.model.text = text_tower("small", vocab_size=260, max_len=32)
        c.optim.lr = 1e-3
        c.optim.warmup_steps = 30
        c.train.steps = 300
        c.train.log_every = 50
        c.train.eval_every = 300
        c.train.ckpt_every = 300
    apply_size_args(c, a)
    if a.no_irr:
        c.objective.irr_weight = 0.0
    return c
