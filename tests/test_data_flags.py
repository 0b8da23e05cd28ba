import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import flags as fl



pytestmark = skip_unless_installed("flags/tiny")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all("flags/tiny", str(tmp_path_factory.mktemp("data")))


def test_split_by_flag_code(records):
    assert len(records["train"]) + len(records["test"]) == 30
    for split, rs in records.items():
        for r in rs:
            assert (int(hashlib.sha1(r["code"]).hexdigest(), 16) % 10 == 0) == (split == "test")


def test_images_are_the_flag_padded_over_white(records):
    root = sources.resolve_file(fl.FLAGS_DIR)
    for r in records["train"] + records["test"]:
        image = r["image"]
        assert image.shape == (64, 64, 3)
        # 320x240 -> 64x48 centred: 8 white rows above and below
        np.testing.assert_array_equal(image[:7], 255)
        np.testing.assert_array_equal(image[-7:], 255)
        with Image.open(f"{root}/{r['code'].decode()}.png") as src:
            white = Image.new("RGBA", src.size, (255, 255, 255, 255))
            flat = Image.alpha_composite(white, src.convert("RGBA")).convert("RGB")
            centre = np.asarray(flat.resize((64, 48), Image.BILINEAR))[24]
        assert np.abs(image[32].astype(int) - centre.astype(int)).mean() < 40


def test_names_come_from_cldr(records):
    from babel import Locale
    for r in records["train"] + records["test"]:
        code = r["code"].decode().upper()
        names = json.loads(r["names"].decode())
        assert r["name"].decode() == Locale("en").territories[code] == names["en"]
        assert names["ja"] == Locale("ja").territories[code]
        assert len(names) > 300


def test_france_and_skips():
    catalog = fl.read_catalog()
    france = next(f for f in catalog.flags if f.code == "fr")
    assert (france.names["en"], france.names["de"], france.names["ru"]) == (
        "France", "Frankreich", "Франция")
    codes = {f.code for f in catalog.flags}
    assert "_basque" not in codes and "zz" not in codes
    assert catalog.skipped[fl.SKIP_PLACEHOLDER] == 1
    assert len(codes) + sum(catalog.skipped.values()) == 262
