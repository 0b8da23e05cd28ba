import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import emoji_styles as es



pytestmark = skip_unless_installed("emoji_styles/tiny")



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def records(data_dir):
    return read_all("emoji_styles/tiny", data_dir)


@pytest.fixture(scope="module")
def shift_records(data_dir):
    return read_all("emoji_styles/style_shift_tiny", data_dir)


def _emoji_test_lines():
    """codepoints -> (name, group, subgroup), parsed here with plain string splitting."""
    out, group, subgroup = {}, None, None
    with open(sources.resolve_file(es.EMOJI_TEST), encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group: "):
                group = line[len("# group: "):].strip()
            elif line.startswith("# subgroup: "):
                subgroup = line[len("# subgroup: "):].strip()
            elif "; fully-qualified" in line:
                codes = "-".join(line.split(";")[0].split())
                name = line.split("#", 1)[1].strip().split(" ", 2)[2]
                out[codes] = (name, group, subgroup)
    return out


def test_splits_are_disjoint_by_base_and_chosen_by_sha1(records):
    bases = {s: {r["base"].decode() for r in rs} for s, rs in records.items()}
    assert records["train"] and records["test"]
    assert not bases["train"] & bases["test"]
    assert len(bases["train"] | bases["test"]) == 40
    for split, split_bases in bases.items():
        for base in split_bases:
            assert (int(hashlib.sha1(base.encode()).hexdigest(), 16) % 10 == 0) == (
                split == "test")


def test_every_style_is_drawn_and_styles_differ(records):
    for r in records["train"] + records["test"]:
        images = [r[f"image_{s}"] for s in es.STYLES]
        for image in images:
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            # drawn: a real share of pixels is not white (light-skin flat drawings are pale)
            assert (image.reshape(-1, 3) < 235).any(axis=1).mean() > 0.1, r["codepoints"]
        # four artists: no two drawings are the same picture
        for i in range(4):
            for j in range(i + 1, 4):
                diff = np.abs(images[i].astype(int) - images[j].astype(int)).mean()
                assert diff > 5, (r["codepoints"], es.STYLES[i], es.STYLES[j])


def test_names_groups_subgroups_match_emoji_test(records):
    lines = _emoji_test_lines()
    groups = set()
    for r in records["train"] + records["test"]:
        name, group, subgroup = lines[r["codepoints"].decode()]
        assert r["name"].decode() == name
        assert es.EMOJI_GROUPS[r["group"]] == group
        assert r["subgroup"].decode() == subgroup
        groups.add(group)
    assert len(groups) >= 5  # sha1 order spreads the tiny subset over groups


def test_cldr_json_matches_the_annotation_files(records):
    path = os.path.join(sources.npm_modules(), es.CLDR_DIR, "fr", "annotations.json")
    with open(path, encoding="utf-8") as f:
        fr = json.load(f)["annotations"]["annotations"]
    checked = 0
    for r in records["train"] + records["test"]:
        text = "".join(chr(int(c, 16)) for c in r["codepoints"].decode().split("-"))
        cldr = json.loads(r["cldr"].decode())
        entry = fr.get(text) or fr.get(text.replace("\ufe0f", ""))
        if entry is None:
            assert "fr" not in cldr
            continue
        assert cldr["fr"]["name"] == " ".join(entry["tts"])
        assert cldr["fr"]["keywords"] == entry["default"]
        assert len(cldr) > 100  # many locales, not just a handful
        checked += 1
    assert checked > 10


@pytest.mark.slow
def test_style_shift_holds_out_fluent_for_every_emoji(shift_records):
    train, test = shift_records["train"], shift_records["test"]
    fluent = es.STYLES.index("fluent")
    assert {r["style"] for r in test} == {fluent}
    assert {r["style"] for r in train} == {es.STYLES.index(s) for s in ("noto", "twemoji",
                                                                         "openmoji")}
    train_codes = {r["codepoints"] for r in train}
    assert train_codes == {r["codepoints"] for r in test}
    assert len(train) == 3 * len(test) > 0


def test_catalog_keeps_only_emoji_all_four_styles_draw():
    catalog = es.read_catalog()
    assert 2900 < len(catalog.entries) < 3200
    assert catalog.skipped[es.SKIP_COMPONENT] == 9
    assert sum(v for k, v in catalog.skipped.items() if k.startswith("not drawn")) > 0
    assert len({e.codepoints for e in catalog.entries}) == len(catalog.entries)


def test_read_emoji_test_parses_groups_and_counts_skips(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(
        "# group: Smileys & Emotion\n# subgroup: face-smiling\n"
        "1F600 ; fully-qualified # 😀 E1.0 grinning face\n"
        "263A ; unqualified # ☺ E0.6 smiling face\n"
        "# group: People & Body\n# subgroup: hand-fingers-closed\n"
        "1F44D 1F3FD ; fully-qualified # 👍🏽 E1.0 thumbs up: medium skin tone\n"
        "# group: Component\n# subgroup: skin-tone\n"
        "1F3FB ; component # 🏻 E1.0 light skin tone\n", encoding="utf-8")
    entries, skipped = es.read_emoji_test(str(path))
    assert [(e.codepoints, e.base, e.name, e.group, e.subgroup) for e in entries] == [
        ("1F600", "1F600", "grinning face", "Smileys & Emotion", "face-smiling"),
        ("1F44D-1F3FD", "1F44D", "thumbs up: medium skin tone", "People & Body",
         "hand-fingers-closed")]
    assert skipped == {es.SKIP_NOT_FULLY_QUALIFIED: 1, es.SKIP_COMPONENT: 1}


def test_unknown_group_is_an_error_naming_it(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text("# group: Dinosaurs\n# subgroup: x\n"
                    "1F996 ; fully-qualified # 🦖 E5.0 T-Rex\n", encoding="utf-8")
    with pytest.raises(ValueError, match="Dinosaurs"):
        es.read_emoji_test(str(path))


def test_square_on_white_crops_pads_and_composites():
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (10, 30, 30, 70))  # 20 wide x 40 tall red block
    out = es.square_on_white(image, 40)
    # cropped to 20x40, padded to 40x40: red in columns 10..29, white outside
    np.testing.assert_array_equal(out[20, 20], [255, 0, 0])
    np.testing.assert_array_equal(out[20, 2], [255, 255, 255])
    np.testing.assert_array_equal(out[20, 37], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 20], [255, 0, 0])  # no margin above: cropped


def test_noto_render_is_the_yellow_face():
    styles = es.StyleSources()
    grinning = next(e for e in es.read_catalog(styles).entries if e.codepoints == "1F600")
    image = styles.render("noto", grinning, 64)
    r, g, b = image[20:44, 20:44].reshape(-1, 3).mean(0)
    assert r > 180 and g > 130 and b < 100  # yellow face, not blank or grey


def test_broken_svg_error_names_the_file(tmp_path):
    broken = tmp_path / "broken.svg"
    broken.write_text("not an svg")
    with pytest.raises(ValueError, match="broken.svg"):
        es.svg_to_image(path=str(broken), width=32)
