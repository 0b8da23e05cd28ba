import hashlib

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import fillets

needs_fillets = skip_unless_installed("fillets/tiny")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("fillets/tiny", str(tmp_path_factory.mktemp("data")),
                    splits=("train", "dev", "test"))


def test_dialog_lines_parse_with_escapes_and_speakers(tmp_path):
    level = tmp_path / "script" / "lvl"
    level.mkdir(parents=True)
    (tmp_path / "sound" / "lvl" / "nl").mkdir(parents=True)
    (level / "dialogs_nl.lua").write_text(
        'dialogId("lvl-m-a", "font_small", "He said \\"go\\".")\n'
        'dialogStr("Hij zei \\"ga\\".")\n\n'
        'dialogId("lvl-v-b", "font_big", "Big.")\ndialogStr("Groot.")\n'
        'dialogId("lvl-x-c", "font_yellow", "Thing.")\ndialogStr("Ding.")\n'
        'dialogId("lvl-m-d", "font_small", "No recording.")\ndialogStr("Geen opname.")\n')
    for line_id in ("lvl-m-a", "lvl-v-b", "lvl-x-c"):
        (tmp_path / "sound" / "lvl" / "nl" / f"{line_id}.ogg").write_bytes(b"")
    lines, skipped = fillets.read_lines("lvl", str(tmp_path))
    assert [(x.line_id, x.speaker, x.english, x.transcript) for x in lines] == [
        ("lvl-m-a", "small fish", 'He said "go".', 'Hij zei "ga".'),
        ("lvl-v-b", "big fish", "Big.", "Groot."),
        ("lvl-x-c", "other", "Thing.", "Ding.")]
    assert skipped == {fillets.SKIP_NO_RECORDING: 1}


def test_world_map_branches_are_lectures_and_a_one_level_branch_joins_the_last(tmp_path):
    (tmp_path / "script").mkdir()
    (tmp_path / "script" / "worldmap.lua").write_text(
        '-- branch_addNode(parent, codename, datafile, x, y, hidden=false, poster="")\n'
        '-- House\nbranch_addNode("", "a", "script/a/init.lua", 1, 2)\n'
        'branch_addNode("a", "b", "script/b/init.lua", 1, 2)\n\n'
        '-- Exit\nbranch_addNode("b", "c", "script/c/init.lua", 1, 2)\n'
        '-- Deep\nbranch_addNode("b", "d", "script/d/init.lua", 1, 2,\n  true)\n'
        'branch_addNode("d", "e", "script/e/init.lua", 1, 2)\n'
        '-- -------------------------\n-- Ending\n')
    assert fillets.read_lectures(str(tmp_path)) == [
        fillets.Lecture("House", ("a", "b", "c")), fillets.Lecture("Deep", ("d", "e"))]


def test_the_pan_runs_from_the_left_edge_to_the_right_edge():
    from PIL import Image
    room = np.zeros((10, 30, 3), np.uint8)
    room[:, :, 0] = np.arange(30)[None, :] * 8                  # red grows left to right
    pic = Image.fromarray(room)
    first, last = fillets.view(pic, 0, 3, 10), fillets.view(pic, 2, 3, 10)
    np.testing.assert_array_equal(first, room[:, :10])
    np.testing.assert_array_equal(last, room[:, 20:])
    np.testing.assert_array_equal(fillets.view(pic, 1, 3, 10), room[:, 10:20])
    np.testing.assert_array_equal(fillets.view(pic, 0, 1, 10), room[:, :10])   # one clip


@needs_fillets
def test_lectures_are_held_out_whole_in_sha1_order_and_clips_are_in_time_order(records):
    lectures = fillets.read_lectures(sources.resolve_file(fillets.ROOT))
    assert len(lectures) == 10 and lectures[0].name == "Fish House"
    assert lectures[0].levels[:3] == ("start", "briefcase", "cellar")
    ufo = next(c for c in lectures if c.name == "UFO")
    assert len(ufo.levels) == 8                         # "UFO Exit"'s one level joined it
    order = sorted(c.name for c in lectures)
    order.sort(key=lambda n: hashlib.sha1(f"fillets:{n}".encode()).hexdigest())
    want = {n: "test" if i < 3 else "dev" if i < 5 else "train" for i, n in enumerate(order)}
    seen = {}
    for split, rs in records.items():
        assert rs, split
        by_lecture = {}
        for r in rs:
            by_lecture.setdefault(r["lecture"].decode(), []).append(r)
        for name, clips in by_lecture.items():
            assert want[name] == split, name
            seen[name] = split
            clips.sort(key=lambda r: r["position"])
            assert [r["position"] for r in clips] == list(range(len(clips)))
            # tiny: the first 3 levels, 6 lines each at most; segments count up in time order
            segs = [int(r["segment"]) for r in clips]
            assert segs == sorted(segs) and set(segs) == {0, 1, 2}, name
            levels = {}
            for r in clips:
                levels.setdefault(int(r["segment"]), set()).add(r["level"].decode())
            assert all(len(v) == 1 for v in levels.values())
            assert all(segs.count(s) <= 6 for s in set(segs))
    assert seen == want


@needs_fillets
def test_clips_hold_the_recording_its_transcripts_and_the_rooms_view(records):
    r = records["test"][0]
    line_id, level = r["line_id"].decode(), r["level"].decode()
    lines, _ = fillets.read_lines(level, sources.resolve_file(fillets.ROOT))
    line = next(x for x in lines if x.line_id == line_id)
    assert r["text"].decode() == line.english and r["transcript"].decode() == line.transcript
    assert fillets.SPEAKERS[r["speaker"]] == line.speaker
    audio = fillets.load_recording(line.recording)
    np.testing.assert_array_equal(r["audio"], audio)
    assert r["audio"].dtype == np.float32 and 0.1 < len(audio) / fillets.SAMPLE_RATE <= 10
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1e-3        # speech, not silence
    assert r["image"].shape == (64, 64, 3) and r["image"].std() > 5
    # Two clips of one level share the room and differ in view; another level's room differs.
    same = [x for x in records["test"] if x["lecture"] == r["lecture"]
            and x["segment"] == r["segment"]]
    other = [x for x in records["test"] if x["lecture"] == r["lecture"]
             and x["segment"] != r["segment"]]
    assert len(same) > 1 and other
    assert not np.array_equal(same[0]["image"], same[-1]["image"])
