"""Eight Gaussians: a class-conditional flow teacher distilled to one step by DMD, SiD and reflow.

    python -m xmodal.main --spec=specs/eight_gaussians.py:runlocal --workdir=runs/eight_gaussians

Stages, each in ``<workdir>/<stage>``:
  teacher   class-conditional rectified flow (``class_flow``) on the 2-D points, CFG drop 0.1;
            sliced Wasserstein distance of its Euler sampler at 1, 2, 4, 10, 25 and 50 steps
  dmd       DMD2: one-step generator + fake score, 5 fake-score updates per generator update
  sid       SiD (alpha 1.2): one-step generator + fake score, 1:1
  reflow    2-rectified flow on (noise, teacher ODE(noise)) couplings, sampled in 1 and 2 steps
  one_step  regression distillation of the reflowed flow (InstaFlow's second stage)

Arguments: ``runlocal`` (minutes on a 2-core CPU), ``tiny`` (a few steps of each, for CI),
``steps=N`` (teacher steps), ``student_steps=N`` (each student stage), ``path=rectified|icfm``.
"""
import ml_collections

from xmodal.core.spec import base, parse_arg

ORDER = ("teacher", "dmd", "sid", "reflow", "one_step")
TEACHER_STEPS = (1, 2, 4, 10, 25, 50)


def _stage(a, steps, lr, batch):
    c = base()
    c.data.name = "eight_gaussians"
    c.data.transform = dict(name="points")
    c.data.batch_size = batch
    c.data.num_workers = 0
    # 8,192 records of two floats: decoding one costs more than the MLP's step that uses it
    # (the teacher's 2,000 steps at batch 256 read each record 62 times); held in memory.
    c.data.cache_raw = True
    c.data.eval_max_examples = 256 if a.tiny else 2048
    c.model = dict(name="velocity_mlp", num_classes=8, width=32 if a.tiny else 128,
                   depth=1 if a.tiny else 3)
    c.optim.lr = lr
    c.optim.weight_decay = 0.0
    c.optim.warmup_steps = min(100, steps // 10)
    c.train.steps = steps
    c.train.log_every = 1 if a.tiny else max(1, min(200, steps))
    c.train.eval_every = 0
    c.train.ckpt_every = max(steps, 1)
    c.train.keep_ckpts = 1
    c.precision.compute_dtype = "float32"
    return c


def get_config(arg=None):
    a = parse_arg(arg, runlocal=False, tiny=False, steps=0, student_steps=0, path="rectified")
    teacher_steps = a.steps or (4 if a.tiny else (4000 if a.runlocal else 20_000))
    student_steps = a.student_steps or (4 if a.tiny else (2000 if a.runlocal else 10_000))
    batch = 16 if a.tiny else 512
    ks = (1, 2) if a.tiny else TEACHER_STEPS

    teacher = _stage(a, teacher_steps, 2e-3, batch)
    teacher.objective = dict(name="class_flow", path=a.path,
                             path_kwargs=dict(sigma=0.1) if a.path == "icfm" else {},
                             cfg_drop=0.1)
    teacher.evals = dict(sw=dict(name="sliced_wasserstein", steps=ks))

    def student(objective, lr, **sw):
        s = _stage(a, student_steps, lr, batch)
        s.objective = dict(objective, teacher_from="stage:teacher")
        s.evals = dict(sw=dict(name="sliced_wasserstein", **sw))
        return s

    # Learning rates chosen on the training split (WORKSPACE_NOTES.md, "Distillation").
    # generator_steps (multi-step students) and gan_* (DMD2's GAN head) are listed so that
    # --spec.stages.dmd.objective.generator_steps=2 etc. can set them.
    dmd = student(dict(name="dmd", fake_updates=2 if a.tiny else 5, generator_steps=1,
                       gan_weight=0.0, gan_fake_weight=0.01), 3e-4, steps=(1,),
                  teacher_steps=(1,))
    sid = student(dict(name="sid", alpha=1.2, generator_steps=1), 1e-4, steps=(1,))
    sid.optim.group_lr = [("generator", 0.1)]   # SiD diverges unless the fake score leads
    reflow = student(dict(name="reflow", target="flow", teacher_steps=2 if a.tiny else 25),
                     1e-3, steps=(1, 2))
    one_step = student(dict(name="reflow", target="one_step", teacher_steps=2 if a.tiny else 8),
                       1e-3, steps=(1,))
    one_step.objective.teacher_from = "stage:reflow"
    stages = dict(teacher=teacher, dmd=dmd, sid=sid, reflow=reflow, one_step=one_step)
    return ml_collections.ConfigDict({"stages": stages, "seed": 0, "order": list(ORDER)})
