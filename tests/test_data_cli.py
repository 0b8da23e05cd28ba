import os
import shlex
import subprocess
import sys

import emoji as emoji_pkg
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.data import cards, show
from xmodal.core import datasets as sources
from xmodal.data import __main__ as cli
from xmodal.data.sets.emoji import Emoji

TINY = "emoji/tiny"


def run_cli(data_dir, *args):
    env = dict(os.environ, XMODAL_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, "-m", "xmodal.data", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def list_blocks(data_dir):
    """`list` output by dataset: its line and the indented lines under it."""
    result = run_cli(data_dir, "list")
    assert result.returncode == 0, result.stderr
    blocks = {}
    for line in result.stdout.splitlines()[1:]:  # the first line names the data dir
        if line.startswith(" "):
            blocks[name].append(line.strip())
        else:
            name = line.split()[0]
            blocks[name] = [line]
    return blocks


def file_states(root):
    return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_mtime_ns,
                                 os.stat(os.path.join(d, f)).st_size)
            for d, _, files in os.walk(root) for f in files}


@pytest.fixture(scope="module")
def first_prepare(tmp_path_factory):
    path = tmp_path_factory.mktemp("prepared")
    result = run_cli(path, "prepare", TINY)
    assert result.returncode == 0, result.stderr
    return path, result


@pytest.fixture(scope="module")
def prepared_dir(first_prepare):
    return first_prepare[0]


def test_a_build_says_what_it_does_once_and_truly(first_prepare):
    out = first_prepare[1].stdout + first_prepare[1].stderr
    # TFDS's own lines claim a download that never happens; ours says what is done.
    assert "Downloading and preparing" not in out and "Subsequent calls" not in out
    assert out.count("nothing is downloaded") == 1 and "ready in" in out
    # The version folder TFDS makes before writing into it is expected, not a warning; the
    # output is not a terminal, so no progress bars (carriage-return redraws) either.
    assert "Variant folder" not in out and "WARNING" not in out, out
    assert "\r" not in out and "examples/s" not in out, out


def test_a_set_without_configs_builds_into_an_empty_folder(tmp_path, capsys):
    # eight_gaussians has no builder configs: its build line names the set alone (a fresh
    # machine once failed here, where every set is built for the first time).
    builder = sources.prepare("eight_gaussians", str(tmp_path))
    assert builder.info.splits["train"].num_examples > 0
    out = capsys.readouterr().out
    assert "eight_gaussians: building from what is installed" in out


@pytest.mark.slow
def test_list_before_and_after_prepare(tmp_path):
    before = list_blocks(tmp_path)[TINY]
    assert "not prepared" in before[0] and "CC BY-SA 4.0" in before[0]
    assert before[1:] == [f"$ python -m xmodal.data prepare {TINY}"]
    assert run_cli(tmp_path, "prepare", TINY).returncode == 0
    blocks = list_blocks(tmp_path)
    after = blocks[TINY]
    assert "not prepared" not in after[0] and "prepared" in after[0]
    assert after[1:] == ["ready"]
    # size on disk: the files TFDS wrote, in KB
    total = sum(size for _, size in file_states(cards.dataset_dir(TINY, str(tmp_path))).values())
    assert f"{total / 1000:.1f} KB" in after[0]
    assert "not prepared" in blocks["emoji"][0]
    assert set(blocks) == set(sources.names())


def test_prepare_twice_is_a_no_op(prepared_dir):
    before = file_states(prepared_dir)
    assert any(".array_record" in path for path in before)
    again = run_cli(prepared_dir, "prepare", TINY)
    assert again.returncode == 0, again.stderr
    assert file_states(prepared_dir) == before
    assert "Generating" not in again.stderr  # TFDS logs this only while building
    assert "ready in" in again.stdout and "train 212, test 18" in again.stdout


