"""Two-stream video QA ("Two-stream Spatiotemporal Feature for Video QA Task", 2019) on
``sprite_videos``: Wesnoth units acting on terrain, questions with five candidate answers about
what acts, how, where and when, held out by unit and by terrain.

    python -m xmodal.main --spec=specs/videoqa.py:runlocal --workdir=runs/videoqa
    python -m xmodal.main --spec=specs/videoqa.py:runlocal,streams=text --workdir=runs/vqa_text

Model: ``videoqa``: an RGB stream and a flow stream (``VideoCNN``: per-frame CNN with
squeeze-and-excitation blocks, temporal pooling), a level-adjusting layer, a BiLSTM text encoder
and a context-matching module per stream; one score per candidate. Objective: ``videoqa``
(smoothed ranking loss over the five candidates). Eval: ``videoqa`` (accuracy overall and per
question type; chance 20 %), streamed over the split.

Arguments: ``runlocal`` (2-core CPU in under 20 minutes), ``tiny`` (a 2-step smoke test on
``sprite_videos/tiny``), ``streams`` (``rgb+flow``, the paper's model; ``rgb``, ``flow``:
one stream; ``text``: question and answers only), ``split`` (the eval split: ``dev``, where
settings are chosen, or ``test``, read once), ``batch=N``, ``steps=N``.
"""
from xmodal.core.spec import apply_size_args, base, parse_arg

VOCAB_SIZE = 512     # embedding rows; the transform checks the vocabulary fits


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, batch=0, steps=0, streams="rgb+flow",
                  split="dev")
    c = base()
    c.data.name = "sprite_videos/tiny" if a.tiny else "sprite_videos"
    c.data.eval_split = a.split
    c.data.transform = dict(name="videoqa", vocabulary_from=c.data.name, frames=8, stride=2,
                            max_questions=14, question_len=16, answer_len=8,
                            vocab_size=VOCAB_SIZE, train_questions=6)
    c.data.batch_size = 32
    c.data.num_workers = 2
    stream = dict(channels=(16, 32, 64), width=128, pool=2, stem_stride=2, se_reduction=4)
    c.model = dict(name="videoqa", vocab_size=VOCAB_SIZE, streams=tuple(a.streams.split("+")),
                   embed_dim=64, hidden=64, rgb=stream, flow=dict(stream, input_scale=4.0),
                   dropout=0.1)
    c.objective = dict(name="videoqa", margin=1.0, gamma=1.0)
    c.evals = dict(qa=dict(name="videoqa"))
    c.optim.lr = 2e-3
    c.optim.weight_decay = 1e-4
    c.optim.warmup_steps = 100
    c.train.steps = 3000
    c.train.log_every = 50
    c.train.eval_every = 1000
    c.train.ckpt_every = 500
    if a.runlocal:
        c.train.steps = 700
        c.train.eval_every = 350
        c.train.ckpt_every = 350
    if a.tiny:
        c.data.batch_size = 8
        c.model.embed_dim = 16
        c.model.hidden = 16
        small = dict(channels=(8, 16), width=16, pool=2, stem_stride=2, se_reduction=4)
        c.model.rgb = small
        c.model.flow = dict(small, input_scale=4.0)
        c.optim.warmup_steps = 0
        c.train.steps = 2
        c.train.log_every = 1
        c.train.eval_every = 0
        c.train.ckpt_every = 2
    return apply_size_args(c, a)
