"""The separate command's input handling (the end-to-end run is in test_flowsep_spec.py)."""
import numpy as np
import pytest
import soundfile as sf

from xmodal.core.registry import COMMANDS, CommandError
from xmodal.audio.files import read_audio
from xmodal.projects.flowsep.separate import normalise_query


def test_registered():
    assert "separate" in COMMANDS.names()


def test_stereo_is_averaged_and_rate_converted(tmp_path):
    t = np.arange(22050) / 22050
    left, right = np.sin(2 * np.pi * 200 * t), 0.5 * np.sin(2 * np.pi * 200 * t)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], 1).astype(np.float32), 22050, subtype="FLOAT")
    wave, rate = read_audio(str(path), 8000)
    assert rate == 22050 and wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - 8000) <= 1
    # mean of the channels: amplitude 0.75 (away from the resampler's edges)
    assert np.max(np.abs(wave[1000:-1000])) == pytest.approx(0.75, abs=0.02)


def test_same_rate_mono_is_unchanged(tmp_path):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32)
    sf.write(tmp_path / "m.wav", x, 8000, subtype="FLOAT")
    wave, _ = read_audio(str(tmp_path / "m.wav"), 8000)
    np.testing.assert_allclose(wave, x, atol=1e-7)


def test_bad_inputs_raise_clear_errors(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"this is not audio")
    with pytest.raises(CommandError, match="cannot read"):
        read_audio(str(tmp_path / "junk.wav"), 8000)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(CommandError, match="no samples"):
        read_audio(str(tmp_path / "empty.wav"), 8000)
    x = np.zeros(4000, np.float32)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(CommandError, match="NaN"):
        read_audio(str(tmp_path / "nan.wav"), 8000)
    sf.write(tmp_path / "short.wav", np.zeros(10, np.float32), 8000)
    with pytest.raises(CommandError, match="at least"):
        read_audio(str(tmp_path / "short.wav"), 8000)
    with pytest.raises(CommandError, match="does not exist"):
        read_audio(str(tmp_path / "missing.wav"), 8000)
    with pytest.raises(CommandError, match="does not exist"):
        read_audio("", 8000)
    # The command asks for its flags before it loads any stage (no spec or workdir needed).
    with pytest.raises(CommandError, match="--input is required"):
        COMMANDS.get("separate")(None, str(tmp_path / "none"), ["--out=x.wav"])
    with pytest.raises(CommandError, match="--out is required"):
        COMMANDS.get("separate")(None, str(tmp_path / "none"), ["--input=in.wav"])


def test_queries_are_normalised_to_the_training_form():
    assert normalise_query("the violin") == "separate the violin"
    assert normalise_query("  Violin ") == "separate the violin"
    assert normalise_query("separate the oboe") == "separate the oboe"
    with pytest.raises(CommandError, match="--query"):
        normalise_query("   ")


def test_sampler_settings_are_the_spec_evaluators():
    """A user's file is separated with the sampler the eval table was measured with."""
    from xmodal.projects.flowsep.separate import sampler_settings
    from xmodal.core.spec import load
    spec = load("specs/flowsep.py:tiny,noise_scale=0.4,sample_steps=4")
    assert sampler_settings(spec) == dict(steps=4, solver="euler", cfg_scale=1.0,
                                          noise_scale=0.4)
    # The paper's sampler stays a row of the table.
    assert (10, 1.0) in spec.stages.eval.evals.separation.extra_rows
    spec.stages.eval.evals.separation.steps = 3
    assert sampler_settings(spec)["steps"] == 3
