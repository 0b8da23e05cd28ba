"""MVL-SIB on real Tux Paint stamps: the ``mvl_sib_items`` transform (every language's sentence,
the topic), the training-time caption pick, and the spec end to end through the CLI with its
report files."""
import json

import numpy as np
import pytest

from tests import cli
from tests.data_helpers import read_all, skip_unless_installed
from xmodal.projects.mvl_sib import evaluator
from xmodal.projects.mvl_sib.transform import (CATEGORIES, EMOJI_GROUPS, EMOJI_LOCALES, LANGUAGES,
                                                PickCaption, mvl_sib_emoji, mvl_sib_items)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("tuxpaint/tiny", str(tmp_path_factory.mktemp("data")))["train"]


@skip_unless_installed("tuxpaint/tiny")
def test_items_carry_every_language_and_the_topic(records):
    t = mvl_sib_items(image_size=16, max_text_len=24, captions="multi")
    seen_other_language = False
    for r in records:
        x = t.map(r)
        by_lang = json.loads(r["captions"].decode())
        assert x["image"].shape == (16, 16, 3)
        assert x["captions"].shape == (len(LANGUAGES), 24)
        assert CATEGORIES[int(x["topic"])] == r["category"].decode()
        # has_caption is exactly the listed languages the stamp has a sentence in.
        assert x["has_caption"].tolist() == [bool(by_lang.get(c)) for c in LANGUAGES]
        assert x["has_caption"][0]
        np.testing.assert_array_equal(x["text"], x["captions"][0])
        np.testing.assert_array_equal(x["text"], t.tokenizer.encode(r["caption"].decode()))
        for j in np.flatnonzero(x["has_caption"])[1:]:
            np.testing.assert_array_equal(x["captions"][j],
                                          t.tokenizer.encode(by_lang[LANGUAGES[j]]))
            seen_other_language = True
    assert seen_other_language


@skip_unless_installed("tuxpaint/tiny")
def test_multilingual_training_draws_among_the_stamps_languages(records):
    t = mvl_sib_items(image_size=16, max_text_len=24, captions="multi")
    x = max((t.map(r) for r in records), key=lambda e: int(e["has_caption"].sum()))
    rows = {tuple(x["captions"][j]) for j in np.flatnonzero(x["has_caption"])}
    rng = np.random.default_rng(0)
    drawn = [tuple(t.augment.random_map(x, rng)["text"]) for _ in range(200)]
    assert set(drawn) <= rows and len(set(drawn)) > 1
    out = t.augment.random_map(x, rng)
    assert "captions" not in out and "has_caption" not in out
    assert set(out) == {"image", "text", "topic"}
    # English-only training keeps the English sentence and drops the per-language arrays too.
    en = PickCaption(multilingual=False).random_map(x, rng)
    assert set(en) == {"image", "text", "topic"}
    np.testing.assert_array_equal(en["text"], x["captions"][0])


@skip_unless_installed("emoji_styles/tiny")
def test_emoji_items_take_cldr_names_and_the_unicode_group(tmp_path):
    records = read_all("emoji_styles/tiny", str(tmp_path))["test"]
    t = mvl_sib_emoji(image_size=16, max_text_len=32, style="twemoji")
    named_elsewhere = 0
    for r in records:
        x = t.map(r)
        cldr = json.loads(r["cldr"].decode() or "{}")
        assert x["captions"].shape == (len(EMOJI_LOCALES), 32)
        assert EMOJI_GROUPS[int(x["topic"])] == EMOJI_GROUPS[int(r["group"])]
        # English is the emoji-test.txt name, always present; others are the CLDR names.
        np.testing.assert_array_equal(x["text"], t.tokenizer.encode(r["name"].decode()))
        assert x["has_caption"].tolist() == [
            code == "en" or bool(cldr.get(code, {}).get("name")) for code in EMOJI_LOCALES]
        for j in np.flatnonzero(x["has_caption"])[1:]:
            np.testing.assert_array_equal(
                x["captions"][j], t.tokenizer.encode(cldr[EMOJI_LOCALES[j]]["name"]))
            named_elsewhere += 1
    assert named_elsewhere > 100
    # A regional locale that only stores differences from its parent is not a language here.
    assert "en-GB" not in EMOJI_LOCALES and "sr-Latn" in EMOJI_LOCALES


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="valid: en, multi"):
        mvl_sib_items(captions="all")
    with pytest.raises(ValueError, match="style='sketch'; valid: noto, twemoji"):
        mvl_sib_emoji(style="sketch")
    with pytest.raises(ValueError, match="unknown language code.*xx.*valid: .*en_GB"):
        evaluator.mvl_sib_evaluator(languages=("en", "xx"))


@skip_unless_installed("tuxpaint/tiny")
@pytest.mark.slow
def test_spec_trains_and_writes_the_per_language_report(tmp_path, records):
    wd = tmp_path / "wd"
    r = cli.run("specs/mvl_sib.py:runlocal", wd, "--spec.data.name=tuxpaint/tiny",
                "--spec.data.eval_split=train", "--spec.train.steps=2",
                "--spec.data.transform.image_size=16", "--spec.evals.mvl_sib.min_sentences=5")
    assert "eval/s2i/k3/mean" in r.stdout and "eval/ss2s/k1/mean" in r.stdout
    report = sorted(wd.glob("**/mvl_sib.json"))
    assert report, list(wd.rglob("*"))
    data = json.loads(report[-1].read_text())
    summary, rows = data["summary"], data["rows"]
    assert summary["chance"] == 25.0 and summary["items"] == len(records)
    languages = [c for c in LANGUAGES if data["coverage"][c] >= 5]
    assert summary["languages"] == len(languages) and "en" in languages
    assert {(row["language"], row["task"], row["k"]) for row in rows} == {
        (c, t, k) for c in languages for t in ("s2i", "i2s", "s2s", "ss2s") for k in (1, 3)}
    for row in rows:
        assert row["questions"] <= data["coverage"][row["language"]]
        assert row["questions"] == 0 or 0.0 <= row["accuracy"] <= 100.0
    en_rows = [row for row in rows if row["language"] == "en"]
    assert all(row["questions"] > 0 for row in en_rows)
    md = report[-1].with_name("mvl_sib.md").read_text()
    body = [line for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| language")]
    assert len(body) == len(languages) + 1             # a row per language and the mean
    assert [line.split(" | ")[0][2:] for line in body[:-1]] == sorted(
        languages, key=lambda c: (-data["coverage"][c], c))     # most covered first
    assert report[-1].with_name("mvl_sib.png").stat().st_size > 1000
