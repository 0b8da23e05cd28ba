"""Battle for Wesnoth's units as animated sprites: their names, races, hand-written descriptions,
attacks and frame-by-frame animations, read from the game's unit files (Debian
``wesnoth-1.16-data``), and its terrain tiles as backgrounds.

The unit files are WML: ``[unit_type]`` with ``key=value`` lines, child tags (``[attack]``,
``[attack_anim]``, ``[idle_anim]``, ``[defend]``, ``[death]``, ``[movement_anim]``) whose
``[frame]`` children name images with durations, and macros (``{DEFENSE_ANIM "react" "base" ..}``).
This reader takes what a clip needs and no more: variations, genders and macros other than the
defence ones are not expanded; an animation whose images are not all on disk (a macro argument
left in the path) is left out, and counted.

Image strings, as the game writes them: ``path[:ms][,path[:ms]...]`` where a path may hold a list
``name-[1~6,5~10,9].png`` (ranges count down too) and the durations a matching list ``[100*2,125]``
(``*n`` repeats); a trailing ``~MOD(...)`` (the game's image functions) is dropped.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Iterator

import numpy as np

ROOT = "/usr/share/games/wesnoth/1.16/data/core"
IMAGES = os.path.join(ROOT, "images")
DEFAULT_MS = 100

# Animation kinds this reader keeps (the tag in the unit file -> the kind's name).
_ANIMS = {"attack_anim": "attack", "idle_anim": "idle", "movement_anim": "move",
          "death": "die", "defend": "defend", "standing_anim": "stand"}
_DEFENSE = re.compile(r'\{DEFENSE_ANIM(?:_RANGE|_FILTERED)?\s+"([^"]+)"\s+"([^"]+)"')
_KEY = re.compile(r"^\s*([a-z_]+)\s*=\s*(.*)$")
_TAG = re.compile(r"^\s*\[(/?)([a-z_+]+)\]")


@dataclasses.dataclass(frozen=True)
class Attack:
    name: str          # "sword"
    label: str         # as shown in the game, "sword"
    range: str         # "melee" | "ranged"


@dataclasses.dataclass(frozen=True)
class Animation:
    kind: str                                  # attack, idle, move, die, defend, stand
    frames: tuple[tuple[str, int], ...]        # (image path under IMAGES, milliseconds)
    attack: str = ""                           # the attack an attack_anim is for ("" = any)

    @property
    def ms(self) -> int:
        return sum(ms for _, ms in self.frames)


@dataclasses.dataclass(frozen=True)
class Unit:
    id: str                  # "Elvish Fighter" (unique)
    name: str                # as the game names it
    race: str
    image: str               # the standing picture, a path under IMAGES
    description: str
    attacks: tuple[Attack, ...]
    animations: tuple[Animation, ...]
    file: str

    def of_kind(self, kind: str) -> list[Animation]:
        return [a for a in self.animations if a.kind == kind]


def _unquote(value: str) -> str:
    value = value.strip()
    if value.startswith("_"):
        value = value[1:].strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('""', '"')
    return value.strip()


def _split_top(text: str) -> list[str]:
    """Splits on commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur else parts


def _expand_list(body: str) -> list[str]:
    out = []
    for item in body.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)~(\d+)", item)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            step = 1 if b >= a else -1
            out += [str(i) for i in range(a, b + step, step)]
        elif "*" in item:
            value, times = item.split("*")
            out += [value.strip()] * int(times)
        else:
            out.append(item)
    return out


def parse_image_string(text: str, default_ms: int = DEFAULT_MS) -> list[tuple[str, int]]:
    """``"a-[1~3].png:[50*2,100],b.png"`` -> [("a-1.png", 50), ("a-2.png", 50),
    ("a-3.png", 100), ("b.png", default_ms)]."""
    frames = []
    for part in _split_top(_unquote(text)):
        path, _, times = part.strip().partition(":")
        path = re.sub(r"~[A-Z_]+\(.*$", "", path.strip())
        m = re.search(r"\[([^\]]*)\]", path)
        paths = ([path[:m.start()] + v + path[m.end():] for v in _expand_list(m.group(1))]
                 if m else [path])
        times = times.strip()
        if times.startswith("["):
            durations = [int(v) for v in _expand_list(times[1:-1])]
        else:
            durations = [int(times) if times else default_ms] * len(paths)
        if len(durations) != len(paths):
            raise ValueError(f"image string {text!r}: {len(paths)} images, "
                             f"{len(durations)} durations")
        frames += list(zip(paths, durations))
    return frames


def _read_value(lines: list[str], i: int) -> tuple[str, int]:
    """The value starting on line i (a quoted string may run over lines) and the next line."""
    m = _KEY.match(lines[i])
    value = m.group(2)
    while value.count('"') % 2 == 1 and i + 1 < len(lines):
        i += 1
        value += "\n" + lines[i]
    return value, i + 1


