"""Choosing the students' settings on the dev half of the held-out emoji, before the table is
measured on the test half.

    python -m xmodal.projects.instarevive.dev_sweep --workdir=runs/instarevive [--size=runlocal]

(from the repository root, like the CLI).

1. Trains the stages every student reads (tower, teacher; the regressor too, so the final
   run finds it) in ``<workdir>``, as ``specs/instarevive.py`` does.
2. Plain DMD at each ``REGRESSION`` weight (at the spec's learning rate), then plain DMD at
   the chosen weight and each learning rate of ``DMD_LRS``, then DMD with dynamic control at
   the chosen weight and rate and each ``(decay, floor)`` of ``CONTROL``; then SiD at each of
   ``SID_LRS`` and reflow (its reflow and one_step stages) at each of ``REFLOW_LRS``. Each point
   in ``<workdir>/dev_sweep/<point>`` (the shared stages linked in), scored by the eval stage
   on the dev half only (``half=dev``; the test half is not read).
3. Picks, at each step, the point with the lowest dev Fréchet distance (the distribution the
   distillation matches; ties to the higher dev PSNR), writes ``dev_sweep.{json,md}`` in
   ``<workdir>/dev_sweep``, copies the chosen points' student stages into ``<workdir>`` (the
   final run would train them identically: same spec, same seed) and prints the command that
   scores the test half once.

Finished points are read back: the trainer skips a stage at its last step, and a point whose
dev table is newer than its student's checkpoints is not evaluated again (``--rescore`` does).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

REGRESSION = (0.25, 1.0)
# The spec's learning rates when each was first searched (its dmd_lr, sid_lr, reflow_lr at the
# time): a point's folder names its rate only where it differs from these, so the points
# measured then keep their folders. The spec argument always names every rate, so a point means
# the same whatever the spec's defaults are now.
SPEC_LR = {"dmd": 1e-4, "sid": 1e-4, "reflow": 3e-4}
DMD_LR = SPEC_LR["dmd"]
DMD_LRS = (3e-5, 1e-4, 3e-4)
# SiD's and reflow's first grids (3e-5..3e-4, 1e-4..1e-3) chose their largest rate, so each went
# one step further; the widened grids chose their edge again (README: at 200 student steps the
# students are undertrained, and the next search is the number of steps).
SID_LRS = (3e-5, 1e-4, 3e-4, 1e-3)
REFLOW_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
CONTROL = ((0.98, 0.25), (0.98, 0.5))          # (decay, floor)
SHARED = ("tower", "teacher", "regressor")
SPEC = "specs/instarevive.py"
# family: (the stages a point trains, the last one the student scored; the eval's row label)
FAMILIES = {"dmd": (("dmd",), "DMD (one step)"),
            "dmd_dynamic": (("dmd_dynamic",), "DMD + dynamic control (one step)"),
            "sid": (("sid",), "SiD (one step)"),
            "reflow": (("reflow", "one_step"), "reflow-distilled (one step)")}


def lr_family(family: str) -> str:
    """Whose spec argument a family's learning rate is: both DMD students share ``dmd_lr``."""
    return "dmd" if family.startswith("dmd") else family


def spec_for(size: str, regression: float = 0.25, decay: float = 0.0, floor: float = 0.25,
             lr: float = DMD_LR, sid_lr: float = SPEC_LR["sid"],
             reflow_lr: float = SPEC_LR["reflow"]):
    """The spec at one point, its eval stage on the dev half; the spec path is relative to the
    repository root, where this runs, as ``python -m xmodal.main --spec=...`` is."""
    from xmodal.core import spec as spec_lib
    rates = {"dmd": lr, "sid": sid_lr, "reflow": reflow_lr}
    arg = f"{size},half=dev,regression={regression},floor={floor}" + \
        (f",decay={decay}" if decay else "") + \
        "".join(f",{k}_lr={v}" for k, v in rates.items())
    return spec_lib.validate(spec_lib.load(f"{SPEC}:{arg}")), arg


def score_point(size: str, workdir: str, family: str, lr: float, rescore: bool = False,
                **settings) -> dict:
    """Trains ``family``'s stages at ``settings`` and learning rate ``lr`` in the point's own
    folder and scores its student on the dev half. A point whose dev table is newer than its
    student's checkpoints is read back, not evaluated again (``rescore`` evaluates anyway)."""
    from xmodal.core import trainer
    stages, label = FAMILIES[family]
    rate = {"lr" if lr_family(family) == "dmd" else f"{lr_family(family)}_lr": lr}
    spec, arg = spec_for(size, **settings, **rate)
    name = point_name(family, lr, **settings)
    point = os.path.join(workdir, "dev_sweep", name)
    os.makedirs(point, exist_ok=True)
    for shared in SHARED:
        link = os.path.join(point, shared)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(workdir, shared)), link)
    ev = spec.stages.eval.evals.restoration
    ev.students = {label: f"stage:{stages[-1]}"}
    ev.ours, ev.teacher_steps, ev.sheets, ev.latency_reps = label, (1,), 0, 1
    table_path = os.path.join(point, "eval", "restoration_table.json")
    if rescore or not scored_after_training(table_path, os.path.join(point, stages[-1])):
        trainer.run(spec, point, only=(*stages, "eval"))
    table = json.load(open(table_path))
    assert table["half"] == "dev", table["half"]
    row = table["rows"][label]
    return {"point": name, "stage": stages[-1], "stages": list(stages), "spec_arg": arg,
            "lr": lr, **settings, "dev_fd": row["fd"], "dev_psnr_y": row["psnr_y"],
            "dev_ssim_y": row["ssim_y"], "dev_images": table["examples"],
            "teacher_1_step_dev_fd": table["rows"]["teacher, 1 Euler step"]["fd"]}