def test_show_writes_a_contact_sheet_and_prints_the_card(prepared_dir, tmp_path):
    out = tmp_path / "sheet.png"
    result = run_cli(prepared_dir, "show", TINY, "--split", "test", "--n", "6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    image = np.asarray(Image.open(out).convert("RGB"))
    # 6 examples -> 3 columns x 2 rows of 136 x 181 px cells (128 px picture, 4 px padding,
    # 3 caption lines of 15 px)
    assert image.shape == (2 * 181, 3 * 136, 3)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10
    for row in range(2):
        for col in range(3):
            picture = image[row * 181 + 4:row * 181 + 132, col * 136 + 4:col * 136 + 132]
            caption = image[row * 181 + 136:row * 181 + 181, col * 136:col * 136 + 136]
            assert picture.min() < 200, (row, col)   # an emoji is drawn, not blank white
            assert caption.min() < 100, (row, col)   # dark caption text
    assert "## Emoji (xmodal_emoji)" in result.stdout
    assert "| `emoji/tiny` | test | 18 |" in result.stdout
    assert "2 x 3 grid of 6 examples" in result.stdout and "font: " in result.stdout


def test_unknown_name_exits_2_naming_valid_names(tmp_path, capsys):
    result = run_cli(tmp_path, "show", "emojis")
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: unknown dataset 'emojis'")
    assert "emoji, emoji/tiny" in error[0]
    for command in ("prepare", "card"):
        assert cli.main([command, "emojis", "--data_dir", str(tmp_path)]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "valid dataset names: " in error[0] and " emoji, emoji/tiny," in error[0]
    assert not os.listdir(tmp_path)


def test_missing_npm_package_prints_the_npm_command(monkeypatch, tmp_path, capsys):
    npm_dir = tmp_path / "npm"
    monkeypatch.setenv("XMODAL_NPM_DIR", str(npm_dir))
    entry = sources.DatasetEntry(Emoji, "tiny", packages=(), modules=(),
                                 install_hint="needed for this test entry",
                                 npm=("xmodal-absent-npm-package",))
    monkeypatch.setitem(sources.DATASETS, "needs_npm", entry)
    data_dir = tmp_path / "data"
    command = f"npm install --prefix {npm_dir} xmodal-absent-npm-package"

    assert cli.main(["prepare", "needs_npm", "--data_dir", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and command in err
    assert not data_dir.exists()
    # What `install` runs: an argument list (no shell), npm's own flags quieting it.
    npm = ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(npm_dir),
           "xmodal-absent-npm-package"]
    assert cli.missing_commands("needs_npm") == [npm]

    assert cli.main(["list", "--data_dir", str(data_dir)]) == 0
    assert f"$ {shlex.join(npm)}" in capsys.readouterr().out


def test_missing_pip_module_is_installed_with_this_python(monkeypatch):
    entry = sources.DatasetEntry(Emoji, "tiny", packages=("xmodal-absent-package",),
                                 modules=("xmodal_absent_package",), install_hint="test entry")
    monkeypatch.setitem(sources.DATASETS, "needs_pip", entry)
    assert cli.missing_commands("needs_pip") == [
        [sys.executable, "-m", "pip", "install", "-q", "xmodal-absent-package"]]
    assert cli.missing_commands(TINY) == []  # everything emoji needs is installed here


def test_card_counts_and_versions(prepared_dir, tmp_path):
    text = cards.card(TINY, str(prepared_dir))
    info = tfds.builder_from_directory(
        os.path.join(prepared_dir, "xmodal_emoji", "tiny", "1.0.0")).info
    for split in ("train", "test"):
        assert f"| `emoji/tiny` | {split} | {info.splits[split].num_examples} |" in text
    assert f"| `emoji` | pip | {emoji_pkg.__version__} |" in text
    for heading in ("### Sources", "### Licence", "### Splits", "### Languages",
                    "### Skipped", "### Fields"):
        assert heading in text
    assert "| `name_zh` |" in text
    assert "not prepared" in cards.card(TINY, str(tmp_path))


def test_dataset_dir_is_where_tfds_writes(prepared_dir):
    builder = sources.prepare(TINY, str(prepared_dir))
    assert cards.dataset_dir(TINY, str(prepared_dir)) == os.fspath(builder.data_path)
    assert cards.is_prepared(TINY, str(prepared_dir))


def test_cards_writes_every_module_once(tmp_path):
    out = tmp_path / "cards.md"
    assert cli.main(["cards", "--out", str(out), "--data_dir", str(tmp_path)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("## Emoji (xmodal_emoji)") == 1
    assert "`emoji` (config `default`), `emoji/tiny` (config `tiny`)" in text
    modules = {cards.card_module(name) for name in sources.names()}
    assert text.count("\n## ") == len(modules)


class _NoCardBuilder(Emoji):
    name = "xmodal_emoji_without_card_for_test"


def test_module_without_card_is_named(monkeypatch):
    entry = sources.DatasetEntry(_NoCardBuilder, "tiny", (), (), "test entry")
    monkeypatch.setitem(sources.DATASETS, "no_card", entry)
    with pytest.raises(ValueError, match=rf"module {__name__} defines no CARD dict"):
        cards.card("no_card")


def test_grid_shape():
    assert [show.grid_shape(n) for n in (1, 2, 5, 6, 16, 17)] == [
        (1, 1), (1, 2), (2, 3), (2, 3), (4, 4), (4, 5)]
    with pytest.raises(ValueError, match="n=0"):
        show.grid_shape(0)


def test_spectrogram_peak_is_at_the_tone():
    rate, freq = 8000, 1000.0
    wave = np.sin(2 * np.pi * freq * np.arange(rate) / rate).astype(np.float32)
    image = show.spectrogram(wave, n_fft=256, hop=64)
    assert image.shape == (129, 1 + (8000 - 256) // 64) and image.dtype == np.uint8
    # 1000 Hz is bin 1000 * 256 / 8000 = 32; rows are flipped (low at the bottom): 128 - 32
    assert set(np.argmax(image, axis=0)) == {96}
    assert not show.spectrogram(np.zeros(1000)).any()


def test_audio_records_are_drawn_as_spectrograms():
    features = tfds.features.FeaturesDict({
        "label": tfds.features.ClassLabel(names=["low", "high"]),
        "waveform": tfds.features.Tensor(shape=(4000,), dtype=np.float32),
        "caption": tfds.features.Text(),
    })
    fields = show.find_fields(features, None, "tones")
    assert fields == show.ShowFields(image=None, audio="waveform", caption="caption")
    t = np.arange(4000) / 8000
    records = [{"waveform": np.sin(2 * np.pi * f * t), "caption": c.encode(), "label": 0}
               for f, c in ((440, "a low tone"), (2000, "высокий тон 高音"))]
    sheet = np.asarray(show.contact_sheet(records, fields, show.load_fonts()))
    assert sheet.shape == (181, 2 * 136, 3)
    low, high = sheet[4:132, 4:132, 0], sheet[4:132, 140:268, 0]
    # the bright band sits higher (smaller row) for the higher tone
    assert np.argmax(high.mean(axis=1)) < np.argmax(low.mean(axis=1))
    with pytest.raises(ValueError, match="no Image feature"):
        show.find_fields(tfds.features.FeaturesDict({"caption": tfds.features.Text()}),
                         None, "text_only")


def test_wrap_breaks_long_text_and_marks_the_cut():
    fonts = show.load_fonts()
    lines = show.wrap("咧嘴笑的脸" * 20, fonts, 128, 3)
    assert len(lines) == 3 and lines[-1].endswith("…")
    assert all(fonts.length(line) <= 128 for line in lines)
    assert show.wrap("thumbs up", fonts, 128, 3) == ["thumbs up"]
    words = show.wrap("clapping hands medium-light skin tone", fonts, 90, 10)
    assert " ".join(words) == "clapping hands medium-light skin tone"  # broken at spaces
    assert len(words) > 1 and all(fonts.length(line) <= 90 for line in words)


def test_spread_indices():
    assert show.spread_indices(18, 6) == [0, 3, 7, 10, 14, 17]
    assert show.spread_indices(3, 16) == [0, 1, 2]
    assert show.spread_indices(0, 4) == []


def test_a_builder_of_an_unprepared_set_leaves_no_temporary_folder(tmp_path, monkeypatch):
    # TFDS's ``initialize_from_bucket`` makes a ``tmp*tfds`` folder for every builder whose
    # set is not prepared and never removes it; xmodal's builders skip that lookup.
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    Emoji(data_dir=str(tmp_path / "data"))
    Emoji(data_dir=str(tmp_path / "data"))
    assert sorted(os.listdir(scratch)) == []
