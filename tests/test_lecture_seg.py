"""specs/lecture_seg.py: the clip transform's values, and the tiny spec through the CLI."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import cli
from tests.data_helpers import skip_unless_installed
from xmodal.audio import dsp
from xmodal.projects.lecture_seg import transform


def test_log_mel_statistics_put_a_tone_in_its_band_and_silence_at_the_floor():
    sr, n_fft, n_mels = 8000, 512, 40
    t = np.arange(sr) / sr
    stats = transform.log_mel_stats(np.sin(2 * np.pi * 1000 * t), sr, n_fft, 256, n_mels)
    mean, std = stats[:n_mels], stats[n_mels:]
    centres = dsp.mel_to_hz(np.linspace(dsp.hz_to_mel(0.0), dsp.hz_to_mel(sr / 2), n_mels + 2))
    assert abs(centres[1 + int(np.argmax(mean))] - 1000) < 100     # the band around 1 kHz
    assert np.all(std < 0.5)                                         # a steady tone
    silent = transform.log_mel_stats(np.zeros(100), sr, n_fft, 256, n_mels)   # < one frame
    np.testing.assert_allclose(silent, np.r_[np.full(n_mels, math.log(1e-6)),
                                             np.zeros(n_mels)], rtol=1e-6)


def test_the_clip_keeps_its_place_and_names_missing_fields():
    t = transform.lecture_clip(max_text_len=8)
    record = {"image": np.full((4, 4, 3), 7, np.uint8), "audio": np.zeros(600, np.float32),
              "lecture": b"Fish House", "segment": 2, "position": 11,
              "transcript": "Hallo!", "text": "Hello!"}
    out = t.map(record)
    assert out["lecture"] == transform.lecture_id("Fish House") == \
        transform.lecture_id(b"Fish House")
    assert (out["segment"], out["position"]) == (2, 11)
    assert t.tokenizer.decode(out["text"]) == "Hallo!"
    assert out["audio_features"].shape == (80,) and np.array_equal(out["image"], record["image"])
    english = transform.lecture_clip(text_field="text")
    assert english.tokenizer.decode(english.map(record)["text"]) == "Hello!"
    with pytest.raises(KeyError, match="no field.*position"):
        t.map({k: v for k, v in record.items() if k != "position"})


@pytest.mark.slow
@skip_unless_installed("fillets/tiny")
def test_tiny_spec_trains_and_segments_the_dev_lectures(tmp_path):
    r = subprocess.run([sys.executable, "-m", "xmodal.main", "--spec=specs/lecture_seg.py:tiny",
                        f"--workdir={tmp_path}"], cwd=cli.ROOT, env=cli.env(devices=1),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    table = json.loads((tmp_path / "segmentation_table.json").read_text())
    assert table["sequences"] == 2 and table["clips"] == 36           # the 2 dev lectures
    rows = table["rows"]
    assert set(rows) == {"none", "view (raw pixels)", "audio (raw log-mel statistics)",
                         "view + audio (raw)", "view (learned)", "narration (learned)",
                         "view + narration (learned)", "constant (a collapsed model)"}
    # Nothing to go on: k-means puts every clip in one cluster, the chance row.
    assert rows["constant (a collapsed model)"]["kmeans"] == pytest.approx(table["one_cluster"])
    # Each level's room differs: its pixels find the levels.
    assert rows["view (raw pixels)"]["twfinch"]["MoF"] > table["one_cluster"]["MoF"] + 20
    assert os.path.getsize(tmp_path / "segments_0.png") > 1000
    logged = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert any("eval/view_narration_learned/twfinch/NMI" in r for r in logged)
