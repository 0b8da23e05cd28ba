"""Video examples: the compositor's masks, Farneback flow, the clip sampler, and the sprite_videos
set built from Battle for Wesnoth (unit files, animations, questions, hold-out)."""
from __future__ import annotations

import collections

import numpy as np
import pytest

from tests.data_helpers import skip_unless_installed
from xmodal.data.video import clips
from xmodal.data.video.compose import Placement, compose, compose_frame

needs_wesnoth = skip_unless_installed("sprite_videos/tiny")


def disc(radius: int, colour=(200, 30, 30)) -> np.ndarray:
    """An RGBA picture of an opaque disc with a soft (half-alpha) rim."""
    size = 2 * radius + 2
    yy, xx = np.mgrid[:size, :size] - radius - 0.5
    r = np.hypot(yy, xx)
    pic = np.zeros((size, size, 4), np.uint8)
    pic[..., :3] = colour
    pic[..., 3] = np.where(r <= radius - 1, 255, np.where(r <= radius, 128, 0))
    return pic


# ----------------------------------------------------------------------------------- compose

def test_masks_are_the_pooled_alpha_of_what_is_drawn():
    background = np.full((32, 32, 3), 90, np.uint8)
    pic = disc(6)
    frame, ids = compose_frame(background, [Placement(pic, 5, 9)], scale=2)
    # Expected independently: the picture's alpha placed on the canvas, averaged per 2x2.
    alpha = np.zeros((32, 32))
    alpha[9:9 + pic.shape[0], 5:5 + pic.shape[1]] = pic[..., 3] / 255
    pooled = alpha.reshape(16, 2, 16, 2).mean(axis=(1, 3))
    np.testing.assert_array_equal(ids, (pooled >= 0.5).astype(np.uint8))
    # Where the mask is 0 and nothing was drawn, the frame is the background.
    untouched = pooled == 0
    assert np.all(frame[untouched] == 90) and np.all(frame[ids == 1, 0] > 90)


def test_the_lower_object_is_drawn_over_and_hides_the_other():
    background = np.zeros((40, 40, 3), np.uint8)
    red, blue = disc(8, (255, 0, 0)), disc(8, (0, 0, 255))
    # Object 2 lower on screen (bottom edge further down): nearer, drawn on top.
    frame, ids = compose_frame(background, [Placement(red, 10, 10), Placement(blue, 16, 14)], 1)
    solid_red, solid_blue = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    solid_red[10:28, 10:28] = red[..., 3] == 255
    solid_blue[14:32, 16:34] = blue[..., 3] == 255
    overlap = solid_red & solid_blue
    assert overlap.sum() > 40
    assert np.all(ids[overlap] == 2) and np.all(frame[overlap][..., 2] == 255)
    assert np.any(ids == 1) and np.all(frame[ids == 1][:, 0] > 0)
    # Order in the list does not decide it: swapped, object 1 is now the lower one.
    _, ids2 = compose_frame(background, [Placement(blue, 16, 14), Placement(red, 10, 10)], 1)
    assert np.all(ids2[overlap] == 1)


def test_compose_places_objects_per_frame_and_clips_at_the_edges():
    background = np.zeros((20, 20, 3), np.uint8)
    pic = disc(3)
    track = [[Placement(pic, x, 5)] for x in (-8, 0, 6, 12, 18)] + [[None]]
    video, masks = compose(background, track)
    xs = [np.flatnonzero(m.any(axis=0)) for m in masks]
    assert xs[0].size == 0                   # entirely left of the view
    assert xs[1].min() == 1 and xs[3].min() == 13    # column 0 of the disc is transparent
    assert xs[4].min() == 19                 # half out on the right
    assert not masks[5].any() and not video[5].any()
    with pytest.raises(ValueError, match="same objects"):
        compose(background, [[None], [None, None]])


# -------------------------------------------------------------------------------------- flow

