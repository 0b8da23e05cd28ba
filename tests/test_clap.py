"""The audio-text (CLAP-style) pieces: transform, audio tower, scorer, and specs/clap.py."""
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.audio import dsp as audio
from xmodal.core.input import CheckedPosition
from xmodal.core.registry import TRANSFORMS
from xmodal.projects.clap.score import clap_score, load_clap
from xmodal.core.registry import MODELS

SR = 16000
TINY_ENCODER = dict(sample_rate=SR, n_fft=256, hop=128, n_mels=16, channels=(4, 8), width=8)


def _tone(freq, seconds=0.5, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_transform_keys_shapes_and_errors():
    tr = TRANSFORMS.build("audio_text", max_text_len=16, num_samples=1000)
    rec = {"audio": np.ones(1500, np.float32), "caption": "a violin playing C4", "instrument": 3}
    out = tr.map(rec)
    assert out["audio"].shape == (1000,) and out["audio"].dtype == np.float32
    assert out["text"].shape == (16,) and out["label"] == 3
    short = tr.map(dict(rec, audio=np.ones(10, np.float32)))["audio"]
    assert short.shape == (1000,) and short[:10].sum() == 10 and short[10:].sum() == 0
    with pytest.raises(KeyError, match="caption"):
        tr.map({"audio": rec["audio"], "instrument": 1})
    with pytest.raises(ValueError, match="mono"):
        tr.map(dict(rec, audio=np.ones((2, 100), np.float32)))


def test_random_gain_is_within_range():
    tr = TRANSFORMS.build("audio_text", gain_db=6.0)
    x = {"audio": np.ones(8, np.float32)}
    gains = [tr.augment.random_map(x, np.random.default_rng(i))["audio"][0] for i in range(50)]
    assert 10 ** (-6 / 20) - 1e-6 <= min(gains) and max(gains) <= 10 ** (6 / 20) + 1e-6
    assert max(gains) / min(gains) > 1.5


def test_label_caption_swap():
    tr = TRANSFORMS.build("audio_text", max_text_len=40, label_prompt="{article} {label} sound",
                          label_names=("oboe", "cello"), label_prob=0.5)
    rec = {"audio": np.ones(100, np.float32), "caption": "an oboe playing C4", "instrument": 0}
    out = tr.map(rec)
    assert tr.tokenizer.decode(out["label_text"]) == "an oboe sound"
    texts = {tr.tokenizer.decode(tr.augment.random_map(out, np.random.default_rng(i))["text"])
             for i in range(40)}
    assert texts == {"an oboe sound", "an oboe playing C4"}
    with pytest.raises(ValueError, match="label_names"):
        TRANSFORMS.build("audio_text", label_prompt="{label}")
    with pytest.raises(ValueError, match="outside"):
        tr.map(dict(rec, instrument=5))


def _encoder():
    enc = MODELS.build("audio_encoder", **TINY_ENCODER)
    params = enc.init(jax.random.key(0), jnp.zeros((2, 4000)))
    return enc, params


@pytest.mark.slow
def test_audio_encoder_waveform_and_logmel_agree_any_length():
    enc, params = _encoder()
    wav = np.stack([_tone(440), _tone(880)])
    out = enc.apply(params, jnp.asarray(wav))
    assert out.shape == (2, 8)
    mel = audio.log_mel(jnp.asarray(wav), SR, n_fft=256, hop=128, n_mels=16, floor=1e-8)
    np.testing.assert_allclose(enc.apply(params, mel), out, atol=1e-5)
    # A longer clip (a 4 s mixture vs 2 s training clips) goes through the same weights.
    assert enc.apply(params, jnp.zeros((1, 12345))).shape == (1, 8)


def test_audio_encoder_ignores_level_and_survives_silence():
    enc, params = _encoder()
    # Noise has energy in every bin, far above the log floor: a gain shifts every log-mel bin
    # by the same constant, which the per-clip standardisation removes.
    wav = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4000)).astype(np.float32))
    np.testing.assert_allclose(enc.apply(params, 0.1 * wav), enc.apply(params, wav),
                               atol=1e-3, rtol=1e-3)
    silence = enc.apply(params, jnp.zeros((2, 4000)))
    assert np.all(np.isfinite(silence))
    # Silence embeds to one deterministic vector, whatever else is in the batch.
    mixed = enc.apply(params, jnp.concatenate([jnp.zeros((1, 4000)), wav[:1]]))
    np.testing.assert_allclose(mixed[0], silence[0], atol=1e-6)
    with pytest.raises(ValueError, match="waveforms"):
        enc.apply(params, jnp.zeros((2, 3, 4, 5)))


