"""A two-stage spec for tests: stage ``b`` starts from stage ``a``'s parameters."""
import ml_collections as mlc

from xmodal.core.spec import base


def _stage(steps):
    c = base()
    c.data.name = "emoji/tiny"
    c.data.batch_size = 16
    c.data.num_workers = 0
    c.data.eval_max_examples = 16
    c.model = dict(name="two_tower", embed_dim=16,
                   towers=dict(image=dict(name="vit", patch_size=4, width=16, depth=1, num_heads=2),
                               text=dict(name="text_transformer", max_len=32, width=16, depth=1,
                                         num_heads=2)))
    c.objective = dict(name="clip")
    c.train.steps = steps
    c.train.log_every = 1
    c.train.eval_every = 0
    c.evals = dict(retrieval=dict(name="retrieval"))
    return c


def get_config(arg=None):
    a, b = _stage(2), _stage(1)
    b.init_from = "stage:a"
    return mlc.ConfigDict({"stages": {"a": a.to_dict(), "b": b.to_dict()}, "seed": 1})