def test_farneback_flow_measures_a_moving_sprite():
    pytest.importorskip("cv2")
    from xmodal.data.video.flow import farneback
    rng = np.random.default_rng(0)
    background = rng.integers(60, 120, (64, 64, 3)).astype(np.uint8)
    pic = disc(7, (230, 220, 40))
    pic[4:8, 4:12, :3] = (20, 20, 200)        # texture, so the motion is visible inside
    frames = [[Placement(pic, 10 + 3 * t, 20 + 0 * t)] for t in range(6)]
    video, masks = compose(background, frames)
    flow = farneback(video)
    assert flow.shape == (5, 64, 64, 2) and flow.dtype == np.float16
    inside = masks[:-1] == 1
    dx = flow[..., 0].astype(np.float32)[inside].mean()
    dy = flow[..., 1].astype(np.float32)[inside].mean()
    assert dx == pytest.approx(3.0, abs=0.75) and abs(dy) < 0.5
    # The static background does not move.
    assert np.abs(flow[..., 0].astype(np.float32)[:, :, 50:]).mean() < 0.1


# ----------------------------------------------------------------------------------- sampler

def test_clip_sampler_modes():
    assert clips.ClipSampler(4, "uniform").indices(16).tolist() == [2, 6, 10, 14]
    assert clips.ClipSampler(4, "strided", 2).indices(16).tolist() == [4, 6, 8, 10]
    sampler = clips.ClipSampler(4, "random", 3)
    starts = collections.Counter(int(sampler.indices(16, np.random.default_rng(s))[0])
                                 for s in range(400))
    assert sorted(starts) == [0, 1, 2, 3, 4, 5, 6]          # every start 0..16-10 is drawn
    assert min(starts.values()) > 25
    idx = sampler.indices(16, np.random.default_rng(7))
    assert np.all(np.diff(idx) == 3) and idx[-1] <= 15
    np.testing.assert_array_equal(idx, sampler.indices(16, np.random.default_rng(7)))


def test_clip_sampler_bad_input_is_one_line():
    with pytest.raises(ValueError, match="video of 8 frames is shorter than the clip of 4 "
                                         r"frames 3 apart \(10 frames\)"):
        clips.ClipSampler(4, "random", 3).indices(8)
    with pytest.raises(ValueError, match="not one of uniform, strided, random"):
        clips.ClipSampler(4, "middle")
    record = {"video": np.zeros((5, 8, 8, 3), np.uint8), "masks": np.zeros((5, 8, 6), np.uint8),
              "flow": np.zeros((5, 8, 8, 2), np.float16)}
    with pytest.raises(ValueError, match=r"'masks' of shape \(5, 8, 6\) does not match"):
        clips.check_video(record, masks_field="masks")
    with pytest.raises(ValueError, match=r"'flow' of shape \(5, 8, 8, 2\) does not match"):
        clips.check_video(record, flow_field="flow")
    with pytest.raises(ValueError, match="T x H x W x 3 uint8"):
        clips.check_video({"video": np.zeros((5, 8, 8), np.uint8)})


def test_take_clip_keeps_frames_masks_and_flow_together():
    t = np.arange(6)
    record = {"video": np.broadcast_to(t[:, None, None, None], (6, 2, 2, 3)).astype(np.uint8),
              "masks": np.broadcast_to(t[:, None, None], (6, 2, 2)).astype(np.uint8),
              "flow": np.broadcast_to(t[:5, None, None, None], (5, 2, 2, 2)).astype(np.float16)}
    out = clips.take_clip(record, np.array([1, 3, 5]), masks_field="masks", flow_field="flow")
    assert out["video"][:, 0, 0, 0].tolist() == [1, 3, 5]
    assert out["masks"][:, 0, 0].tolist() == [1, 3, 5]
    assert out["flow"][:, 0, 0, 0].tolist() == [1, 3, 4]     # the last frame: its motion in


# ---------------------------------------------------------------------------------- wesnoth

def test_image_strings_expand_as_the_game_does():
    from xmodal.data.sets.wesnoth import parse_image_string
    got = parse_image_string('"u/a-[1~3,2].png:[50*2,100,70],u/b.png~RC(magenta>red):30,u/c.png"')
    assert got == [("u/a-1.png", 50), ("u/a-2.png", 50), ("u/a-3.png", 100),
                   ("u/a-2.png", 70), ("u/b.png", 30), ("u/c.png", 100)]
    assert [p for p, _ in parse_image_string("d-[3~1].png:40")] == ["d-3.png", "d-2.png",
                                                                     "d-1.png"]
    with pytest.raises(ValueError, match="3 images, 2 durations"):
        parse_image_string("e-[1~3].png:[10,20]")


