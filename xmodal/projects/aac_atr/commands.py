"""``--mode=caption``: caption your own audio files with a trained captioner.

    python -m xmodal.main --spec=specs/aac_atr.py:runlocal --workdir=runs/aac_atr \
        --mode=caption --audio=clip.wav [--audio=folder/] [--beams=4] [--samples=2] \
        [--top_p=0.9] [--seed=0] [--out=captions.json]

Each file is read mono at the model's sample rate and cut or zero-padded to the training clip
length, as the data was. Prints, per file, the beam-search caption and ``--samples`` sampled
ones (nucleus sampling at ``--top_p``); ``--out`` writes them as JSON.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from xmodal.audio.files import read_audio
from xmodal.core import checkpoint as ckpt_lib
from xmodal.core import spec as spec_lib
from xmodal.core import stages as stages_lib
from xmodal.core.registry import (COMMANDS, MODELS, TRANSFORMS, CommandError, SpecError,
                                  command_parser)
from xmodal.data.transforms.audio_text import fit
from xmodal.inference.captions import generate
from xmodal.inference.commands import AUDIO_EXTENSIONS, expand

# Peak amplitude below which a clip is silence (-80 dBFS): nothing to caption.
SILENT = 1e-4


def trained_spec(workdir: str) -> tuple[dict, object]:
    """(spec, transform) of a captioner workdir, read before its checkpoint so a bad input
    file is reported without loading a model."""
    if not os.path.isfile(os.path.join(workdir, "spec.json")):
        raise CommandError(f"{workdir!r} holds no trained run (no spec.json): train it first")
    spec = stages_lib.read_spec(workdir)
    if spec["model"]["name"] != "captioner":
        raise CommandError(f"{workdir!r} trained model {spec['model']['name']!r}, not a "
                           "captioner")
    data = spec["data"]
    return spec, TRANSFORMS.build(data["transform"]["name"],
                                  **spec_lib.component_kwargs(data["transform"]))


def load_captioner(workdir: str, transform):
    """The trained stage; one line when it cannot be loaded or its vocabulary is not the
    tokenizer's."""
    try:
        stage = stages_lib.load_stage(workdir)
    except SpecError as e:
        raise CommandError(f"{e}; train the run first")
    vocab = stage.params["model"]["dec"]["token_embed"]["embedding"].shape[0]
    if vocab != transform.tokenizer.vocab_size:
        raise CommandError(f"{workdir!r}: the checkpoint's decoder has a vocabulary of {vocab} "
                           f"tokens, its spec's tokenizer {transform.tokenizer.vocab_size}: "
                           "they were not trained together")
    return stage


def read_clip(path: str, rate: int, num_samples: int, min_samples: int) -> np.ndarray:
    wave = np.asarray(read_audio(path, rate)[0], np.float32)  # one line for a bad file
    if len(wave) < min_samples:
        raise CommandError(f"{path!r} is {len(wave) / rate * 1000:.0f} ms long; the captioner "
                           f"needs at least {min_samples / rate * 1000:.0f} ms")
    if np.max(np.abs(wave)) < SILENT:
        raise CommandError(f"{path!r} is silent (peak below -80 dBFS): nothing to caption")
    return fit(wave, num_samples) if num_samples else wave


@COMMANDS.register("caption")
def caption_command(spec, workdir: str, argv: list[str]) -> dict:
    parser = command_parser("caption")
    parser.add_argument("--audio", action="append", default=[], help="audio file or folder")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--top_p", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if not args.audio:
        raise CommandError("--mode=caption: give --audio=FILE (or a folder; repeat for more)")
    if args.beams < 1 or args.samples < 0 or not 0.0 < args.top_p <= 1.0:
        raise CommandError("--mode=caption: --beams >= 1, --samples >= 0, 0 < --top_p <= 1")
    spec_json, transform = trained_spec(workdir)
    encoder = spec_json["model"]["encoder"]
    tower = MODELS.get(encoder["name"])  # its field defaults where the spec leaves them out
    rate = int(encoder.get("sample_rate", tower.sample_rate))
    n_fft = int(encoder.get("n_fft", tower.n_fft))
    files = expand(args.audio, AUDIO_EXTENSIONS)
    clips = np.stack([read_clip(f, rate, transform.num_samples, n_fft // 2 + 1) for f in files])
    stage = load_captioner(workdir, transform)
    model, params = stage.model, stage.params["model"]
    memory = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode"))(params, clips)
    decode = transform.tokenizer.decode
    beam = jax.jit(lambda p, m: generate(model, p, m, "beam", beams=args.beams))(params, memory)
    sample = jax.jit(lambda p, m, k: generate(model, p, m, "sample", rng=k, top_p=args.top_p))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), max(args.samples, 1))
    sampled = [[decode(r) for r in np.asarray(sample(params, memory, k))]
               for k in keys[:args.samples]]
    results = []
    print(f"captions by {workdir} (step {ckpt_lib.find_step_dir(workdir)[1]})", flush=True)
    for i, path in enumerate(files):
        row = {"audio": path, "beam": decode(np.asarray(beam)[i]),
               "sampled": [s[i] for s in sampled]}
        results.append(row)
        print(f"{path}: {row['beam']!r}" + "".join(f"\n    sampled: {s!r}" for s in row["sampled"]),
              flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, ensure_ascii=False)
        print(f"wrote {args.out}", flush=True)
    return {"results": results}
