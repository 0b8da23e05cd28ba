"""Animated sprite clips with instance masks, optical flow, questions and referring expressions:
Battle for Wesnoth's units acting on its terrain (``wesnoth``), composed by seed.

A clip is 16 frames (2 s at 8 frames/s) of 96 x 96 px: one to three units, each in a team
colour, each doing two things one after the other (moving in a direction, attacking with one of
its weapons, defending, standing, falling), drawn with the game's own animation frames over a
field of one terrain's hex tiles (``sprite_scripts`` says what happens, ``xmodal.data.video
.compose`` draws it). Every frame has instance masks from the same alpha that drew the units;
Farneback optical flow is computed once here (``xmodal.data.video.flow``). Questions with five
candidates and referring expressions per unit come from the script (``sprite_questions``); each
unit keeps its name, race and the game's hand-written description.

Held out by unit and by background: units are split by sha1("sprite_videos:" + id), 15 % test,
15 % dev, the rest train; of the 18 terrains, 3 are test and 3 dev (sha1 order). A clip of a
split uses only that split's units and terrains.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from xmodal.core import datasets as sources
from xmodal.data.builder import Builder
from xmodal.data.sets import sprite_questions as qa
from xmodal.data.sets import sprite_scripts as scripts
from xmodal.data.sets import wesnoth
from xmodal.data.video import compose as video_compose
from xmodal.data.video import flow as video_flow

SCALE = 2                                   # drawn at 192 px, stored at 96 px
SIZE = scripts.CANVAS // SCALE
MAX_QUESTIONS = 14                          # 1 + 3 per unit + one "who" per unit + 1 order
TEST_FRACTION, DEV_FRACTION = 0.15, 0.15
TEST_TERRAINS, DEV_TERRAINS = 3, 3


def _sha(key: str) -> str:
    return hashlib.sha1(f"sprite_videos:{key}".encode()).hexdigest()


def split_units(units: Sequence[wesnoth.Unit]) -> dict[str, list[wesnoth.Unit]]:
    order = sorted(units, key=lambda u: _sha(u.id))
    n_test = round(TEST_FRACTION * len(order))
    n_dev = round(DEV_FRACTION * len(order))
    return {"test": order[:n_test], "dev": order[n_test:n_test + n_dev],
            "train": order[n_test + n_dev:]}


def split_terrains() -> dict[str, list[str]]:
    order = sorted(wesnoth.TERRAINS, key=_sha)
    return {"test": order[:TEST_TERRAINS], "dev": order[TEST_TERRAINS:TEST_TERRAINS +
                                                            DEV_TERRAINS],
            "train": order[TEST_TERRAINS + DEV_TERRAINS:]}


def clip_seed(split: str, index: int) -> int:
    return int(_sha(f"{split}:{index}")[:8], 16)


@functools.lru_cache(maxsize=4096)
def _picture(path: str, colour: str, facing: str) -> np.ndarray:
    rgba = wesnoth.recolour(wesnoth.load_rgba(path), colour)
    return rgba[:, ::-1].copy() if facing == "left" else rgba


def _anim_for(unit: wesnoth.Unit, action: scripts.Action) -> tuple[wesnoth.Animation | None,
                                                                   bool]:
    """The animation an action plays, and whether it loops."""
    if action.kind == "attack":
        named = [a for a in unit.of_kind("attack") if a.attack == action.attack]
        return (named or unit.of_kind("attack"))[0], False
    if action.kind == "move" and action.animated:
        return unit.of_kind("move")[0], True
    if action.kind == "stand" and action.animated:
        return unit.of_kind("idle")[0], True
    if action.kind in ("defend", "die"):
        anims = unit.of_kind(action.kind)
        return (anims[0] if anims else None), False
    return None, False


def actor_pictures(actor: scripts.Actor) -> list[tuple[str, float] | None]:
    """(picture path, opacity) of an actor at every frame, None once it is gone."""
    unit = actor.unit
    out: list[tuple[str, float] | None] = []
    for segment, (start, stop) in enumerate(((0, actor.switch),
                                             (actor.switch, scripts.FRAMES))):
        action = actor.actions[segment]
        anim, loop = _anim_for(unit, action)
        shown = list(wesnoth.iter_frames(anim, scripts.MS_PER_FRAME, stop - start, loop)
                     if anim else [None] * (stop - start))
        if action.kind != "die":
            out += [(p or unit.image, 1.0) for p in shown]
            continue
        # Dying: the death animation (if any), then a fade of its last picture, then gone.
        played = [p for p in shown if p is not None]
        last = played[-1] if played else unit.image
        for k in range(stop - start):
            if k < len(played):
                out.append((played[k], 1.0))
            else:
                fade = k - len(played) + 1
                out.append((last, 1.0 - fade / (scripts.FADE_FRAMES + 1))
                           if fade <= scripts.FADE_FRAMES else None)
    return out


def render(script: scripts.Script) -> tuple[np.ndarray, np.ndarray]:
    """The clip's frames and instance masks (unit k of the script is id k + 1)."""
    rng = np.random.default_rng([script.seed, 2])
    background = wesnoth.terrain_picture(script.terrain, scripts.CANVAS, rng)
    tracks = []
    for actor in script.actors:
        xy, faces, pics = scripts.positions(actor), scripts.facings(actor), actor_pictures(actor)
        track = []
        for t in range(scripts.FRAMES):
            if pics[t] is None:
                track.append(None)
                continue
            path, opacity = pics[t]
            track.append(video_compose.Placement(_picture(path, actor.colour, faces[t]),
                                                 int(xy[t, 0]), int(xy[t, 1]), opacity))
        tracks.append(track)
    frames = [[track[t] for track in tracks] for t in range(scripts.FRAMES)]
    return video_compose.compose(background, frames, SCALE)