@needs_wesnoth
def test_a_unit_file_gives_its_attacks_and_animations():
    from xmodal.data.sets import wesnoth
    unit, dropped = wesnoth.read_unit_file(f"{wesnoth.ROOT}/units/elves/Fighter.cfg")
    assert unit.id == "Elvish Fighter" and unit.race == "elf" and dropped == 0
    assert [(a.name, a.range) for a in unit.attacks] == [("sword", "melee"), ("bow", "ranged")]
    assert unit.description.startswith("Among elves, swordplay is most commonly practiced")
    kinds = collections.Counter(a.kind for a in unit.animations)
    assert kinds == {"defend": 2, "idle": 1, "attack": 2}
    sword = [a for a in unit.of_kind("attack") if a.attack == "sword"][0]
    assert sword.frames == (("units/elves-wood/fighter.png", 75),
                            ("units/elves-wood/fighter-melee-1.png", 200),
                            ("units/elves-wood/fighter-melee-2.png", 50),
                            ("units/elves-wood/fighter.png", 25))
    # 125 ms frames: 0 -> fighter, 125 -> melee-1, 250 -> melee-1, 375 -> done (None).
    shown = list(wesnoth.iter_frames(sword, 125, 4, loop=False))
    assert shown == ["units/elves-wood/fighter.png", "units/elves-wood/fighter-melee-1.png",
                     "units/elves-wood/fighter-melee-1.png", None]


@needs_wesnoth
def test_team_colour_replaces_only_the_magenta_palette():
    from xmodal.data.sets import wesnoth
    pic = wesnoth.load_rgba("units/elves-wood/fighter.png")
    red, blue = wesnoth.recolour(pic, "red"), wesnoth.recolour(pic, "blue")
    palette = {tuple(int(v) for v in wesnoth._rgb(c)) for c in wesnoth.MAGENTA.split(",")}
    is_tc = np.array([tuple(p) in palette for p in pic[..., :3].reshape(-1, 3)]).reshape(
        pic.shape[:2])
    assert is_tc.sum() > 20                                  # the fighter wears team colour
    assert np.array_equal(red[~is_tc], pic[~is_tc])          # nothing else changes
    assert np.all(red[is_tc][:, 2] <= red[is_tc][:, 0])      # red shades: no more blue than red
    assert np.all(blue[is_tc][:, 2] >= blue[is_tc][:, 0])


# ------------------------------------------------------------------------- the built set

@pytest.fixture(scope="module")
def tiny():
    from xmodal.core import datasets as sources
    return {s: sources.data_source("sprite_videos/tiny", s) for s in ("train", "dev", "test")}


def _script(split, record):
    """The script a record was drawn from (TFDS stores records in its own order: by seed)."""
    from xmodal.data.sets import sprite_scripts, sprite_videos, wesnoth
    units, _ = wesnoth.read_units()
    by_split = sprite_videos.split_units(units)
    terrains = sprite_videos.split_terrains()
    return sprite_scripts.draw_script(by_split[split], terrains[split], int(record["seed"]))


@needs_wesnoth
def test_masks_follow_the_units_frame_by_frame(tiny):
    from xmodal.data.sets import sprite_scripts, wesnoth
    checked = 0
    for i in range(6):
        record = tiny["train"][i]
        script = _script("train", record)
        rng = np.random.default_rng([script.seed, 2])
        ground = wesnoth.terrain_picture(script.terrain, sprite_scripts.CANVAS, rng)
        ground = ground.reshape(96, 2, 96, 2, 3).mean(axis=(1, 3))
        video, masks = record["video"].astype(np.float32), record["masks"]
        for t in range(len(video)):
            changed = np.abs(video[t] - ground).max(axis=-1) > 8
            for k in range(len(script.actors)):
                inside = masks[t] == k + 1
                if inside.sum() < 20:
                    continue
                # A unit's mask covers pixels the unit changed; a mask from another frame of
                # a moving unit would cover ground.
                assert changed[inside].mean() > 0.8, (i, t, k)
                checked += 1
            # Outside every mask little is changed (rims of half-covered pixels, fading units).
            assert changed[masks[t] == 0].mean() < 0.1, (i, t)
    assert checked > 20


