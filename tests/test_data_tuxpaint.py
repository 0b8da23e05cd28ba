import hashlib
import json

import numpy as np
import pytest
import soundfile

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import tuxpaint as tp



pytestmark = skip_unless_installed("tuxpaint/tiny")



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def records(data_dir):
    return read_all("tuxpaint/tiny", data_dir)


@pytest.fixture(scope="module")
def speech(data_dir):
    return read_all("tuxpaint/speech_tiny", data_dir)


def _is_test(stamp: bytes) -> bool:
    return int(hashlib.sha1(stamp).hexdigest(), 16) % 10 == 0


def test_split_by_stamp(records):
    assert len(records["train"]) + len(records["test"]) == 30
    for split, rs in records.items():
        for r in rs:
            assert _is_test(r["stamp"]) == (split == "test")


def test_captions_match_the_txt_files(records):
    root = sources.resolve_file(tp.STAMPS_DIR)
    for r in records["train"] + records["test"]:
        with open(f"{root}/{r['stamp'].decode()}.txt", encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        assert r["caption"].decode() == lines[0] and lines[0]
        captions = json.loads(r["captions"].decode())
        assert captions["en"] == lines[0]
        fr = [line.split("=", 1)[1].strip() for line in lines if line.startswith("fr.utf8=")]
        if fr:
            assert captions["fr"] == fr[0]
    # many languages per stamp, in their own scripts
    all_captions = [json.loads(r["captions"].decode()) for r in records["train"]]
    assert np.median([len(c) for c in all_captions]) > 20
    assert any("\u0400" <= ch <= "\u04ff" for c in all_captions for ch in c.get("ru", ""))


def test_images_are_drawn(records):
    for r in records["train"] + records["test"]:
        image = r["image"]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        # a white ghost is mostly white: count any pixel that is not pure background
        assert (image.reshape(-1, 3) < 250).any(axis=1).mean() > 0.02, r["stamp"]


def test_sound_effects_are_audible_and_16khz(records):
    root = sources.resolve_file(tp.STAMPS_DIR)
    with_sound = [r for r in records["train"] + records["test"] if r["sound"].size]
    assert 15 <= len(with_sound) < 30  # tiny: half chosen with a sound, half any stamp
    for r in with_sound:
        sound = r["sound"]
        assert sound.dtype == np.float32
        assert np.sqrt(np.mean(sound ** 2)) > 1e-3, r["stamp"]
        info = soundfile.info(f"{root}/{r['stamp'].decode()}.ogg")
        expected = min(info.duration, tp.MAX_SECONDS) * tp.SAMPLE_RATE
        assert abs(sound.size - expected) <= tp.SAMPLE_RATE * 0.01


def test_speech_records_follow_stamp_split_and_language(speech):
    assert speech["train"] and speech["test"]
    root = sources.resolve_file(tp.STAMPS_DIR)
    for split, rs in speech.items():
        for r in rs:
            assert _is_test(r["stamp"]) == (split == "test")
            assert np.sqrt(np.mean(r["speech"] ** 2)) > 1e-3
            lang = r["language"].decode()
            suffix = "" if lang == "en" else "_" + lang
            info = soundfile.info(f"{root}/{r['stamp'].decode()}_desc{suffix}.ogg")
            assert abs(r["speech"].size - info.duration * tp.SAMPLE_RATE) <= 200


def test_catalog_counts_and_skips():
    catalog = tp.read_catalog()
    assert len(catalog.stamps) > 900
    assert sum(catalog.skipped.values()) + len(catalog.stamps) > 900
    assert sum(s.sound_path is not None for s in catalog.stamps) > 100
    assert len({s.stamp for s in catalog.stamps}) == len(catalog.stamps)


def test_parse_captions(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("A crow.\nfr.utf8=Un corbeau.\nnoise line\nja.utf8=カラス。\nde.utf8=\n",
                    encoding="utf-8")
    assert tp.parse_captions(str(path)) == {"en": "A crow.", "fr": "Un corbeau.",
                                            "ja": "カラス。"}


def test_undecodable_sound_names_the_file(tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.ogg"):
        tp.load_audio(str(bad))
