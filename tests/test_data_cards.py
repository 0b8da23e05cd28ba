import hashlib

import numpy as np
import pytest

from tests.data_helpers import read_all, skip_unless_installed
from xmodal.data.sets import cards as cd



pytestmark = skip_unless_installed("cards/tiny")



def _is_test(key: bytes) -> bool:
    return int(hashlib.sha1(key).hexdigest(), 16) % 10 < 2


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def by_deck(data_dir):
    return read_all("cards/tiny", data_dir)


@pytest.fixture(scope="module")
def by_card(data_dir):
    return read_all("cards/by_card_tiny", data_dir)


def test_tiny_split_by_deck(by_deck):
    decks = {s: {r["deck"] for r in rs} for s, rs in by_deck.items()}
    assert decks == {"train": {b"anglo", b"tango"}, "test": {b"berlin"}}
    families = {s: {r["family"] for r in rs} for s, rs in by_deck.items()}
    assert all(_is_test(f) for f in families["test"])
    assert not any(map(_is_test, families["train"]))
    assert len(by_deck["train"]) == 24 and len(by_deck["test"]) == 12


def test_captions_rank_and_suit_agree(by_deck):
    for r in by_deck["train"] + by_deck["test"]:
        rank, suit = cd.RANKS[r["rank"]], cd.SUITS[r["suit"]]
        assert r["caption"].decode() == f"{rank} of {suit}"
    captions = {r["caption"] for r in by_deck["test"]}
    assert b"queen of hearts" in captions and b"ace of spades" in captions


def test_by_card_split_holds_out_captions(by_card):
    train = {r["caption"] for r in by_card["train"]}
    test = {r["caption"] for r in by_card["test"]}
    assert len(train | test) == 52 and not train & test
    assert all(_is_test(c) for c in test) and not any(map(_is_test, train))


def test_cards_are_single_portrait_cards(by_card):
    for r in by_card["train"] + by_card["test"]:
        image = r["image"]
        assert image.shape == (64, 64, 3)
        drawn_columns = (image < 250).any(axis=-1).any(axis=0).sum()
        drawn_rows = (image < 250).any(axis=-1).any(axis=1).sum()
        # one card, about 2:3, padded left and right; two cards side by side would be wide
        assert drawn_rows == 64 and 36 <= drawn_columns <= 50, r["caption"]


def test_red_suits_are_red(by_card):
    def redness(image):
        pixels = image.reshape(-1, 3).astype(int)
        return np.mean((pixels[:, 0] > 150) & (pixels[:, 1] < 100) & (pixels[:, 2] < 100))
    for r in by_card["train"] + by_card["test"]:
        if cd.RANKS[r["rank"]] in ("two", "three", "four", "five"):  # pips only, no faces
            is_red = cd.SUITS[r["suit"]] in ("hearts", "diamonds")
            assert (redness(r["image"]) > 0.01) == is_red, r["caption"]


def test_missing_card_id_names_the_sheet():
    name, sheet = cd.list_decks()[0]
    card = cd.PlayingCard(deck=name, sheet=sheet, suit="hearts", rank="queen")
    with pytest.raises(ValueError, match="heart_queen"):
        cd.render_card(card, 32, ids=["back"])


def test_deck_variants_share_a_split():
    test_decks = {name for name, _ in cd.list_decks()
                  if _is_test(cd.DECK_FAMILY.get(name, name).encode())}
    assert test_decks and len(test_decks) < 15
    for variant, family in cd.DECK_FAMILY.items():
        assert (variant in test_decks) == (family in test_decks)


def test_thirty_decks_with_all_52_cards():
    decks = cd.list_decks()
    assert len(decks) == 30
    for _, sheet in decks:
        assert len([i for i in cd.sheet_ids(sheet) if i.split("_")[0] != "joker"
                    and i != "back"]) == 52
