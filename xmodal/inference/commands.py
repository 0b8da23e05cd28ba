"""``--mode=embed`` and ``--mode=zeroshot``: a trained contrastive workdir on your own files.

    python -m xmodal.main --spec=specs/clip.py:runlocal --workdir=runs/clip --mode=embed \
        --image=cat.png --image=photos/ --text="a cat" --text="a dog" --out=emb.npz
    python -m xmodal.main --spec=specs/clip.py:runlocal --workdir=runs/clip --mode=zeroshot \
        --image=cat.png [--classes="animals & nature,food & drink,flags"] [--top=5]

``--image`` (or ``--audio`` for an audio-text spec such as CLAP) takes a file or a folder (its
image/audio files, sorted) and repeats. ``embed`` prints the items × texts cosine similarities
and, with ``--out``, writes an ``.npz`` (``items``, ``item_embeddings``, ``texts``,
``text_embeddings``; strings as unicode arrays, readable without pickle). ``zeroshot`` prints
each item's top classes with probabilities (``Embedder.zeroshot``), after one line of what
they are worth: the model's zero-shot accuracy as its training run measured it, beside chance
(flagged when below it); the classes default to the training data set's label names.
``--stage`` picks the encoder stage of a multi-stage spec (FlowSep's ``clap``). See ``xmodal.inference.two_tower`` for how files are prepared.
"""
from __future__ import annotations

import os

import numpy as np

from xmodal.core.registry import COMMANDS, CommandError, command_parser
from xmodal.inference.two_tower import IMAGE_EXTENSIONS, Embedder

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")


