"""InstaRevive (Zhu et al., ICLR 2025): one-step image restoration by score distillation of a
flow teacher, with dynamic control of the distillation's noise levels.

    python -m xmodal.main --spec=specs/instarevive.py:runlocal --workdir=runs/instarevive

Data: the emoji drawings (OpenMoji, 32 px in runlocal, 64 px at full size) held out by emoji,
each degraded once by a fixed, per-record-seeded second-order pipeline (blur, resize, noise,
JPEG, twice; ``xmodal.projects.instarevive.degrade``) to half the size; captions (the emoji's
name) are the prompts.

Stages, in this order, each in ``<workdir>/<stage>``:
  tower        specs/clip.py: the image-text model whose image embeddings give the Fréchet
               distance of the table
  teacher      rectified flow from noise to the clean image, conditioned on the degraded image
               (input channels of the U-Net) and the caption (cross-attention); CFG drop 0.1
  regressor    the same U-Net as a supervised one-step regressor (L2 to the clean image)
  dmd          the student: the teacher's U-Net plus a zero-initialised ControlNet-style branch
               on the degraded image, started from the teacher; DMD2 (5 fake-score updates per
               generator update) + regression to the clean image (weight 0.25)
  dmd_dynamic  the same with dynamic control (``xmodal/projects/instarevive/dynamic_control.py``:
               the noise levels of the distribution-matching gradient narrow as the student's
               gap to the clean images shrinks from its peak)
  sid          SiD (alpha 1.2), the same student
  reflow       2-rectified flow on (noise, teacher ODE(noise)) couplings (25 steps; runlocal 10)
  one_step     regression distillation of the reflowed flow (InstaFlow's second stage)
  eval         train.steps = 0: one table of every system on the held-out images
               (restoration_table.{json,md}) and contact sheets, in <workdir>/eval

Arguments: ``runlocal`` (a 2-core CPU), ``tiny`` (2-step smoke sizes for CI), ``steps=N``
(teacher), ``student_steps=N`` (each student stage), ``tower=false`` (no Fréchet distance),
``half=test|dev|all`` (the held-out images the eval stage scores: the test half for the table,
the dev half where the settings below were chosen; README),
``regression=W`` (the DMD students' regression weight), ``dmd_lr=R`` (both DMD students'
learning rate), ``decay=D``, ``floor=F`` (dynamic control), ``sid_lr=R`` (SiD's),
``reflow_lr=R`` (the reflow and one_step stages').
"""

import ml_collections

from xmodal.core.spec import base, parse_arg, sibling

ORDER = ("tower", "teacher", "regressor", "dmd", "dmd_dynamic", "sid", "reflow", "one_step",
         "eval")
STUDENTS = {"DMD (one step)": "dmd", "DMD + dynamic control (one step)": "dmd_dynamic",
            "SiD (one step)": "sid", "reflow-distilled (one step)": "one_step"}
MAX_TEXT_LEN = 32


