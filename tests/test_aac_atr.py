"""AAC→ATR: retrieval from a captioner's likelihoods (normalisers, ties, halves), caption
metrics, and the spec through the CLI with ``--mode=caption``."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.evaluate.ties import TiedRanks
from xmodal.projects.aac_atr.retrieval import retrieval_metrics


def test_raw_likelihood_ranks_the_generic_caption_first_and_the_normalisers_fix_it():
    # Caption 0 is short and generic: cheap under every clip (NLL 2), cheapest given clip 0.
    # Captions 1-3 are specific: NLL 5 given their own clip, 9 otherwise.
    nll = np.full((4, 4), 9.0)
    nll[:, 0] = [2.0, 3.0, 3.0, 3.0]
    nll[[1, 2, 3], [1, 2, 3]] = 5.0
    uncond = np.array([3.0, 9.5, 9.5, 9.5])  # the caption without a clip
    m = retrieval_metrics(nll, uncond, "mean", ks=(1,))
    # text→audio: each caption's own clip is its cheapest.
    assert m["t2a_R@1"] == 100.0
    # audio→text, raw: every clip picks the generic caption; only clip 0 is right.
    assert m["a2t_raw_R@1"] == 25.0
    # mean: caption 0's mean NLL 2.75 -> clip 0: -0.75 (best), clips 1-3: +0.25 vs -3.
    assert m["a2t_mean_R@1"] == 100.0 and m["a2t_R@1"] == 100.0
    # uncond: caption 0 at -1 / 0, the others at -0.5 / -4.5 (own): all right.
    assert m["a2t_uncond_R@1"] == 100.0
    assert m["a2t_raw_mAP@10"] == pytest.approx(100 * (1 + 3 * 0.5) / 4)


def test_a_captioner_that_gives_every_pair_one_likelihood_scores_chance():
    n = 20
    m = retrieval_metrics(np.full((n, n), 7.0), np.full(n, 7.0), "uncond", ks=(1, 5, 10))
    for d in ("t2a", "a2t", "a2t_raw", "a2t_mean", "a2t_uncond"):
        assert m[f"{d}_R@1"] == pytest.approx(100 / n)
        assert m[f"{d}_R@10"] == pytest.approx(100 * 10 / n)
        assert m[f"{d}_mAP@10"] == pytest.approx(100 * sum(1 / r for r in range(1, 11)) / n)


def test_map_at_10_counts_ranks_beyond_ten_as_zero():
    ranks = TiedRanks.exact([1, 2, 10, 11, 50])
    np.testing.assert_allclose(ranks.reciprocal_rank(cutoff=10), [1, 0.5, 0.1, 0, 0])
    np.testing.assert_allclose(ranks.reciprocal_rank(), [1, 0.5, 0.1, 1 / 11, 1 / 50])
    tied = TiedRanks(np.array([9]), np.array([1]))  # rank 10 or 11, each with p = 1/2
    assert tied.reciprocal_rank(cutoff=10)[0] == pytest.approx(0.05)


needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="no java: setup.sh installs default-jre-headless")


@needs_java
def test_caption_metrics_known_values():
    from xmodal.evaluate.caption_metrics import caption_metrics
    refs = [["a violin playing a short phrase"], ["a dog barks twice"], ["rain on a roof"]]
    exact = caption_metrics([r[0] for r in refs], refs)
    assert exact["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert exact["ROUGE-L"] == pytest.approx(1.0) and exact["METEOR"] > 0.9
    assert exact["CIDEr-D"] > 5.0
    wrong = caption_metrics(["rain on a roof", "a violin playing a short phrase",
                             "a dog barks twice"], refs, meteor=False)
    assert wrong["BLEU-4"] < 1e-3 and wrong["CIDEr-D"] < 0.5 and "METEOR" not in wrong
    with pytest.raises(ValueError, match="reference sets"):
        caption_metrics(["x"], [])


@pytest.mark.slow
@needs_java
@skip_unless_installed("instruments/tiny")
@skip_unless_installed("tuxpaint/effects_tiny")
def test_tiny_spec_trains_evaluates_and_captions_a_file(tmp_path):
    import soundfile as sf
    wd = tmp_path / "run"
    base = [sys.executable, "-m", "xmodal.main", "--spec=specs/aac_atr.py:tiny",
            f"--workdir={wd}"]
    r = subprocess.run(base, cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    evals = {k: v for row in rows for k, v in row.items() if k.startswith("eval/")}
    for key in ("eval/t2a_R@1", "eval/a2t_uncond_mAP@10", "eval/dev/a2t_mean_R@5",
                "eval/test/t2a_medr", "eval/effects/t2a_R@1", "eval/BLEU-4", "eval/CIDEr-D",
                "eval/test/METEOR"):
        assert key in evals, sorted(evals)
    lines = [json.loads(x) for x in open(wd / "captions_0000002.jsonl")]
    assert lines and all(set(x) == {"reference", "beam", "sampled"} for x in lines)
    assert lines[0]["reference"].startswith("a ")  # an instrument's caption
    effects = [json.loads(x) for x in open(wd / "captions_effects_0000002.jsonl")]
    assert effects[0]["reference"][0].isupper()  # a Tux Paint sentence

    t = np.arange(32000) / 16000
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
             16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "caps.json"
    r = subprocess.run(base + ["--mode=caption", f"--audio={tmp_path / 'tone.wav'}",
                               "--samples=2", f"--out={out}"],
                       cwd=cli.ROOT, env=cli.env(devices=1), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    written = json.loads(out.read_text())
    assert len(written) == 1 and len(written[0]["sampled"]) == 2
    assert written[0]["beam"] in r.stdout
    # Bad input: one CommandError line each (main.py prints it alone; test_cli_errors checks
    # that path), raised before the checkpoint is read.
    from xmodal.core.registry import CommandError
    from xmodal.projects.aac_atr.commands import caption_command
    for args, message in (([f"--audio={tmp_path / 'silent.wav'}"], "is silent"),
                          ([f"--audio={tmp_path / 'none.wav'}"], "does not exist"),
                          ([], "give --audio"),
                          ([f"--audio={tmp_path / 'tone.wav'}", "--beams=0"], "--beams >= 1")):
        with pytest.raises(CommandError, match=message):
            caption_command(None, str(wd), args)


def test_captions_longer_than_the_decoders_context_fail_at_init_naming_both_keys():
    import jax
    from xmodal.core.registry import OBJECTIVES, SpecError
    from xmodal.nn.captioner import Captioner
    model = Captioner(encoder=dict(name="audio_encoder", n_fft=256, hop=128, n_mels=16,
                                   channels=(4,), width=8, pool="none"),
                      decoder=dict(max_len=20, width=8, depth=1, num_heads=2))
    objective = OBJECTIVES.build("captioning")(model, None)
    batch = {"audio": np.zeros((2, 4000), np.float32), "text": np.ones((2, 48), np.int32)}
    with pytest.raises(SpecError, match="max_text_len.*max_len=20: set max_len >= 47"):
        objective.init(jax.random.PRNGKey(0), batch)
    params = objective.init(jax.random.PRNGKey(0), dict(batch, text=batch["text"][:, :21]))
    assert set(params["model"]) == {"enc", "dec"}


def test_without_java_the_captioning_evaluator_stops_the_run_at_its_start(monkeypatch):
    from xmodal.core.datasets import DataSourceMissing
    from xmodal.core.registry import EVALUATORS
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataSourceMissing, match="apt-get install default-jre-headless"):
        EVALUATORS.build("captioning")
