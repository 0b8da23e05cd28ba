import hashlib

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed

pytestmark = skip_unless_installed("music21/tiny")

from xmodal.data.sets import music21_tunes as m21  # noqa: E402


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("music21/tiny", str(tmp_path_factory.mktemp("data")))


def test_ten_tunes_split_by_title(records):
    tunes = {split: {r["tune"].decode() for r in rs} for split, rs in records.items()}
    assert len(tunes["train"] | tunes["test"]) == 10
    assert tunes["train"] and tunes["test"] and not tunes["train"] & tunes["test"]
    titles = {split: {r["title"].decode() for r in rs} for split, rs in records.items()}
    assert not titles["train"] & titles["test"]
    for split, names in titles.items():
        for title in names:
            in_test = int(hashlib.sha1(title.lower().encode()).hexdigest()[:16], 16) % 10 == 0
            assert in_test == (split == "test"), title
    # O'Neill prints two settings of "The Red Haired Girl" (nos. 12, 13): same split
    assert {"oneills1850/0001-0050.abc#12", "oneills1850/0001-0050.abc#13"} <= tunes["test"]


def test_segments_are_fixed_length_audible_and_numbered(records):
    by_tune = {}
    for r in records["train"] + records["test"]:
        x = r["audio"]
        assert x.dtype == np.float32 and x.shape == (128000,)
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 10 ** (-50 / 20)
        by_tune.setdefault(r["tune"].decode(), []).append(int(r["segment"]))
    for tune, indices in by_tune.items():
        assert sorted(indices) == list(range(len(indices))), tune


def test_text_fields_come_from_the_scores(records):
    by_tune = {r["tune"].decode(): r for rs in records.values() for r in rs}
    heathy = by_tune["oneills1850/0001-0050.abc#3"]
    assert heathy["title"] == b"The Little Heathy Hill"
    assert (heathy["key"], heathy["meter"]) == (b"G minor", b"4/4")
    caption = heathy["caption"].decode()
    assert caption.startswith("The Little Heathy Hill, in G minor, 4/4, from O'Neill")
    assert caption.endswith("played on " + heathy["instrument"].decode())
    ballad = by_tune["essenFolksong/ballad10.abc#1"]
    assert ballad["region"] == b"Mitteleuropa, Deutschland"
    assert b"from Mitteleuropa, Deutschland" in ballad["caption"]


def test_grace_notes_are_counted_not_sounded():
    tune = m21.read_tune("oneills1850/0001-0050.abc", 4)
    assert tune.grace_notes == 14
    assert all(duration > 0 for _, duration, _ in tune.events)


def test_notes_are_placed_in_seconds():
    tune = m21.read_tune("oneills1850/0001-0050.abc", 3)
    starts = [s for s, _, _ in tune.events]
    assert starts == sorted(starts) and starts[0] >= 0
    # 4/4 at music21's default 120 quarters per minute: a quarter note lasts 0.5 s
    durations = {round(d, 6) for _, d, _ in tune.events}
    assert 0.5 in durations or 0.25 in durations
    assert all(40 <= p <= 100 for _, _, p in tune.events)


def test_segments_pad_or_drop_the_tail():
    clip = np.ones(25, np.float32)
    pieces, dropped = m21.segments(clip, 10)
    assert [len(p) for p in pieces] == [10, 10, 10] and dropped == 0
    np.testing.assert_array_equal(pieces[2], [1] * 5 + [0] * 5)
    pieces, dropped = m21.segments(np.ones(24, np.float32), 10)
    assert len(pieces) == 2 and dropped == 1