@needs_wesnoth
def test_flow_of_the_set_moves_with_the_units(tiny):
    from xmodal.data.sets import sprite_scripts, sprite_videos
    seen = 0
    for i in range(len(tiny["train"])):
        record = tiny["train"][i]
        script = _script("train", record)
        for k, actor in enumerate(script.actors):
            move = actor.actions[0]
            if move.kind != "move" or move.direction not in ("left", "right"):
                continue
            step = sprite_scripts.DIRECTIONS[move.direction][0] * move.speed / sprite_videos.SCALE
            dxs = []
            for t in range(actor.switch - 1):     # flow t: frame t -> t+1, both moving
                inside = record["masks"][t] == k + 1
                edge = inside[0].any() or inside[-1].any() or inside[:, 0].any() or \
                    inside[:, -1].any()
                # Whole in view (no motion cut at a border) and not passing behind another
                # unit (its visible area the same in the next frame).
                steady = abs(int((record["masks"][t + 1] == k + 1).sum()) - int(inside.sum())) \
                    <= 0.05 * inside.sum()
                if inside.sum() > 40 and not edge and steady:
                    dxs.append(record["flow"][t, ..., 0].astype(np.float32)[inside])
            if not dxs:
                continue
            assert np.median([np.median(d) for d in dxs]) == pytest.approx(step, abs=0.5)
            seen += 1
    assert seen >= 2


@needs_wesnoth
def test_questions_are_answered_by_the_script(tiny):
    from xmodal.data.sets import sprite_questions as qa
    positions = collections.Counter()
    for i in range(len(tiny["train"])):
        record = tiny["train"][i]
        script = _script("train", record)
        cands = [c.decode() for c in record["candidates"]]
        assert len(cands) == 5 * len(record["question"])
        for q, (text, answer, qtype, obj) in enumerate(zip(
                record["question"], record["answer"], record["qtype"],
                record["question_object"])):
            options = cands[5 * q:5 * q + 5]
            assert len(set(options)) == 5
            right = options[answer]
            positions[int(answer)] += 1
            kind = qa.QTYPES[qtype]
            if kind == "count":
                assert right == qa.NUMBERS[len(script.actors) - 1]
                continue
            actor = script.actors[obj]
            if kind == "first_action":
                assert right == actor.actions[0].phrase()
            elif kind == "last_action":
                assert right == actor.actions[1].phrase()
            elif kind == "direction":
                moves = [a.direction for a in actor.actions if a.kind == "move"]
                assert right == (moves[0] if moves else qa.NO_MOVE)
            elif kind == "who":
                assert right == actor.title
                phrase = text.decode().removeprefix("Which unit ").removesuffix("?")
                doers = [a for a in script.actors if phrase in [x.phrase() for x in a.actions]]
                assert doers == [actor]
            elif kind == "order":
                assert obj == int(np.argmin([a.switch for a in script.actors]))
    # The right answer is not parked at one position.
    assert len(positions) == 5 and min(positions.values()) > 0.1 * sum(positions.values())


@needs_wesnoth
def test_splits_hold_out_units_and_terrains(tiny):
    seen = {s: ({u.decode() for r in (src[i] for i in range(len(src)))
                 for u in r["object_unit"]},
                {src[i]["terrain"].decode() for i in range(len(src))})
            for s, src in tiny.items()}
    for a in seen:
        for b in seen:
            if a < b:
                assert not seen[a][0] & seen[b][0], (a, b)
                assert not seen[a][1] & seen[b][1], (a, b)


@needs_wesnoth
def test_show_writes_a_sheet_with_masks_and_a_gif(tmp_path):
    from PIL import Image
    from xmodal.data import show, show_video
    out = str(tmp_path / "sheet.png")
    sheet = show_video.write_video_sheet("sprite_videos/tiny", "train", 2, out)
    assert sheet.fields.video == "video" and sheet.fields.masks == "masks"
    with Image.open(tmp_path / "sheet.gif") as gif:
        # Pillow merges identical frames into one longer one: the clip's 2 s are all there.
        total = 0
        for k in range(gif.n_frames):
            gif.seek(k)
            total += gif.info["duration"]
        assert 1 < gif.n_frames <= 16 and abs(total - 16 * 125) <= 16 * 10   # GIF: 10 ms units
    # The mask row tints exactly the masked pixels.
    frame = np.full((4, 4, 3), 100, np.uint8)
    ids = np.zeros((4, 4), np.uint8)
    ids[1, 2] = 2
    tinted = show_video.tint(frame, ids)
    assert (tinted != frame).any(axis=-1).tolist() == (ids > 0).tolist()
    with Image.open(out) as png:
        assert png.width == show_video.FRAMES_SHOWN * (show_video.TILE + show.PAD) + show.PAD
