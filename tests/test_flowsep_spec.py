"""specs/flowsep.py end to end through the CLI on lass_mix/tiny (2 steps per stage, tiny models):
every stage trains, the eval stage writes the table and the spectrogram plots with finite
numbers, and ``--mode=separate`` separates a wav written here and refuses a bad one."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests import cli

SPEC = "specs/flowsep.py:tiny,data=lass_mix/tiny"


@pytest.fixture(scope="session")
def vae_and_clap(tmp_path_factory):
    """The vae and clap stages of the tiny spec, trained once for both CLI tests below (the
    two specs differ only after them); each test copies them into its own workdir."""
    from tests.conftest import shared_workdir
    return shared_workdir(tmp_path_factory, "shared_flowsep_vae_clap",
                          lambda wd: _check(_main(wd, "--stages=vae,clap")))


def _check(r):
    assert r.returncode == 0, r.stderr[-5000:]
    return r


def _main(workdir, *args, timeout=900):
    cmd = [sys.executable, "-m", "xmodal.main", f"--spec={SPEC}", f"--workdir={workdir}", *args]
    return subprocess.run(cmd, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                          text=True, timeout=timeout)


def test_flowsep_spec_query_and_remix_arguments():
    from xmodal.core import spec as spec_lib
    c = spec_lib.load(os.path.join(cli.ROOT, "specs/flowsep.py") + ":tiny,query=clap,remix=0.25")
    assert list(c.order).index("clap") < list(c.order).index("flow")
    assert c.stages.flow.objective.query_from == "stage:clap"
    assert c.stages.flow.objective.remix == 0.25 and c.stages.flow.objective.remix_gain_db > 0
    own = spec_lib.load(os.path.join(cli.ROOT, "specs/flowsep.py") + ":tiny")
    assert own.stages.flow.objective.query_from == "" and own.stages.flow.objective.remix == 0
    with pytest.raises(ValueError, match="query=clap"):
        spec_lib.load(os.path.join(cli.ROOT, "specs/flowsep.py") + ":tiny,query=clap,clap=False")
    with pytest.raises(ValueError, match="own, clap"):
        spec_lib.load(os.path.join(cli.ROOT, "specs/flowsep.py") + ":tiny,query=t5")


@pytest.mark.slow
def test_flowsep_spec_trains_evaluates_and_separates(tmp_path, vae_and_clap):
    wd = cli.copy_workdir(vae_and_clap, tmp_path / "flowsep")
    r = _main(wd)             # the stages after vae and clap (those two are at their last step)
    assert r.returncode == 0, r.stderr[-5000:]
    for stage in ("vae", "flow", "distill", "vocoder"):
        assert os.listdir(wd / stage / "checkpoints") == ["2"], stage
    # The one-step student (DMD2) reads the flow as its teacher; its generator updated once.
    distill_spec = json.load(open(wd / "distill" / "spec.json"))
    assert distill_spec["objective"]["teacher_from"] == str(wd / "flow")
    logged = [json.loads(line) for line in open(wd / "distill" / "metrics.jsonl")]
    dm = [r["train/generator/dm_loss"] for r in logged if "train/generator/dm_loss" in r]
    assert dm and all(math.isfinite(v) for v in dm), logged[-1]
    outputs = json.load(open(wd / "vae" / "stage_outputs.json"))
    assert outputs["latent_std"] > 0 and outputs["split"] == "train" and outputs["step"] == 2
    ev = wd / "eval"
    table = json.load(open(ev / "separation_table.json"))
    rows = table["rows"]
    for name in ("FlowSep (vocoder)", "FlowSep (estimate magnitude + mixture phase)",
                 "FlowSep (estimate magnitude + mixture phase, ratio to the VAE-decoded mixture)",
                 "FlowSep (Griffin-Lim)", "mixture (unprocessed)", "oracle IRM (upper bound)"):
        assert name in rows, sorted(rows)
        for col in ("log_mel_distance", "si_sdr", "sdri"):
            assert math.isfinite(rows[name][col]), (name, col)
    # The tiny spec keeps the mask and clap stages: their row and columns must be there.
    assert math.isfinite(rows["mask network (discriminative)"]["sdri"])
    assert all(math.isfinite(r["fd"]) and math.isfinite(r["clap_score"]) for r in rows.values())
    assert rows["mixture (unprocessed)"]["sdri"] == pytest.approx(0.0, abs=1e-6)
    student = [n for n in rows if n.startswith("FlowSep one-step student (DMD from flow, noise scale 1)")]
    assert len(student) == 2 and any(n.endswith("(vocoder)") for n in student), sorted(rows)
    for name in student:
        assert math.isfinite(rows[name]["sdri"]) and math.isfinite(rows[name]["fd"])
    assert table["student_latency_s_per_audio_s"] > 0
    assert set(table["latency_s_per_audio_s"]) == {"1", "2"}
    assert all(v > 0 for v in table["latency_s_per_audio_s"].values())
    md = open(ev / "separation_table.md").read()
    assert "| oracle IRM (upper bound) |" in md and "Euler steps" in md
    pngs = sorted(p for p in os.listdir(ev) if p.endswith(".png"))
    assert pngs == ["spectrogram_0.png", "spectrogram_1.png"]

    # ---------------------------------------------------------------- --mode=sample
    # The one-step student on held-out mixtures: WAVs at the model's rate and spectrograms.
    smp = tmp_path / "samples"
    r = _main(wd, "--mode=sample", "--stage=distill", f"--out={smp}", "--prompt=the violin",
              "--spec.stages.distill.sample.num=3")
    assert r.returncode == 0, r.stderr[-5000:]
    for i in range(3):
        y, rate = sf.read(smp / f"sample_{i}.wav")
        assert rate == 8000 and y.shape == (16384,) and np.all(np.isfinite(y))   # tiny: 8 kHz
        assert os.path.getsize(smp / f"sample_{i}.png") > 100
    assert np.load(smp / "samples.npy").shape[0] == 3
    assert "'the violin'" in (smp / "conditions.txt").read_text()

    # ---------------------------------------------------------------- separate a user's file
    t = np.arange(int(2.5 * 22050)) / 22050
    stereo = np.stack([0.1 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 660 * t)], 1)
    src = tmp_path / "in.wav"
    sf.write(src, stereo.astype(np.float32), 22050)
    out = tmp_path / "out.wav"
    r = _main(wd, "--mode=separate", f"--input={src}", "--query=the violin", f"--out={out}")
    assert r.returncode == 0, r.stderr[-5000:]
    y, rate = sf.read(out)
    assert rate == 22050 and y.ndim == 1 and len(y) == len(t) and np.all(np.isfinite(y))
    assert os.path.isfile(tmp_path / "out.mixphase.wav")

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not a wav")
    out2 = tmp_path / "out2.wav"
    r = _main(wd, "--mode=separate", f"--input={bad}", "--query=the violin", f"--out={out2}")
    assert r.returncode != 0 and "cannot read" in r.stderr
    assert not out2.exists()


@pytest.mark.slow
def test_flowsep_with_the_clap_query_encoder_and_dynamic_mixing(tmp_path, vae_and_clap):
    """``query=clap``: the flow stage reads the clap stage's frozen text tower (trained before
    it), and --mode=separate embeds the user's query with it; ``remix`` trains through."""
    wd = cli.copy_workdir(vae_and_clap, tmp_path / "flowsep")
    spec = SPEC + ",query=clap,mask=False,remix=0.5"
    cmd = [sys.executable, "-m", "xmodal.main", f"--spec={spec}", f"--workdir={wd}"]
    r = subprocess.run(cmd + ["--stages=flow"], cwd=cli.ROOT, env=cli.env(devices=1),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-5000:]
    flow_spec = json.load(open(wd / "flow" / "spec.json"))
    assert flow_spec["objective"]["query_from"] == str(wd / "clap")
    assert flow_spec["objective"]["remix"] == 0.5
    src, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, (0.1 * np.sin(np.arange(20000) / 5.0)).astype(np.float32), 8000)
    r = subprocess.run(cmd + ["--mode=separate", f"--input={src}", "--query=the violin",
                              f"--out={out}"], cwd=cli.ROOT, env=cli.env(devices=1),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-5000:]
    y, rate = sf.read(out)
    assert rate == 8000 and len(y) == 20000 and np.all(np.isfinite(y))
