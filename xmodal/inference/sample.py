"""``--mode=sample``: draw samples from any trained generative stage and write them as files.

    python -m xmodal.main --spec=specs/instarevive.py:runlocal --workdir=runs/instarevive \
        --mode=sample --stage=dmd_dynamic [--prompt="grinning face" ...] [--out=DIR]
    python -m xmodal.main --spec=specs/eight_gaussians.py:runlocal --workdir=W --mode=sample \
        --spec.stages.teacher.sample.steps=25 --spec.stages.teacher.sample.solver=heun

A generative stage is one whose objective is a ``xmodal.sampling.Sampler`` (a flow, a one-step
student, a reflowed flow). How it samples is the stage's ``sample`` node, so ``--spec``
overrides it like any other key: ``num`` samples, ``steps`` ODE steps (0 = the objective's
default; a one-step student ignores it), ``solver`` (an ODE method of ``xmodal.sampling``;
'' = the objective's own), ``seed`` of the noise. The conditions of sample i are those of
record i of the stage's eval split (a degraded image, a mixture and query, a class label...),
cycled when ``num`` is larger; ``--prompt`` (repeat) replaces the captions of a
text-conditioned stage, cycled over the samples.

Written to ``--out`` (default ``<stage workdir>/samples``):
- ``samples.npy``: the raw samples [num, ...] (float32), always;
- images ([num, H, W, 1|3] in [-1, 1]): ``sample_<i>.png`` and ``grid.png``;
- 2-D points ([num, 2]): ``points.png``, a scatter plot;
- audio (an objective with ``render_samples``, FlowSep's): ``sample_<i>.wav`` and
  ``sample_<i>.png``, its log-mel spectrogram (``audio.spectrogram_picture``);
- ``conditions.txt``: per sample, its eval record and caption (when the stage has one).
``--stage`` names the stage of a multi-stage spec; by default the last trained stage that
samples.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from xmodal import sampling
from xmodal.audio.spectrogram_picture import save_spectrograms
from xmodal.core import datasets as sources
from xmodal.core import input as pipeline
from xmodal.core import objective as objective_lib
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core.registry import COMMANDS, OBJECTIVES, TRANSFORMS, CommandError, command_parser
from xmodal.data.show import grid_shape
from xmodal.distill.student import Distilled
from xmodal.distill.teacher import FlowTeacher


@dataclasses.dataclass
class Loaded:
    """A trained generative stage, ready to sample."""
    name: str
    path: str
    spec: object
    objective: object
    params: dict             # trained groups (EMA policy) and the frozen networks
    transform: object


def load_sampler(spec, workdir: str, stage: str = "") -> Loaded:
    """The stage ``stage`` of ``spec`` trained in ``workdir`` (by default the last trained one
    whose objective samples), its objective rebuilt from the spec as given (overrides apply)."""
    stages = spec_lib.stages_of(spec)
    names = [n for n, _ in stages]
    if stage and stage not in names:
        raise CommandError(f"--stage={stage!r}: this spec's stages are {names}")
    candidates = [(n, s) for n, s in stages if n == stage] if stage else stages[::-1]
    for name, node in candidates:
        path = os.path.join(workdir, name) if name else workdir
        if not stages_lib.is_trained(path):
            if stage or len(stages) == 1:
                raise CommandError(f"no trained stage in {path!r}: train it first "
                                   f"(--mode=train{f' --stages={name}' if name else ''})")
            continue
        node = stages_lib.resolve_refs(node, workdir)
        model = stages_lib.build_model(node.model.to_dict())
        objective = OBJECTIVES.build(node.objective.name,
                                     **spec_lib.component_kwargs(node.objective))(model, None)
        if not isinstance(objective, sampling.Sampler):
            if stage or len(stages) == 1:
                raise CommandError(f"stage {name or workdir!r} trains {node.objective.name!r}, "
                                   "which does not generate (no sample method)")
            continue
        params = {**jax.tree.map(jnp.asarray, objective_lib.load_frozen(objective)),
                  **jax.tree.map(jnp.asarray, stages_lib.load_params(path))}
        transform = TRANSFORMS.build(node.data.transform.name,
                                     **spec_lib.component_kwargs(node.data.transform))
        return Loaded(name, path, node, objective, params, transform)
    raise CommandError(f"no trained stage of this spec generates; stages: {names}")


def with_solver(objective, solver: str):
    """The objective with another ODE method (its ``solver`` field)."""
    if not solver:
        return objective
    if solver not in sampling.METHODS:
        raise CommandError(f"sample.solver={solver!r}: one of {', '.join(sampling.METHODS)}")
    fields = {f.name for f in dataclasses.fields(objective)} if dataclasses.is_dataclass(
        objective) else set()
    if "solver" not in fields:
        raise CommandError(f"sample.solver={solver!r}: this stage's sampler "
                           f"({type(objective).__name__}) has no ODE method to choose")
    return dataclasses.replace(objective, solver=solver)


def conditions(loaded: Loaded, num: int, prompts: list[str]) -> tuple[dict, list[str]]:
    """(batch of ``num`` conditions from the eval split, one line per sample describing it)."""
    data = loaded.spec.data
    sources.prepare(data.name, data.data_dir or None)
    source = sources.data_source(data.name, data.eval_split, data.data_dir or None)
    n_records = min(num, len(source))
    arrays = pipeline.eval_arrays(source, loaded.transform, max_examples=n_records)
    idx = np.arange(num) % n_records
    batch = {k: np.asarray(v)[idx] for k, v in arrays.items()}
    tokenizer = getattr(loaded.transform, "tokenizer", None)
    text_key = "text" if "text" in batch else ("query" if "query" in batch else None)
    if prompts:
        if text_key is None or tokenizer is None:
            raise CommandError(f"--prompt: stage {loaded.name!r} is not conditioned on text "
                               f"(its conditions: {', '.join(sorted(batch))})")
        batch[text_key] = tokenizer.encode_batch([prompts[i % len(prompts)]
                                                  for i in range(num)])
    lines = []
    for i in range(num):
        line = f"{i}\teval record {idx[i]}"
        if text_key is not None and tokenizer is not None and hasattr(tokenizer, "decode"):
            line += f"\t{tokenizer.decode(batch[text_key][i])!r}"
        elif "label" in batch:
            line += f"\tlabel {int(batch['label'][i])}"
        lines.append(line)
    return batch, lines


def draw(loaded: Loaded, steps: int, seed: int, batch: dict) -> np.ndarray:
    """A sample per row of ``batch``, from the noise of ``seed``, jitted."""
    obj, params = loaded.objective, loaded.params
    shape = data_shape(obj, params, batch)
    noise = jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    kw = {"steps": steps} if steps else {}
    fn = jax.jit(lambda p, z, b: obj.sample(p, z, b, **kw))
    return np.asarray(fn(params, noise, batch), np.float32)


def data_shape(objective, params, batch) -> tuple:
    """The shape of the batch's data in the objective's space (what its noise is shaped like):
    a distillation's ``data_shape`` (the teacher's data), a flow's ``flow_data``."""
    if isinstance(objective, Distilled):
        return tuple(objective.data_shape(params, batch))
    if not isinstance(objective, FlowTeacher):
        raise CommandError(f"{type(objective).__name__} samples but says nothing of its data's "
                           "shape (neither a flow, distill.teacher.FlowTeacher, nor a student, "
                           "distill.student.Distilled)")
    return tuple(jax.eval_shape(objective.flow_data, params, batch).shape)