def read_unit_file(path: str) -> tuple[Unit | None, int]:
    """The file's first ``[unit_type]`` (None if it has none) and how many of its
    animations were left out (an image not on disk)."""
    lines = [ln for ln in open(path, encoding="utf-8").read().splitlines()
             if not ln.lstrip().startswith("#")]
    fields: dict[str, str] = {}
    attacks, anims = [], []
    stack: list[str] = []
    attack: dict = {}
    anim: dict | None = None
    dropped = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        tag = _TAG.match(line)
        if tag:
            closing, name = tag.group(1) == "/", tag.group(2)
            if closing:
                if stack and stack[-1] == name:
                    stack.pop()
                if name == "unit_type":
                    break
                if name == "attack" and len(stack) == 1:
                    attacks.append(Attack(attack.get("name", ""),
                                          _unquote(attack.get("description", attack.get(
                                              "name", ""))), attack.get("range", "melee")))
                if name in _ANIMS and len(stack) == 1 and anim is not None:
                    anims.append(anim)
                    anim = None
            else:
                stack.append(name)
                if len(stack) == 2 and name == "attack":
                    attack = {}
                if len(stack) == 2 and name in _ANIMS:
                    anim = {"kind": _ANIMS[name], "frames": [], "attack": "", "else": False}
            i += 1
            continue
        if not stack or stack[0] != "unit_type":
            i += 1
            continue
        defense = _DEFENSE.search(line)
        if defense and len(stack) == 1:
            react, base = defense.groups()
            anims.append({"kind": "defend", "attack": "", "else": False,
                          "frames": [(base, 100), (react, 250), (base, 100)]})
        m = _KEY.match(line)
        if not m:
            i += 1
            continue
        value, i = _read_value(lines, i)
        key = m.group(1)
        if len(stack) == 1:
            fields.setdefault(key, value)
        elif len(stack) == 2 and stack[1] == "attack":
            attack[key] = _unquote(value)
        elif anim is not None and stack[1] in _ANIMS:
            inner = stack[2:]
            if "else" in inner:
                continue
            if inner[-1:] == ["filter_attack"] and key == "name":
                anim["attack"] = _unquote(value)
            if inner and inner[-1] == "frame" and key == "image":
                try:
                    anim["frames"] += parse_image_string(value)
                except ValueError:
                    anim["frames"].append(("", 0))     # unreadable: the animation is dropped
    if "id" not in fields or "image" not in fields:
        return None, 0
    kept = []
    for a in anims:
        frames = tuple((p, ms) for p, ms in a["frames"] if ms > 0 or p)
        if frames and all(p and os.path.isfile(os.path.join(IMAGES, p)) for p, _ in frames):
            kept.append(Animation(a["kind"], frames, a["attack"]))
        else:
            dropped += 1
    image = parse_image_string(fields["image"])[0][0]
    if not os.path.isfile(os.path.join(IMAGES, image)):
        return None, dropped
    unit = Unit(id=_unquote(fields["id"]), name=_unquote(fields.get("name", fields["id"])),
                race=_unquote(fields.get("race", "")), image=image,
                description=" ".join(_unquote(fields.get("description", "")).split()),
                attacks=tuple(attacks), animations=tuple(kept),
                file=os.path.relpath(path, ROOT))
    return unit, dropped


def read_units(root: str = ROOT) -> tuple[list[Unit], dict[str, int]]:
    """Every unit with a standing picture, an attack animation and a description, sorted by
    id; and skip reason -> count."""
    units: dict[str, Unit] = {}
    skipped = {"no unit_type or picture": 0, "no attack animation": 0,
               "no description": 0, "animation with a missing image": 0, "duplicate id": 0}
    for folder, _, files in sorted(os.walk(os.path.join(root, "units"))):
        for f in sorted(files):
            if not f.endswith(".cfg"):
                continue
            unit, dropped = read_unit_file(os.path.join(folder, f))
            skipped["animation with a missing image"] += dropped
            if unit is None:
                skipped["no unit_type or picture"] += 1
            elif not unit.of_kind("attack"):
                skipped["no attack animation"] += 1
            elif not unit.description:
                skipped["no description"] += 1
            elif unit.id in units:
                skipped["duplicate id"] += 1
            else:
                units[unit.id] = unit
    return [units[k] for k in sorted(units)], skipped


# ---------------------------------------------------------------------------------- pictures

def load_rgba(path: str) -> np.ndarray:
    """A picture under IMAGES as uint8 RGBA; a file that does not decode names itself."""
    from PIL import Image
    full = os.path.join(IMAGES, path)
    try:
        with Image.open(full) as im:
            return np.asarray(im.convert("RGBA"), np.uint8)
    except OSError as e:
        raise ValueError(f"could not read the picture {full}: {e}") from e


# Wesnoth draws a unit's team colour over the pixels of one magenta palette
# (team-colors.cfg, ``[color_palette] magenta=``); the first entry is the reference shade.
MAGENTA = ("F49AC1,3F0016,55002A,690039,7B0045,8C0051,9E005D,B10069,C30074,D6007F,EC008C,"
           "EE3D96,EF5BA1,F172AC,F287B6,F6ADCD,F8C1D9,FAD5E5,FDE9F1")
