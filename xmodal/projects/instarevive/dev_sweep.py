"""Choosing the DMD students' regression weight and dynamic control's decay and floor on the
dev half of the held-out emoji, before the table is measured on the test half.

    python -m xmodal.projects.instarevive.dev_sweep --workdir=runs/instarevive [--size=runlocal]

(from the repository root, like the CLI).

1. Trains the stages every student reads (tower, teacher; the regressor too, so the final
   run finds it) in ``<workdir>``, as ``specs/instarevive.py`` does.
2. Plain DMD at each ``REGRESSION`` weight (at the spec's learning rate), then plain DMD at
   the chosen weight and each learning rate of ``DMD_LRS``, then DMD with dynamic control at
   the chosen weight and rate and each ``(decay, floor)`` of ``CONTROL``; each point in
   ``<workdir>/dev_sweep/<point>``
   (the shared stages linked in), scored by the eval stage on the dev half only
   (``half=dev``; the test half is not read).
3. Picks, at each step, the point with the lowest dev Fréchet distance (the distribution the
   distillation matches; ties to the higher dev PSNR), writes ``dev_sweep.{json,md}`` in
   ``<workdir>/dev_sweep``, copies the chosen ``dmd`` and ``dmd_dynamic`` stages into
   ``<workdir>`` (the final run would train them identically: same spec, same seed) and prints
   the command that trains the rest and scores the test half once.

Searched: the DMD students' learning rate (``dmd_lr``, shared by both DMD students). Not yet:
SiD's and reflow's learning rates (the spec's); the README says so.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil

REGRESSION = (0.25, 1.0)
DMD_LR = 1e-4                                   # the spec's default, where REGRESSION is swept
DMD_LRS = (3e-5, 1e-4, 3e-4)
CONTROL = ((0.98, 0.25), (0.98, 0.5))          # (decay, floor)
SHARED = ("tower", "teacher", "regressor")
SPEC = "specs/instarevive.py"


def spec_for(size: str, regression: float, decay: float = 0.0, floor: float = 0.25,
             lr: float = DMD_LR):
    """The spec at one point, its eval stage on the dev half; the spec path is relative to the
    repository root, where this runs, as ``python -m xmodal.main --spec=...`` is."""
    from xmodal.core import spec as spec_lib
    arg = f"{size},half=dev,regression={regression},floor={floor}" + \
        (f",decay={decay}" if decay else "") + (f",dmd_lr={lr}" if lr != DMD_LR else "")
    return spec_lib.validate(spec_lib.load(f"{SPEC}:{arg}")), arg


def score_point(size: str, workdir: str, name: str, stage: str, label: str, **settings) -> dict:
    """Trains ``stage`` at ``settings`` in its own folder and scores it on the dev half."""
    from xmodal.core import trainer
    spec, arg = spec_for(size, **settings)
    point = os.path.join(workdir, "dev_sweep", name)
    os.makedirs(point, exist_ok=True)
    for shared in SHARED:
        link = os.path.join(point, shared)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(workdir, shared)), link)
    ev = spec.stages.eval.evals.restoration
    ev.students = {label: f"stage:{stage}"}
    ev.ours, ev.teacher_steps, ev.sheets, ev.latency_reps = label, (1,), 0, 1
    trainer.run(spec, point, only=(stage, "eval"))
    table = json.load(open(os.path.join(point, "eval", "restoration_table.json")))
    assert table["half"] == "dev", table["half"]
    row = table["rows"][label]
    return {"point": name, "stage": stage, "spec_arg": arg, "lr": DMD_LR, **settings,
            "dev_fd": row["fd"], "dev_psnr_y": row["psnr_y"], "dev_ssim_y": row["ssim_y"],
            "dev_images": table["examples"],
            "teacher_1_step_dev_fd": table["rows"]["teacher, 1 Euler step"]["fd"]}


def best(points: list[dict]) -> dict:
    return min(points, key=lambda p: (p["dev_fd"], -p["dev_psnr_y"]))


def adopt(workdir: str, point: dict) -> None:
    """The chosen point's student stage into ``workdir``, its paths rewritten to the shared
    stages there."""
    src = os.path.join(workdir, "dev_sweep", point["point"], point["stage"])
    dst = os.path.join(workdir, point["stage"])
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    path = os.path.join(dst, "spec.json")
    text = open(path).read().replace(
        os.path.abspath(os.path.join(workdir, "dev_sweep", point["point"])),
        os.path.abspath(workdir))
    open(path, "w").write(text)


def point_name(stage: str, lr: float, **settings) -> str:
    """The folder of a sweep point: the settings, the learning rate only where it is not the
    spec's (so points measured before the rate was searched keep their folders)."""
    parts = [f"{k}_{v}" for k, v in settings.items()]
    return "_".join([stage] + parts + ([f"lr_{lr}"] if lr != DMD_LR else []))


