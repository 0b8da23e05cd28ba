"""What happens in a sprite clip, drawn by seed before anything is drawn on screen: which units,
in which team colour, doing what, where and when. Questions, referring expressions and the
pictures are all derived from this script, never written by hand.

Each unit acts in two segments: the first from frame 0 to its ``switch`` frame, the second to
the end. An action is one of

- ``move`` in a direction (left, right, up, down) at a speed: the unit's movement animation if
  it has one, else its standing picture, carried across the ground (it may enter or leave
  the view);
- ``attack`` with one of its attacks (the attack's own animation, once, then it stands);
- ``defend`` (its defence animation once, then it stands);
- ``stand`` (its idle animation when it has one, else its standing picture);
- ``die`` (second segment only: its death animation if it has one, then it fades out over
  ``FADE_FRAMES`` frames as the game fades a dead unit, then it is gone).

Units switch at distinct frames, so "which unit changes first" has one answer.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from xmodal.data.sets.wesnoth import TEAM_COLOURS, Unit

FRAMES = 16                 # frames of a clip
MS_PER_FRAME = 125          # 8 frames per second: a 2 s clip
CANVAS = 192                # the clip is drawn at this size (the game's pixels), then reduced
SPRITE = 72                 # the game's unit pictures are 72 x 72
FADE_FRAMES = 4
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SPEEDS = (6, 8, 10)         # canvas pixels per frame (a unit crosses the view in ~1.5-2.5 s)
MAX_UNITS = 3
UNIT_COUNT_WEIGHTS = (0.3, 0.4, 0.3)   # 1, 2 or 3 units


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str                 # move | attack | defend | stand | die
    direction: str = ""       # move: left | right | up | down
    speed: int = 0            # move: canvas pixels per frame
    attack: str = ""          # attack: the attack's name (its animation's filter)
    label: str = ""           # attack: as the game shows it ("sword")
    animated: bool = False    # stand/move: the unit's own idle/movement animation plays

    def phrase(self) -> str:
        """What the unit does, in words ("walks left", "attacks with its sword")."""
        if self.kind == "move":
            return f"moves {self.direction}"
        if self.kind == "attack":
            return f"attacks with its {self.label}"
        return {"defend": "defends itself", "stand": "stands still", "die": "falls"}[self.kind]


@dataclasses.dataclass(frozen=True)
class Actor:
    unit: Unit
    colour: str               # team colour (a key of wesnoth.TEAM_COLOURS)
    start: tuple[int, int]    # top-left of the picture at frame 0, canvas pixels
    facing: str               # "right" (the pictures' own facing) or "left" (mirrored)
    switch: int               # first frame of the second action
    actions: tuple[Action, Action]

    @property
    def title(self) -> str:
        return f"the {self.colour} {self.unit.name}"

    def action_at(self, t: int) -> Action:
        return self.actions[0] if t < self.switch else self.actions[1]


@dataclasses.dataclass(frozen=True)
class Script:
    terrain: str
    actors: tuple[Actor, ...]
    seed: int


def positions(actor: Actor) -> np.ndarray:
    """Top-left corner of the actor's picture at every frame: [FRAMES, 2] (x, y)."""
    out = np.zeros((FRAMES, 2), np.int64)
    x, y = actor.start
    for t in range(FRAMES):
        out[t] = (x, y)
        action = actor.action_at(t)
        if action.kind == "move":
            dx, dy = DIRECTIONS[action.direction]
            x, y = x + dx * action.speed, y + dy * action.speed
    return out


def facings(actor: Actor) -> list[str]:
    """The way the picture faces at each frame: a unit turns to the side it walks to."""
    out, facing = [], actor.facing
    for t in range(FRAMES):
        action = actor.action_at(t)
        if action.kind == "move" and action.direction in ("left", "right"):
            facing = action.direction
        out.append(facing)
    return out


def visible(xy: np.ndarray) -> np.ndarray:
    """Whether the picture's centre is inside the view, per frame."""
    centre = xy + SPRITE // 2
    return np.all((centre >= 0) & (centre < CANVAS), axis=-1)


def _action(kind: str, unit: Unit, rng: np.random.Generator) -> Action:
    if kind == "move":
        return Action("move", direction=str(rng.choice(list(DIRECTIONS))),
                      speed=int(rng.choice(SPEEDS)), animated=bool(unit.of_kind("move")))
    if kind == "attack":
        anims = unit.of_kind("attack")
        named = {a.name: a for a in unit.attacks}
        anim = anims[int(rng.integers(len(anims)))]
        attack = named.get(anim.attack) or (unit.attacks[0] if unit.attacks else None)
        name = attack.name if attack else anim.attack
        label = attack.label if attack else (anim.attack or "weapon")
        return Action("attack", attack=name, label=label)
    if kind == "stand":
        return Action("stand", animated=bool(unit.of_kind("idle")))
    return Action(kind)


def _kinds(unit: Unit) -> tuple[list[str], list[str]]:
    first = ["move", "attack", "stand"] + (["defend"] if unit.of_kind("defend") else [])
    second = first + ["die"]
    return first, second


def draw_actor(unit: Unit, colour: str, switch: int, rng: np.random.Generator,
               tries: int = 50) -> Actor | None:
    """An actor whose picture's centre is in view for at least half the clip, and that does
    two different things (a move in the same direction twice is one thing)."""
    first, second = _kinds(unit)
    for _ in range(tries):
        a = _action(str(rng.choice(first)), unit, rng)
        b = _action(str(rng.choice(second)), unit, rng)
        if a.phrase() == b.phrase() or (a.kind == b.kind == "move"):
            continue
        start = (int(rng.integers(-SPRITE // 2, CANVAS - SPRITE // 2)),
                 int(rng.integers(-SPRITE // 4, CANVAS - SPRITE)))
        actor = Actor(unit, colour, start, str(rng.choice(["left", "right"])), switch, (a, b))
        xy = positions(actor)
        if visible(xy[:1]).all() and visible(xy).sum() >= FRAMES // 2:
            return actor
    return None


def draw_script(units: Sequence[Unit], terrains: Sequence[str], seed: int) -> Script:
    """The clip of ``seed``: 1-3 distinct units of ``units`` on one of ``terrains``, in
    distinct team colours, switching at distinct frames, starting apart (their pictures'
    centres at least a third of a picture from each other, so none starts hidden)."""
    rng = np.random.default_rng(seed)
    count = int(rng.choice(np.arange(1, MAX_UNITS + 1), p=UNIT_COUNT_WEIGHTS))
    count = min(count, len(units))
    terrain = str(terrains[int(rng.integers(len(terrains)))])
    for _ in range(100):
        picks = rng.choice(len(units), size=count, replace=False)
        colours = rng.choice(list(TEAM_COLOURS), size=count, replace=False)
        switches = rng.choice(np.arange(5, FRAMES - 4), size=count, replace=False)
        actors = []
        for k in range(count):
            actor = draw_actor(units[int(picks[k])], str(colours[k]), int(switches[k]), rng)
            if actor is None:
                break
            starts = [np.array(a.start) for a in actors]
            if any(np.abs(np.array(actor.start) - s).max() < SPRITE // 3 for s in starts):
                break
            actors.append(actor)
        if len(actors) == count:
            return Script(terrain, tuple(actors), seed)
    raise RuntimeError(f"no clip could be drawn for seed {seed} from {len(units)} units")
