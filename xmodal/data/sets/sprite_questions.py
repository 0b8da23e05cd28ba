"""Questions with five candidate answers, and referring expressions, derived from a clip's script
(``sprite_scripts``): about what acts, how, where and when. Nothing is written by hand per clip.

Question types (``QTYPES``):

- ``count``: "How many units are there?"; candidates one .. five.
- ``first_action`` / ``last_action``: "What does the red Elvish Fighter do first?" / "... at
  the end?"; distractors are other things that unit could do (its other attacks, the other
  directions, standing, defending, falling).
- ``direction``: "Which way does the red Elvish Fighter move?": left, right, up, down, or
  "it does not move" (asked of every unit, moving or not, so no option is never right).
- ``who``: "Which unit moves left?" for a thing exactly one unit of the clip does; distractors
  are the clip's other units, then units of the same split in other colours.
- ``order``: "Which unit is the first to change what it is doing?" (two or more units; they
  switch at distinct frames).

The candidates are shuffled by the clip's seed; the answer's position is uniform over the five.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from xmodal.data.sets.sprite_scripts import DIRECTIONS, Action, Script, positions
from xmodal.data.sets.wesnoth import TEAM_COLOURS, Unit

QTYPES = ("count", "first_action", "last_action", "direction", "who", "order")
CANDIDATES = 5
NUMBERS = ("one", "two", "three", "four", "five")
NO_MOVE = "it does not move"


@dataclasses.dataclass(frozen=True)
class Question:
    qtype: str
    text: str
    candidates: tuple[str, ...]
    answer: int
    actor: int          # the unit asked about (-1: the clip as a whole)


def _ask(qtype: str, text: str, right: str, wrong: Sequence[str], rng: np.random.Generator,
         actor: int = -1) -> Question:
    wrong = [w for w in dict.fromkeys(wrong) if w != right]
    if len(wrong) < CANDIDATES - 1:
        raise ValueError(f"{qtype} question {text!r}: only {len(wrong)} distractors")
    picked = [wrong[i] for i in rng.choice(len(wrong), CANDIDATES - 1, replace=False)]
    options = [right] + picked
    order = rng.permutation(CANDIDATES)
    candidates = tuple(options[i] for i in order)
    return Question(qtype, text, candidates, int(np.flatnonzero(order == 0)[0]), actor)


def possible_phrases(unit: Unit, last: bool) -> list[str]:
    """Everything a unit could be seen doing in a segment, in words."""
    out = [Action("move", direction=d).phrase() for d in DIRECTIONS]
    out += [Action("attack", label=a.label).phrase() for a in unit.attacks]
    out += [Action("stand").phrase(), Action("defend").phrase()]
    return out + ([Action("die").phrase()] if last else [])


def _other_titles(script: Script, split_units: Sequence[Unit], rng: np.random.Generator,
                  exclude: str) -> list[str]:
    """The clip's other units first, then units of the split in random colours."""
    own = [a.title for a in script.actors if a.title != exclude]
    extra = []
    for k in rng.permutation(len(split_units))[:12]:
        extra.append(f"the {rng.choice(list(TEAM_COLOURS))} {split_units[int(k)].name}")
    present = {a.unit.name for a in script.actors}
    return own + [t for t in extra if t.split(" ", 2)[2] not in present]


def questions(script: Script, split_units: Sequence[Unit]) -> list[Question]:
    rng = np.random.default_rng([script.seed, 1])
    actors = script.actors
    out = [_ask("count", "How many units are there?", NUMBERS[len(actors) - 1],
                [n for n in NUMBERS], rng)]
    for k, a in enumerate(actors):
        out.append(_ask("first_action", f"What does {a.title} do first?",
                        a.actions[0].phrase(), possible_phrases(a.unit, last=False), rng, k))
        out.append(_ask("last_action", f"What does {a.title} do at the end?",
                        a.actions[1].phrase(), possible_phrases(a.unit, last=True), rng, k))
        moves = [x.direction for x in a.actions if x.kind == "move"]
        out.append(_ask("direction", f"Which way does {a.title} move?",
                        moves[0] if moves else NO_MOVE, list(DIRECTIONS) + [NO_MOVE], rng, k))
    for k, a in enumerate(actors):
        others = {x.phrase() for j, b in enumerate(actors) if j != k for x in b.actions}
        unique = [x.phrase() for x in a.actions if x.phrase() not in others]
        if unique:
            phrase = unique[int(rng.integers(len(unique)))]
            out.append(_ask("who", f"Which unit {phrase}?", a.title,
                            _other_titles(script, split_units, rng, a.title), rng, k))
    if len(actors) >= 2:
        first = int(np.argmin([a.switch for a in actors]))
        out.append(_ask("order", "Which unit is the first to change what it is doing?",
                        actors[first].title,
                        _other_titles(script, split_units, rng, actors[first].title), rng,
                        first))
    return out


def _ordinal(i: int) -> str:
    return ("", "second ", "third ")[i]


def referring_expressions(script: Script) -> list[list[str]]:
    """For each unit, phrases that pick it out of its clip: by colour and name, by what it
    does, and (with two or more units) by where it starts, left to right and top to bottom."""
    actors = script.actors
    out = [[a.title, f"the {a.unit.name} that {a.actions[0].phrase()} and then "
                     f"{a.actions[1].phrase()}"] for a in actors]
    if len(actors) >= 2:
        starts = np.array([positions(a)[0] for a in actors])
        n = len(actors)
        for axis, (low, high) in ((0, ("left", "right")), (1, ("top", "bottom"))):
            order = np.argsort(starts[:, axis], kind="stable")
            if len(set(starts[:, axis].tolist())) < n:
                continue    # a tie: no unit is "the leftmost" of two side by side
            for rank, k in enumerate(order):
                if rank == 0:
                    out[k].append(f"the {'leftmost' if axis == 0 else 'topmost'} unit")
                elif rank == n - 1:
                    out[k].append(f"the {'rightmost' if axis == 0 else 'bottom'} unit")
                else:
                    out[k].append(f"the {_ordinal(rank)}unit from the {low}")
    return out



# The question templates' own words (names and phrases are filled in where the gaps are): only
# their words matter, for the vocabulary.
TEMPLATES = ("How many units are there?", "What does the do first?", "What does the do at "
             "the end?", "Which way does the move?", "Which unit?", "Which unit is the first "
             "to change what it is doing?")


def vocabulary(units: Sequence[Unit]) -> list[str]:
    """Every word a question or candidate about ``units`` can hold (templates, numbers,
    directions, actions with these units' attacks, colours, these units' names): the words a
    model trained on these units can know."""
    from xmodal.data.tokenizer import words_of
    texts = list(TEMPLATES) + list(NUMBERS) + [NO_MOVE] + list(DIRECTIONS)
    texts += list(TEAM_COLOURS) + ["the"]
    for unit in units:
        texts += possible_phrases(unit, last=True) + [unit.name]
    return sorted({w for t in texts for w in words_of(t)})
