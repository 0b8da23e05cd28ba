"""WordNet 3.0 synsets: lemma names, gloss, hypernyms and whether the synset is a named entity.

Source: the Princeton WordNet 3.0 database files ``data.{noun,verb,adj,adv}`` and
``index.*`` from the Debian package ``wordnet-base`` (Miller 1995, "WordNet: a lexical database
for English"; Fellbaum 1998). They are parsed here directly (format: wndb(5WN)) rather than with
nltk, which needs workarounds to read the Debian layout.

A synset is a *named entity* when it is an instance of another synset (pointer ``@i``, e.g.
"Mozart" instance of "composer"); these are the 7,730 instance synsets of WordNet 3.0.
Splits are by synset: test = sha1(synset id) % 10 == 0.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder

DEBIAN_DIR = "/usr/share/wordnet"
APT = ("wordnet-base",)
FILE_POS = ("noun", "verb", "adj", "adv")
# ss_type letter of data files -> part of speech; "s" is an adjective satellite
# (an adjective defined through a head adjective, e.g. "ample" via "abundant").
POS_NAMES = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective satellite",
             "r": "adverb"}
POS_ORDER: tuple[str, ...] = ("n", "v", "a", "s", "r")
# The lexicographer files, in lex_filenum order (WordNet 3.0 ``lexnames``, which Debian omits).
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance",
    "noun.time", "verb.body", "verb.change", "verb.cognition", "verb.communication",
    "verb.competition", "verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
    "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
HYPERNYM, INSTANCE_HYPERNYM = "@", "@i"
TEST_MODULUS = 10

CARD = {
    "title": "WordNet 3.0 synsets (xmodal_wordnet)",
    "sources": "Debian package wordnet-base (Princeton WordNet 3.0 database files; package "
               "version from `dpkg -s wordnet-base`, 1:3.0-37 when written).",
    "licence": "WordNet 3.0 licence (Princeton University; free use with the copyright notice).",
    "splits": "By synset: test = sha1(synset id, e.g. 'n02084071') % 10 == 0 (about 10%). A "
              "word with several senses can have one sense in train and another in test; each "
              "synset (gloss, lemma set) is in one split only. tiny = the first 40 ordinary and "
              "first 10 named-entity synsets in sha1 order, split by the same rule.",
    "languages": "English.",
    "skipped": "Nothing: every synset of the four data files is an example. The licence header "
               "lines (starting with two spaces) are not synsets. A malformed line stops the "
               "build with its file and line number.",
    "fields": {
        "synset_id": "pos letter + 8-digit byte offset, e.g. 'n02084071' (ImageNet's wnid).",
        "name": "nltk-style name: first lemma (lower case), pos, sense number of that lemma, "
                "e.g. 'dog.n.01'.",
        "pos": f"part of speech, one of {', '.join(POS_NAMES[p] for p in POS_ORDER)}.",
        "lexname": "lexicographer file, e.g. 'noun.animal'.",
        "lemmas": "lemma names, '_' replaced by ' ', adjective markers like '(p)' removed, "
                  "joined by ', ', e.g. 'dog, domestic dog, Canis familiaris'.",
        "gloss": "full gloss: definition then quoted examples, as in WordNet.",
        "definition": "the gloss up to the first quoted example.",
        "hypernyms": "names of the hypernym synsets (@), space-separated; '' if none.",
        "instance_of": "names of the synsets this is an instance of (@i); '' if none.",
        "is_named_entity": "1 if the synset is an instance (has an @i pointer), else 0.",
    },
}


@dataclasses.dataclass(frozen=True)
class Synset:
    synset_id: str            # e.g. "n02084071"
    pos: str                  # ss_type letter: n v a s r
    lexname: str
    lemmas: tuple[str, ...]   # as in the data file: "domestic_dog", adjective markers removed
    gloss: str
    hypernyms: tuple[str, ...]     # synset ids
    instance_of: tuple[str, ...]   # synset ids

    @property
    def is_named_entity(self) -> bool:
        return bool(self.instance_of)


def strip_adjective_marker(word: str) -> str:
    """'ready_to_hand(p)' -> 'ready_to_hand' (syntactic markers (a), (p), (ip) of adjectives)."""
    if word.endswith(")") and "(" in word:
        return word[:word.rindex("(")]
    return word


def parse_data_line(line: str) -> Synset:
    """One synset line of a WordNet data file (wndb(5WN)).

    synset_offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt
    [pointer_symbol synset_offset pos source/target]... [frames] | gloss
    """
    fields, _, gloss = line.partition(" | ")
    tokens = fields.split()
    offset, lex_filenum, pos = tokens[0], int(tokens[1]), tokens[2]
    word_count = int(tokens[3], 16)
    words = tokens[4:4 + 2 * word_count:2]
    at = 4 + 2 * word_count
    pointer_count = int(tokens[at])
    hypernyms, instance_of = [], []
    for i in range(pointer_count):
        symbol, target, target_pos = tokens[at + 1 + 4 * i: at + 4 + 4 * i]
        target_id = ("a" if target_pos == "s" else target_pos) + target
        if symbol == HYPERNYM:
            hypernyms.append(target_id)
        elif symbol == INSTANCE_HYPERNYM:
            instance_of.append(target_id)
    if pos not in POS_NAMES or len(words) != word_count or not 0 <= lex_filenum < len(LEXNAMES):
        raise ValueError(f"not a WordNet synset line: {line[:80]!r}")
    return Synset(
        synset_id=("a" if pos == "s" else pos) + offset, pos=pos,
        lexname=LEXNAMES[lex_filenum],
        lemmas=tuple(strip_adjective_marker(w) for w in words), gloss=gloss.strip(),
        hypernyms=tuple(hypernyms), instance_of=tuple(instance_of))


def read_synsets(root: str | None = None) -> dict[str, Synset]:
    """Every synset of ``<root>/data.*`` by synset id (root: the Debian WordNet directory)."""
    root = root or sources.resolve_file(DEBIAN_DIR)
    synsets: dict[str, Synset] = {}
    for file_pos in FILE_POS:
        path = f"{root}/data.{file_pos}"
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.startswith("  "):  # licence header
                    continue
                try:
                    synset = parse_data_line(line)
                except (ValueError, IndexError) as e:
                    raise ValueError(f"{path}:{number}: {e}; the WordNet files are damaged, "
                                     f"reinstall: apt-get install --reinstall {APT[0]}") from e
                synsets[synset.synset_id] = synset
    return synsets


def read_sense_numbers(root: str | None = None) -> dict[tuple[str, str], int]:
    """(lower-case lemma, synset id) -> sense number (1-based) from ``index.*``.

    index line: lemma pos synset_cnt p_cnt [ptr_symbol]... sense_cnt tagsense_cnt offset...
    with the offsets in sense order (most frequent first).
    """
    root = root or sources.resolve_file(DEBIAN_DIR)
    senses: dict[tuple[str, str], int] = {}
    for file_pos in FILE_POS:
        with open(f"{root}/index.{file_pos}", encoding="utf-8") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                tokens = line.split()
                lemma, pos, synset_count = tokens[0], tokens[1], int(tokens[2])
                for sense, offset in enumerate(tokens[len(tokens) - synset_count:], 1):
                    senses[(lemma, pos + offset)] = sense
    return senses


def synset_name(synset: Synset, senses: dict[tuple[str, str], int]) -> str:
    """nltk's name 'dog.n.01': first lemma, ss_type, that lemma's sense number."""
    lemma = synset.lemmas[0].lower()
    key = (lemma, synset.synset_id)
    if key not in senses:
        raise ValueError(f"WordNet index has no entry for lemma {lemma!r} of synset "
                         f"{synset.synset_id}; reinstall: apt-get install --reinstall {APT[0]}")
    return f"{lemma}.{synset.pos}.{senses[key]:02d}"


def definition_of(gloss: str) -> str:
    """Gloss up to the first quoted example: 'a member of ...; occurs in many breeds'."""
    return gloss.split('"', 1)[0].rstrip("; ").strip()


def sha1_int(text: str) -> int:
    return int(hashlib.sha1(text.encode("ascii")).hexdigest(), 16)


def split_of(synset_id: str) -> str:
    return "test" if sha1_int(synset_id) % TEST_MODULUS == 0 else "train"


def select(synsets: dict[str, Synset], max_ordinary: int | None,
           max_named: int | None) -> list[str]:
    """Synset ids to build: all if the limits are None, else the first ones in sha1 order.

    Named entities get their own quota so a small subset has some (they are ~7% of WordNet).
    """
    if max_ordinary is None and max_named is None:
        return list(synsets)
    ordered = sorted(synsets, key=sha1_int)
    named = [s for s in ordered if synsets[s].is_named_entity][:max_named]
    ordinary = [s for s in ordered if not synsets[s].is_named_entity][:max_ordinary]
    return sorted(named + ordinary, key=sha1_int)


@dataclasses.dataclass
class WordnetConfig(tfds.core.BuilderConfig):
    max_ordinary: int | None = None  # None (with max_named None): every synset
    max_named: int | None = None


class Wordnet(Builder):
    """TFDS builder ``xmodal_wordnet``."""

    name = "xmodal_wordnet"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "WordNet 3.0 from Debian wordnet-base, split by synset."}
    BUILDER_CONFIGS = [
        WordnetConfig(name="default", description="All 117,659 synsets."),
        WordnetConfig(name="tiny", description="40 ordinary + 10 named-entity synsets.",
                      max_ordinary=40, max_named=10),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        text = {k: tfds.features.Text() for k in (
            "synset_id", "name", "lexname", "lemmas", "gloss", "definition", "hypernyms",
            "instance_of")}
        return tfds.core.DatasetInfo(
            builder=self,
            description="WordNet 3.0 synsets with lemmas, glosses, hypernyms and the "
                        "named-entity (instance) flag.",
            features=tfds.features.FeaturesDict({
                **text,
                "pos": tfds.features.ClassLabel(names=[POS_NAMES[p] for p in POS_ORDER]),
                "is_named_entity": tfds.features.Scalar(dtype=np.int64),
            }),
            homepage="https://wordnet.princeton.edu",
            license="WordNet 3.0 license",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager  # the files come from the Debian package
        synsets = read_synsets()
        senses = read_sense_numbers()
        chosen = select(synsets, self.builder_config.max_ordinary, self.builder_config.max_named)
        by_split: dict[str, list[str]] = collections.defaultdict(list)
        for synset_id in chosen:
            by_split[split_of(synset_id)].append(synset_id)
        return {split: self._generate_examples(by_split[split], synsets, senses)
                for split in ("train", "test")}

    def _generate_examples(self, ids, synsets, senses):
        def names(targets):
            return " ".join(synset_name(synsets[t], senses) for t in targets)

        for synset_id in ids:
            s = synsets[synset_id]
            yield synset_id, {
                "synset_id": synset_id,
                "name": synset_name(s, senses),
                "pos": POS_ORDER.index(s.pos),
                "lexname": s.lexname,
                "lemmas": ", ".join(w.replace("_", " ") for w in s.lemmas),
                "gloss": s.gloss,
                "definition": definition_of(s.gloss),
                "hypernyms": names(s.hypernyms),
                "instance_of": names(s.instance_of),
                "is_named_entity": int(s.is_named_entity),
            }


_FILES = tuple(f"{DEBIAN_DIR}/{kind}.{pos}" for kind in ("data", "index") for pos in FILE_POS)
_HINT = "WordNet 3.0 database files come from a Debian package"
for _name, _config in (("wordnet", "default"), ("wordnet/tiny", "tiny")):
    sources.register(_name, sources.DatasetEntry(
        Wordnet, _config, packages=(), modules=(), install_hint=_HINT, apt=APT, files=_FILES))
