"""``--mode=separate``: separate the source a text query names from a user's audio file with a
trained FlowSep workdir (``specs/flowsep.py``).

    python -m xmodal.main --spec=specs/flowsep.py:runlocal --workdir=W --mode=separate \
        --input=in.wav --query="the violin" --out=out.wav

The input is read with soundfile (wav, flac, ogg, ...): several channels are averaged to mono,
another sample rate is resampled (polyphase) to the model's, and the audio is cut into chunks
of the model's clip length (the last zero-padded) that are separated independently and joined.
``out`` gets the neural vocoder's waveform (Griffin-Lim's when no vocoder was trained), at the
input's sample rate; ``<out stem>.mixphase.wav`` beside it gets the estimate's magnitude with
the mixture's phase. An empty, unreadable, non-finite or too short input is refused with a
``CommandError`` and nothing is written.
"""
from __future__ import annotations

import os

import numpy as np

from xmodal.core.registry import COMMANDS, CommandError, command_parser
from xmodal.audio import dsp as audio
from xmodal.audio.files import read_audio

def normalise_query(query: str) -> str:
    """The training queries read 'separate the <label>': 'the violin' and 'violin' become
    'separate the violin'; a query already starting with 'separate' is kept."""
    q = " ".join(query.strip().lower().split())
    if not q:
        raise CommandError("--query is required, e.g. --query='the violin'")
    if q.startswith("separate "):
        return q
    return "separate " + (q if q.startswith("the ") else "the " + q)


def sampler_settings(spec) -> dict:
    """steps / solver / cfg_scale / noise_scale of the spec's ``separation`` evaluator (the
    evaluator's defaults where the spec has none)."""
    import inspect

    from xmodal.core import spec as spec_lib
    from xmodal.projects.flowsep.evaluator import separation
    keys = ("steps", "solver", "cfg_scale", "noise_scale")
    out = {k: p.default for k, p in inspect.signature(separation).parameters.items()
           if k in keys}
    for _, stage in spec_lib.stages_of(spec):
        for ev in (stage.get("evals") or {}).values():
            if ev.get("name") == "separation":
                out.update({k: ev[k] for k in keys if k in ev})
    return out


@COMMANDS.register("separate")
def separate_command(spec, workdir: str, argv: list[str]) -> dict:
    """``--mode=separate`` flags: ``--input=FILE --query=TEXT --out=FILE [--batch=N]``."""
    parser = command_parser("separate")
    parser.add_argument("--input", default="", help="the audio file to separate")
    parser.add_argument("--query", default="", help="what to separate, e.g. 'the violin'")
    parser.add_argument("--out", default="", help="where to write the separated wav")
    parser.add_argument("--batch", type=int, default=8, help="chunks separated at once")
    a = parser.parse_args(argv)
    return separate(spec, workdir, input=a.input, query=a.query, out=a.out, batch=a.batch)


def separate(spec, workdir: str, *, input: str, query: str, out: str, batch: int = 8) -> dict:
    """See the module docstring. The sampler settings (steps, CFG scale, noise scale) are the
    spec's ``separation`` evaluator's, so a file is separated as the table was measured.
    Returns {"out": path, "mixphase": path, "chunks": n}."""
    import soundfile as sf

    from xmodal.core.registry import TRANSFORMS
    from xmodal.projects.flowsep.separator import Separator
    from xmodal.core import spec as spec_lib

    if not input:
        raise CommandError("--input is required: the audio file to separate")
    if not out:
        raise CommandError("--out is required: where to write the separated wav")
    q = normalise_query(query)
    # The file first: a file that cannot be read is said before the models load.
    wave, rate = read_audio(input, None)
    sep = Separator.from_workdir(spec, workdir)
    sampler = sampler_settings(spec)
    flow = next(s for _, s in spec_lib.stages_of(spec) if s.objective.name == "flowsep")
    transform = TRANSFORMS.build(flow.data.transform.name,
                                 **spec_lib.component_kwargs(flow.data.transform))
    length = sep.length or 4 * sep.sample_rate
    wave = audio.resample(wave, rate, int(sep.sample_rate))
    n = len(wave)
    chunks = -(-n // length)
    padded = np.zeros(chunks * length, np.float32)
    padded[:n] = wave
    pieces = padded.reshape(chunks, length)
    tokens = np.repeat(transform.tokenizer.encode(q)[None], batch, 0)
    # The mixture-phase file uses the table's chosen renderer (ratio to the VAE-decoded mixture).
    which = ("vocoder", "vae_ratio") if sep.vocoder is not None else ("griffin_lim", "vae_ratio")
    outs = {k: [] for k in which}
    for i in range(0, chunks, batch):
        part = pieces[i:i + batch]
        pad = batch - len(part)
        part = np.concatenate([part, np.zeros((pad, length), np.float32)]) if pad else part
        got = sep.separate(part, tokens, which=which, seed=i, **sampler)
        for k in which:
            outs[k].append(got[k][: batch - pad])
    main = which[0]
    written = {}
    stem, ext = os.path.splitext(out)
    for key, path in ((main, out), ("vae_ratio", f"{stem}.mixphase{ext or '.wav'}")):
        y = np.concatenate(outs[key]).reshape(-1)[:n]
        y = audio.resample(y, sep.sample_rate, rate)
        y = np.nan_to_num(y)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        sf.write(path, np.clip(y, -1.0, 1.0), rate, subtype="FLOAT")
        written[key] = path
    print(f"separated {n / sep.sample_rate:.2f} s ({chunks} chunk(s)) for query {q!r}: "
          f"{out} ({main}), {written['vae_ratio']} (mixture phase)", flush=True)
    return {"out": out, "mixphase": written["vae_ratio"], "chunks": chunks}