def expand(paths: list[str], extensions: tuple[str, ...]) -> list[str]:
    """Files as given; a folder becomes its files with one of ``extensions``, sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.lower().endswith(extensions))
            if not found:
                raise CommandError(f"folder {p!r} holds no {'/'.join(extensions)} file")
            out.extend(found)
        else:
            out.append(p)
    return out


def _parse(mode: str, argv: list[str], extra) -> tuple:
    parser = command_parser(mode)
    parser.add_argument("--image", action="append", default=[], help="image file or folder")
    parser.add_argument("--audio", action="append", default=[], help="audio file or folder")
    parser.add_argument("--stage", default="", help="encoder stage of a multi-stage spec")
    extra(parser)
    return parser.parse_args(argv)


def _items(emb: Embedder, args) -> list[str]:
    given, other = (args.audio, args.image) if emb.is_audio else (args.image, args.audio)
    if other:
        takes, flag, wrong = (("audio", "--audio", "--image") if emb.is_audio
                              else ("images", "--image", "--audio"))
        raise CommandError(f"this spec's model takes {takes}: use {flag}=, not {wrong}=")
    return expand(given, AUDIO_EXTENSIONS if emb.is_audio else IMAGE_EXTENSIONS)


def short(text: str, n: int = 18) -> str:
    text = os.path.basename(text) if os.sep in text else text
    return text if len(text) <= n else text[: n - 1] + "…"


@COMMANDS.register("embed")
def embed_command(spec, workdir: str, argv: list[str]) -> dict:
    """``--image=F|DIR`` / ``--audio=...`` (repeat), ``--text=T`` (repeat), ``[--out=F.npz]``."""
    def extra(p):
        p.add_argument("--text", action="append", default=[], help="a text to embed")
        p.add_argument("--out", default="", help="where to write the embeddings (.npz)")
    args = _parse("embed", argv, extra)
    if not (args.image or args.audio or args.text):
        raise CommandError("--mode=embed: give --image=FILE (or --audio=FILE) and/or --text=TEXT")
    emb = Embedder.from_workdir(workdir, spec, stage=args.stage)
    items = _items(emb, args)
    zi = emb.embed_items(items) if items else np.zeros((0, 0), np.float32)
    zt = emb.embed_texts(args.text) if args.text else np.zeros((0, 0), np.float32)
    dim = max(zi.shape[-1], zt.shape[-1])
    print(f"embedded {len(items)} item(s) and {len(args.text)} text(s) into {dim}-d unit "
          f"vectors ({emb.stage.path}, step {emb.step})", flush=True)
    if items and args.text:
        sims = zi @ zt.T
        print("cosine similarity".ljust(20) + "".join(short(t).rjust(20) for t in args.text))
        for path, row in zip(items, sims):
            print(short(path).ljust(20) + "".join(f"{v:20.3f}" for v in row))
    out = {"items": items, "texts": list(args.text), "item_embeddings": zi,
           "text_embeddings": zt}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        np.savez(args.out, items=np.array(items, dtype=str), texts=np.array(args.text, dtype=str),
                 item_embeddings=zi, text_embeddings=zt)
        print(f"wrote {args.out}", flush=True)
    return out


@COMMANDS.register("zeroshot")
def zeroshot_command(spec, workdir: str, argv: list[str]) -> dict:
    """``--image=F|DIR`` / ``--audio=...`` (repeat), ``[--classes=a,b,c] [--top=N]``."""
    def extra(p):
        p.add_argument("--classes", default="", help="comma-separated class names")
        p.add_argument("--top", type=int, default=5, help="classes shown per item")
    args = _parse("zeroshot", argv, extra)
    if not (args.image or args.audio):
        raise CommandError("--mode=zeroshot: give --image=FILE (or --audio=FILE for audio)")
    if args.top < 1:
        raise CommandError(f"--mode=zeroshot: --top must be at least 1, got {args.top}")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    emb = Embedder.from_workdir(workdir, spec, stage=args.stage)
    items = _items(emb, args)
    probs, names = emb.zeroshot(items, classes)
    print(f"zero-shot over {len(names)} classes, {len(emb.templates)} prompt template(s) "
          f"({emb.stage.path}, step {emb.step})", flush=True)
    print(how_good(emb.stage.path, len(names), own_classes=not classes), flush=True)
    results = []
    for path, p in zip(items, probs):
        order = np.argsort(-p, kind="stable")[: args.top]
        top = [(names[j], float(p[j])) for j in order]
        results.append({"item": path, "top": top})
        print(f"{path}: " + ", ".join(f"{n} {v:.1%}" for n, v in top), flush=True)
    return {"classes": list(names), "probabilities": probs, "results": results}


def measured_zeroshot(stage_dir: str) -> tuple[int, str, float] | None:
    """(step, key, value %) of the stage's last logged zero-shot top-1 accuracy, or None."""
    from xmodal.core.writers import read_metrics
    try:
        rows = read_metrics(stage_dir)
    except OSError:
        return None
    for row in reversed(rows):
        keys = [k for k in row if k.endswith("zeroshot_top1")]
        if keys:   # the main eval set's (eval/zeroshot_top1) before a named set's or field's
            key = min(keys, key=lambda k: (len(k), k))
            return int(row["step"]), key, float(row[key])
    return None


def how_good(stage_dir: str, num_classes: int, own_classes: bool) -> str:
    """One line: what a prediction of this model is worth, beside chance (100 / classes), so a
    confident-looking probability is never read without it."""
    chance = 100.0 / max(num_classes, 1)
    measured = measured_zeroshot(stage_dir)
    if measured is None:
        return (f"this model's zero-shot accuracy was never measured (no eval logged it); "
                f"chance over these {num_classes} classes is {chance:.1f} %")
    step, key, value = measured
    if not own_classes:
        return (f"measured zero-shot top-1 on its own test classes: {value:.1f} % ({key}, step "
                f"{step}); over the {num_classes} classes given here chance is {chance:.1f} % "
                "and the model was not measured on them")
    verdict = ("BELOW CHANCE: its predictions are not to be trusted" if value < chance
               else f"{value / chance:.1f}x chance")
    return (f"measured zero-shot top-1 on its test split: {value:.1f} % against chance "
            f"{chance:.1f} % ({verdict}; {key}, step {step})")