def markdown(regression: list[dict], control: list[dict]) -> str:
    lines = ["| stage | regression weight | learning rate | decay | floor | dev FD ↓ "
             "| dev PSNR-Y | dev SSIM-Y |", "|---|---|---|---|---|---|---|---|"]
    for p in regression + control:
        lines.append(f"| {p['stage']} | {p['regression']} | {p['lr']:g} | "
                     f"{p.get('decay') or '—'} | "
                     f"{p.get('floor') if p['stage'] == 'dmd_dynamic' else '—'} | "
                     f"{p['dev_fd']:.4f} | {p['dev_psnr_y']:.2f} | {p['dev_ssim_y']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--size", default="runlocal", help="runlocal | tiny (the spec's size)")
    a = parser.parse_args(argv)
    from absl import flags
    from xmodal.core import compilation_cache, trainer
    flags.FLAGS.mark_as_parsed()     # grain reads its absl flags; this is not an absl program
    compilation_cache.enable()

    spec, _ = spec_for(a.size, REGRESSION[0])
    trainer.run(spec, a.workdir, only=SHARED)

    def dmd(lr=DMD_LR, **settings):
        return score_point(a.size, a.workdir, point_name("dmd", lr, **settings), "dmd",
                           "DMD (one step)", lr=lr, **settings)

    reg = [dmd(regression=w) for w in REGRESSION]
    w = best(reg)["regression"]
    rates = [p for p in reg if p["regression"] == w] + [
        dmd(lr=lr, regression=w) for lr in DMD_LRS if lr != DMD_LR]
    plain = best(rates)
    lr = plain["lr"]
    ctl = [score_point(a.size, a.workdir,
                       point_name("dynamic", lr, regression=w, decay=d, floor=f),
                       "dmd_dynamic", "DMD + dynamic control (one step)",
                       regression=w, lr=lr, decay=d, floor=f) for d, f in CONTROL]
    chosen = best(ctl)
    out = os.path.join(a.workdir, "dev_sweep")
    swept = reg + [p for p in rates if p not in reg]
    with open(os.path.join(out, "dev_sweep.json"), "w") as f:
        json.dump({"regression": reg, "learning_rate": rates, "control": ctl,
                   "chosen_regression": w, "chosen_lr": lr,
                   "chosen_control": [chosen["decay"], chosen["floor"]]}, f, indent=2)
    with open(os.path.join(out, "dev_sweep.md"), "w") as f:
        f.write(markdown(swept, ctl))
    adopt(a.workdir, plain)
    adopt(a.workdir, chosen)
    print(markdown(swept, ctl))
    print(f"chosen on the dev half: regression {w}, DMD learning rate {lr:g}, decay "
          f"{chosen['decay']}, floor {chosen['floor']}; the table on the test half:\n  "
          f"python -m xmodal.main --spec={SPEC}:{a.size},regression={w},dmd_lr={lr:g},"
          f"decay={chosen['decay']},floor={chosen['floor']} --workdir={a.workdir}")


if __name__ == "__main__":
    main()
