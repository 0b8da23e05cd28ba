import hashlib

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import instruments as ins
from xmodal.data.sets import lass_mix as lm

pytestmark = skip_unless_installed("lass_mix/tiny")



def _sha_mod5(text):
    return int(hashlib.sha1(text.encode()).hexdigest()[:16], 16) % 5



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny(data_dir):
    return read_all("lass_mix/tiny", data_dir, ("train", "test", "dev"))


def _labels(r):
    return [label.decode() for label in r["source_labels"]]


def test_counts_queries_and_labels(tiny):
    assert {k: len(v) for k, v in tiny.items()} == {"train": 24, "test": 12, "dev": 8}
    for r in tiny["train"] + tiny["test"] + tiny["dev"]:
        labels = _labels(r)
        assert 2 <= len(labels) <= 3 and len(set(labels)) == len(labels)
        assert r["target_label"].decode() == labels[0]
        assert r["query"].decode() == f"separate the {labels[0]}"


def test_pip_only_test_split_holds_out_instruments(tiny):
    used = {split: {label for r in rs for label in _labels(r)} for split, rs in tiny.items()}
    assert used["train"] and used["test"] and not used["train"] & used["test"]
    assert used["dev"] and not used["train"] & used["dev"]   # dev is drawn like test
    for split, names in used.items():
        for name in names:
            assert (_sha_mod5(name) == 0) == (split in ("test", "dev")), name


def test_dev_mixtures_are_not_test_mixtures(tiny):
    test = {r["mixture"].tobytes() for r in tiny["test"]}
    assert not any(r["mixture"].tobytes() in test for r in tiny["dev"])


def test_mixture_is_sum_and_snr_is_recorded(tiny):
    for r in tiny["train"] + tiny["test"]:
        mixture, target = r["mixture"].astype(np.float64), r["target"].astype(np.float64)
        assert mixture.shape == target.shape == (64000,)
        assert np.abs(mixture).max() <= 0.99 + 1e-6
        rms = np.sqrt(np.mean(target ** 2))
        assert rms > 10 ** (-50 / 20)
        rest = mixture - target
        assert np.sqrt(np.mean(rest ** 2)) > 10 ** (-50 / 20)  # other sources are in there
        snr = 10 * np.log10(np.sum(target ** 2) / np.sum(rest ** 2))
        np.testing.assert_allclose(r["snr_db"], snr, atol=1e-3)
        # each source at -25 dBFS +- 6 dB: two sources differ by at most 12 dB (+ peak scaling
        # is common to both; two others summed in phase add at most 6 dB)
        assert -12 - 6.1 < snr < 12 + 0.1


def test_mixtures_are_deterministic(tiny, tmp_path):
    again = sources.data_source("lass_mix/tiny", "test", str(tmp_path))
    for i, r in enumerate(tiny["test"][:4]):
        np.testing.assert_array_equal(again[i]["mixture"], r["mixture"])
        assert _labels(again[i]) == _labels(r)


def test_effect_listing_rules(tmp_path):
    for rel in ("animals/badger.ogg", "animals/badger_desc.ogg", "animals/badger_desc_fr.ogg",
                "animals/badger_fr.ogg", "animals/pig_golden2.ogg", "symbols/math/7.ogg",
                "hobbies/music/string/violin.ogg", "household/Washing-machine.ogg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    effects = lm.list_effects(str(tmp_path))
    assert [e.label for e in effects] == ["badger sound", "pig golden sound",
                                          "washing machine sound"]
    with pytest.raises(FileNotFoundError, match="tuxpaint-stamps-default"):
        lm.list_effects(str(tmp_path / "absent"))


def test_input_snr_formula():
    t = np.ones(100, np.float32)
    assert lm.input_snr_db(t + 0.1 * t, t) == pytest.approx(20.0, abs=1e-4)


@skip_unless_installed("lass_mix/tuxpaint_tiny")
def test_tuxpaint_config_mixes_effects_and_switches_font(data_dir):
    records = read_all("lass_mix/tuxpaint_tiny", data_dir)
    assert {r["font"] for r in records["train"]} == {b"TimGM6mb"}
    assert {r["font"] for r in records["test"]} == {b"FluidR3_GM"}
    effect_labels = [label for rs in records.values() for r in rs for label in _labels(r)
                     if label.endswith(" sound")]
    assert effect_labels
    builder = sources.prepare("lass_mix/tuxpaint_tiny", data_dir)
    silent = builder.info.metadata["skipped_silent_effects"]
    assert "wombat.ogg" in silent  # an all-zero file in the package
    assert "wombat sound" not in effect_labels
    for r in records["train"] + records["test"]:
        assert np.sqrt(np.mean(r["target"].astype(np.float64) ** 2)) > 10 ** (-50 / 20)


@skip_unless_installed("lass_mix/fluidr3_tiny")
def test_default_trains_on_timgm6mb_and_tests_on_fluidr3(data_dir):
    records = read_all("lass_mix/fluidr3_tiny", data_dir, ("train", "test", "dev"))
    assert {r["font"] for r in records["train"]} == {b"TimGM6mb"}
    assert {r["font"] for r in records["test"]} == {r["font"] for r in records["dev"]} == {
        b"FluidR3_GM"}
    for r in records["train"] + records["test"] + records["dev"]:
        assert set(_labels(r)) <= set(ins.INSTRUMENT_NAMES)  # no effects in this config
        assert np.sqrt(np.mean(r["target"].astype(np.float64) ** 2)) > 10 ** (-50 / 20)
    # same instruments on both sides: the font is what is held out
    used = {split: {label for r in rs for label in _labels(r)} for split, rs in records.items()}
    assert used["train"] & used["test"]