def test_audio_encoder_as_two_tower_image_tower():
    model = MODELS.build("two_tower", embed_dim=8,
                         towers=dict(audio=dict(name="audio_encoder", **TINY_ENCODER),
                                     text=dict(name="text_transformer", max_len=8, width=8,
                                               depth=1, num_heads=2)))
    wav, text = jnp.zeros((2, 4000)), jnp.zeros((2, 8), jnp.int32)
    params = model.init(jax.random.key(0), wav, text)
    za, zt, extra = model.apply(params, wav + jnp.asarray(np.stack([_tone(440)[:4000]] * 2)),
                                text)
    np.testing.assert_allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    assert zt.shape == (2, 8) and float(extra["logit_scale"]) > 0




@pytest.mark.slow
@skip_unless_installed("instruments/tiny")
@skip_unless_installed("tuxpaint/effects_tiny")
def test_clap_spec_cli_and_scorer(tmp_path):
    """specs/clap.py:tiny trains 2 steps on instruments + Tux Paint effects (a data.mix),
    evaluates both eval sets, then serves as the scorer."""
    workdir = tmp_path / "clap"
    r = subprocess.run(
        [sys.executable, "-m", "xmodal.main", "--spec=specs/clap.py:tiny",
         f"--workdir={workdir}"],
        cwd=cli.ROOT, env=cli.env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    spec = json.loads((workdir / "spec.json").read_text())
    assert spec["data"]["mix"]["effects"]["name"] == "tuxpaint/effects_tiny"
    # The mixture's iterator state is saved with the model (two batches read), with its digest.
    data_state = json.loads((workdir / "checkpoints/2/data/process_0-of-1.json").read_text())
    assert data_state["iterator"] == {"next_index": 2}
    assert data_state["sha256"] == CheckedPosition.digest({"next_index": 2})
    # Instruments (retrieval, zero-shot) and the held-out effects (retrieval only: no labels).
    for key in ("eval/t2i_R@1", "eval/zeroshot_top1", "eval/effects/t2i_R@1",
                "eval/effects/i2t_R@10"):
        assert key in r.stdout, key
    assert "eval/effects/zeroshot_top1" not in r.stdout
    scorer = load_clap(str(workdir))
    assert scorer.sample_rate == SR
    wavs = np.stack([_tone(440, 1.0), _tone(220, 1.0), np.zeros(SR, np.float32)])
    za = scorer.embed_audio(wavs)
    np.testing.assert_allclose(np.linalg.norm(za, axis=1), 1.0, atol=1e-5)
    # Chunking (batch 2 < 3 clips) gives the same embeddings as one batch.
    scorer.batch_size = 2
    np.testing.assert_allclose(scorer.embed_audio(wavs), za, atol=1e-5)
    texts = ["a violin playing a short phrase", "a flute playing C5", ""]
    s = clap_score(scorer, wavs, texts)
    zt = scorer.embed_text(texts)
    np.testing.assert_allclose(s, np.sum(za * zt, axis=1), atol=1e-5)
    assert np.all(np.abs(s) <= 1 + 1e-5)
    with pytest.raises(ValueError, match="texts"):
        clap_score(scorer, wavs, texts[:2])
    # score_estimates with the real scorer: 8 kHz estimates are resampled to its 16 kHz.
    from xmodal.audio import dsp as audio
    from xmodal.projects.flowsep.baselines import clap_text, score_estimates
    at8k = audio.resample(wavs[:2], SR, 8000)
    queries = ["separate the violin", "separate the flute"]
    out = score_estimates(at8k, at8k, at8k + 0.01, queries, 8000, scorer=scorer, n_fft=256,
                          hop=128)
    assert out["fd"] == pytest.approx(0.0, abs=1e-4)      # identical sets
    expect = clap_score(scorer, audio.resample(at8k, 8000, SR), [clap_text(q) for q in queries])
    assert out["clap_score"] == pytest.approx(float(np.mean(expect)), abs=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        scorer.embed_audio(np.full((1, SR), np.nan, np.float32))


def test_load_clap_refuses_a_non_clap_workdir(tmp_path):
    from xmodal.core.registry import SpecError
    with pytest.raises(SpecError, match="spec.json"):
        load_clap(str(tmp_path))
    (tmp_path / "spec.json").write_text(
        '{"model": {"name": "two_tower", "towers": {"image": {"name": "vit"}, "text": {}}}}')
    with pytest.raises(SpecError, match="not an audio-text two_tower model"):
        load_clap(str(tmp_path))