def scored_after_training(table_path: str, stage_dir: str) -> bool:
    """Whether the point's dev table exists and was written after its student's newest
    checkpoint (a retrained student is scored again)."""
    from xmodal.core.checkpoint import committed_steps
    ckpts = os.path.join(stage_dir, "checkpoints")
    steps = committed_steps(ckpts)
    return bool(steps) and os.path.isfile(table_path) and \
        os.path.getmtime(table_path) > os.path.getmtime(os.path.join(ckpts, str(steps[-1])))


def best(points: list[dict]) -> dict:
    return min(points, key=lambda p: (p["dev_fd"], -p["dev_psnr_y"]))


def adopt(workdir: str, point: dict) -> None:
    """The chosen point's stages into ``workdir``, their paths rewritten to the stages there
    (the shared ones, and for one_step the adopted reflow)."""
    for stage in point.get("stages", [point["stage"]]):
        src = os.path.join(workdir, "dev_sweep", point["point"], stage)
        dst = os.path.join(workdir, stage)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        path = os.path.join(dst, "spec.json")
        text = open(path).read().replace(
            os.path.abspath(os.path.join(workdir, "dev_sweep", point["point"])),
            os.path.abspath(workdir))
        open(path, "w").write(text)


def point_name(family: str, lr: float, **settings) -> str:
    """The folder of a sweep point: the family, the settings, the learning rate only where it
    is not the spec's (so points measured before the rate was searched keep their folders)."""
    parts = [f"{k}_{v}" for k, v in settings.items()]
    lr_part = [f"lr_{lr}"] if lr != SPEC_LR[lr_family(family)] else []
    return "_".join([{"dmd_dynamic": "dynamic"}.get(family, family)] + parts + lr_part)


def markdown(points: list[dict]) -> str:
    lines = ["| stage | regression weight | learning rate | decay | floor | dev FD ↓ "
             "| dev PSNR-Y | dev SSIM-Y |", "|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['stage']} | {p.get('regression', '—')} | {p['lr']:g} | "
                     f"{p.get('decay') or '—'} | "
                     f"{p.get('floor') if p['stage'] == 'dmd_dynamic' else '—'} | "
                     f"{p['dev_fd']:.4f} | {p['dev_psnr_y']:.2f} | {p['dev_ssim_y']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--size", default="runlocal", help="runlocal | tiny (the spec's size)")
    parser.add_argument("--rescore", action="store_true",
                        help="evaluate every point again, even those with a dev table")
    a = parser.parse_args(argv)
    from absl import flags
    from xmodal.core import compilation_cache, trainer
    flags.FLAGS.mark_as_parsed()     # grain reads its absl flags; this is not an absl program
    compilation_cache.enable()

    spec, _ = spec_for(a.size, REGRESSION[0])
    trainer.run(spec, a.workdir, only=SHARED)

    def dmd(lr=DMD_LR, **settings):
        return score_point(a.size, a.workdir, "dmd", lr, a.rescore, **settings)

    reg = [dmd(regression=w) for w in REGRESSION]
    w = best(reg)["regression"]
    rates = [p for p in reg if p["regression"] == w] + [
        dmd(lr=lr, regression=w) for lr in DMD_LRS if lr != DMD_LR]
    plain = best(rates)
    lr = plain["lr"]
    ctl = [score_point(a.size, a.workdir, "dmd_dynamic", lr, a.rescore, regression=w, decay=d,
                       floor=f) for d, f in CONTROL]
    chosen = best(ctl)
    sid = [score_point(a.size, a.workdir, "sid", r, a.rescore) for r in SID_LRS]
    reflow = [score_point(a.size, a.workdir, "reflow", r, a.rescore) for r in REFLOW_LRS]
    sid_best, reflow_best = best(sid), best(reflow)
    out = os.path.join(a.workdir, "dev_sweep")
    swept = reg + [p for p in rates if p not in reg] + ctl + sid + reflow
    with open(os.path.join(out, "dev_sweep.json"), "w") as f:
        json.dump({"regression": reg, "learning_rate": rates, "control": ctl, "sid": sid,
                   "reflow": reflow, "chosen_regression": w, "chosen_lr": lr,
                   "chosen_control": [chosen["decay"], chosen["floor"]],
                   "chosen_sid_lr": sid_best["lr"], "chosen_reflow_lr": reflow_best["lr"]},
                  f, indent=2)
    with open(os.path.join(out, "dev_sweep.md"), "w") as f:
        f.write(markdown(swept))
    for p in (plain, chosen, sid_best, reflow_best):
        adopt(a.workdir, p)
    print(markdown(swept))
    print(f"chosen on the dev half: regression {w}, DMD learning rate {lr:g}, decay "
          f"{chosen['decay']}, floor {chosen['floor']}, SiD learning rate {sid_best['lr']:g}, "
          f"reflow learning rate {reflow_best['lr']:g}; the table on the test half:\n  "
          f"python -m xmodal.main --spec={SPEC}:{a.size},regression={w},dmd_lr={lr:g},"
          f"decay={chosen['decay']},floor={chosen['floor']},sid_lr={sid_best['lr']:g},"
          f"reflow_lr={reflow_best['lr']:g} --workdir={a.workdir} --stages=eval")


if __name__ == "__main__":
    main()
