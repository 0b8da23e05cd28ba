import hashlib

import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.core import datasets as sources
from xmodal.data.sets import wordnet as wn

NAME = "wordnet/tiny"
pytestmark = skip_unless_installed(NAME)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return read_all(NAME, str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def synsets():
    return wn.read_synsets()


def test_tiny_counts_and_named_entity_quota(records):
    everything = records["train"] + records["test"]
    assert len(everything) == 50
    assert sum(r["is_named_entity"] for r in everything) == 10
    named = [r for r in everything if r["is_named_entity"]]
    assert all(r["instance_of"] and r["pos"] == 0 for r in named)  # instances are nouns


def test_splits_disjoint_by_synset_and_chosen_by_sha1(records):
    ids = {split: {r["synset_id"].decode() for r in rs} for split, rs in records.items()}
    assert not ids["train"] & ids["test"]
    for split, split_ids in ids.items():
        for synset_id in split_ids:
            digest = int(hashlib.sha1(synset_id.encode()).hexdigest(), 16)
            assert (digest % 10 == 0) == (split == "test"), synset_id


def test_records_have_text(records):
    for r in records["train"] + records["test"]:
        assert r["definition"].decode() and r["lemmas"].decode()
        assert r["gloss"].decode().startswith(r["definition"].decode())
        name = r["name"].decode()
        lemma, pos, sense = name.rsplit(".", 2)
        assert pos in "nvasr" and int(sense) >= 1
        assert lemma.replace("_", " ") == r["lemmas"].decode().split(", ")[0].lower()


def test_whole_wordnet_counts(synsets):
    # WordNet 3.0 statistics (wnstats(7WN)): 82,115 noun, 13,767 verb, 18,156 adjective
    # (incl. satellites), 3,621 adverb synsets.
    assert len(synsets) == 117659
    counts = {p: sum(s.pos == p for s in synsets.values()) for p in "nvasr"}
    assert counts["n"] == 82115 and counts["v"] == 13767 and counts["r"] == 3621
    assert counts["a"] + counts["s"] == 18156
    assert sum(s.is_named_entity for s in synsets.values()) == 7730


def test_known_synsets(synsets):
    senses = wn.read_sense_numbers()
    dog = synsets["n02084071"]
    assert wn.synset_name(dog, senses) == "dog.n.01"
    assert dog.lemmas == ("dog", "domestic_dog", "Canis_familiaris")
    assert dog.lexname == "noun.animal"
    assert {wn.synset_name(synsets[h], senses) for h in dog.hypernyms} == {
        "canine.n.02", "domestic_animal.n.01"}
    assert wn.definition_of(dog.gloss).startswith("a member of the genus Canis")
    assert not dog.is_named_entity
    mozart = next(s for s in synsets.values() if "Wolfgang_Amadeus_Mozart" in s.lemmas)
    assert mozart.is_named_entity and not mozart.hypernyms
    assert [wn.synset_name(synsets[t], senses) for t in mozart.instance_of] == ["composer.n.01"]


def test_adjective_markers_are_removed():
    line = ("00019731 00 s 02 handy 0 ready_to_hand(p) 0 001 & 00019131 a 0000 "
            "| easy to reach; \"found a handy spot for the can opener\"  \n")
    synset = wn.parse_data_line(line)
    assert synset.lemmas == ("handy", "ready_to_hand")
    assert synset.synset_id == "a00019731" and synset.pos == "s"
    assert wn.definition_of(synset.gloss) == "easy to reach"


def test_malformed_line_names_file_and_line(tmp_path):
    for pos in wn.FILE_POS:
        (tmp_path / f"data.{pos}").write_text("  licence header\n")
    (tmp_path / "data.verb").write_text("  licence header\n00001740 29 v 04 breathe\n")
    with pytest.raises(ValueError, match=r"data\.verb:2"):
        wn.read_synsets(str(tmp_path))


def test_missing_debian_package_gives_apt_command(monkeypatch, tmp_path):
    monkeypatch.setenv("DEBROOT", str(tmp_path))
    with pytest.raises(sources.DataSourceMissing, match="apt-get install -y wordnet-base"):
        sources.check_installed(NAME)
