"""InstaRevive's evaluation: restore every held-out degraded image with every system, score all of
them on the same images, write ONE table (``restoration_table.json`` / ``.md`` in the stage
workdir), contact sheets (``contact_sheet_<k>.png``: degraded | ours | teacher | clean) and, for a
student trained with dynamic control, its gap and noise range over training
(``dynamic_control_<stage>.png``, ``dynamic_control.plot``).

Rows: the degraded input (nearest-neighbour upscaling: its pixels as they are); bicubic
upscaling (what the networks read); the supervised one-step regressor of the same network
(``restoration_l2``, when trained); the teacher (this stage's flow) at each of ``teacher_steps``
Euler steps; each one-step student in ``students`` (label → ``dmd``/``sid``/``reflow`` stage).
Every sampler starts from the same noise (seed ``seed``) for an image.

Columns:
- PSNR and SSIM on the Y channel (ITU-R BT.601 luma of YCbCr, 16-235, as BasicSR measures
  restoration), by dm-pix (``dm_pix.psnr``, ``dm_pix.ssim``: 11x11 Gaussian window, sigma 1.5);
- Fréchet distance between the restored and the clean images in the image-embedding space of
  a contrastive image-text tower trained in this framework (``tower_from``: a ``specs/clip.py``
  stage on the same emoji; its unit-norm embeddings), when that stage is trained;
- latency: milliseconds per image of the whole restoration (all network calls), jitted, batch
  ``latency_batch``, the median of ``latency_reps`` timed calls after a warm-up.
"""
from __future__ import annotations

import json
import os
import time
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from xmodal.core.eval_context import EvalContext
from xmodal.core.registry import EVALUATORS, OBJECTIVES, SpecError
from xmodal.core.stages import is_trained, load_stage
from xmodal.distill.teacher import FlowTeacher
from xmodal.evaluate import heldout
from xmodal.evaluate.separation import frechet_distance
from xmodal.projects.instarevive import dynamic_control
from xmodal.projects.instarevive.degrade import upsample
from xmodal.projects.instarevive.objective import to_uint8

STUDENT_OBJECTIVES = ("dmd", "sid", "reflow")


@runtime_checkable
class Restores(Protocol):
    """A supervised one-step restorer (``restoration_l2``): the restored [-1, 1] images of a
    batch's degraded inputs from the network's parameters."""

    def restore(self, net_params, batch) -> jax.Array: ...


def y_channel(image) -> jax.Array:
    """uint8 RGB [..., 3] → Y of YCbCr (BT.601, range 16-235) scaled to [0, 1], [..., 1]."""
    x = jnp.asarray(image, jnp.float32) / 255.0
    y = 16.0 + x @ jnp.array([65.481, 128.553, 24.966], jnp.float32)
    return (y / 255.0)[..., None]