# Team colours (team-colors.cfg ``[color_range]``: average, highlight, shadow shades).
TEAM_COLOURS = {"red": ("FF0000", "FFFFFF", "000000"), "blue": ("2E419B", "FFFFFF", "0F0F0F"),
                "green": ("62B664", "FFFFFF", "000000"), "purple": ("93009D", "FFFFFF", "000000"),
                "orange": ("FF7E00", "FFFFFF", "0F0F0F"), "white": ("E1E1E1", "FFFFFF", "1E1E1E")}


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)], np.float64)


def _team_map(colour: str) -> dict[tuple, tuple]:
    """Magenta palette colour -> its shade of ``colour``: a shade darker than the reference
    goes from the shadow to the average by its brightness, a lighter one from the average to
    the highlight (the scheme the game's recolouring follows)."""
    mid, high, low = (_rgb(c) for c in TEAM_COLOURS[colour])
    palette = [_rgb(c) for c in MAGENTA.split(",")]
    ref = palette[0].mean()
    out = {}
    for p in palette:
        b = p.mean()
        if b <= ref:
            new = low + (mid - low) * (b / ref)
        else:
            new = mid + (high - mid) * ((b - ref) / (255.0 - ref))
        out[tuple(int(v) for v in p)] = tuple(int(round(v)) for v in np.clip(new, 0, 255))
    return out


def recolour(rgba: np.ndarray, colour: str) -> np.ndarray:
    """The picture with its magenta team-colour pixels in ``colour``'s shades."""
    out = rgba.copy()
    for src, dst in _team_map(colour).items():
        hit = np.all(rgba[..., :3] == src, axis=-1)
        out[hit, :3] = dst
    return out


# Terrain backgrounds: name -> the tile files' stem (variants stem.png, stem2.png, ...).
TERRAINS = {
    "green grass": "grass/green", "dry grass": "grass/dry", "semi-dry grass": "grass/semi-dry",
    "leaf litter": "grass/leaf-litter", "dirt": "flat/dirt", "dark dirt": "flat/dirt-dark",
    "road": "flat/road", "desert road": "flat/desert-road", "beach sand": "sand/beach",
    "desert sand": "sand/desert", "snow": "frozen/snow", "ice": "frozen/ice",
    "cave floor": "cave/earthy-floor", "mud": "swamp/mud", "stone floor": "interior/stone-regular",
    "ancient stone": "interior/stone-ancient", "wooden floor": "interior/wood-regular",
    "hills": "hills/regular",
}
HEX = 72    # the game's hex tile: 72 x 72 px, columns 54 px apart, odd ones 36 px lower


def terrain_tiles(name: str) -> list[str]:
    stem = TERRAINS[name]
    folder, base = os.path.split(stem)
    out = []
    for f in sorted(os.listdir(os.path.join(IMAGES, "terrain", folder))):
        if re.fullmatch(re.escape(base) + r"\d*\.png", f):
            out.append(os.path.join("terrain", folder, f))
    if not out:
        raise ValueError(f"no tile of terrain {name!r} ({stem}*.png) under {IMAGES}")
    return out


@functools.lru_cache(maxsize=None)
def _tiles(name: str) -> tuple[np.ndarray, ...]:
    return tuple(load_rgba(t) for t in terrain_tiles(name))


def terrain_picture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` RGB field of the terrain's hex tiles as the game lays them out,
    each hex a variant drawn by ``rng``."""
    tiles = _tiles(name)
    canvas = np.zeros((size + 2 * HEX, size + 2 * HEX, 4), np.float64)
    for col in range(size // 54 + 3):
        for row in range(size // HEX + 3):
            tile = tiles[int(rng.integers(len(tiles)))].astype(np.float64)
            x, y = col * 54, row * HEX + (HEX // 2 if col % 2 else 0)
            if y + HEX > canvas.shape[0] or x + HEX > canvas.shape[1]:
                continue
            a = tile[..., 3:] / 255.0
            region = canvas[y:y + HEX, x:x + HEX]
            region[..., :3] = tile[..., :3] * a + region[..., :3] * (1 - a)
            region[..., 3:] = np.maximum(region[..., 3:], tile[..., 3:])
    field = canvas[HEX // 2:HEX // 2 + size, HEX // 2:HEX // 2 + size, :3]
    return np.clip(np.round(field), 0, 255).astype(np.uint8)


def iter_frames(anim: Animation, ms_per_frame: int, count: int, loop: bool
                ) -> Iterator[str]:
    """The image shown at each of ``count`` frames ``ms_per_frame`` apart (sampled at the
    frame's start); after the last image, a looping animation starts again and another holds
    ``None`` (the caller shows the standing picture)."""
    ends = np.cumsum([ms for _, ms in anim.frames])
    total = int(ends[-1])
    for k in range(count):
        t = k * ms_per_frame
        if t >= total:
            if not loop:
                yield None
                continue
            t %= total
        yield anim.frames[int(np.searchsorted(ends, t, side="right"))][0]