def caption(script: scripts.Script) -> str:
    parts = [f"{a.title} {a.actions[0].phrase()} and then {a.actions[1].phrase()}"
             for a in script.actors]
    return f"On {script.terrain}, " + "; ".join(parts) + "."


@dataclasses.dataclass
class SpriteVideosConfig(tfds.core.BuilderConfig):
    clips: dict = dataclasses.field(default_factory=dict)     # split -> number of clips


class SpriteVideos(Builder):
    """TFDS builder ``xmodal_sprite_videos``."""

    name = "xmodal_sprite_videos"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Wesnoth units acting on terrain: clips, masks, flow, QA."}
    BUILDER_CONFIGS = [
        SpriteVideosConfig(name="default", clips={"train": 4000, "dev": 500, "test": 500},
                           description="4,000 / 500 / 500 clips."),
        SpriteVideosConfig(name="tiny", clips={"train": 48, "dev": 16, "test": 16},
                           description="48 / 16 / 16 clips, for tests."),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        t, s = scripts.FRAMES, SIZE
        text_list = tfds.features.Sequence(tfds.features.Text())
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict({
                "video": tfds.features.Tensor(shape=(t, s, s, 3), dtype=np.uint8,
                                              encoding="zlib"),
                "masks": tfds.features.Tensor(shape=(t, s, s), dtype=np.uint8,
                                              encoding="zlib"),
                "flow": tfds.features.Tensor(shape=(t - 1, s, s, 2), dtype=np.float16,
                                             encoding="zlib"),
                "boxes": tfds.features.Tensor(shape=(t, scripts.MAX_UNITS, 4),
                                              dtype=np.float32),
                "num_objects": np.int32,
                "caption": tfds.features.Text(),
                "terrain": tfds.features.Text(),
                "seed": np.int64,
                "object_unit": text_list,
                "object_name": text_list,
                "object_race": text_list,
                "object_colour": text_list,
                "object_description": text_list,
                "object_actions": text_list,        # "first phrase|second phrase"
                "object_refer": text_list,          # expressions joined by "|"
                "question": text_list,
                "candidates": text_list,            # 5 per question, in order
                "answer": tfds.features.Sequence(np.int32),
                "qtype": tfds.features.Sequence(tfds.features.ClassLabel(names=qa.QTYPES)),
                "question_object": tfds.features.Sequence(np.int32),   # -1: the whole clip
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://www.wesnoth.org",
            license="GPL-2.0-or-later (Battle for Wesnoth art)",
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        del dl_manager   # everything comes from the installed Debian package
        sources.resolve_file(wesnoth.ROOT)
        units, skipped = wesnoth.read_units()
        by_split, terrains = split_units(units), split_terrains()
        self.info.metadata["skipped"] = skipped
        self.info.metadata["units"] = {s: [u.id for u in us] for s, us in by_split.items()}
        self.info.metadata["terrains"] = terrains
        # The words of the training split's questions and answers: a word tokenizer's
        # vocabulary (a held-out unit's name is not in it).
        self.info.metadata["vocabulary"] = qa.vocabulary(by_split["train"])
        return {s: self._generate_examples(s, by_split[s], terrains[s])
                for s in ("train", "dev", "test")}

    def _generate_examples(self, split: str, units: list[wesnoth.Unit], terrains: list[str]):
        for i in range(self.builder_config.clips[split]):
            yield f"{split}/{i:05d}", example(split, i, units, terrains)


def example(split: str, index: int, units: Sequence[wesnoth.Unit],
            terrains: Sequence[str]) -> dict:
    script = scripts.draw_script(units, terrains, clip_seed(split, index))
    video, masks = render(script)
    questions = qa.questions(script, units)
    refer = qa.referring_expressions(script)
    boxes = np.full((scripts.FRAMES, scripts.MAX_UNITS, 4), -1.0, np.float32)
    boxes[:, :len(script.actors)] = video_compose.boxes(masks, len(script.actors))
    actors = script.actors
    return {
        "video": video, "masks": masks, "flow": video_flow.farneback(video), "boxes": boxes,
        "num_objects": len(actors), "caption": caption(script), "terrain": script.terrain,
        "seed": script.seed,
        "object_unit": [a.unit.id for a in actors],
        "object_name": [a.unit.name for a in actors],
        "object_race": [a.unit.race for a in actors],
        "object_colour": [a.colour for a in actors],
        "object_description": [a.unit.description for a in actors],
        "object_actions": ["|".join(x.phrase() for x in a.actions) for a in actors],
        "object_refer": ["|".join(r) for r in refer],
        "question": [q.text for q in questions],
        "candidates": [c for q in questions for c in q.candidates],
        "answer": [q.answer for q in questions],
        "qtype": [q.qtype for q in questions],
        "question_object": [q.actor for q in questions],
    }


for _config in SpriteVideos.BUILDER_CONFIGS:
    sources.register(
        "sprite_videos" if _config.name == "default" else f"sprite_videos/{_config.name}",
        sources.DatasetEntry(SpriteVideos, _config.name, ("opencv-python-headless",), ("cv2",),
                             "unit art and terrain come from Debian wesnoth-1.16-data; flow "
                             "needs opencv-python-headless",
                             apt=("wesnoth-1.16-data",),
                             files=(os.path.join(wesnoth.ROOT, "units"),
                                    os.path.join(wesnoth.IMAGES, "terrain"))))

CARD: dict = {
    "title": "Sprite videos: Wesnoth units acting on terrain, with masks, flow and questions",
    "sources": ("Debian wesnoth-1.16-data (unit files: names, races, descriptions, attacks, "
                "animation frames and timings; unit pictures; terrain tiles; team colours); "
                "version from dpkg. Flow by OpenCV's Farneback (opencv-python-headless)."),
    "licence": ("GPL-2.0-or-later (Battle for Wesnoth art and unit descriptions; the clips are "
                "a derived work under the same licence)"),
    "splits": (f"Held out by unit and by background: units in sha1('sprite_videos:' + id) "
               f"order, the first {TEST_FRACTION:.0%} test, the next {DEV_FRACTION:.0%} dev "
               f"(choose settings there), the rest train; terrains likewise, {TEST_TERRAINS} "
               f"test and {DEV_TERRAINS} dev of {len(wesnoth.TERRAINS)}. A clip uses only its "
               "split's units and terrains; so do the distractor answers. The assignment is "
               "in the info metadata ('units', 'terrains')."),
    "languages": "en (the game's English unit names and descriptions; generated questions)",
    "skipped": ("Counted in the info metadata ('skipped'): unit files without a unit_type or "
                "readable picture, units without an attack animation or a description, and "
                "animations naming a picture that is not on disk (a macro argument in the "
                "path). A picture that fails to decode stops the build with its path."),
    "fields": {
        "video": f"{scripts.FRAMES} x {SIZE} x {SIZE} x 3 uint8 frames, "
                 f"{scripts.MS_PER_FRAME} ms apart",
        "masks": "instance ids per frame (0 background, k = object k - 1)",
        "flow": "Farneback flow frame t -> t+1, (dx, dy) px, float16",
        "boxes": "each object's box per frame from its mask (x0, y0, x1, y1; -1: not seen)",
        "num_objects": "1 to 3 units",
        "caption": "what happens, in one sentence",
        "terrain": "the background's terrain (a split key)",
        "object_unit": "each unit's id (a split key)",
        "object_description": "the game's description of the unit",
        "object_actions": "what it does, 'first|second'",
        "object_refer": "phrases that pick it out of the clip, '|'-joined",
        "question": f"up to {MAX_QUESTIONS} questions per clip",
        "candidates": "5 candidate answers per question, in order",
        "answer": "index of the right candidate",
        "qtype": " | ".join(qa.QTYPES),
    },
    "show": {"video": "video", "masks": "masks", "caption": "caption",
             "ms_per_frame": scripts.MS_PER_FRAME},
}