def psnr_ssim_y(restored: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR (dB) and SSIM on the Y channel (dm-pix), uint8 [N, S, S, 3] inputs."""
    import dm_pix  # only this evaluator needs it

    a, b = y_channel(restored), y_channel(clean)
    return np.asarray(dm_pix.psnr(a, b)), np.asarray(dm_pix.ssim(a, b))


def load_student(stage_dir: str):
    """(restore(params, noise, batch), params, network calls) for a trained student stage: its
    objective rebuilt from its spec.json (teacher included), sampling as it trained (one step,
    or a multi-step student's chain)."""
    stage = load_stage(stage_dir)
    node = dict(stage.spec["objective"])
    name = node.pop("name")
    if name not in STUDENT_OBJECTIVES:
        raise SpecError(f"students: {stage_dir!r} trained objective {name!r}, not a "
                        f"distillation ({', '.join(STUDENT_OBJECTIVES)})")
    student = OBJECTIVES.build(name, **node)(stage.model, None)
    params = {**jax.tree.map(jnp.asarray, student.load_frozen()),
              **jax.tree.map(jnp.asarray, stage.params)}
    return (lambda p, z, b: student.sample(p, z, b)), params, student.generator_steps


def contact_sheet(path: str, columns: list[np.ndarray], titles: list[str], scale: int = 3):
    """Rows of images (one per example), one column per system, titled, as a PNG."""
    from PIL import ImageDraw

    n, s = columns[0].shape[:2]
    tile = s * scale
    width = max(tile, 6 * max(len(t) for t in titles) + 4)   # PIL's default font: ~6 px a glyph
    sheet = Image.new("RGB", (len(columns) * (width + 4), 16 + n * (tile + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (col, title) in enumerate(zip(columns, titles)):
        draw.text((j * (width + 4) + 2, 2), title, fill="black")
        for i in range(n):
            img = Image.fromarray(col[i]).resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(img, (j * (width + 4) + (width - tile) // 2, 16 + i * (tile + 4)))
    sheet.save(path)


def markdown_table(rows: dict, notes: list[str]) -> str:
    lines = ["| system | network calls | PSNR-Y (dB) ↑ | SSIM-Y ↑ | Fréchet distance ↓ | "
             "ms per image ↓ |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        fd = "—" if r.get("fd") is None else f"{r['fd']:.4f}"
        ms = "—" if r.get("ms_per_image") is None else f"{r['ms_per_image']:.3f}"
        lines.append(f"| {name} | {r['nfe']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {fd} | "
                     f"{ms} |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


@EVALUATORS.register("restoration")
def restoration(teacher_steps: tuple = (1, 2, 4, 10, 25), regressor_from: str = "",
                students: dict | None = None, tower_from: str = "", ours: str = "",
                sheet_teacher_steps: int = 10, sheets: int = 2, sheet_rows: int = 8,
                latency_batch: int = 16, latency_reps: int = 5, seed: int = 0,
                half: str = "all"):
    """See the module docstring. ``students``: {row label: "stage:<name>"}; a stage not yet
    trained drops its row (said in the notes). ``ours``: the label of the student shown in the
    contact sheets (default the last trained one). ``half``: the held-out images scored,
    'all', or the 'dev' half (where settings are chosen) or the 'test' half (the table), cut by
    the transform's ``dev_half`` (``xmodal.evaluate.heldout``)."""
    ks = tuple(int(k) for k in teacher_steps)
    if half not in heldout.HALVES:
        raise SpecError(f"restoration half must be one of {', '.join(heldout.HALVES)}; "
                        f"got {half!r}")
    if any(k < 1 for k in ks):
        raise SpecError(f"restoration teacher_steps must be >= 1; got {teacher_steps}")
    students = dict(students or {})

    def run(ctx: EvalContext) -> dict:
        obj = ctx.objective
        if not isinstance(obj, FlowTeacher):
            raise SpecError("the restoration evaluator runs on the teacher's flow stage "
                            "(objective restoration_flow)")
        dev = ctx.arrays.get("dev_half")
        if dev is None and half != "all":
            raise SpecError(f"restoration half={half!r} needs the transform's dev_half field "
                            "(the restoration transform has it)")
        idx = heldout.select(half, np.zeros(len(ctx.arrays["image"]), bool) if dev is None
                             else dev)
        if not len(idx):
            raise SpecError(f"restoration half={half!r}: no held-out image falls in it")
        clean = np.asarray(ctx.arrays["image"])[idx]
        lq_small = np.asarray(ctx.arrays["lq_small"])[idx]
        lq, text = np.asarray(ctx.arrays["lq"])[idx], np.asarray(ctx.arrays["text"])[idx]
        size = clean.shape[1]
        noise = np.random.default_rng(seed).normal(size=clean.shape).astype(np.float32)
        frozen = {k: v for k, v in ctx.params.items() if k != "model"}
        which = {"all": "held-out", "dev": "held-out dev-half", "test": "held-out test-half"}[half]
        notes = [f"{len(clean)} {which} images ({size} px; degraded to "
                 f"{lq_small.shape[1]} px by the second-order pipeline), step {ctx.step}"]

        # ---------------------------------------------------------------- systems
        # name -> (restore(params, noise, batch) -> [-1, 1] images, params, network calls)
        systems: dict = {}
        fixed = {"degraded input (nearest)": np.stack(
            [upsample(x, size, Image.Resampling.NEAREST) for x in lq_small]),
                 "bicubic": lq}
        if is_trained(regressor_from):
            reg = load_stage(regressor_from)
            node = dict(reg.spec["objective"])
            reg_obj = OBJECTIVES.build(node.pop("name"), **node)(reg.model, None)
            if not isinstance(reg_obj, Restores):
                raise SpecError(f"regressor_from {regressor_from!r} trained "
                                f"{reg.spec['objective']['name']!r}, not restoration_l2")
            systems["supervised one-step regressor (L2)"] = (
                lambda p, z, b: reg_obj.restore(p["model"], b),
                dict(frozen, model=jax.tree.map(jnp.asarray, reg.params["model"])), 1)
        elif regressor_from:
            notes.append("no trained regressor stage: its row is missing")
        for k in ks:
            systems[f"teacher, {k} Euler step{'s' if k > 1 else ''}"] = (
                lambda p, z, b, k=k: obj.sample(p, z, b, k), ctx.params, k)
        trained = []
        for label, stage_dir in students.items():
            if is_trained(stage_dir):
                systems[label] = load_student(stage_dir)
                trained.append(label)
            else:
                notes.append(f"no trained {label} stage ({stage_dir}): its row is missing")

        outputs = dict(fixed)
        latency: dict = {}
        lb = min(latency_batch, len(clean))
        for name, (fn, params, _) in systems.items():
            def apply(p, z, lq_, text_, fn=fn):
                return to_uint8(fn(p, z, {"lq": lq_, "text": text_}))
            outputs[name] = np.asarray(ctx.applier(apply, params, noise, lq, text))
            latency[name] = _latency(apply, params, noise[:lb], lq[:lb], text[:lb],
                                     reps=latency_reps) / lb * 1e3

        # ---------------------------------------------------------------- scores
        embed = None
        if is_trained(tower_from):
            from xmodal.inference.two_tower import Embedder
            tower = Embedder.from_workdir(tower_from)
            embed = tower.embed_items
            notes.append(f"Fréchet distance: image embeddings (unit norm) of our CLIP stage "
                         f"{tower_from} (specs/clip.py on emoji), restored vs clean held-out images")
            clean_emb = embed(list(clean))
        elif tower_from:
            notes.append("no trained image tower stage: the Fréchet distance is missing")
        rows = {}
        nfe = {name: n for name, (_, _, n) in systems.items()}
        for name, images in outputs.items():
            p, s = psnr_ssim_y(images, clean)
            rows[name] = {"psnr_y": float(np.mean(p)), "ssim_y": float(np.mean(s)),
                          "fd": (frechet_distance(embed(list(images)), clean_emb)
                                 if embed is not None else None),
                          "ms_per_image": latency.get(name), "nfe": nfe.get(name, 0)}
        notes.append("PSNR / SSIM: Y channel of YCbCr (BT.601), dm-pix, mean over images; "
                     f"latency: batch {lb}, median of {latency_reps} calls, this machine")

        # ---------------------------------------------------------------- files
        result = {"rows": rows, "notes": notes, "step": ctx.step, "examples": int(len(clean)),
                  "half": half}
        if ctx.out_dir:
            os.makedirs(ctx.out_dir, exist_ok=True)
            for label in trained:   # the dynamic-control student's gap and noise range
                png = f"dynamic_control_{os.path.basename(os.path.normpath(students[label]))}.png"
                if dynamic_control.plot(students[label], os.path.join(ctx.out_dir, png)):
                    notes.append(f"{label}: its gap and noise range over training in {png}")
            with open(os.path.join(ctx.out_dir, "restoration_table.json"), "w") as f:
                json.dump(result, f, indent=2)
            with open(os.path.join(ctx.out_dir, "restoration_table.md"), "w") as f:
                f.write(markdown_table(rows, notes))
            mine = ours if ours in outputs else (trained[-1] if trained else None)
            teacher = f"teacher, {sheet_teacher_steps} Euler steps"
            names = ["degraded input (nearest)"] + ([mine] if mine else []) + \
                ([teacher] if teacher in outputs else []) + ["clean"]
            titles = ["degraded"] + (["ours: " + mine.split(" (")[0]] if mine else []) + \
                ([f"teacher {sheet_teacher_steps} steps"] if teacher in outputs else []) + \
                ["clean"]
            outputs["clean"] = clean
            for j in range(sheets):
                idx = np.linspace(0, len(clean) - 1, sheet_rows).astype(int) + j
                idx = np.minimum(idx, len(clean) - 1)
                contact_sheet(os.path.join(ctx.out_dir, f"contact_sheet_{j}.png"),
                              [outputs[n][idx] for n in names], titles)
        flat = {}
        for name, r in rows.items():
            for k, v in r.items():
                if v is not None and k != "nfe":
                    key = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
                    flat[f"{key}/{k}"] = v
        return flat
    return run


def _latency(fn, params, *arrays, reps: int = 5) -> float:
    """Median seconds of one jitted call of ``fn(params, *arrays)`` after a warm-up."""
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(params, *arrays))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(jitted(params, *arrays))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
