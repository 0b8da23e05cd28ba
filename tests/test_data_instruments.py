import hashlib

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import instruments as ins

pytestmark = skip_unless_installed("instruments/tiny")

needs_fluidr3 = skip_unless_installed("instruments/fluidr3_tiny")



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny(data_dir):
    return read_all("instruments/tiny", data_dir)


def test_tiny_counts_and_item_split(tiny):
    # 4 instruments, every 5th semitone of their ranges, 2 phrases each
    ranges = {"violin": (55, 88), "acoustic grand piano": (36, 96), "contrabass": (28, 50),
              "flute": (60, 93)}
    expected = sum(len(range(lo, hi + 1, 5)) + 2 for lo, hi in ranges.values())
    items = {split: [r["item"].decode() for r in rs] for split, rs in tiny.items()}
    assert len(items["train"]) + len(items["test"]) == expected == 40
    assert items["train"] and items["test"]
    assert not set(items["train"]) & set(items["test"])
    for split, ids in items.items():
        for item in ids:
            in_test = int(hashlib.sha1(item.encode()).hexdigest()[:16], 16) % 5 == 0
            assert in_test == (split == "test"), item


def test_audio_is_clip_length_and_not_silent(tiny):
    for r in tiny["train"] + tiny["test"]:
        audio = r["audio"]
        assert audio.dtype == np.float32 and audio.shape == (32000,)
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.5
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 10 ** (-50 / 20), r["item"]


def test_captions_name_instrument_and_note(tiny):
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    for r in tiny["train"] + tiny["test"]:
        caption, instrument = r["caption"].decode(), ins.INSTRUMENT_NAMES[r["instrument"]]
        assert instrument in caption
        if r["kind"] == b"note":
            pitch = int(r["pitch"])
            assert caption.endswith(f" playing {names[pitch % 12]}{pitch // 12 - 1}")
        else:
            assert r["pitch"] == -1 and caption.endswith("a short phrase")


def test_note_has_its_pitch():
    renderer = ins.FontRenderer(ins.TIMGM6MB)
    clip = renderer.render(73, [(0.0, 1.5, 69)], 2.0)  # flute A4
    segment = clip[1600:17600]  # 1 s after the attack: 1 Hz bins
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    peak_hz = np.argmax(spectrum) * 16000 / len(segment)
    assert abs(peak_hz - 440.0) < 5, peak_hz


def test_rendering_is_deterministic():
    item = ins.list_items(["violin"], 1, 1)[-1]
    assert item.kind == "phrase"
    a = ins.FontRenderer(ins.TIMGM6MB)
    first = a.render(item.program, item.events, 2.0)
    a.render(0, [(0.0, 2.0, 40)], 2.0)  # a ringing piano in between must not leak
    np.testing.assert_array_equal(a.render(item.program, item.events, 2.0), first)
    again = ins.list_items(["violin"], 1, 1)[-1]
    assert again.events == item.events


def test_every_instrument_sounds_at_range_ends_in_timgm6mb():
    renderer = ins.FontRenderer(ins.TIMGM6MB)
    for name, program, low, high in ins.INSTRUMENTS:
        for pitch in (low, high):
            clip = renderer.render(program, [(0.0, 1.5, pitch)], 2.0)
            assert not ins.is_silent(clip), (name, pitch)


def test_silent_renders_are_dropped_and_recorded(tmp_path):
    # TimGM6mb's alto saxophone has no sample for E4 (MIDI 64): that render is silent.
    assert ins.is_silent(ins.FontRenderer(ins.TIMGM6MB).render(65, [(0.0, 1.5, 64)], 2.0))
    config = ins.InstrumentsConfig(name="alto_sax", instruments=("alto saxophone",),
                                   note_step=1, phrases=0)
    builder = ins.Instruments(config=config, data_dir=str(tmp_path))
    builder.download_and_prepare()
    skipped = builder.info.metadata["skipped_silent"]
    assert sorted(skipped["train"] + skipped["test"]) == ["alto saxophone/note/E4"]
    kept = [builder.as_data_source(split)[i]["item"].decode()
            for split in ("train", "test") for i in range(builder.info.splits[split].num_examples)]
    assert len(kept) == (78 - 49 + 1) - 1 and "alto saxophone/note/E4" not in kept
    reloaded = ins.Instruments(config=config, data_dir=str(tmp_path))
    assert reloaded.info.metadata["skipped_silent"] == skipped


@needs_fluidr3
def test_fluidr3_has_the_same_items_as_timgm6mb(data_dir, tiny):
    fluid = read_all("instruments/fluidr3_tiny", data_dir)
    skipped = sources.prepare("instruments/fluidr3_tiny", data_dir).info.metadata["skipped_silent"]
    for split in ("train", "test"):
        tim_items = {r["item"] for r in tiny[split]}
        fluid_items = {r["item"] for r in fluid[split]}
        assert fluid_items | {s.encode() for s in skipped[split]} == tim_items
        assert {r["font"] for r in fluid[split]} == {b"FluidR3_GM"}
    # same item, different recording
    by_item = {r["item"]: r["audio"] for r in fluid["train"]}
    r = tiny["train"][0]
    assert not np.allclose(by_item[r["item"]], r["audio"], atol=1e-3)


@needs_fluidr3
def test_fluidr3_contrabass_is_silent_above_its_range():
    # the soundfont gotcha that the instrument ranges avoid
    renderer = ins.FontRenderer(ins.FLUIDR3)
    assert ins.is_silent(renderer.render(43, [(0.0, 1.5, 60)], 2.0))
    assert not ins.is_silent(renderer.render(43, [(0.0, 1.5, 40)], 2.0))


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="unknown instrument 'kazoo'"):
        ins.list_items(["kazoo"], 1, 0)
    with pytest.raises(ValueError, match="unknown soundfont"):
        ins.font_path("Arachno")
