import hashlib
import json
import unicodedata

import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.data.sets import entities as en

pytestmark = skip_unless_installed("entities/tiny")

NAME = "entities/tiny"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all(NAME, str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def entities():
    return {e.entity_id: e for e in en.read_entities()}


def test_tiny_has_ten_of_each_type(records):
    everything = records["train"] + records["test"]
    assert [sum(r["entity_type"] == i for r in everything) for i in range(3)] == [10, 10, 10]


def test_splits_disjoint_and_chosen_by_sha1(records):
    ids = {split: {r["entity_id"].decode() for r in rs} for split, rs in records.items()}
    assert not ids["train"] & ids["test"]
    for split, split_ids in ids.items():
        for entity_id in split_ids:
            is_test = int(hashlib.sha1(entity_id.encode()).hexdigest(), 16) % 10 == 0
            assert is_test == (split == "test"), entity_id


def test_record_fields_fit_their_type(records):
    for r in records["train"] + records["test"]:
        kind = en.ENTITY_TYPES[r["entity_type"]]
        names = json.loads(r["names"])
        assert r["name"].decode() and names
        if kind == "country":
            assert r["parent"] == b"" and "en" in names and len(names) >= 10
        else:
            assert len(r["parent"]) == 2 and r["parent"].isupper()
        if kind == "city":
            assert r["population"] > 0 and names == {"und": r["name"].decode()}
        if kind == "subdivision":
            assert r["population"] == -1 and r["subtype"] and r["parent_name"]
            assert names["en"] == r["name"].decode()


def test_whole_catalogue(entities):
    kinds = [e.entity_type for e in entities.values()]
    assert kinds.count("country") == 249 and kinds.count("subdivision") > 5000
    assert kinds.count("city") > 30000


def test_kenya_names_in_their_scripts(entities):
    kenya = entities["country/KE"]
    assert kenya.name == "Kenya" and kenya.population > 40_000_000
    assert kenya.names["de"] == "Kenia" and kenya.names["ja"] == "ケニア"
    assert all("ARABIC" in unicodedata.name(ch) for ch in kenya.names["ar"])
    assert all("CYRILLIC" in unicodedata.name(ch) for ch in kenya.names["ru"])


def test_nairobi_is_a_kenyan_city(entities):
    nairobi = next(e for e in entities.values()
                   if e.entity_type == "city" and e.name == "Nairobi")
    assert nairobi.parent == "KE" and nairobi.population > 1_000_000
    assert nairobi.alternate_names


def test_subdivision_translation_only_when_different(entities):
    ain = entities["subdivision/FR-01"]
    assert ain.parent == "FR" and ain.names["en"] == "Ain"
    assert all(name != "Ain" for code, name in ain.names.items() if code != "en")