def _stage(a, data, size, batch, steps, lr):
    c = base()
    c.data.name = data
    c.data.transform = dict(name="restoration", image_size=size, max_text_len=MAX_TEXT_LEN,
                            scale=2, seed=0)
    c.data.batch_size = batch
    c.data.num_workers = 0 if a.runlocal or a.tiny else 2
    c.data.eval_max_examples = 16 if a.tiny else 0
    c.optim.lr = lr
    c.optim.weight_decay = 0.0
    c.optim.warmup_steps = min(100, max(steps // 10, 0))
    c.train.steps = steps
    c.train.log_every = max(1, min(100, steps))
    c.train.eval_every = 0
    c.train.ckpt_every = max(steps, 1)
    c.train.keep_ckpts = 1
    c.precision.compute_dtype = "float32"
    return c


def get_config(arg=None):
    # regression / dmd_lr / decay / floor / sid_lr / reflow_lr: chosen on the dev half at
    # runlocal size (README, "Dev and test halves"); half: the eval stage's held-out images.
    a = parse_arg(arg, runlocal=False, tiny=False, steps=0, student_steps=0, tower=True,
                  half="test", regression=0.25, dmd_lr=1e-4, decay=0.0, floor=0.25,
                  sid_lr=1e-3, reflow_lr=3e-3)
    tiny = a.tiny
    data = "emoji/tiny" if tiny else "emoji"
    size = 32 if (a.runlocal or tiny) else 64
    batch = 8 if tiny else (32 if a.runlocal else 128)
    # runlocal: about an hour for all stages on a busy 2-core CPU (the students are the slow part;
    # README).
    teacher_steps = a.steps or (2 if tiny else (1500 if a.runlocal else 100_000))
    student_steps = a.student_steps or (2 if tiny else (200 if a.runlocal else 20_000))
    net = dict(name="unet", widths=(16, 32) if tiny or a.runlocal else (64, 128, 256),
               num_heads=2 if tiny else 4, text_width=32 if tiny else 64,
               text_depth=1, text_max_len=MAX_TEXT_LEN)
    flow = dict(name="restoration_flow", cfg_drop=0.1, max_text_len=MAX_TEXT_LEN)

    teacher = _stage(a, data, size, batch, teacher_steps, 1e-3 if a.runlocal or tiny else 2e-4)
    teacher.model = dict(net)
    teacher.objective = dict(flow)

    regressor = _stage(a, data, size, batch, teacher_steps // 2 or 1,
                       1e-3 if a.runlocal or tiny else 2e-4)
    regressor.model = dict(net)
    regressor.objective = dict(name="restoration_l2", max_text_len=MAX_TEXT_LEN)

    def student(objective, lr, model=None):
        s = _stage(a, data, size, batch, student_steps, lr)
        s.model = dict(model or dict(net, control=True))
        s.objective = dict(objective, teacher_from="stage:teacher")
        return s

    # DMD2's 5 fake-score updates per generator update at full size; runlocal's 200 steps would
    # leave the generator 40 updates, so there it is 2.
    fake_updates = 2 if tiny or a.runlocal else 5
    dmd = dict(name="dmd", fake_updates=fake_updates, t_min=0.02, t_max=0.98,
               regression_weight=float(a.regression), regression_target="data")
    stages = dict(
        teacher=teacher, regressor=regressor,
        dmd=student(dmd, float(a.dmd_lr)),
        dmd_dynamic=student(dict(dmd, noise_control=dict(
            name="instarevive_dynamic", decay=a.decay or (0.9 if tiny else 0.98),
            floor=float(a.floor))), float(a.dmd_lr)),
        sid=student(dict(name="sid", alpha=1.2), float(a.sid_lr)),
        # Reflow keeps the teacher's architecture: its couplings retrain the teacher's network.
        reflow=student(dict(name="reflow", target="flow",
                            teacher_steps=2 if tiny else (10 if a.runlocal else 25)),
                       float(a.reflow_lr), model=net),
        # The reflowed flow's one-step distillation: same rate (one ``reflow_lr`` for both).
        one_step=student(dict(name="reflow", target="one_step", teacher_steps=2 if tiny else 4),
                         float(a.reflow_lr), model=net),
    )
    stages["sid"].optim.group_lr = [("generator", 0.1)]   # as for the 8 Gaussians: SiD diverges
    stages["one_step"].objective.teacher_from = "stage:reflow"

    evaluator = dict(name="restoration", teacher_steps=(1, 2) if tiny else (1, 2, 4, 10, 25),
                     regressor_from="stage:regressor",
                     students={k: "stage:" + v for k, v in STUDENTS.items()},
                     ours="DMD + dynamic control (one step)", sheet_teacher_steps=2 if tiny else 10,
                     sheets=1 if tiny else 2, latency_batch=4 if tiny else 16,
                     latency_reps=2 if tiny else 5, half=a.half)
    if a.tower:
        tower = sibling(__file__, "clip.py").get_config(
            "runlocal,steps=2,batch=8" if tiny else ("runlocal,steps=300" if a.runlocal else None))
        tower.data.name = data
        tower.data.transform.image_size = size
        if tiny:
            tower.data.eval_max_examples = 16
            tower.train.eval_every = 0
        stages["tower"] = tower
        evaluator["tower_from"] = "stage:tower"

    ev = _stage(a, data, size, batch, 0, 1e-3)
    ev.model = dict(net)
    ev.objective = dict(flow)
    ev.init_from = "stage:teacher"
    ev.evals = dict(restoration=evaluator)
    stages["eval"] = ev
    return ml_collections.ConfigDict(
        {"stages": stages, "seed": 0, "order": [n for n in ORDER if n in stages]})
