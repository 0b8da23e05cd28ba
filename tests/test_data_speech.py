import gzip
import hashlib
import wave

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import speech

needs_asterisk = skip_unless_installed("speech/tiny")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("speech/tiny", str(tmp_path_factory.mktemp("data")))


@needs_asterisk
def test_tiny_is_parallel_and_split_by_prompt(records):
    ids = {}
    for split, rs in records.items():
        assert rs
        for r in rs:
            ids.setdefault(r["prompt_id"].decode(), set()).add((split, r["language"]))
    assert len(ids) == 10
    for prompt_id, entries in ids.items():
        assert {lang for _, lang in entries} == {0, 1, 2}, prompt_id  # en, fr, es
        (split,) = {s for s, _ in entries}
        in_test = int(hashlib.sha1(prompt_id.encode()).hexdigest()[:16], 16) % 10 == 0
        assert in_test == (split == "test"), prompt_id


@needs_asterisk
def test_audio_is_16khz_resampled_and_not_silent(records):
    for r in records["train"] + records["test"]:
        lang = speech.LANGUAGES[r["language"]]
        path = sources.resolve_file(
            f"/usr/share/asterisk/sounds/{speech.VOICES[lang]}/{r['prompt_id'].decode()}.wav")
        with wave.open(path) as w:
            assert w.getframerate() == 8000
            original = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
        x = r["audio"]
        assert x.dtype == np.float32 and x.shape == (2 * len(original),)
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 10 ** (-45 / 20)
        # upsampling by 2 keeps the original samples (polyphase: every other output ~ input)
        np.testing.assert_allclose(x[200:-200:2], original[100:-100], atol=0.02)


@needs_asterisk
def test_transcripts_match_the_package_text(records):
    for r in records["train"] + records["test"]:
        lang = speech.LANGUAGES[r["language"]]
        path = sources.resolve_file(
            f"/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz")
        lines = dict(line.split(":", 1) for line in gzip.open(path, "rt")
                     if ":" in line and not line.startswith(";"))
        text = r["transcript"].decode()
        assert text and text == lines[r["prompt_id"].decode()].strip()
        assert not text.startswith("[")


@needs_asterisk
def test_catalog_counts_and_skips():
    prompts, skipped = speech.list_prompts()
    by_lang = {lang: sum(p.language == lang for p in prompts) for lang in speech.LANGUAGES}
    assert all(n > 400 for n in by_lang.values()), by_lang
    assert skipped[speech.SKIP_NOT_SPEECH] > 0  # "[ascending tones]" and friends
    assert not any(p.transcript.startswith("[") for p in prompts)


def test_read_wav_rejects_other_formats(tmp_path):
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(100, "<i2").tobytes())
    with pytest.raises(ValueError, match="stereo.wav is 2 ch"):
        speech.read_wav(str(path))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="broken.wav"):
        speech.read_wav(str(broken))


def test_read_transcripts_parses_and_reports_missing(tmp_path):
    path = tmp_path / "core-sounds-xx.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("; comment\n\nagent-pass: Please enter: your password.\nbeep: [beep]\n")
    assert speech.read_transcripts(str(path)) == {
        "agent-pass": "Please enter: your password.", "beep": "[beep]"}
    with pytest.raises(FileNotFoundError, match="asterisk-core-sounds-en"):
        speech.read_transcripts(str(tmp_path / "absent.txt.gz"))
