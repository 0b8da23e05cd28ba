"""Playing cards: 30 deck styles x 52 cards, captioned "queen of hearts".

Debian ``gnome-cards-data`` ships AisleRiot's decks as one SVG sheet per style
(``/usr/share/aisleriot/cards/<deck>.svgz``) in which each card is an element with id
``<suit>_<rank>`` (``heart_queen``, ``club_1`` for the ace), plus ``back`` and jokers. One card
is drawn by rendering the sheet with every other card, back and joker hidden by a CSS
``display: none`` rule (resvg's ``style_sheet``), then cropping to the drawn pixels.

Two splits of the same cards:
  * ``default`` / ``tiny``: by deck style, test = sha1(family) % 10 < 2 where a deck's
    family is itself or, for variants (``anglo_bitmap``, ``tango_nuevo``...), the deck it
    varies (DECK_FAMILY): every card is seen in training, the test drawings are in styles
    whose variants are not.
  * ``by_card`` / ``by_card_tiny``: by card, test = sha1("queen of hearts") % 10 < 2,
    across all decks: the test captions (and cards) are unseen.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets.emoji import encode_png
from xmodal.data.sets.emoji_styles import square_on_white

CARDS_DIR = "/usr/share/aisleriot/cards"
SUITS: tuple[str, ...] = ("clubs", "diamonds", "hearts", "spades")
RANKS: tuple[str, ...] = ("ace", "two", "three", "four", "five", "six", "seven", "eight",
                          "nine", "ten", "jack", "queen", "king")
# Rank spelt as in the SVG ids: aces are "1", court cards by name.
RANK_IDS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "jack",
                             "queen", "king")
COLUMNS_PER_SHEET = 13  # AisleRiot sheets: 13 ranks across ...
ROWS_PER_SHEET = 5      # ... 4 suits + jokers/back down
TEST_BUCKETS = 2        # test = sha1(key) % 10 < 2: about 20%, at least a few of 30 decks
# Decks that are recolourings, re-encodings or renamings of another deck: split as one
# family, or the test "style" would be a copy of a training one.
DECK_FAMILY: dict[str, str] = {
    "anglo_bitmap": "anglo", "anglo_poker": "anglo",
    "anglo_modern_4_color": "anglo_modern",
    "atlasnye_skat": "atlasnye", "Атласные": "atlasnye",
    "gnomangelo_bitmap": "gnomangelo",
    "neoclassical_4_color": "neoclassical",
    "tango_nuevo": "tango",
}

CARD: dict = {
    "title": "Playing cards in 30 deck styles with their names",
    "sources": "Debian gnome-cards-data (AisleRiot card themes; version: dpkg -s "
               "gnome-cards-data); rendered with resvg-py.",
    "licence": "GPL-3.0-or-later (AisleRiot card themes; some decks carry their own free "
               "licences, see /usr/share/doc/gnome-cards-data/copyright)",
    "splits": "default: by deck style, test = sha1(deck family) % 10 < 2, where variants of "
              "one deck (anglo/anglo_bitmap/anglo_poker, atlasnye/atlasnye_skat/Атласные, "
              "tango/tango_nuevo, ... see DECK_FAMILY) share a family and a split: 5 of 22 "
              "families are test (berlin, lattmann, simplistic, slavic_costumes, tigullio). "
              "by_card: by card, test = sha1(caption) % 10 < 2, over all decks (12 of 52 "
              "cards). Backs and jokers are not included.",
    "languages": "English captions",
    "skipped": "Card backs and the two jokers (not one of the 52 named cards). A deck that "
               "lacks one of the 52 ids or draws nothing for it stops the build with its path "
               "and the card id; nothing is dropped.",
    "fields": {
        "image": "64 px RGB card (cropped to the card, padded square over white)",
        "caption": "'<rank> of <suit>', e.g. 'queen of hearts', 'ace of spades'",
        "rank": "ClassLabel over ace..king",
        "suit": "ClassLabel over clubs, diamonds, hearts, spades",
        "deck": "deck style, the sheet's file name without .svgz",
        "family": "deck family (split key of default): the deck, or the deck it varies",
    },
}


@dataclasses.dataclass(frozen=True)
class PlayingCard:
    deck: str
    sheet: str       # path of the deck's .svgz
    suit: str        # one of SUITS
    rank: str        # one of RANKS

    @property
    def caption(self) -> str:
        return f"{self.rank} of {self.suit}"

    @property
    def svg_id(self) -> str:
        return f"{self.suit[:-1]}_{RANK_IDS[RANKS.index(self.rank)]}"


def is_test(key: str) -> bool:
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest(), 16) % 10 < TEST_BUCKETS


def list_decks(cards_dir: str | None = None) -> list[tuple[str, str]]:
    """(deck name, sheet path) for every .svgz, sorted by name."""
    root = cards_dir or sources.resolve_file(CARDS_DIR)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"card folder {root} is missing; install with: "
                                "apt-get install -y gnome-cards-data")
    return [(f[:-len(".svgz")], os.path.join(root, f))
            for f in sorted(os.listdir(root)) if f.endswith(".svgz")]


def sheet_ids(sheet: str) -> list[str]:
    """Ids of the 52 cards, the back and the two jokers that the sheet has.

    Only these exact ids are hidden when drawing one card: decks also have ids such as
    ``heart_pip`` or ``jokerpip`` for shapes the cards reuse, and hiding those would blank
    every card that draws them.
    """
    with gzip.open(sheet, "rt", encoding="utf-8") as f:
        present = set(re.findall(r'\bid="([^"]+)"', f.read()))
    wanted = [f"{suit[:-1]}_{rank}" for suit in SUITS for rank in RANK_IDS]
    wanted += ["back", "joker_black", "joker_red"]
    return [i for i in wanted if i in present]


def render_card(card: PlayingCard, size: int, ids: list[str] | None = None) -> np.ndarray:
    """The card alone: other cards hidden, its grid cell cut out, cropped, over white.

    AisleRiot sheets are a 13 x 5 grid: ranks ace..king across, suits clubs, diamonds,
    hearts, spades down, jokers and back in row 5. Some decks also draw pieces outside the
    card elements (ornamental, tango), so the card's cell is cut out before cropping.
    """
    import resvg_py

    ids = ids if ids is not None else sheet_ids(card.sheet)
    if card.svg_id not in ids:
        raise ValueError(f"deck sheet {card.sheet} has no element id {card.svg_id!r} "
                         f"({card.caption}); the gnome-cards-data install may be damaged")
    hidden = ", ".join(f"#{i}" for i in ids if i != card.svg_id)
    png = resvg_py.svg_to_bytes(svg_path=card.sheet, style_sheet=hidden + " {display: none}",
                                width=COLUMNS_PER_SHEET * 2 * size)
    sheet = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    cell_w, cell_h = sheet.width / COLUMNS_PER_SHEET, sheet.height / ROWS_PER_SHEET
    col, row = RANKS.index(card.rank), SUITS.index(card.suit)
    cell = sheet.crop((round(col * cell_w), round(row * cell_h),
                       round((col + 1) * cell_w), round((row + 1) * cell_h)))
    if cell.getchannel("A").getbbox() is None:
        raise ValueError(f"{card.sheet}: element {card.svg_id!r} ({card.caption}) draws "
                         f"nothing in its grid cell (column {col + 1}, row {row + 1})")
    return square_on_white(cell, size)


@dataclasses.dataclass
class CardsConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    split_by: str = "deck"                  # "deck" or "card"
    decks: tuple[str, ...] | None = None     # None: every deck
    ranks: tuple[str, ...] = RANKS


class Cards(Builder):
    """TFDS builder ``xmodal_cards``."""

    name = "xmodal_cards"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "AisleRiot decks, 52 cards each, split by deck or by card."}
    BUILDER_CONFIGS = [
        CardsConfig(name="default", description="All decks, split by deck style."),
        # Two train decks and one test deck (by the sha1 rule), three ranks of every suit.
        CardsConfig(name="tiny", description="3 decks x 12 cards, split by deck.",
                    decks=("anglo", "tango", "berlin"), ranks=("ace", "seven", "queen")),
        CardsConfig(name="by_card", description="All decks, split by card.", split_by="card"),
        CardsConfig(name="by_card_tiny", description="1 deck x 52 cards, split by card.",
                    split_by="card", decks=("paris",)),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return tfds.core.DatasetInfo(
            builder=self, description=CARD["title"] + ". " + CARD["splits"],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                "caption": tfds.features.Text(),
                "rank": tfds.features.ClassLabel(names=list(RANKS)),
                "suit": tfds.features.ClassLabel(names=list(SUITS)),
                "deck": tfds.features.Text(),
                "family": tfds.features.Text(),
            }),
            homepage="https://wiki.gnome.org/Apps/Aisleriot", license=CARD["licence"])

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # everything comes from the installed Debian package
        cfg = self.builder_config
        if cfg.split_by not in ("deck", "card"):
            raise ValueError(f"split_by must be 'deck' or 'card', not {cfg.split_by!r}")
        decks = list_decks()
        if cfg.decks is not None:
            known = {name for name, _ in decks}
            unknown = [d for d in cfg.decks if d not in known]
            if unknown:
                raise ValueError(f"decks {unknown} not in {sources.resolve_file(CARDS_DIR)}; "
                                 f"decks: {', '.join(sorted(known))}")
            decks = [(name, path) for name, path in decks if name in cfg.decks]
        by_split: dict[str, list[PlayingCard]] = {"train": [], "test": []}
        for deck, sheet in decks:
            for suit in SUITS:
                for rank in cfg.ranks:
                    card = PlayingCard(deck=deck, sheet=sheet, suit=suit, rank=rank)
                    key = DECK_FAMILY.get(deck, deck) if cfg.split_by == "deck" else card.caption
                    by_split["test" if is_test(key) else "train"].append(card)
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, cards: list[PlayingCard]):
        size = self.builder_config.image_size
        ids: dict[str, list[str]] = {}
        for card in cards:
            if card.sheet not in ids:
                ids[card.sheet] = sheet_ids(card.sheet)
            yield f"{card.deck}/{card.svg_id}", {
                "image": encode_png(render_card(card, size, ids[card.sheet])),
                "caption": card.caption, "rank": RANKS.index(card.rank),
                "suit": SUITS.index(card.suit), "deck": card.deck,
                "family": DECK_FAMILY.get(card.deck, card.deck)}


for _config in ("default", "tiny", "by_card", "by_card_tiny"):
    sources.register(
        "cards" if _config == "default" else f"cards/{_config}",
        sources.DatasetEntry(Cards, _config, ("resvg-py",), ("resvg_py",),
                             "card sheets come from Debian gnome-cards-data",
                             apt=("gnome-cards-data",), files=(CARDS_DIR,)))