def to_images(x: np.ndarray) -> np.ndarray:
    """[-1, 1] float [N, H, W, C] → uint8 RGB [N, H, W, 3]."""
    img = np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def grid(images: np.ndarray, columns: int = 0, pad: int = 2) -> Image.Image:
    n, h, w = images.shape[:3]
    rows, cols = grid_shape(n) if not columns else (-(-n // columns), columns)
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet.paste(Image.fromarray(im), (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def scatter(points: np.ndarray, size: int = 512, radius: int = 2) -> Image.Image:
    """A scatter plot of 2-D points, axes scaled to the points' range (plus 5 %)."""
    lo, hi = points.min(0), points.max(0)
    span = np.maximum(hi - lo, 1e-6) * 1.1
    mid = (lo + hi) / 2
    xy = (points - mid) / span + 0.5
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    d.line([(size // 2, 0), (size // 2, size)], fill=(220, 220, 220))
    d.line([(0, size // 2), (size, size // 2)], fill=(220, 220, 220))
    for x, y in xy:
        px, py = x * size, (1 - y) * size
        d.ellipse([px - radius, py - radius, px + radius, py + radius], fill=(31, 119, 180))
    return img


def write(out: str, x: np.ndarray, media: dict | None, lines: list[str]) -> list[str]:
    """Writes the files of the module docstring; returns their names."""
    import soundfile

    os.makedirs(out, exist_ok=True)
    np.save(os.path.join(out, "samples.npy"), x)
    written = ["samples.npy"]
    with open(os.path.join(out, "conditions.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    written.append("conditions.txt")
    if media and "audio" in media:
        for i, (wave, mel) in enumerate(zip(media["audio"], media["spectrogram"])):
            soundfile.write(os.path.join(out, f"sample_{i}.wav"), np.asarray(wave, np.float32),
                            int(media["sample_rate"]))
            save_spectrograms(os.path.join(out, f"sample_{i}.png"), [mel], [f"sample {i}"])
            written += [f"sample_{i}.wav", f"sample_{i}.png"]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        images = to_images(x)
        for i, im in enumerate(images):
            Image.fromarray(im).save(os.path.join(out, f"sample_{i}.png"))
            written.append(f"sample_{i}.png")
        grid(images).save(os.path.join(out, "grid.png"))
        written.append("grid.png")
    elif x.ndim == 2 and x.shape[-1] == 2:
        scatter(x).save(os.path.join(out, "points.png"))
        written.append("points.png")
    return written


@COMMANDS.register("sample")
def sample_command(spec, workdir: str, argv: list[str]) -> dict:
    """``[--stage=NAME] [--prompt=TEXT ...] [--out=DIR]``; the rest is the stage's ``sample``
    node (module docstring)."""
    parser = command_parser("sample")
    parser.add_argument("--stage", default="", help="the stage to sample from")
    parser.add_argument("--prompt", action="append", default=[], help="a caption (repeat)")
    parser.add_argument("--out", default="", help="where the files go")
    args = parser.parse_args(argv)
    loaded = load_sampler(spec, workdir, args.stage)
    cfg = loaded.spec.sample     # its ranges were checked with the spec (schema.RANGES)
    loaded.objective = with_solver(loaded.objective, cfg.solver)
    batch, lines = conditions(loaded, cfg.num, args.prompt)
    x = draw(loaded, cfg.steps, cfg.seed, batch)
    if not np.all(np.isfinite(x)):
        raise CommandError(f"stage {loaded.name!r} produced non-finite samples")
    render = getattr(loaded.objective, "render_samples", None)
    media = render(loaded.params, x, batch) if render is not None else None
    out = args.out or os.path.join(loaded.path, "samples")
    written = write(out, x, media, lines)
    print(f"{cfg.num} sample(s) of stage {loaded.name or workdir!r} "
          f"({type(loaded.objective).__name__}, steps {cfg.steps or 'default'}, "
          f"solver {cfg.solver or 'default'}, seed {cfg.seed}) → {out}: "
          f"{', '.join(written[:6])}{' …' if len(written) > 6 else ''}", flush=True)
    return {"out": out, "files": written, "shape": x.shape}
